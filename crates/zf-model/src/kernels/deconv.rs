//! The deconvnet's CPU ops (no backward): the transposed convolution and switch unpooling, over
//! whole maps and over the window where one unit's projection can be non-zero.

use super::*;

/// The transposed convolution of a conv layer without bias (the deconvnet's filtering), no
/// backward.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvTranspose {
    pub(super) s: ConvShape,
}

/// `[N, O, Ho, Wo]` -> `[N, C, H, W]` through the transposed filters of `w` `[O, C, k, k]` with
/// the geometry `g` of a conv whose input was `H x W`: per image one gemm and a col2im.
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, g: ConvGeometry, (h, wd): (usize, usize)) -> Result<Tensor> {
    let (_, c, _, _) = w.dims4()?;
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &ConvTranspose { s: ConvShape::new(g, c, h, wd)? })
}

/// The transposed convolution restricted to a window: `x` `[N, O, bh, bw]` is the block of a
/// conv's output starting at `(y0, x0)` (everything outside it zero), `(h, w)` the conv's full
/// input size. Returns the block of the full result that can be non-zero, `[N, C, BH, BW]`,
/// and where it starts, `(Y0, X0)`: exactly the values the full [`conv_transpose2d`] has
/// there (the deconvnet projects one unit, so each layer's non-zero block is the unit's
/// receptive field at that layer, a small part of the map).
pub fn conv_transpose2d_window(
    x: &Tensor,
    w: &Tensor,
    g: ConvGeometry,
    (y0, x0): (usize, usize),
    (h, wd): (usize, usize),
) -> Result<(Tensor, (usize, usize))> {
    let (_, _, bh, bw) = x.dims4()?;
    let (_, c, _, _) = w.dims4()?;
    let (Some(ho), Some(wo)) = (g.output_size(h), g.output_size(wd)) else {
        bail!("conv_transpose2d_window: a {k}x{k} kernel does not fit a {h}x{wd} input", k = g.kernel)
    };
    if bh == 0 || bw == 0 || y0 + bh > ho || x0 + bw > wo {
        bail!("conv_transpose2d_window: a {bh}x{bw} block at ({y0}, {x0}) is not inside the {ho}x{wo} output")
    }
    // Input rows (columns) the block reads: from (y0 s - p) to ((y0 + bh - 1) s - p + k), clipped.
    let span = |start: usize, len: usize, full: usize| {
        let first = (start * g.stride) as isize - g.padding as isize;
        let lo = first.max(0) as usize;
        let hi = ((first + ((len - 1) * g.stride + g.kernel) as isize).min(full as isize)).max(lo as isize) as usize;
        (lo, hi - lo, (lo as isize - first) as usize)
    };
    let (oy, hh, py) = span(y0, bh, h);
    let (ox, ww, px) = span(x0, bw, wd);
    let s = ConvShape { g, c, h: hh, w: ww, ho: bh, wo: bw, py, px };
    let out = x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &ConvTranspose { s })?;
    Ok((out, (oy, ox)))
}

impl ConvTranspose {
    /// A 3x3 stride-1 transposed conv is the forward conv with the filters transposed and
    /// turned by 180 degrees, over the input padded by `2 - p` (here `2 - py`, `2 - px`: a
    /// window's placement). That conv, when Winograd's forward takes it for `n` images (VGG's
    /// wide 112- and 224-pixel blocks at batch 1; any map at a batch of at least the threads):
    /// its shape, input `[O, Ho, Wo]` (`o` channels) to output `[C, H, W]`.
    pub(super) fn as_forward(&self, n: usize, o: usize) -> Option<ConvShape> {
        let s = self.s;
        if s.g.kernel != 3 || s.g.stride != 1 || s.py > 2 || s.px > 2 {
            return None;
        }
        // The placement is `py`, `px` (Winograd's tiles read those, not the geometry's padding).
        let g = ConvGeometry::new(3, 1, 0);
        let fwd = ConvShape { g, c: o, h: s.ho, w: s.wo, ho: s.h, wo: s.w, py: 2 - s.py, px: 2 - s.px };
        winograd::applies_forward(g, fwd.ho, fwd.wo, n).then_some(fwd)
    }
}

