//! Max pooling that returns its switches (the argmax of every window), in ceil or floor mode.
//!
//! candle's own max-pool has no ceil mode and no indices, and its backward refuses
//! kernel != stride, so this op is ours. The switches are computed first (a fused kernel on the
//! CPU, candle ops on other devices); the pooled values are then gathered through them
//! (`kernels::pool_values` on the CPU, candle's `gather` elsewhere), so the backward
//! pass sends each output's gradient to its switch.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

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
        xs.detach().contiguous()?.apply_op1_no_bwd(&MaxKernel { geometry: *self, ho, wo })
    }

    fn switches(&self, xs: &Tensor, ho: usize, wo: usize) -> Result<Tensor> {
        let xs = xs.detach();
        match xs.device() {
            Device::Cpu => xs.contiguous()?.apply_op1_no_bwd(&SwitchKernel { geometry: *self, ho, wo }),
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
    /// Max pooling on slices, for the graph-free training pass: the switches of `x`
    /// (`planes` planes of `h x w`) into `switches` and the values through them into `values`
    /// (each `planes x Ho x Wo`), as [`PoolGeometry::forward_with_switches`] computes them.
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        switches: &mut [u32],
        values: &mut [f32],
    ) -> Result<()> {
        let (Some(ho), Some(wo)) = (self.output_size(h), self.output_size(w)) else {
            bail!("max pool {k}x{k} stride {s} does not fit a {h}x{w} input", k = self.kernel, s = self.stride)
        };
        let planes = x.len().checked_div(h * w).unwrap_or(0);
        if x.len() != planes * h * w || switches.len() != planes * ho * wo || values.len() != switches.len() {
            bail!(
                "max pool: buffers of {} / {} / {} for {planes} planes of {h}x{w}",
                x.len(),
                switches.len(),
                values.len()
            )
        }
        if ho * wo == 0 {
            return Ok(());
        }
        // Wide planes (pool1's): by rows of windows; narrower ones gain nothing from it
        // (measured slower on pool2's and pool5's).
        if (self.kernel, self.stride) == (3, 2) && w >= 48 {
            values.par_chunks_mut(ho * wo).zip(switches.par_chunks_mut(ho * wo)).enumerate().for_each_init(
                PoolRows::default,
                |rows, (p, (vals, sw))| {
                    let plane = &x[p * h * w..(p + 1) * h * w];
                    crate::kernels::simd(
                        #[inline(always)]
                        || pool_3s2(plane, (h, w), wo, sw, vals, rows),
                    )
                },
            );
            return Ok(());
        }
        SwitchKernel { geometry: *self, ho, wo }.run_into(x, h, w, switches);
        values.par_chunks_mut(ho * wo).zip(switches.par_chunks(ho * wo)).enumerate().for_each(|(p, (o, ix))| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for (o, &k) in o.iter_mut().zip(ix) {
                *o = plane[k as usize];
            }
        });
        Ok(())
    }

    /// The adjoint of the pooling on slices: `dx` (`planes x h x w`) zeroed, then each of
    /// `grad`'s values added at its switch. With `pooled`, the pooling's output, only the
    /// gradients of positive pooled values pass: the derivative of a ReLU before the pool,
    /// folded in (a pooled value is the input at its switch, so this is the ReLU's mask at
    /// every position a gradient reaches).
    pub(crate) fn backward_into(
        &self,
        switches: &[u32],
        grad: &[f32],
        pooled: Option<&[f32]>,
        (h, w): (usize, usize),
        dx: &mut [f32],
    ) -> Result<()> {
        let planes = dx.len().checked_div(h * w).unwrap_or(0);
        let per = switches.len().checked_div(planes).unwrap_or(0);
        if grad.len() != switches.len()
            || per * planes != switches.len()
            || pooled.is_some_and(|v| v.len() != grad.len())
        {
            bail!(
                "max pool backward: {} switches and {} gradients for {planes} planes of {h}x{w}",
                switches.len(),
                grad.len()
            )
        }
        let outside = std::sync::atomic::AtomicBool::new(false);
        if h * w > 0 {
            dx.par_chunks_mut(h * w).enumerate().for_each(|(p, plane)| {
                plane.fill(0.0);
                let (ks, gs) = (&switches[p * per..(p + 1) * per], &grad[p * per..(p + 1) * per]);
                let mut add = |k: u32, g: f32| match plane.get_mut(k as usize) {
                    Some(d) => *d += g,
                    None => outside.store(true, std::sync::atomic::Ordering::Relaxed),
                };
                match pooled {
                    None => ks.iter().zip(gs).for_each(|(&k, &g)| add(k, g)),
                    Some(v) => {
                        for ((&k, &g), &v) in ks.iter().zip(gs).zip(&v[p * per..(p + 1) * per]) {
                            if v > 0.0 {
                                add(k, g)
                            }
                        }
                    }
                }
            });
        }
        if outside.into_inner() {
            bail!("max pool backward: a switch outside its {h}x{w} plane")
        }
        Ok(())
    }
}

