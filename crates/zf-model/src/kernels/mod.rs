//! Fused CPU kernels for the network's hot path, each a candle custom op with its own backward.
//!
//! candle runs a layer as a chain of small ops (conv, broadcast bias add, ReLU, reshapes), and
//! its backward allocates a zero tensor and adds into it for every argument of every op. On the
//! CPU the network instead takes one op per layer:
//!
//! | op | forward | backward |
//! |---|---|---|
//! | [`conv2d`] | per image: im2col, bias, one gemm, ReLU in place; 3x3 stride-1 layers (conv3..conv5) by Winograd's F(2x2, 3x3): input transform, 16 gemms, output transform with bias and ReLU; layers over at most 4 channels (conv1) by direct register tiles over the padded, phase-split image | mask, bias sums, weight gemm over the recomputed columns, input gemm + col2im (skipped when the input needs no gradient; for 3x3 stride-1 layers the input gradient by Winograd, through the flipped, transposed filters, and the weight gradient by Winograd's adjoint transforms; conv1 at up to 48 filters its weight gradient by direct tiles) |
//! | [`linear`] | bias, one gemm `x W^T`, ReLU | mask, `gm W` (up to 64 rows by register tiles over W in place), `gm^T x`, column sums |
//! | [`lrn`] | `x (k + a/n sum x^2)^-b` per image, in cache-sized blocks of positions over all maps | the closed-form derivative, in the same blocks |
//! | [`pool_values`] | gathers each window's maximum through the switches | scatters each gradient to its switch |
//!
//! and, for the deconvnet (no backward): [`conv_transpose2d`] and [`unpool`] over whole maps,
//! and [`conv_transpose2d_window`] and [`unpool_window`] over the block where one unit's
//! projection can be non-zero (its receptive field at that layer).
//!
//! The convolutions run im2col and the gemm in blocks of output rows sized to stay in cache
//! (conv1's full columns are 7 MB per image); with stride > 1 the input rows are first split
//! into their phases so that every im2col copy is contiguous. The forward pass of a 3x3
//! stride-1 conv takes 16 multiplications per 2x2 outputs and channel pair instead of 36
//! (`winograd.rs`; equal to the im2col path to float rounding, tested), and so do its input
//! gradient, itself a 3x3 stride-1 conv, and its weight gradient (the transforms' adjoints). A
//! conv over the image's 3 colours (conv1) has few multiplications per im2col copy: its
//! forward pass (and, with few filters, its weight gradient) reads the padded, phase-split
//! image directly (`direct.rs`). Everything else stays on im2col.
//!
//! Each is tested against the plain candle composition it replaces (forward and gradients, in
//! this module's tests), and the network's golden tests against PyTorch run through them.
//! Other devices and dtypes keep candle's ops (see `net.rs`), so the CUDA and Metal paths are
//! unchanged.
//!
//! The loops of the Winograd transforms, of LRN and of pool1 run compiled for AVX-512 or AVX2
//! (chosen at run time through pulp, the dispatch gemm itself uses; same results, see
//! `simd`), and the direct kernels and the linear layers' few-row input gradient are written
//! over pulp's portable SIMD types; the rest is plain x86-64, where the gemm's share dominates.
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
pub(crate) fn with_f32<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
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

