//! Max pooling that returns its switches (the argmax of every window), in ceil or floor mode.
//!
//! candle's own max-pool has no ceil mode and no indices, and its backward refuses
//! kernel != stride, so this op is ours. The switches are computed first (the CPU kernels of
//! `kernels/pool.rs`, candle ops on other devices); the pooled values are then gathered through
//! them (`kernels::pool_values` on the CPU, candle's `gather` elsewhere), so the backward
//! pass sends each output's gradient to its switch. This file is the device dispatch and the
//! other devices' path; every CPU loop is in `kernels/`.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::config::PoolGeometry;

/// Where each window's maximum was, as PyTorch's `max_pool2d(..., return_indices=True)` gives it.
///
/// # Shapes
/// - `indices`: `[N, C, Ho, Wo]`, `u32`, the flat index `h * W + w` into the pooled input's
///   `H x W` plane.
/// - `input_hw`: `(H, W)`, the pooled input's size, which unpooling restores exactly.
#[derive(Clone, Debug)]
pub struct Switches {
    pub indices: Tensor,
    pub input_hw: (usize, usize),
    pub geometry: PoolGeometry,
}

impl PoolGeometry {
    /// Max-pools `xs` and returns the pooled values with the switches.
    ///
    /// Ties resolve like PyTorch: the first maximum in the window's row-major order wins; a NaN
    /// wins over any number. In ceil mode the windows that hang over the right or bottom edge
    /// see only the input's own values (no padding is read).
    ///
    /// # Shapes
    /// - `xs`: `[N, C, H, W]`
    /// - returns: `[N, C, Ho, Wo]` with `Ho = self.output_size(H)`, and the switches.
    pub fn forward_with_switches(&self, xs: &Tensor) -> Result<(Tensor, Switches)> {
        let (n, c, h, w) = xs.dims4()?;
        let (Some(ho), Some(wo)) = (self.output_size(h), self.output_size(w)) else {
            bail!("max pool {k}x{k} stride {s} does not fit a {h}x{w} input", k = self.kernel, s = self.stride)
        };
        let indices = self.switches(xs, ho, wo)?;
        let values = if crate::device::fused(xs) {
            crate::kernels::pool_values(xs, &indices)?
        } else {
            xs.flatten_from(2)?.gather(&indices.flatten_from(2)?, 2)?.reshape((n, c, ho, wo))?
        };
        Ok((values, Switches { indices, input_hw: (h, w), geometry: *self }))
    }

    /// Max-pools `xs`, values only (no switches, no gradient): on the CPU in f32 one pass over
    /// each window; elsewhere [`PoolGeometry::forward_with_switches`]'s values. The same values
    /// either way (a NaN in a window wins, as in PyTorch).
    ///
    /// # Shapes
    /// - `xs`: `[N, C, H, W]`; returns `[N, C, Ho, Wo]`.
    pub fn forward_values(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = xs.dims4()?;
        if !crate::device::fused(xs) {
            return Ok(self.forward_with_switches(xs)?.0);
        }
        let (Some(ho), Some(wo)) = (self.output_size(h), self.output_size(w)) else {
            bail!("max pool {k}x{k} stride {s} does not fit a {h}x{w} input", k = self.kernel, s = self.stride)
        };
        crate::kernels::pool_max(&xs.detach(), *self, (ho, wo))
    }

    fn switches(&self, xs: &Tensor, ho: usize, wo: usize) -> Result<Tensor> {
        let xs = xs.detach();
        match xs.device() {
            Device::Cpu => crate::kernels::pool_switches(&xs, *self, (ho, wo)),
            _ => self.switches_generic(&xs, ho, wo),
        }
    }