impl CustomOp2 for ConvTranspose {
    fn name(&self) -> &'static str {
        "zf-conv-transpose2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_arg(xs, xl, "conv_transpose2d")?, f32_arg(ws, wl, "conv_transpose2d")?);
        let (n, o, ho, wo) = xl.shape().dims4()?;
        let s = self.s;
        if (ho, wo) != (s.ho, s.wo) || wl.shape().dims4()? != (o, s.c, s.g.kernel, s.g.kernel) {
            bail!("conv_transpose2d: input {:?} and weight {:?} do not fit {s:?}", xl.shape(), wl.shape())
        }
        let (rows, pos, chw) = (s.rows(), s.positions(), s.c * s.h * s.w);
        let mut out = vec![0f32; n * chw];
        if let Some(fwd) = self.as_forward(n, o) {
            // w [O, C, 3, 3] -> the forward conv's [C, O, 3, 3], each filter turned by 180 degrees.
            let mut flipped = vec![0f32; w.len()];
            for (oc, filters) in w.chunks_exact(s.c * 9).enumerate() {
                for (ch, f) in filters.chunks_exact(9).enumerate() {
                    for (k, &v) in f.iter().enumerate() {
                        flipped[(ch * o + oc) * 9 + 8 - k] = v;
                    }
                }
            }
            winograd::forward_into(&fwd, x, &flipped, &vec![0f32; s.c], n, false, &mut out);
            return Ok((CpuStorage::F32(out), Shape::from((n, s.c, s.h, s.w))));
        }
        let image = |i: usize, dst: &mut [f32], par: Parallelism| {
            let xi = &x[i * o * pos..(i + 1) * o * pos];
            dst.fill(0.0);
            with_scratch(rows * s.block_rows() * s.wo, 0, |cols, _, _| {
                for (oy0, oy1) in s.blocks() {
                    let (p0, len) = (oy0 * s.wo, (oy1 - oy0) * s.wo);
                    let cols = &mut cols[..rows * len];
                    let x_block = Mat { data: &xi[p0..], rows: o, cols: len, rs: pos, cs: 1 };
                    gemm(cols, Mat::new(w, o, rows).t(), x_block, false, par);
                    s.col2im(cols, dst, (oy0, oy1));
                }
            })
        };
        if chw > 0 {
            match per_image(n) {
                (true, par) => out.par_chunks_mut(chw).enumerate().for_each(|(i, d)| image(i, d, par)),
                (false, par) => out.chunks_mut(chw).enumerate().for_each(|(i, d)| image(i, d, par)),
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, s.c, s.h, s.w))))
    }
}

/// Switch unpooling (the deconvnet's): each value to its switch in a zero map, no backward.
#[derive(Clone, Copy, Debug)]
struct Unpool {
    /// The output block's size and origin in the full `H x W` map, and that map's width.
    h: usize,
    w: usize,
    y0: usize,
    x0: usize,
    full_w: usize,
}

/// Switch unpooling: `[N, C, Ho, Wo]` values and `u32` switches (flat in `H x W`) to a zero
/// `[N, C, H, W]` map holding each value at its switch; where two windows share a switch the
/// later one (row-major) wins, as PyTorch's `max_unpool2d` does on the CPU.
pub fn unpool(xs: &Tensor, indices: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    unpool_into(xs, indices, Unpool { h, w, y0: 0, x0: 0, full_w: w })
}

/// [`unpool`] of a block: `xs` `[N, C, bh, bw]` are the pooled values at `(y0, x0)..` (zero
/// elsewhere) with their switches (flat in the full `H x W` pre-pool map of `pool`). Returns
/// the block of the unpooled map those windows cover, `[N, C, BH, BW]`, and where it starts.
pub fn unpool_window(
    xs: &Tensor,
    indices: &Tensor,
    pool: crate::config::PoolGeometry,
    (y0, x0): (usize, usize),
    (h, w): (usize, usize),
) -> Result<(Tensor, (usize, usize))> {
    let (_, _, bh, bw) = xs.dims4()?;
    if bh == 0 || bw == 0 {
        bail!("unpool_window: an empty block")
    }
    let (oy, ox) = (y0 * pool.stride, x0 * pool.stride);
    let end = |o: usize, n: usize, full: usize| ((o + n - 1) * pool.stride + pool.kernel).min(full);
    let (hh, ww) = (end(y0, bh, h).saturating_sub(oy), end(x0, bw, w).saturating_sub(ox));
    let out = unpool_into(xs, indices, Unpool { h: hh, w: ww, y0: oy, x0: ox, full_w: w })?;
    Ok((out, (oy, ox)))
}

fn unpool_into(xs: &Tensor, indices: &Tensor, op: Unpool) -> Result<Tensor> {
    if xs.dims() != indices.dims() || indices.dtype() != DType::U32 {
        bail!("unpool: values {:?} and switches {:?} ({:?}) do not fit", xs.dims(), indices.dims(), indices.dtype())
    }
    xs.dims4()?;
    xs.contiguous()?.apply_op2_no_bwd(&indices.contiguous()?, &op)
}

impl CustomOp2 for Unpool {
    fn name(&self) -> &'static str {
        "zf-unpool"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, is: &CpuStorage, il: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_arg(xs, xl, "unpool")?;
        let idx = u32_arg(is, il, "unpool")?;
        let (n, c, ho, wo) = xl.shape().dims4()?;
        let Self { h, w, y0, x0, full_w } = *self;
        let hw = h * w;
        // A switch's place in the block, if inside.
        let place = |k: u32| {
            let (y, x) = (k as usize / full_w.max(1), k as usize % full_w.max(1));
            (y >= y0 && y < y0 + h && x >= x0 && x < x0 + w).then(|| (y - y0) * w + (x - x0))
        };
        if let Some(&bad) = idx.iter().find(|&&k| place(k).is_none()) {
            bail!("unpool: switch {bad} outside the {h}x{w} block at ({y0}, {x0}) of a map {full_w} wide")
        }
        let mut out = vec![0f32; n * c * hw];
        if hw > 0 && ho * wo > 0 {
            out.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
                let range = p * ho * wo..(p + 1) * ho * wo;
                for (&k, &v) in idx[range.clone()].iter().zip(&x[range]) {
                    if let Some(at) = place(k) {
                        plane[at] = v;
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, self.h, self.w))))
    }
}