/// Runs `f` compiled for the widest vector instructions the CPU has (AVX-512 or AVX2 with FMA,
/// chosen at run time; baseline x86-64 otherwise), so that the loops inlined into it vectorize
/// to them. The arithmetic is the same instructions' (no reassociation, no fused multiply-add
/// contraction), so the results do not change.
///
/// The closure must be `#[inline(always)]` (`simd(#[inline(always)] || ...)`): otherwise it is
/// compiled as a function of its own, for baseline x86-64, and only called from the dispatched
/// code (perf showed the Winograd transforms, LRN and pool1 running on 128-bit SSE that way).
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Runs `f` with the buffer kept in `key` by this thread (grown by `f` as it needs; contents
/// unspecified), put back afterwards: a buffer allocated afresh per call would be faulted in
/// and cleared by the kernel every time. Kept apart from [`with_scratch`]'s, which the work
/// items a caller spawns may take on the same thread.
fn with_kept<R>(key: &'static std::thread::LocalKey<Cell<Vec<f32>>>, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut buf = key.with(Cell::take);
    let r = f(&mut buf);
    key.with(|k| k.set(buf));
    r
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
    // SAFETY: `gemm::gemm` reads `a` at `a.data[i * a.rs + k * a.cs]` for i < a.rows,
    // k < a.cols, reads `b` at `b.data[k * b.rs + j * b.cs]` for k < b.rows (= a.cols),
    // j < b.cols, and writes `dst[i * dst_rs + j]` for i < a.rows, j < b.cols.
    // - reads of `a` and `b`: `in_bounds` asserted that the largest such offset,
    //   `(rows - 1) * rs + (cols - 1) * cs`, is inside each slice (and the empty cases returned
    //   above, so rows and cols are at least 1 here);
    // - writes of `dst`: asserted `(a.rows - 1) * dst_rs + b.cols <= dst.len()`, the last row's
    //   end, and `b.cols <= dst_rs`, so rows do not overlap;
    // - aliasing: `dst` is a `&mut` slice, so it overlaps neither `a` nor `b` (shared slices);
    // - `read_dst` is `accumulate`: when false gemm overwrites `dst` without reading it.
    // The pointers stay valid for the call: the slices are borrowed for its whole duration.
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

/// Floats per SIMD vector of `S` (8 for AVX2, 16 for AVX-512), for the kernels' `WithSimd`
/// loops.
fn lanes<S: pulp::Simd>() -> usize {
    std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>()
}

/// The sum of `xs` in 16 interleaved partial sums, added up at the end: a single running sum
/// waits for each addition to finish (one per four cycles); these vectorize.
fn lane_sum(xs: &[f32]) -> f32 {
    simd(
        #[inline(always)]
        || {
            let mut acc = [0f32; 16];
            let chunks = xs.chunks_exact(16);
            let tail: f32 = chunks.remainder().iter().sum();
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v;
                }
            }
            acc.iter().sum::<f32>() + tail
        },
    )
}