/// The CPU kernel: one pass over each `H x W` plane, planes in parallel.
struct SwitchKernel {
    geometry: PoolGeometry,
    ho: usize,
    wo: usize,
}

/// A float type the kernel handles, with its NaN test inlined.
trait Float: Copy + PartialOrd + Send + Sync {
    fn nan(self) -> bool;
}

impl Float for f32 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl Float for f64 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl SwitchKernel {
    fn run<T: Float>(&self, src: &[T], planes: usize, h: usize, w: usize) -> Vec<u32> {
        let mut out = vec![0u32; planes * self.ho * self.wo];
        self.run_into(src, h, w, &mut out);
        out
    }

    /// [`Self::run`] into `out` (`planes x Ho x Wo`, every element written).
    fn run_into<T: Float>(&self, src: &[T], h: usize, w: usize, out: &mut [u32]) {
        let (ho, wo) = (self.ho, self.wo);
        if ho * wo == 0 {
            return;
        }
        out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, dst)| {
            let plane = &src[p * h * w..(p + 1) * h * w];
            // Planes without NaN (all of them, in practice) take the branch-light loop; a NaN
            // anywhere sends the plane through the loop that lets it win.
            if plane.iter().fold(false, |any, v| any | v.nan()) {
                self.plane::<T, true>(plane, h, w, dst)
            } else {
                match self.geometry.kernel {
                    3 => self.plane_k::<T, 3>(plane, h, w, dst),
                    _ => self.plane::<T, false>(plane, h, w, dst),
                }
            }
        });
    }

    /// One `H x W` plane's switches into `dst` (`Ho x Wo`). The first maximum in row-major order
    /// wins; with `NAN`, a NaN wins over any number (the first NaN).
    #[inline(always)]
    fn plane<T: Float, const NAN: bool>(&self, plane: &[T], h: usize, w: usize, dst: &mut [u32]) {
        let (k, s) = (self.geometry.kernel, self.geometry.stride);
        for (oi, dst) in dst.chunks_exact_mut(self.wo).enumerate() {
            let (r0, r1) = (oi * s, (oi * s + k).min(h));
            for (oj, d) in dst.iter_mut().enumerate() {
                let (c0, c1) = (oj * s, (oj * s + k).min(w));
                *d = window::<T, NAN>(plane, w, (r0, r1), (c0, c1));
            }
        }
    }

    /// [`Self::plane`] without NaN for a `K x K` kernel: every whole window compared in an
    /// unrolled, branch-free row-major pass (the same comparisons in the same order, so the
    /// same switch), the windows cut by the edge (ceil mode) as in [`Self::plane`].
    #[inline(always)]
    fn plane_k<T: Float, const K: usize>(&self, plane: &[T], h: usize, w: usize, dst: &mut [u32]) {
        let s = self.geometry.stride;
        for (oi, dst) in dst.chunks_exact_mut(self.wo).enumerate() {
            let (r0, r1) = (oi * s, (oi * s + K).min(h));
            for (oj, d) in dst.iter_mut().enumerate() {
                let (c0, c1) = (oj * s, (oj * s + K).min(w));
                if r1 - r0 < K || c1 - c0 < K {
                    *d = window::<T, false>(plane, w, (r0, r1), (c0, c1));
                    continue;
                }
                let base = r0 * w + c0;
                let win = &plane[base..base + (K - 1) * w + K];
                let (mut best, mut arg) = (win[0], 0);
                for r in 0..K {
                    for (c, &v) in win[r * w..r * w + K].iter().enumerate() {
                        let gt = v > best;
                        best = if gt { v } else { best };
                        arg = if gt { r * w + c } else { arg };
                    }
                }
                *d = (base + arg) as u32;
            }
        }
    }
}

