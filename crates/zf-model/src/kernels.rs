//! Fused CPU kernels for the network's hot path, each a candle custom op with its own backward.
//!
//! candle runs a layer as a chain of small ops (conv, broadcast bias add, ReLU, reshapes), and
//! its backward allocates a zero tensor and adds into it for every argument of every op. On the
//! CPU the network instead takes one op per layer:
//!
//! | op | forward | backward |
//! |---|---|---|
//! | [`conv2d`] | per image: im2col, bias, one gemm, ReLU in place | mask, bias sums, weight gemm over the recomputed columns, input gemm + col2im (skipped when the input needs no gradient) |
//! | [`linear`] | bias, one gemm `x W^T`, ReLU | mask, `gm W`, `gm^T x`, column sums |
//! | [`lrn`] | `x (k + a/n sum x^2)^-b` in one pass per image | the closed-form derivative, one pass per image |
//! | [`pool_values`] | gathers each window's maximum through the switches | scatters each gradient to its switch |
//!
//! and, for the deconvnet (no backward): [`conv_transpose2d`] and [`unpool`] over whole maps,
//! and [`conv_transpose2d_window`] and [`unpool_window`] over the block where one unit's
//! projection can be non-zero (its receptive field at that layer).
//!
//! The convolutions run im2col and the gemm in blocks of output rows sized to stay in cache
//! (conv1's full columns are 7 MB per image); with stride > 1 the input rows are first split
//! into their phases so that every im2col copy is contiguous.
//!
//! Each is tested against the plain candle composition it replaces (forward and gradients, in
//! this module's tests), and the network's golden tests against PyTorch run through them.
//! Other devices and dtypes keep candle's ops (see `net.rs`), so the CUDA and Metal paths are
//! unchanged.
//!
//! Work is spread over the images of a batch when there are at least as many images as rayon
//! threads (each image's gemm single-threaded, no synchronisation inside a layer); a smaller
//! batch (one image for a projection) gives the threads to the gemm instead.

use std::cell::Cell;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::config::{ConvGeometry, LrnConfig};

// ---------------------------------------------------------------------------------------------
// Plumbing: slices of CPU tensors, scratch buffers, a safe gemm.

/// Calls `f` with the contiguous f32 data of each of `ts` (all on the CPU).
fn with_f32<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let ts: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) = (&**storage, layout.contiguous_offsets()) else {
            bail!("fused CPU kernels take contiguous f32 CPU tensors")
        };
        slices.push(&v[a..b]);
    }
    f(&slices)
}

/// Whether `t` takes these kernels: a CPU tensor in f32 (anything else keeps candle's ops).
pub fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The contiguous u32 data (switches) of one custom-op argument.
fn u32_arg<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [u32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::U32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => bail!("{op}: expects contiguous u32 switches"),
    }
}

/// The contiguous f32 data of one custom-op argument.
fn f32_arg<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => bail!("{op}: expects contiguous f32 tensors"),
    }
}

fn cpu_tensor(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
}

/// A three-argument op's gradients as tensors shaped like the arguments, for the arguments
/// that need one.
fn gradients(grads: [(&Tensor, Option<Vec<f32>>); 3]) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let [a, b, c] = grads.map(|(arg, g)| g.filter(|_| arg.track_op()).map(|g| cpu_tensor(g, arg.shape())));
    Ok((a.transpose()?, b.transpose()?, c.transpose()?))
}

thread_local! {
    /// Per-thread scratch (im2col columns, masked gradients), reused across calls. Taken out
    /// while in use, so a re-entrant call (rayon work stealing) simply allocates its own.
    static SCRATCH: Cell<[Vec<f32>; 3]> = const { Cell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with two scratch buffers of at least `a` and `b` elements (contents unspecified)
/// and a third for [`ConvShape::im2col`].
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32], &mut Vec<f32>) -> R) -> R {
    let [mut x, mut y, mut z] = SCRATCH.with(|s| s.take());
    if x.len() < a {
        x.resize(a, 0.0);
    }
    if y.len() < b {
        y.resize(b, 0.0);
    }
    let r = f(&mut x[..a], &mut y[..b], &mut z);
    SCRATCH.with(|s| s.set([x, y, z]));
    r
}