#[inline(always)]
fn add_into(acc: &mut [f32], other: &[f32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}

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
        // Every element is written below: the buffer is only grown, never cleared.
        if phases.len() < c * s * h * wq {
            phases.resize(c * s * h * wq, 0.0);
        }
        for ch in 0..c {
            let block = &mut phases[ch * s * h * wq..(ch + 1) * s * h * wq];
            for y in 0..h {
                let line = &src[(ch * h + y) * w..][..w];
                if s == 2 {
                    // Even and odd columns, in one pass; an odd width leaves the odd phase's
                    // last element past the row (zero, never read by im2col).
                    let (even, odd) = block.split_at_mut(h * wq);
                    let (even, odd) = (&mut even[y * wq..][..wq], &mut odd[y * wq..][..wq]);
                    for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(line.chunks_exact(2)) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                    if w % 2 == 1 {
                        even[wq - 1] = line[w - 1];
                        odd[wq - 1] = 0.0;
                    }
                } else {
                    for r in 0..s {
                        let out = &mut block[(r * h + y) * wq..][..wq];
                        for (q, v) in out.iter_mut().enumerate() {
                            *v = line.get(q * s + r).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
    }

    /// Output rows `oy0..oy1` of `[C, H, W]` -> `[C k k, (oy1 - oy0) Wo]`: row `(c, i, j)` holds
    /// input `(c, oy s - p + i, ox s - p + j)` for those output positions, zero in the padding.
    /// `phases` is [`Self::split_phases`] of `src` (unused at stride 1).
    pub(crate) fn im2col(&self, src: &[f32], phases: &[f32], dst: &mut [f32], (oy0, oy1): (usize, usize)) {
        let len = (oy1 - oy0) * self.wo;
        self.im2col_ld(src, phases, dst, len, (oy0, oy1))
    }

    /// [`Self::im2col`] into rows `ld` apart in `dst` (one image's columns inside a matrix that
    /// holds several images side by side).
    pub(crate) fn im2col_ld(
        &self,
        src: &[f32],
        phases: &[f32],
        dst: &mut [f32],
        ld: usize,
        (oy0, oy1): (usize, usize),
    ) {
        let Self { g, h, w, ho, wo, .. } = *self;
        let (k, s) = (g.kernel, g.stride);
        let wq = w.div_ceil(s);
        let len = (oy1 - oy0) * wo;
        if len == 0 {
            return;
        }
        for row in 0..self.rows() {
            let dst = &mut dst[row * ld..row * ld + len];
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
        let len = (oy1 - oy0) * self.wo;
        self.col2im_ld(src, len, dst, (oy0, oy1))
    }

    /// [`Self::col2im`] from rows `ld` apart in `src` (see [`Self::im2col_ld`]). With stride
    /// `s > 1` the columns are added into the input rows' phases (as [`Self::split_phases`]
    /// lays them out: every add a contiguous run), and the phases then into `dst`.
    pub(crate) fn col2im_ld(&self, src: &[f32], ld: usize, dst: &mut [f32], (oy0, oy1): (usize, usize)) {
        let Self { g, c, h, w, ho, wo, .. } = *self;
        let (k, s) = (g.kernel, g.stride);
        let len = (oy1 - oy0) * wo;
        if len == 0 {
            return;
        }
        let wq = w.div_ceil(s);
        // The input rows these output rows read.
        let (y_lo, y_hi) =
            ((oy0 * s).saturating_sub(self.py).min(h), ((oy1 - 1) * s + k).saturating_sub(self.py).min(h));
        with_kept(&COL2IM_PHASES, |phases| {
            if s > 1 {
                if phases.len() < c * s * h * wq {
                    phases.resize(c * s * h * wq, 0.0);
                }
                for block in phases[..c * s * h * wq].chunks_exact_mut(h * wq) {
                    block[y_lo * wq..y_hi * wq].fill(0.0);
                }
            }
            for (ch, plane) in dst.chunks_exact_mut(h * w).enumerate() {
                for i in 0..k {
                    let (ylo, yhi) = self.valid(i, ho, h, self.py);
                    let (ylo, yhi) = (ylo.clamp(oy0, oy1), yhi.clamp(oy0, oy1));
                    for j in 0..k {
                        let row = &src[((ch * k + i) * k + j) * ld..][..len];
                        let (lo, hi) = self.valid(j, wo, w, self.px);
                        if lo == hi {
                            continue;
                        }
                        let x0 = lo * s + j - self.px;
                        let (r, q0) = (x0 % s, x0 / s);
                        for oy in ylo..yhi {
                            let iy = oy * s + i - self.py;
                            let from = &row[(oy - oy0) * wo..(oy - oy0 + 1) * wo][lo..hi];
                            let to = if s == 1 {
                                &mut plane[iy * w + x0..][..hi - lo]
                            } else {
                                &mut phases[((ch * s + r) * h + iy) * wq + q0..][..hi - lo]
                            };
                            add_into(to, from);
                        }
                    }
                }
            }
            if s > 1 {
                for (ch, plane) in dst.chunks_exact_mut(h * w).enumerate() {
                    let block = &phases[ch * s * h * wq..(ch + 1) * s * h * wq];
                    for y in y_lo..y_hi {
                        let line = &mut plane[y * w..(y + 1) * w];
                        if s == 2 {
                            let (even, odd) = (&block[y * wq..][..wq], &block[(h + y) * wq..][..wq]);
                            for (pair, (&e, &o)) in line.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
                                pair[0] += e;
                                pair[1] += o;
                            }
                            if w % 2 == 1 {
                                line[w - 1] += even[wq - 1];
                            }
                        } else {
                            for (x, v) in line.iter_mut().enumerate() {
                                *v += block[((x % s) * h + y) * wq + x / s];
                            }
                        }
                    }
                }
            }
        })
    }
}

thread_local! {
    /// [`ConvShape::col2im_ld`]'s phase buffer, reused across calls.
    static COL2IM_PHASES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

mod conv;
mod deconv;
mod direct;
mod linear;
mod lrn;
mod pool;
#[cfg(test)]
mod tests;
mod winograd;

pub use conv::conv2d;
pub(crate) use conv::Conv;
pub use deconv::{conv_transpose2d, conv_transpose2d_window, unpool, unpool_window};
pub use linear::linear;
pub(crate) use linear::Linear;
pub use lrn::lrn;
pub(crate) use lrn::Lrn;
pub(crate) use pool::{pool_backward_into, pool_forward_into};
pub use pool::{pool_max, pool_switches, pool_values};
