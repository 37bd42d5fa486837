//! The CPU kernels of max pooling: the switches (one pass over each plane, pool1's 3x3 stride-2
//! windows by rows of windows), the values alone, both on slices for the graph-free training
//! pass with the adjoint, and the values gathered through the switches with the gradient
//! scattered back to them. `crate::pool` dispatches to them.

use super::*;
use crate::config::PoolGeometry;

/// The switches of max pooling `xs` `[N, C, H, W]` (f32 or f64, CPU) into `[N, C, Ho, Wo]` u32.
pub fn pool_switches(xs: &Tensor, geometry: PoolGeometry, (ho, wo): (usize, usize)) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&SwitchKernel { geometry, ho, wo })
}

/// The values of max pooling `xs` `[N, C, H, W]` (f32, CPU) into `[N, C, Ho, Wo]`, no switches,
/// no gradient.
pub fn pool_max(xs: &Tensor, geometry: PoolGeometry, (ho, wo): (usize, usize)) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&MaxKernel { geometry, ho, wo })
}

#[derive(Clone, Copy, Debug)]
struct PoolValues;

/// The pooled values `x[n, c, indices[n, c, i, j]]` as one op whose backward scatters each
/// gradient to its switch.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `indices`: `[N, C, Ho, Wo]` (`u32`, flat in `H x W`)
/// - returns: `[N, C, Ho, Wo]`
pub fn pool_values(x: &Tensor, indices: &Tensor) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let (ni, ci, _, _) = indices.dims4()?;
    if (n, c) != (ni, ci) || indices.dtype() != DType::U32 {
        bail!("pool_values: input {:?} and switches {:?} ({:?}) do not fit", x.dims(), indices.dims(), indices.dtype())
    }
    x.contiguous()?.apply_op2(&indices.contiguous()?, PoolValues)
}

impl CustomOp2 for PoolValues {
    fn name(&self) -> &'static str {
        "zf-pool-values"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, is: &CpuStorage, il: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_arg(xs, xl, "pool_values")?;
        let idx = u32_arg(is, il, "pool_values")?;
        let (_, _, h, w) = xl.shape().dims4()?;
        let (_, _, ho, wo) = il.shape().dims4()?;
        let mut out = vec![0f32; idx.len()];
        if ho * wo > 0 {
            out.par_chunks_mut(ho * wo).zip(idx.par_chunks(ho * wo)).enumerate().for_each(|(p, (o, ix))| {
                let plane = &x[p * h * w..(p + 1) * h * w];
                for (o, &k) in o.iter_mut().zip(ix) {
                    *o = plane[k as usize];
                }
            });
        }
        Ok((CpuStorage::F32(out), il.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        indices: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let (_, _, ho, wo) = indices.dims4()?;
        let idx = indices.contiguous()?;
        let (storage, layout) = idx.storage_and_layout();
        let (Storage::Cpu(CpuStorage::U32(iv)), Some((a, b))) = (&*storage, layout.contiguous_offsets()) else {
            bail!("pool_values: expects contiguous u32 CPU switches")
        };
        let idx = &iv[a..b];
        let dx = with_f32(&[grad], |t| {
            let grad = t[0];
            let mut dx = vec![0f32; n * c * h * w];
            if ho * wo > 0 && h * w > 0 {
                dx.par_chunks_mut(h * w).enumerate().for_each(|(p, plane)| {
                    let range = p * ho * wo..(p + 1) * ho * wo;
                    for (&k, &g) in idx[range.clone()].iter().zip(&grad[range]) {
                        plane[k as usize] += g;
                    }
                });
            }
            Ok(dx)
        })?;
        Ok((Some(cpu_tensor(dx, x.shape())?), None))
    }
}

/// Max pooling on slices, for the graph-free training pass: the switches of `x`
/// (`planes` planes of `h x w`) into `switches` and the values through them into `values`
/// (each `planes x Ho x Wo`), as `PoolGeometry::forward_with_switches` computes them.
pub(crate) fn pool_forward_into(
    g: &PoolGeometry,
    x: &[f32],
    (h, w): (usize, usize),
    switches: &mut [u32],
    values: &mut [f32],
) -> Result<()> {
    let (Some(ho), Some(wo)) = (g.output_size(h), g.output_size(w)) else {
        bail!("max pool {k}x{k} stride {s} does not fit a {h}x{w} input", k = g.kernel, s = g.stride)
    };
    let planes = x.len().checked_div(h * w).unwrap_or(0);
    if x.len() != planes * h * w || switches.len() != planes * ho * wo || values.len() != switches.len() {
        bail!("max pool: buffers of {} / {} / {} for {planes} planes of {h}x{w}", x.len(), switches.len(), values.len())
    }
    if ho * wo == 0 {
        return Ok(());
    }
    // Wide planes (pool1's): by rows of windows; narrower ones gain nothing from it
    // (measured slower on pool2's and pool5's).
    if (g.kernel, g.stride) == (3, 2) && w >= 48 {
        values.par_chunks_mut(ho * wo).zip(switches.par_chunks_mut(ho * wo)).enumerate().for_each_init(
            PoolRows::default,
            |rows, (p, (vals, sw))| {
                let plane = &x[p * h * w..(p + 1) * h * w];
                simd(
                    #[inline(always)]
                    || pool_3s2(plane, (h, w), wo, sw, vals, rows),
                )
            },
        );
        return Ok(());
    }
    SwitchKernel { geometry: *g, ho, wo }.run_into(x, h, w, switches);
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
pub(crate) fn pool_backward_into(
    switches: &[u32],
    grad: &[f32],
    pooled: Option<&[f32]>,
    (h, w): (usize, usize),
    dx: &mut [f32],
) -> Result<()> {
    let planes = dx.len().checked_div(h * w).unwrap_or(0);
    let per = switches.len().checked_div(planes).unwrap_or(0);
    if grad.len() != switches.len() || per * planes != switches.len() || pooled.is_some_and(|v| v.len() != grad.len()) {
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