/// A row-major view: element `(r, c)` at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    fn in_bounds(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = a b` (or `dst += a b` when `accumulate`), `dst` row-major `a.rows x b.cols`.
fn gemm(dst: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool, par: Parallelism) {
    assert_eq!(dst.len(), a.rows * b.cols);
    gemm_strided(dst, b.cols, a, b, accumulate, par)
}

/// [`gemm`] into a `dst` whose rows are `dst_rs` apart (a block of columns of a wider matrix).
fn gemm_strided(dst: &mut [f32], dst_rs: usize, a: Mat<'_>, b: Mat<'_>, accumulate: bool, par: Parallelism) {
    assert!(a.cols == b.rows && a.in_bounds() && b.in_bounds() && b.cols <= dst_rs);
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    assert!((a.rows - 1) * dst_rs + b.cols <= dst.len());
    if a.cols == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs).for_each(|r| r[..b.cols].fill(0.0));
        }
        return;
    }
    // SAFETY: the asserts above keep every element gemm reads or writes inside the slices.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Whether to spread `n` images over the threads (each gemm on one thread) or give the threads
/// to each gemm.
fn per_image(n: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads();
    if n >= threads {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(threads))
    }
}

fn relu_mask(dst: &mut [f32], grad: &[f32], out: &[f32], relu: bool) {
    if relu {
        for ((d, &g), &y) in dst.iter_mut().zip(grad).zip(out) {
            *d = if y > 0.0 { g } else { 0.0 };
        }
    } else {
        dst.copy_from_slice(grad);
    }
}