    /// The switches from candle's own ops, for devices without a kernel of ours: one pass per
    /// window offset, keeping the running maximum and its index (strictly greater wins, so the
    /// first maximum in row-major order is kept). NaNs are not given priority here.
    pub(crate) fn switches_generic(&self, xs: &Tensor, ho: usize, wo: usize) -> Result<Tensor> {
        let (n, c, _, w) = xs.dims4()?;
        let (k, s) = (self.kernel, self.stride);
        // Pad right/bottom with -inf so that every offset can take `s * out` rows (cols).
        let (hp, wp) = ((k - 1) + s * ho, (k - 1) + s * wo);
        let xs = pad_bottom_right(xs, hp, wp, f64::NEG_INFINITY)?;
        // The flat input index of each window's top-left corner, uploaded once; each offset adds
        // its own (di * w + dj) on the device. Kept in f32 (exact below 2^24, far above any
        // plane's size) because candle's where_cond and affine take it on every backend.
        let corners: Vec<f32> = (0..ho).flat_map(|oi| (0..wo).map(move |oj| ((oi * s) * w + oj * s) as f32)).collect();
        if (hp * w) as f64 >= f64::from(1u32 << 24) {
            bail!("max-pool-switches: a {hp}x{w} plane is too large for f32 indices")
        }
        let corners = Tensor::from_vec(corners, (1, 1, ho, wo), xs.device())?;
        let mut best: Option<(Tensor, Tensor)> = None;
        for di in 0..k {
            let rows = xs.narrow(2, di, s * ho)?.reshape((n, c, ho, s, wp))?.narrow(3, 0, 1)?.squeeze(3)?;
            for dj in 0..k {
                let v = rows.narrow(3, dj, s * wo)?.reshape((n, c, ho, wo, s))?.narrow(4, 0, 1)?.squeeze(4)?;
                // The flat input index of this offset in every window (past-the-edge offsets are
                // -inf and never win, so their out-of-range index is never kept).
                let idx = corners.affine(1.0, (di * w + dj) as f64)?.broadcast_as((n, c, ho, wo))?;
                best = Some(match best {
                    None => (v, idx.contiguous()?),
                    Some((bv, bi)) => {
                        let m = v.gt(&bv)?;
                        (m.where_cond(&v, &bv)?, m.where_cond(&idx, &bi)?)
                    }
                });
            }
        }
        let (_, idx) = best.ok_or_else(|| candle_core::Error::Msg("empty pooling window".into()))?;
        idx.to_dtype(DType::U32)
    }
}

/// Pads `[N, C, H, W]` at the bottom and right with `value` to `[N, C, hp, wp]`, or crops when
/// smaller. The padding is made in the input's dtype on its device (Metal has no f64).
fn pad_bottom_right(xs: &Tensor, hp: usize, wp: usize, value: f64) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let mut xs = xs.narrow(2, 0, h.min(hp))?.narrow(3, 0, w.min(wp))?;
    if hp > h {
        let pad = full(value, (n, c, hp - h, w.min(wp)), xs.dtype(), xs.device())?;
        xs = Tensor::cat(&[&xs, &pad], 2)?;
    }
    if wp > w {
        let pad = full(value, (n, c, hp, wp - w), xs.dtype(), xs.device())?;
        xs = Tensor::cat(&[&xs, &pad], D::Minus1)?;
    }
    Ok(xs)
}

/// A tensor of `value` in `dtype`, made on `device` without an f64 intermediate.
fn full(value: f64, shape: (usize, usize, usize, usize), dtype: DType, device: &Device) -> Result<Tensor> {
    match dtype {
        DType::F32 => Tensor::full(value as f32, shape, device),
        DType::F16 => Tensor::full(half::f16::from_f64(value), shape, device),
        DType::BF16 => Tensor::full(half::bf16::from_f64(value), shape, device),
        DType::F64 => Tensor::full(value, shape, device),
        other => bail!("max pooling takes a float tensor, got {other:?}"),
    }
}

impl PoolGeometry {
    /// Max pooling on slices, for the graph-free training pass (`kernels::pool_forward_into`).
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        hw: (usize, usize),
        switches: &mut [u32],
        values: &mut [f32],
    ) -> Result<()> {
        crate::kernels::pool_forward_into(self, x, hw, switches, values)
    }

    /// The pooling's adjoint on slices (`kernels::pool_backward_into`).
    pub(crate) fn backward_into(
        &self,
        switches: &[u32],
        grad: &[f32],
        pooled: Option<&[f32]>,
        hw: (usize, usize),
        dx: &mut [f32],
    ) -> Result<()> {
        crate::kernels::pool_backward_into(switches, grad, pooled, hw, dx)
    }
}