/// The 3x3 stride-2 max pool of one plane (`h x w`): the switches into `sw` and the values into
/// `vals` (`Ho x Wo`), the same switches as [`SwitchKernel`]'s (the first maximum in row-major
/// order, a NaN winning), separably: each input row, split into even and odd columns (columns
/// `2 ox`, `2 ox + 1`, `2 ox + 2` are `even[ox]`, `odd[ox]`, `even[ox + 1]`), gives every whole
/// window's row maximum and its first column once (a row serves two rows of windows), and a row
/// of windows takes the first of its three rows' maxima that no later row exceeds: the first
/// maximum in row-major order. Every loop runs over contiguous runs and vectorizes. Rows with a
/// NaN, and windows cut by the edge (ceil mode), go through [`window`]. `rows` is scratch.
#[inline(always)]
fn pool_3s2(plane: &[f32], (h, w): (usize, usize), wo: usize, sw: &mut [u32], vals: &mut [f32], rows: &mut PoolRows) {
    // Windows whole in width: 2 ox + 3 <= w.
    let full = if w >= 3 { ((w - 3) / 2 + 1).min(wo) } else { 0 };
    let (we, wd) = (w.div_ceil(2), w / 2);
    let PoolRows { split, max, col, nan } = rows;
    split.resize(we + wd, 0.0);
    max.resize(h * full, 0.0);
    col.resize(h * full, 0);
    nan.clear();
    for (r, line) in plane.chunks_exact(w).enumerate() {
        nan.push(line.iter().fold(false, |any, v| any | v.is_nan()));
        let (even, odd) = split.split_at_mut(we);
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(line.chunks_exact(2)) {
            *e = pair[0];
            *o = pair[1];
        }
        if w % 2 == 1 {
            even[we - 1] = line[w - 1];
        }
        let (a, b, c) = (&even[..full], &odd[..full], &even[1..=full]);
        let (b, c) = (&b[..a.len()], &c[..a.len()]);
        let (m, k) = (&mut max[r * full..][..full], &mut col[r * full..][..full]);
        for ox in 0..full {
            let first = b[ox] > a[ox];
            let best = if first { b[ox] } else { a[ox] };
            let last = c[ox] > best;
            m[ox] = if last { c[ox] } else { best };
            k[ox] = (2 * ox) as u32 + if last { 2 } else { first as u32 };
        }
    }
    for (oi, (sw, vals)) in sw.chunks_exact_mut(wo).zip(vals.chunks_exact_mut(wo)).enumerate() {
        let (r0, r1) = (oi * 2, (oi * 2 + 3).min(h));
        let whole = r1 - r0 == 3 && !(nan[r0] || nan[r0 + 1] || nan[r0 + 2]);
        let done = if whole { full } else { 0 };
        if whole {
            let row = |r: usize| (&max[r * full..][..full], &col[r * full..][..full], (r * w) as u32);
            let ((m0, k0, b0), (m1, k1, b1), (m2, k2, b2)) = (row(r0), row(r0 + 1), row(r0 + 2));
            // Every run exactly `full` long: no bounds checks, so the loop vectorizes.
            let (vals, sw) = (&mut vals[..full], &mut sw[..full]);
            for ox in 0..full {
                let (mut best, mut at) = (m0[ox], b0 + k0[ox]);
                let second = m1[ox] > best;
                best = if second { m1[ox] } else { best };
                at = if second { b1 + k1[ox] } else { at };
                let third = m2[ox] > best;
                vals[ox] = if third { m2[ox] } else { best };
                sw[ox] = if third { b2 + k2[ox] } else { at };
            }
        }
        for ox in done..wo {
            let (c0, c1) = (ox * 2, (ox * 2 + 3).min(w));
            let k = window::<f32, true>(plane, w, (r0, r1), (c0, c1));
            sw[ox] = k;
            vals[ox] = plane[k as usize];
        }
    }
}