fn add_into(acc: &mut [f32], other: &[f32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution.

/// One image's geometry for a conv layer.
#[derive(Clone, Copy, Debug)]
struct ConvShape {
    g: ConvGeometry,
    c: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Rows and columns of padding before the input: the conv's own padding, or, for a
    /// window of a transposed conv ([`conv_transpose2d_window`]), what places the window.
    py: usize,
    px: usize,
}

impl ConvShape {
    fn new(g: ConvGeometry, c: usize, h: usize, w: usize) -> Result<Self> {
        let (Some(ho), Some(wo)) = (g.output_size(h), g.output_size(w)) else {
            bail!("conv2d: a {k}x{k} kernel does not fit a {h}x{w} input with padding {}", g.padding, k = g.kernel)
        };
        Ok(Self { g, c, h, w, ho, wo, py: g.padding, px: g.padding })
    }

    fn rows(&self) -> usize {
        self.c * self.g.kernel * self.g.kernel
    }

    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// The range of output columns `ox` whose input column `ox s - p + j` lies in `0..len`.
    fn valid(&self, j: usize, out: usize, len: usize, p: usize) -> (usize, usize) {
        let s = self.g.stride;
        let lo = if j >= p { 0 } else { (p - j).div_ceil(s) };
        let hi = if len + p > j { (len + p - j).div_ceil(s).min(out) } else { 0 };
        (lo.min(hi), hi)
    }

    /// How many output rows one block of columns holds: about 256 KiB of columns, so that
    /// im2col writes them and the gemm reads them in cache (conv1's full columns are 7 MB per
    /// image), but at least 512 positions so that each gemm stays wide.
    fn block_rows(&self) -> usize {
        let wo = self.wo.max(1);
        (64 * 1024 / (self.rows() * wo).max(1)).max(512usize.div_ceil(wo)).clamp(1, self.ho.max(1))
    }

    /// The output-row blocks, `(oy0, oy1)`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (step, ho) = (self.block_rows(), self.ho);
        (0..ho).step_by(step).map(move |y| (y, (y + step).min(ho)))
    }

    /// With stride `s > 1`: the input's rows split into their `s` phases (columns `q s + r`,
    /// `phases[c][r][y][q]`), so that every run im2col copies is contiguous.
    fn split_phases(&self, src: &[f32], phases: &mut Vec<f32>) {
        let Self { g, c, h, w, .. } = *self;
        let s = g.stride;
        if s == 1 {
            return;
        }
        let wq = w.div_ceil(s);
        phases.clear();
        phases.resize(c * s * h * wq, 0.0);
        for ch in 0..c {
            for y in 0..h {
                let line = &src[(ch * h + y) * w..][..w];
                for r in 0..s {
                    let out = &mut phases[((ch * s + r) * h + y) * wq..][..wq];
                    for (q, v) in line.iter().skip(r).step_by(s).enumerate() {
                        out[q] = *v;
                    }
                }
            }
        }
    }

    /// Output rows `oy0..oy1` of `[C, H, W]` -> `[C k k, (oy1 - oy0) Wo]`: row `(c, i, j)` holds
    /// input `(c, oy s - p + i, ox s - p + j)` for those output positions, zero in the padding.
    /// `phases` is [`Self::split_phases`] of `src` (unused at stride 1).
    pub(crate) fn im2col(&self, src: &[f32], phases: &[f32], dst: &mut [f32], (oy0, oy1): (usize, usize)) {
        let Self { g, h, w, ho, wo, .. } = *self;
        let (k, s) = (g.kernel, g.stride);
        let wq = w.div_ceil(s);
        let len = (oy1 - oy0) * wo;
        for (row, dst) in dst.chunks_exact_mut(len).enumerate() {
            let (ch, i, j) = (row / (k * k), row / k % k, row % k);
            let (lo, hi) = self.valid(j, wo, w, self.px);
            let (ylo, yhi) = self.valid(i, ho, h, self.py);
            let (ylo, yhi) = (ylo.clamp(oy0, oy1), yhi.clamp(oy0, oy1));
            dst[..(ylo - oy0) * wo].fill(0.0);
            dst[(yhi - oy0) * wo..].fill(0.0);
            if lo == hi {
                dst.fill(0.0);
                continue;
            }
            // The first column read, as (phase, index in the phase).
            let x0 = lo * s + j - self.px;
            let (r, q0) = (x0 % s, x0 / s);
            for oy in ylo..yhi {
                let iy = oy * s + i - self.py;
                let d = &mut dst[(oy - oy0) * wo..(oy - oy0 + 1) * wo];
                d[..lo].fill(0.0);
                d[hi..].fill(0.0);
                let line =
                    if s == 1 { &src[(ch * h + iy) * w..][..w] } else { &phases[((ch * s + r) * h + iy) * wq..][..wq] };
                d[lo..hi].copy_from_slice(&line[q0..q0 + hi - lo]);
            }
        }
    }

    /// The adjoint of [`Self::im2col`] for output rows `oy0..oy1`: adds every column back to the
    /// input pixel it read, into `dst` `[C, H, W]`.
    pub(crate) fn col2im(&self, src: &[f32], dst: &mut [f32], (oy0, oy1): (usize, usize)) {
        let Self { g, h, w, ho, wo, .. } = *self;
        let k = g.kernel;
        let len = (oy1 - oy0) * wo;
        for (ch, plane) in dst.chunks_exact_mut(h * w).enumerate() {
            for i in 0..k {
                let (ylo, yhi) = self.valid(i, ho, h, self.py);
                let (ylo, yhi) = (ylo.clamp(oy0, oy1), yhi.clamp(oy0, oy1));
                for j in 0..k {
                    let row = &src[((ch * k + i) * k + j) * len..][..len];
                    let (lo, hi) = self.valid(j, wo, w, self.px);
                    if lo == hi {
                        continue;
                    }
                    for oy in ylo..yhi {
                        let line = &mut plane[(oy * g.stride + i - self.py) * w..][..w];
                        let r = &row[(oy - oy0) * wo..(oy - oy0 + 1) * wo];
                        let x0 = lo * g.stride + j - self.px;
                        if g.stride == 1 {
                            add_into(&mut line[x0..x0 + hi - lo], &r[lo..hi]);
                        } else {
                            for (t, v) in r[lo..hi].iter().enumerate() {
                                line[x0 + t * g.stride] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `relu(conv2d(x, w) + b)` (or without the ReLU) as one op.
#[derive(Clone, Copy, Debug)]
struct Conv {
    g: ConvGeometry,
    relu: bool,
}

/// Convolution with bias and (when `relu`) a ReLU, fused, on the CPU.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; `w`: `[O, C, k, k]`; `b`: `[O]`
/// - returns: `[N, O, Ho, Wo]`
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, g: ConvGeometry, relu: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c || kh != g.kernel || kw != g.kernel || b.dims() != [o] {
        bail!(
            "conv2d: input has {c} channels, weight {:?} and bias {:?} for a {}x{} kernel",
            w.dims(),
            b.dims(),
            g.kernel,
            g.kernel
        )
    }
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Conv { g, relu })
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "zf-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_arg(xs, xl, "conv2d")?, f32_arg(ws, wl, "conv2d")?, f32_arg(bs, bl, "conv2d")?);
        let (n, c, h, wd) = xl.shape().dims4()?;
        let o = wl.shape().dims4()?.0;
        let s = ConvShape::new(self.g, c, h, wd)?;
        let (rows, pos) = (s.rows(), s.positions());
        let mut out = vec![0f32; n * o * pos];
        let image = |i: usize, y: &mut [f32], par: Parallelism| {
            let xi = &x[i * c * h * wd..(i + 1) * c * h * wd];
            with_scratch(rows * s.block_rows() * s.wo, 0, |cols, _, phases| {
                s.split_phases(xi, phases);
                for (line, &bias) in y.chunks_exact_mut(pos).zip(b) {
                    line.fill(bias);
                }
                for (oy0, oy1) in s.blocks() {
                    let (p0, len) = (oy0 * s.wo, (oy1 - oy0) * s.wo);
                    let cols = &mut cols[..rows * len];
                    s.im2col(xi, phases, cols, (oy0, oy1));
                    gemm_strided(&mut y[p0..], pos, Mat::new(w, o, rows), Mat::new(cols, rows, len), true, par);
                }
                if self.relu {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            })
        };
        // Fewer images than threads (one image for a projection or a prediction): when the
        // layer has several blocks, the threads take blocks (each a single-threaded gemm into
        // its own buffer, copied into place), balanced to a multiple of the thread count;
        // otherwise they share each gemm.
        let threads = rayon::current_num_threads();
        let blocks = s.ho.div_ceil(s.block_rows()).next_multiple_of(threads);
        let block_parallel = blocks >= 2 && s.ho >= blocks;
        let by_block = |i: usize, y: &mut [f32]| {
            let xi = &x[i * c * h * wd..(i + 1) * c * h * wd];
            let mut phases = Vec::new();
            s.split_phases(xi, &mut phases);
            let step = s.ho.div_ceil(blocks);
            let ranges: Vec<(usize, usize)> = (0..s.ho).step_by(step).map(|y0| (y0, (y0 + step).min(s.ho))).collect();
            let parts: Vec<Vec<f32>> = ranges
                .par_iter()
                .map(|&(oy0, oy1)| {
                    let len = (oy1 - oy0) * s.wo;
                    let mut part = vec![0f32; o * len];
                    for (line, &bias) in part.chunks_exact_mut(len).zip(b) {
                        line.fill(bias);
                    }
                    with_scratch(rows * len, 0, |cols, _, _| {
                        s.im2col(xi, &phases, cols, (oy0, oy1));
                        gemm(&mut part, Mat::new(w, o, rows), Mat::new(cols, rows, len), true, Parallelism::None);
                    });
                    if self.relu {
                        part.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                    part
                })
                .collect();
            for (&(oy0, oy1), part) in ranges.iter().zip(&parts) {
                let len = (oy1 - oy0) * s.wo;
                for (dst, src) in y.chunks_exact_mut(pos).zip(part.chunks_exact(len)) {
                    dst[oy0 * s.wo..][..len].copy_from_slice(src);
                }
            }
        };
        match per_image(n) {
            (true, par) => out.par_chunks_mut(o * pos).enumerate().for_each(|(i, y)| image(i, y, par)),
            (false, _) if block_parallel => out.chunks_mut(o * pos).enumerate().for_each(|(i, y)| by_block(i, y)),
            (false, par) => out.chunks_mut(o * pos).enumerate().for_each(|(i, y)| image(i, y, par)),
        }
        Ok((CpuStorage::F32(out), Shape::from((n, o, s.ho, s.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, wd) = x.dims4()?;
        let o = w.dim(0)?;
        let s = ConvShape::new(self.g, c, h, wd)?;
        let (rows, pos, chw) = (s.rows(), s.positions(), c * h * wd);
        let need_dx = x.track_op();
        let (dx, dw, db) = with_f32(&[x, w, res, grad], |t| {
            let (x, w, res, grad) = (t[0], t[1], t[2], t[3]);
            // One image: its weight and bias gradients into `acc`, its input gradient into `dx`.
            let image = |i: usize, dx: Option<&mut [f32]>, acc: &mut [f32], par: Parallelism| {
                let (dw, db) = acc.split_at_mut(o * rows);
                with_scratch(rows * s.block_rows() * s.wo, o * pos, |cols, gm, phases| {
                    let range = i * o * pos..(i + 1) * o * pos;
                    relu_mask(gm, &grad[range.clone()], &res[range], self.relu);
                    for (d, line) in db.iter_mut().zip(gm.chunks_exact(pos)) {
                        *d += line.iter().sum::<f32>();
                    }
                    let xi = &x[i * chw..(i + 1) * chw];
                    s.split_phases(xi, phases);
                    let mut dx = dx;
                    if let Some(dx) = dx.as_deref_mut() {
                        dx.fill(0.0);
                    }
                    for (oy0, oy1) in s.blocks() {
                        let (p0, len) = (oy0 * s.wo, (oy1 - oy0) * s.wo);
                        let cols = &mut cols[..rows * len];
                        let gm_block = Mat { data: &gm[p0..], rows: o, cols: len, rs: pos, cs: 1 };
                        s.im2col(xi, phases, cols, (oy0, oy1));
                        gemm(dw, gm_block, Mat::new(cols, rows, len).t(), true, par);
                        if let Some(dx) = dx.as_deref_mut() {
                            gemm(cols, Mat::new(w, o, rows).t(), gm_block, false, par);
                            s.col2im(cols, dx, (oy0, oy1));
                        }
                    }
                })
            };
            let acc_len = o * rows + o;
            let mut dx = if need_dx { Some(vec![0f32; n * chw]) } else { None };
            let acc = match per_image(n) {
                (true, par) => {
                    // At most one accumulator per thread, split at fixed places: the sums (and
                    // so training) come out the same on every run.
                    let min = n / rayon::current_num_threads();
                    let add = |mut a: Vec<f32>, b: Vec<f32>| {
                        add_into(&mut a, &b);
                        a
                    };
                    match dx.as_mut() {
                        Some(dx) => dx
                            .par_chunks_mut(chw)
                            .enumerate()
                            .with_min_len(min)
                            .fold(
                                || vec![0f32; acc_len],
                                |mut acc, (i, d)| {
                                    image(i, Some(d), &mut acc, par);
                                    acc
                                },
                            )
                            .reduce(|| vec![0f32; acc_len], add),
                        None => (0..n)
                            .into_par_iter()
                            .with_min_len(min)
                            .fold(
                                || vec![0f32; acc_len],
                                |mut acc, i| {
                                    image(i, None, &mut acc, par);
                                    acc
                                },
                            )
                            .reduce(|| vec![0f32; acc_len], add),
                    }
                }
                (false, par) => {
                    let mut acc = vec![0f32; acc_len];
                    for i in 0..n {
                        image(i, dx.as_mut().map(|d| &mut d[i * chw..(i + 1) * chw]), &mut acc, par);
                    }
                    acc
                }
            };
            let db = acc[o * rows..].to_vec();
            let mut dw = acc;
            dw.truncate(o * rows);
            Ok((dx, dw, db))
        })?;
        gradients([(x, dx), (w, Some(dw)), (b, Some(db))])
    }
}

/// The transposed convolution of a conv layer without bias (the deconvnet's filtering), no
/// backward.
#[derive(Clone, Copy, Debug)]
struct ConvTranspose {
    s: ConvShape,
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

// ---------------------------------------------------------------------------------------------
// Linear layers.

#[derive(Clone, Copy, Debug)]
struct Linear {
    relu: bool,
}

/// `relu(x w^T + b)` (or without the ReLU) as one op, on the CPU.
///
/// # Shapes
/// - `x`: `[N, I]`; `w`: `[O, I]`; `b`: `[O]`
/// - returns: `[N, O]`
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    let (_, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i || b.dims() != [o] {
        bail!("linear: input {:?}, weight {:?} and bias {:?} do not fit", x.dims(), w.dims(), b.dims())
    }
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear { relu })
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "zf-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_arg(xs, xl, "linear")?, f32_arg(ws, wl, "linear")?, f32_arg(bs, bl, "linear")?);
        let (n, i) = xl.shape().dims2()?;
        let o = wl.shape().dims2()?.0;
        let mut y = vec![0f32; n * o];
        for line in y.chunks_exact_mut(o) {
            line.copy_from_slice(b);
        }
        gemm(&mut y, Mat::new(x, n, i), Mat::new(w, o, i).t(), true, Parallelism::Rayon(rayon::current_num_threads()));
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, i) = x.dims2()?;
        let o = w.dim(0)?;
        let par = Parallelism::Rayon(rayon::current_num_threads());
        let need_dx = x.track_op();
        let (dx, dw, db) = with_f32(&[x, w, res, grad], |t| {
            let (x, w, res, grad) = (t[0], t[1], t[2], t[3]);
            let mut gm = vec![0f32; n * o];
            relu_mask(&mut gm, grad, res, self.relu);
            let dx = need_dx.then(|| {
                let mut dx = vec![0f32; n * i];
                gemm(&mut dx, Mat::new(&gm, n, o), Mat::new(w, o, i), false, par);
                dx
            });
            let mut dw = vec![0f32; o * i];
            gemm(&mut dw, Mat::new(&gm, n, o).t(), Mat::new(x, n, i), false, par);
            let mut db = vec![0f32; o];
            for line in gm.chunks_exact(o) {
                add_into(&mut db, line);
            }
            Ok((dx, dw, db))
        })?;
        gradients([(x, dx), (w, Some(dw)), (b, Some(db))])
    }
}

// ---------------------------------------------------------------------------------------------
// Local response normalization.

#[derive(Clone, Copy, Debug)]
struct Lrn(LrnConfig);

/// [`LrnConfig::forward`] as one op on the CPU, with its closed-form backward.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`; returns the same shape.
pub fn lrn(x: &Tensor, cfg: &LrnConfig) -> Result<Tensor> {
    x.dims4()?;
    x.contiguous()?.apply_op1(Lrn(*cfg))
}

impl Lrn {
    /// The window of map `c`: `size / 2` maps before, `(size - 1) / 2` after, clipped.
    fn window(&self, c: usize, maps: usize) -> std::ops::Range<usize> {
        c.saturating_sub(self.0.size / 2)..(c + (self.0.size - 1) / 2 + 1).min(maps)
    }

    /// `scale[c] = k + alpha / size * sum_{window(c)} x^2` for one image `[C, HW]`, then
    /// `pow[c] = scale[c]^-beta`.
    fn scales(&self, x: &[f32], maps: usize, hw: usize, scale: &mut [f32], pow: &mut [f32]) {
        let LrnConfig { size, alpha, beta, k } = self.0;
        let a = (alpha / size as f64) as f32;
        for c in 0..maps {
            let s = &mut scale[c * hw..(c + 1) * hw];
            s.fill(0.0);
            for j in self.window(c, maps) {
                for (v, &xj) in s.iter_mut().zip(&x[j * hw..(j + 1) * hw]) {
                    *v += xj * xj;
                }
            }
            s.iter_mut().for_each(|v| *v = k as f32 + a * *v);
        }
        let p = &mut pow[..maps * hw];
        if beta == 0.75 {
            // s^-3/4 = r sqrt(r) with r = 1 / sqrt(s): two square roots instead of a powf.
            for (p, &s) in p.iter_mut().zip(scale.iter()) {
                let r = 1.0 / s.sqrt();
                *p = r * r.sqrt();
            }
        } else {
            let nb = -beta as f32;
            for (p, &s) in p.iter_mut().zip(scale.iter()) {
                *p = s.powf(nb);
            }
        }
    }
}

impl CustomOp1 for Lrn {
    fn name(&self) -> &'static str {
        "zf-lrn"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_arg(storage, layout, "lrn")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (hw, chw) = (h * w, c * h * w);
        let mut y = vec![0f32; n * chw];
        if chw > 0 {
            y.par_chunks_mut(chw).enumerate().for_each(|(i, y)| {
                with_scratch(chw, chw, |scale, pow, _| {
                    let x = &x[i * chw..(i + 1) * chw];
                    self.scales(x, c, hw, scale, pow);
                    for ((y, &x), &p) in y.iter_mut().zip(x).zip(pow.iter()) {
                        *y = x * p;
                    }
                })
            });
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// `dx_i = g_i s_i^-b - 2 a b / n x_i sum_{j: i in window(j)} g_j x_j s_j^(-b-1)`.
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let (hw, chw) = (h * w, c * h * w);
        let LrnConfig { size, alpha, beta, .. } = self.0;
        let f = (2.0 * alpha * beta / size as f64) as f32;
        let dx = with_f32(&[x, grad], |t| {
            let (x, grad) = (t[0], t[1]);
            let mut dx = vec![0f32; n * chw];
            if chw == 0 {
                return Ok(dx);
            }
            dx.par_chunks_mut(chw).enumerate().for_each(|(i, dx)| {
                with_scratch(chw, chw, |scale, pow, _| {
                    let (x, g) = (&x[i * chw..(i + 1) * chw], &grad[i * chw..(i + 1) * chw]);
                    self.scales(x, c, hw, scale, pow);
                    // scale <- t_j = g_j x_j s_j^-b / s_j
                    for (((s, &p), &xj), &gj) in scale.iter_mut().zip(pow.iter()).zip(x).zip(g) {
                        *s = gj * xj * p / *s;
                    }
                    for ci in 0..c {
                        // j with ci in window(j): ci - (size-1)/2 ..= ci + size/2.
                        let lo = ci.saturating_sub((size - 1) / 2);
                        let hi = (ci + size / 2 + 1).min(c);
                        let d = &mut dx[ci * hw..(ci + 1) * hw];
                        d.fill(0.0);
                        for j in lo..hi {
                            add_into(d, &scale[j * hw..(j + 1) * hw]);
                        }
                        let range = ci * hw..(ci + 1) * hw;
                        for (((d, &xi), &gi), &pi) in
                            d.iter_mut().zip(&x[range.clone()]).zip(&g[range.clone()]).zip(&pow[range])
                        {
                            *d = gi * pi - f * xi * *d;
                        }
                    }
                })
            });
            Ok(dx)
        })?;
        Ok(Some(cpu_tensor(dx, x.shape())?))
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling through switches.

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() / scale
    }

    fn var(shape: &[usize], std: f64) -> Var {
        Var::from_tensor(&Tensor::randn(0f32, std as f32, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Forward values and the gradients of a random weighted sum agree with candle's ops.
    fn check(name: &str, vars: &[&Var], ours: Tensor, theirs: Tensor, tol: f32) {
        assert_eq!(ours.dims(), theirs.dims(), "{name}: shapes");
        let d = max_rel_diff(&ours, &theirs);
        assert!(d < tol, "{name}: forward differs by {d}");
        let r = Tensor::randn(0f32, 1.0, ours.shape(), &Device::Cpu).unwrap();
        let ga = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (k, v) in vars.iter().enumerate() {
            let (a, b) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
            let d = max_rel_diff(a, b);
            assert!(d < tol, "{name}: gradient of argument {k} differs by {d}");
        }
    }

    #[test]
    fn conv_agrees_with_candle_forward_and_backward() {
        for (g, side, n) in [
            (ConvGeometry::new(7, 2, 1), 23, 3),
            (ConvGeometry::new(5, 2, 0), 23, 1),
            (ConvGeometry::new(3, 1, 1), 9, 4),
            (ConvGeometry::new(11, 4, 2), 30, 2),
            // Big enough for several blocks of output rows (4 rows of 48 per block), with one
            // image (the threads split the blocks) and with two.
            (ConvGeometry::new(7, 2, 1), 100, 2),
            (ConvGeometry::new(7, 2, 1), 100, 1),
        ] {
            for relu in [true, false] {
                let x = var(&[n, 3, side, side], 1.0);
                let w = var(&[4, 3, g.kernel, g.kernel], 0.1);
                let b = var(&[4], 0.1);
                let ours = conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), g, relu).unwrap();
                let plain = x
                    .as_tensor()
                    .conv2d(w.as_tensor(), g.padding, g.stride, 1, 1)
                    .unwrap()
                    .broadcast_add(&b.as_tensor().reshape((1, 4, 1, 1)).unwrap())
                    .unwrap();
                let theirs = if relu { plain.relu().unwrap() } else { plain };
                check(&format!("{g:?} relu {relu} batch {n}"), &[&x, &w, &b], ours, theirs, 1e-4);
            }
        }
    }

    #[test]
    fn conv_skips_the_gradient_of_a_constant_input() {
        let g = ConvGeometry::new(3, 1, 1);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
        let w = var(&[4, 3, 3, 3], 0.1);
        let b = var(&[4], 0.1);
        let grads = conv2d(&x, w.as_tensor(), b.as_tensor(), g, true).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
    }

    #[test]
    fn im2col_and_col2im_are_adjoint() {
        // <im2col(x), c> = <x, col2im(c)> for random x and c.
        for g in [ConvGeometry::new(7, 2, 1), ConvGeometry::new(3, 1, 1), ConvGeometry::new(5, 3, 2)] {
            let s = ConvShape::new(g, 2, 11, 9).unwrap();
            let x: Vec<f32> = (0..2 * 11 * 9).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let c: Vec<f32> = (0..s.rows() * s.positions()).map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0).collect();
            let mut phases = Vec::new();
            s.split_phases(&x, &mut phases);
            let mut cols = vec![f32::NAN; c.len()];
            let mut back = vec![0f32; x.len()];
            // Block by block (two rows, then the rest) must give the whole.
            let rows = s.rows();
            for (oy0, oy1) in [(0, 2), (2, s.ho)] {
                let len = (oy1 - oy0) * s.wo;
                let mut block = vec![f32::NAN; rows * len];
                s.im2col(&x, &phases, &mut block, (oy0, oy1));
                let mut cblock = vec![0f32; rows * len];
                for r in 0..rows {
                    cols[r * s.positions() + oy0 * s.wo..][..len].copy_from_slice(&block[r * len..][..len]);
                    cblock[r * len..][..len].copy_from_slice(&c[r * s.positions() + oy0 * s.wo..][..len]);
                }
                s.col2im(&cblock, &mut back, (oy0, oy1));
            }
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn linear_agrees_with_candle_forward_and_backward() {
        for (n, relu) in [(1, true), (5, true), (3, false)] {
            let x = var(&[n, 7], 1.0);
            let w = var(&[6, 7], 0.3);
            let b = var(&[6], 0.3);
            let ours = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu).unwrap();
            let plain =
                x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
            let theirs = if relu { plain.relu().unwrap() } else { plain };
            check(&format!("linear batch {n} relu {relu}"), &[&x, &w, &b], ours, theirs, 1e-5);
        }
    }

    #[test]
    fn lrn_agrees_with_candle_forward_and_backward() {
        for (size, beta) in [(5, 0.75), (3, 0.5), (4, 0.75), (1, 1.0)] {
            let cfg = LrnConfig { size, alpha: 0.3, beta, k: 2.0 };
            let x = var(&[2, 6, 3, 4], 2.0);
            let ours = lrn(x.as_tensor(), &cfg).unwrap();
            let theirs = cfg.forward(x.as_tensor()).unwrap();
            check(&format!("lrn size {size} beta {beta}"), &[&x], ours, theirs, 1e-5);
        }
    }

    #[test]
    fn pool_values_agree_with_gather() {
        let x = var(&[2, 3, 7, 7], 1.0);
        let g = crate::config::PoolGeometry { kernel: 3, stride: 2, ceil_mode: true };
        let (_, sw) = g.forward_with_switches(&x.as_tensor().detach()).unwrap();
        let ours = pool_values(x.as_tensor(), &sw.indices).unwrap();
        let theirs = x
            .as_tensor()
            .flatten_from(2)
            .unwrap()
            .gather(&sw.indices.flatten_from(2).unwrap(), 2)
            .unwrap()
            .reshape(sw.indices.shape())
            .unwrap();
        check("pool values", &[&x], ours, theirs, 1e-6);
    }

    #[test]
    fn unpool_agrees_with_scatter_and_rejects_bad_switches() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 7), &Device::Cpu).unwrap();
        let g = crate::config::PoolGeometry { kernel: 3, stride: 2, ceil_mode: true };
        let (v, sw) = g.forward_with_switches(&x).unwrap();
        let ours = unpool(&v, &sw.indices, (7, 7)).unwrap();
        let theirs = Tensor::zeros((2, 3, 49), DType::F32, &Device::Cpu)
            .unwrap()
            .scatter(&sw.indices.flatten_from(2).unwrap(), &v.flatten_from(2).unwrap(), 2)
            .unwrap()
            .reshape((2, 3, 7, 7))
            .unwrap();
        assert_eq!(max_rel_diff(&ours, &theirs), 0.0);
        let bad = (sw.indices.ones_like().unwrap() * 49.0).unwrap();
        assert!(unpool(&v, &bad, (7, 7)).is_err());
    }
}