/// Switch unpooling (the deconvnet's): `xs` `[N, C, Ho, Wo]` values and their u32 switches
/// (flat positions in each `H x W` plane) to a zero `[N, C, H, W]` map holding each value at its
/// switch; where two windows share a switch the later one (row-major) wins, as PyTorch's
/// `max_unpool2d` does on the CPU. The fused kernel on the CPU, candle's `scatter` elsewhere.
///
/// # Shapes
/// - `xs`, `indices`: `[N, C, Ho, Wo]` (`indices` u32 flat positions in each `H x W` plane)
/// - returns: `[N, C, H, W]`
pub fn unpool(xs: &Tensor, indices: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let (n, c, ho, wo) = xs.dims4()?;
    if indices.dims() != [n, c, ho, wo] {
        bail!("unpool: values have shape {:?}, switches {:?}", xs.dims(), indices.dims())
    }
    if crate::device::fused(xs) {
        return crate::kernels::unpool(xs, indices, (h, w));
    }
    Tensor::zeros((n, c, h * w), xs.dtype(), xs.device())?
        .scatter(&indices.flatten_from(2)?.contiguous()?, &xs.flatten_from(2)?.contiguous()?, 2)?
        .reshape((n, c, h, w))
}

/// [`unpool`] of a block: `xs` `[N, C, bh, bw]` are the pooled values at `origin` (zero
/// elsewhere) with their switches (flat in the full `H x W` pre-pool map of `pool`). Returns
/// the block of the unpooled map those windows cover and where it starts. The deconvnet's CPU
/// path; f32 on the CPU only.
pub fn unpool_window(
    xs: &Tensor,
    indices: &Tensor,
    pool: PoolGeometry,
    origin: (usize, usize),
    input_hw: (usize, usize),
) -> Result<(Tensor, (usize, usize))> {
    if !crate::device::fused(xs) {
        bail!("unpool_window runs on f32 CPU tensors, got {:?} on {:?}", xs.dtype(), xs.device())
    }
    crate::kernels::unpool_window(xs, indices, pool, origin, input_hw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{POOL12, POOL5};

    fn t(v: &[f32], h: usize, w: usize) -> Tensor {
        Tensor::from_slice(v, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn ceil_mode_windows_and_ties() {
        // 4x4 input, 3x3 stride 2 ceil: 2x2 outputs; the right/bottom windows see 3x2, 2x3, 2x2.
        #[rustfmt::skip]
        let x = t(&[
            1., 1., 0., 5.,
            1., 0., 0., 5.,
            0., 0., 2., 0.,
            7., 0., 0., 7.,
        ], 4, 4);
        let (v, sw) = POOL12.forward_with_switches(&x).unwrap();
        assert_eq!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![2., 5., 7., 7.]);
        // Window (1,1) covers rows 2-3, cols 2-3: 2 at 10, 7 at 15.
        assert_eq!(sw.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap(), vec![10, 3, 12, 15]);
        // Ties: the first maximum in row-major order wins.
        let ones = t(&[1.0; 16], 4, 4);
        let (_, sw) = POOL12.forward_with_switches(&ones).unwrap();
        assert_eq!(sw.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap(), vec![0, 2, 8, 10]);
    }

    #[test]
    fn values_alone_are_the_values_through_the_switches() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (geometry, h, w) in
            [(POOL12, 13, 14), (POOL12, 31, 31), (POOL5, 13, 13), (PoolGeometry::new(2, 3, true), 11, 8)]
        {
            let v: Vec<f32> = (0..2 * 3 * h * w).map(|_| rng.random_range(-3.0..3.0)).collect();
            let x = Tensor::from_vec(v, (2, 3, h, w), &Device::Cpu).unwrap();
            let a = geometry.forward_values(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = geometry.forward_with_switches(&x).unwrap().0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a, b, "{geometry:?} on {h}x{w}");
        }
        let x = t(&[1., f32::NAN, 3., 4., 5., 6., 7., 8., 9.], 3, 3);
        assert!(POOL5.forward_values(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0].is_nan());
        // NaNs inside a larger plane: NaN exactly where the switches' values are NaN, the same
        // values elsewhere (whole and edge windows).
        let mut v: Vec<f32> = (0..2 * 3 * 15 * 15).map(|_| rng.random_range(-3.0..3.0)).collect();
        for i in [0, 17, 200, 224, 470, 1349] {
            v[i] = f32::NAN;
        }
        let x = Tensor::from_vec(v, (2, 3, 15, 15), &Device::Cpu).unwrap();
        let a = POOL12.forward_values(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = POOL12.forward_with_switches(&x).unwrap().0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a.iter().any(|v| v.is_nan()));
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(a == b || (a.is_nan() && b.is_nan()), "output {i}: {a} vs {b}");
        }
    }

    #[test]
    fn nan_wins_like_pytorch() {
        let x = t(&[1., f32::NAN, 3., 4., 5., 6., 7., 8., 9.], 3, 3);
        let (v, sw) = POOL5.forward_with_switches(&x).unwrap();
        assert!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0].is_nan());
        assert_eq!(sw.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap(), vec![1]);
    }

    #[test]
    fn generic_path_agrees_with_kernel() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (geometry, h, w) in
            [(POOL12, 13, 14), (POOL12, 26, 26), (POOL5, 13, 13), (PoolGeometry::new(2, 3, true), 11, 8)]
        {
            // Few distinct values, so that ties are common.
            let v: Vec<f32> = (0..2 * 3 * h * w).map(|_| rng.random_range(0..4) as f32).collect();
            let x = Tensor::from_vec(v, (2, 3, h, w), &Device::Cpu).unwrap();
            let (ho, wo) = (geometry.output_size(h).unwrap(), geometry.output_size(w).unwrap());
            let a = geometry.switches(&x, ho, wo).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap();
            let b = geometry.switches_generic(&x, ho, wo).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap();
            assert_eq!(a, b, "{geometry:?} on {h}x{w}");
            // The generic path (other devices) in every float dtype: the padding is made in the
            // input's dtype (Metal rejects f64 tensors), the indices are the same.
            for dtype in [DType::F16, DType::BF16, DType::F64] {
                let xd = x.to_dtype(dtype).unwrap();
                let c =
                    geometry.switches_generic(&xd, ho, wo).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap();
                assert_eq!(a, c, "{geometry:?} on {h}x{w} in {dtype:?}");
            }
        }
    }

    /// The slice pass (the 3x3 stride-2 rows by even and odd columns) gives the op's switches
    /// and values: ties everywhere, a NaN in some rows, odd and even sizes, ceil-mode edges.
    #[test]
    fn slice_pass_agrees_with_the_op() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (geometry, h, w) in [(POOL12, 13, 54), (POOL12, 26, 55), (POOL12, 4, 49), (POOL12, 13, 14), (POOL5, 9, 10)]
        {
            let mut v: Vec<f32> = (0..2 * 3 * h * w).map(|_| rng.random_range(0..4) as f32).collect();
            v[5 * w + 1] = f32::NAN;
            v[3 * h * w + 2] = f32::NAN;
            let x = Tensor::from_vec(v.clone(), (2, 3, h, w), &Device::Cpu).unwrap();
            let (vals, sw) = geometry.forward_with_switches(&x).unwrap();
            let n = sw.indices.elem_count();
            let (mut ours_sw, mut ours_v) = (vec![u32::MAX; n], vec![0f32; n]);
            geometry.forward_into(&v, (h, w), &mut ours_sw, &mut ours_v).unwrap();
            assert_eq!(ours_sw, sw.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap(), "{geometry:?} {h}x{w}");
            let theirs = vals.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(ours_v.iter().zip(&theirs).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
            assert!(ours_v.iter().any(|v| v.is_nan()), "{geometry:?} {h}x{w}: the NaN rows were exercised");
        }
    }

    #[test]
    fn gradient_goes_to_the_switch() {
        // 5x5, 3x3 stride 2: four windows that all contain the centre, which is the maximum.
        let mut v: Vec<f32> = (0..25).map(|i| i as f32).collect();
        v[12] = 99.0;
        let x = candle_core::Var::from_tensor(&t(&v, 5, 5)).unwrap();
        let (y, sw) = POOL12.forward_with_switches(x.as_tensor()).unwrap();
        assert_eq!(sw.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap(), vec![12; 4]);
        let grads = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut want = vec![0.0f32; 25];
        want[12] = 12.0; // 3 from each of the four windows
        assert_eq!(g, want);
    }
}
