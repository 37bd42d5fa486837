//! 2D convolution and its transpose, on any device: on the CPU in f32 the fused kernels
//! (`kernels`, private: im2col + gemm, Winograd for 3x3 stride-1 convs, direct tiles for convs
//! over few channels, with gemm-based gradients instead of the direct-loop `conv_transpose2d`
//! that candle's own conv2d backward uses); elsewhere candle's `conv2d` and `conv_transpose2d`.

use candle_core::{Result, Tensor};

use crate::config::ConvGeometry;

/// `conv2d(x, w) + b` with `g`'s stride and padding.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `w`: `[O, C, k, k]`; `b`: `[O]`
/// - returns: `[N, O, Ho, Wo]`
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, g: ConvGeometry) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c || kh != g.kernel || kw != g.kernel {
        bail!("conv2d: input has {c} channels, weight has shape {:?} for a {}x{} kernel", w.dims(), g.kernel, g.kernel)
    }
    if crate::device::fused(x) {
        let zeros;
        let b = match b {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(o, x.dtype(), x.device())?;
                &zeros
            }
        };
        return crate::kernels::conv2d(x, w, b, g, false);
    }
    let out = x.conv2d(w, g.padding, g.stride, 1, 1)?;
    match b {
        Some(b) => out.broadcast_add(&b.reshape((1, o, 1, 1))?),
        None => Ok(out),
    }
}

/// The transposed convolution of a conv layer (weights `w` `[O, C, k, k]`, geometry `g`):
/// `[N, O, Ho, Wo]` -> `[N, C, H, W]`, where `(H, W)` is the layer's input size (this fixes the
/// output padding). On the CPU one gemm and a col2im per image
/// (`kernels::conv_transpose2d`); elsewhere candle's `conv_transpose2d`. No bias (the
/// deconvnet uses none).
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, g: ConvGeometry, (h, wd): (usize, usize)) -> Result<Tensor> {
    let (_, o, ho, wo) = x.dims4()?;
    let (wo_, _, k, _) = w.dims4()?;
    if wo_ != o || g.output_size(h) != Some(ho) || g.output_size(wd) != Some(wo) {
        bail!(
            "conv_transpose2d: {:?} is not the output of a {k}x{k} stride {} pad {} conv with weight {:?} on {h}x{wd}",
            x.dims(),
            g.stride,
            g.padding,
            w.dims()
        )
    }
    if crate::device::fused(x) {
        return crate::kernels::conv_transpose2d(x, w, g, (h, wd));
    }
    let op = |side: usize, out: usize| side - ((out - 1) * g.stride + g.kernel - 2 * g.padding);
    x.conv_transpose2d(w, g.padding, op(h, ho).max(op(wd, wo)), g.stride, 1)
}

/// The transposed convolution restricted to the window where one unit's projection can be
/// non-zero (its receptive field at that layer): `x` `[N, O, bh, bw]` is the block of the
/// conv's output starting at `origin`, `input_hw` the conv's full input size. Returns the
/// block of the full [`conv_transpose2d`] result that can be non-zero and where it starts —
/// exactly the values the full result has there. The deconvnet's CPU path; f32 on the CPU only
/// (other devices project whole maps).
pub fn conv_transpose2d_window(
    x: &Tensor,
    w: &Tensor,
    g: ConvGeometry,
    origin: (usize, usize),
    input_hw: (usize, usize),
) -> Result<(Tensor, (usize, usize))> {
    if !crate::device::fused(x) {
        bail!("conv_transpose2d_window runs on f32 CPU tensors, got {:?} on {:?}", x.dtype(), x.device())
    }
    crate::kernels::conv_transpose2d_window(x, w, g, origin, input_hw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn transposed_convolution_agrees_with_candle() {
        for (g, side) in [
            (ConvGeometry::new(7, 2, 1), 24),
            (ConvGeometry::new(5, 2, 0), 23),
            (ConvGeometry::new(3, 1, 1), 9),
            (ConvGeometry::new(11, 4, 2), 30),
        ] {
            let out = g.output_size(side).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 4, out, out), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 0.1, (4, 3, g.kernel, g.kernel), &Device::Cpu).unwrap();
            let ours = conv_transpose2d(&x, &w, g, (side, side)).unwrap();
            let op = side - ((out - 1) * g.stride + g.kernel - 2 * g.padding);
            let theirs = x.conv_transpose2d(&w, g.padding, op, g.stride, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let d = max_abs_diff(&ours, &theirs);
            assert!(d < 1e-4, "{g:?}: differs by {d}");
        }
    }

    #[test]
    fn agrees_with_candle_forward_and_backward() {
        for g in [
            ConvGeometry::new(7, 2, 1),
            ConvGeometry::new(5, 2, 0),
            ConvGeometry::new(3, 1, 1),
            ConvGeometry::new(11, 4, 2),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 23, 23), &Device::Cpu).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 0.1, (4, 3, g.kernel, g.kernel), &Device::Cpu).unwrap()).unwrap();
            let b = Tensor::randn(0f32, 0.1, 4, &Device::Cpu).unwrap();
            let ours = conv2d(x.as_tensor(), w.as_tensor(), Some(&b), g).unwrap();
            let theirs = x
                .as_tensor()
                .conv2d(w.as_tensor(), g.padding, g.stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
                .unwrap();
            let d = max_abs_diff(&ours, &theirs);
            assert!(d < 1e-4, "{g:?}: forward differs by {d}");
            // Without gradients to track (inference) the same path gives the same numbers.
            let plain = conv2d(&x.as_tensor().detach(), &w.as_tensor().detach(), Some(&b), g).unwrap();
            assert!(max_abs_diff(&plain, &theirs) < 1e-4, "{g:?}: inference forward differs");
            // Gradients of a weighted sum.
            let r = Tensor::randn(0f32, 1.0, ours.shape(), &Device::Cpu).unwrap();
            let ga = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w] {
                let (a, b) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
                let d = max_abs_diff(a, b);
                assert!(d < 1e-3, "{g:?}: gradient differs by {d}");
            }
        }
    }
}