/// [`pool_3s2`]'s scratch: one input row split, every row's window maxima and their columns,
/// and which rows hold a NaN.
#[derive(Default)]
struct PoolRows {
    split: Vec<f32>,
    max: Vec<f32>,
    col: Vec<u32>,
    nan: Vec<bool>,
}

/// The switch of one window, rows `r0..r1` and columns `c0..c1` of a plane `w` wide: the first
/// maximum in row-major order; with `NAN`, the first NaN.
#[inline(always)]
fn window<T: Float, const NAN: bool>(plane: &[T], w: usize, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) -> u32 {
    let mut arg = r0 * w + c0;
    let mut best = plane[arg];
    'window: for r in r0..r1 {
        let row = &plane[r * w..(r + 1) * w];
        for (c, &v) in row.iter().enumerate().take(c1).skip(c0) {
            if NAN && best.nan() {
                break 'window;
            }
            if v > best || (NAN && v.nan()) {
                best = v;
                arg = r * w + c;
            }
        }
    }
    arg as u32
}

impl CustomOp1 for SwitchKernel {
    fn name(&self) -> &'static str {
        "max-pool-switches"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("max-pool-switches needs a contiguous input")
        };
        let planes = n * c;
        let out = match storage {
            CpuStorage::F32(v) => self.run(&v[start..end], planes, h, w),
            CpuStorage::F64(v) => self.run(&v[start..end], planes, h, w),
            _ => bail!("max-pool-switches expects an f32 or f64 input"),
        };
        Ok((CpuStorage::U32(out), Shape::from((n, c, self.ho, self.wo))))
    }
}

/// The values of max pooling, f32 on the CPU.
struct MaxKernel {
    geometry: PoolGeometry,
    ho: usize,
    wo: usize,
}

impl CustomOp1 for MaxKernel {
    fn name(&self) -> &'static str {
        "max-pool-values"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else { bail!("max-pool-values needs a contiguous input") };
        let CpuStorage::F32(v) = storage else { bail!("max-pool-values expects an f32 input") };
        let src = &v[start..end];
        let (k, s, ho, wo) = (self.geometry.kernel, self.geometry.stride, self.ho, self.wo);
        let mut out = vec![0f32; n * c * ho * wo];
        if ho * wo > 0 {
            out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, dst)| {
                let plane = &src[p * h * w..(p + 1) * h * w];
                let mut column = vec![0f32; w];
                for (oi, dst) in dst.chunks_exact_mut(wo).enumerate() {
                    let (r0, r1) = (oi * s, (oi * s + k).min(h));
                    if k == 3 && r1 - r0 == 3 {
                        // Separable: the maximum down each column of the three rows, then
                        // across each window of three columns (NaN wins either way).
                        let rows = &plane[r0 * w..(r0 + 3) * w];
                        let (a, rest) = rows.split_at(w);
                        let (b, c) = rest.split_at(w);
                        for (((m, &a), &b), &c) in column.iter_mut().zip(a).zip(b).zip(c) {
                            *m = nan_max(nan_max(a, b), c);
                        }
                        for (oj, d) in dst.iter_mut().enumerate() {
                            let (c0, c1) = (oj * s, (oj * s + 3).min(w));
                            *d = column[c0 + 1..c1].iter().fold(column[c0], |m, &v| nan_max(m, v));
                        }
                        continue;
                    }
                    for (oj, d) in dst.iter_mut().enumerate() {
                        let (c0, c1) = (oj * s, (oj * s + k).min(w));
                        let mut best = plane[r0 * w + c0];
                        for r in r0..r1 {
                            for &v in &plane[r * w + c0..r * w + c1] {
                                if v > best || v.is_nan() {
                                    best = v;
                                }
                            }
                        }
                        *d = best;
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// The larger of `a` and `b`, `a` on a tie, NaN when either is NaN (as the pooling's own
/// comparison: a NaN wins).
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
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
