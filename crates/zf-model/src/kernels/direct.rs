//! Direct convolution for layers with few input channels (conv1: 3 channels, a 7x7 kernel at
//! stride 2): the forward pass and the weight gradient without im2col columns or gemm packing.
//!
//! With 3 input channels, conv1's im2col writes 147 floats per output position and the gemm
//! then packs them again, for a gemm only 147 deep: the copies cost as much as the
//! multiplications. Here each image is instead laid out once, zero-padded and split into the
//! stride phases of its rows and of its columns ([`pad_quarters`]): the input of tap
//! `(c, i, j)` at output position `(oy, ox)` is then the float `oy wq + ox` after a start of
//! the tap's own, for every position, so both kernels load their operands straight from that
//! buffer:
//!
//! - **forward**: a register tile of [`FWD_FILTERS`] filters by two vectors of an output row's
//!   columns, started at the bias and accumulated over the `C k k` taps (a broadcast weight
//!   times a vector of inputs), then the ReLU and the store;
//! - **weight gradient**: with the output gradient's rows laid `wq` apart (zero past `wo`), the
//!   gradient of filter `f` and tap `t` is one dot product over the image's positions. A tile
//!   of [`GRAD_FILTERS`] filters by [`GRAD_TAPS`] taps keeps a vector of partial sums each,
//!   over bands of output rows whose inputs stay in the L1 cache ([`BAND_BYTES`]), summed across
//!   lanes at the end.
//!
//! Both are written once over pulp's portable SIMD and compiled for AVX-512 and for AVX2 with
//! FMA, the widest the CPU has chosen at run time (plain scalar code elsewhere). They sum in a
//! different order from the im2col path (and with fused multiply-adds), so results agree with
//! it to float rounding (tested), as gemm's do.

use pulp::{Simd, WithSimd};

use super::*;

/// Input channels up to which a conv takes these kernels (the image's 3 colours; with more,
/// im2col's columns are few compared with the gemm's work).
const MAX_CHANNELS: usize = 4;

/// Filters per forward tile (with two vectors of columns: 12 accumulators, 16 registers on
/// AVX2).
const FWD_FILTERS: usize = 6;

/// Filters and taps per weight-gradient tile (12 accumulators).
const GRAD_FILTERS: usize = 3;
const GRAD_TAPS: usize = 4;

/// Floats past the padded input that a forward tile may read (two vectors of up to 16
/// lanes, the last of them past the row's end: those lanes are computed and not stored).
const SLACK: usize = 32;

/// Filters up to which the weight gradient takes the direct kernel. Its tiles run at about
/// half the FMA peak; im2col's copies and gemm's packing cost the same whatever the filter
/// count, so with many filters the gemm's faster inner loop wins. Measured on conv1 (AVX-512
/// and AVX2): at 24 filters (width 0.25) the direct kernel takes 25-35% less time, at 96
/// (width 1) 5-25% more.
const GRAD_MAX_FILTERS: usize = 48;

/// Whether a conv over `c` input channels takes the direct forward pass.
pub(super) fn applies(c: usize) -> bool {
    c <= MAX_CHANNELS
}

/// Whether a conv over `c` input channels with `o` filters takes the direct weight gradient.
pub(super) fn grad_applies(c: usize, o: usize) -> bool {
    applies(c) && o <= GRAD_MAX_FILTERS
}

thread_local! {
    /// Each thread's padded input ([`pad_quarters`]), reused across calls.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Each tap's `(c, i, j)` offset into the padded input ([`pad_quarters`]) for output
/// position 0: position `(oy, ox)` reads the float `oy wq + ox` after it.
fn tap_offsets(s: &ConvShape) -> Vec<usize> {
    let (k, st) = (s.g.kernel, s.g.stride);
    let (hq, wq) = quarter_dims(s);
    (0..s.rows())
        .map(|t| {
            let (ch, i, j) = (t / (k * k), t / k % k, t % k);
            ((ch * st + i % st) * st + j % st) * hq * wq + (i / st) * wq + j / st
        })
        .collect()
}

/// The forward pass `relu(conv(x, w) + b)` (or without the ReLU) of `n` images `x` into `out`
/// `[N, O, Ho, Wo]` (every element written); `w` `[O, C, k, k]`, `b` `[O]`.
pub(super) fn forward_into(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], n: usize, relu: bool, out: &mut [f32]) {
    let (o, pos, chw) = (b.len(), s.positions(), s.c * s.h * s.w);
    let (taps, rows) = (tap_offsets(s), s.rows());
    // The weights as `[filter block][tap][FWD_FILTERS]` and the bias padded to whole blocks.
    let blocks = o.div_ceil(FWD_FILTERS);
    let mut wt = vec![0f32; blocks * rows * FWD_FILTERS];
    let mut bias = vec![0f32; blocks * FWD_FILTERS];
    bias[..o].copy_from_slice(b);
    for (f, filter) in w.chunks_exact(rows).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            wt[((f / FWD_FILTERS) * rows + t) * FWD_FILTERS + f % FWD_FILTERS] = v;
        }
    }
    let tile = |pp: &[f32], block: usize, y: &mut [f32]| {
        let w = &wt[block * rows * FWD_FILTERS..(block + 1) * rows * FWD_FILTERS];
        let b = &bias[block * FWD_FILTERS..(block + 1) * FWD_FILTERS];
        pulp::Arch::new().dispatch(Forward { s, pp, taps: &taps, w, b, relu, y });
    };
    if n >= rayon::current_num_threads() {
        out.par_chunks_mut(o * pos).enumerate().for_each(|(i, y)| {
            with_kept(&PADDED, |pp| {
                simd(
                    #[inline(always)]
                    || pad_quarters(s, &x[i * chw..(i + 1) * chw], pp),
                );
                for (block, y) in y.chunks_mut(FWD_FILTERS * pos).enumerate() {
                    tile(pp, block, y);
                }
            })
        });
    } else {
        // Fewer images than threads (one image to predict or project): the threads take
        // blocks of filters.
        with_kept(&PADDED, |pp| {
            for (i, y) in out.chunks_mut(o * pos).enumerate() {
                simd(
                    #[inline(always)]
                    || pad_quarters(s, &x[i * chw..(i + 1) * chw], pp),
                );
                y.par_chunks_mut(FWD_FILTERS * pos).enumerate().for_each(|(block, y)| tile(pp, block, y));
            }
        });
    }
}

/// One block of up to [`FWD_FILTERS`] filters over one image: `y` `[filters, Ho Wo]`.
struct Forward<'a> {
    s: &'a ConvShape,
    pp: &'a [f32],
    taps: &'a [usize],
    /// `[tap][FWD_FILTERS]`.
    w: &'a [f32],
    b: &'a [f32],
    relu: bool,
    y: &'a mut [f32],
}

impl WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { s, pp, taps, w, b, relu, y } = self;
        let lanes = lanes::<S>();
        let (wo, pos) = (s.wo, s.positions());
        let row = quarter_dims(s).1;
        let filters = y.len() / pos;
        let zero = simd.splat_f32s(0.0);
        for oy in 0..s.ho {
            for ox0 in (0..wo).step_by(2 * lanes) {
                let mut acc = [[zero; 2]; FWD_FILTERS];
                for (a, &bias) in acc.iter_mut().zip(b) {
                    *a = [simd.splat_f32s(bias); 2];
                }
                let at = oy * row + ox0;
                for (&tap, w) in taps.iter().zip(w.chunks_exact(FWD_FILTERS)) {
                    let src = &pp[tap + at..tap + at + 2 * lanes];
                    let (v, _) = S::as_simd_f32s(src);
                    let (v0, v1) = (v[0], v[1]);
                    for (a, &w) in acc.iter_mut().zip(w) {
                        let w = simd.splat_f32s(w);
                        a[0] = simd.mul_add_f32s(w, v0, a[0]);
                        a[1] = simd.mul_add_f32s(w, v1, a[1]);
                    }
                }
                let len = (wo - ox0).min(2 * lanes);
                for (f, a) in acc.iter().enumerate().take(filters) {
                    let dst = &mut y[f * pos + oy * wo + ox0..][..len];
                    for (part, &v) in dst.chunks_mut(lanes).zip(a) {
                        let v = if relu { simd.max_f32s(v, zero) } else { v };
                        simd.partial_store_f32s(part, v);
                    }
                }
            }
        }
    }
}

/// Adds one image's weight gradient into `dw` `[O, C, k, k]`: `x` `[C, H, W]`, `g` the
/// gradient of the conv's output (after the ReLU's mask), `[O, Ho, Wo]`.
///
/// The zeros that pad the gradient's rows multiply inputs past the rows' ends: an input that is
/// not finite makes the whole gradient NaN (as it makes the loss).
pub(super) fn weight_grad_into(s: &ConvShape, x: &[f32], g: &[f32], dw: &mut [f32]) {
    let taps = tap_offsets(s);
    with_kept(&PADDED, |pp| {
        simd(
            #[inline(always)]
            || pad_quarters(s, x, pp),
        );
        with_kept(&BAND_GRAD, |band| {
            with_kept(&SUMS, |sums| pulp::Arch::new().dispatch(WeightGrad { s, pp, taps: &taps, g, dw, band, sums }))
        })
    })
}

/// Rows and floats per row of each phase plane of [`pad_quarters`]: `(hq, wq)`.
fn quarter_dims(s: &ConvShape) -> (usize, usize) {
    let reach = (s.g.kernel - 1) / s.g.stride;
    (s.ho + reach, s.wo + reach)
}

/// One image `[C, H, W]` zero-padded and split into the phases of its rows and columns:
/// padded pixel `(Y, X)` of channel `c` at `((c s + Y mod s) s + X mod s) hq wq + (Y / s) wq +
/// X / s` ([`quarter_dims`]), so that tap `(c, i, j)` of every output position `(oy, ox)` is
/// the float `oy wq + ox` after the tap's own start. Into `buf` (resized; every float
/// written), with zeros after it for the last vector's over-read.
#[inline(always)]
fn pad_quarters(s: &ConvShape, x: &[f32], buf: &mut Vec<f32>) {
    let (hq, wq) = quarter_dims(s);
    let st = s.g.stride;
    let plane = hq * wq;
    let len = s.c * st * st * plane;
    buf.clear();
    buf.resize(len + wq + 2 * SLACK, 0.0);
    for (ch, src) in x.chunks_exact(s.h * s.w).enumerate() {
        for ry in 0..st {
            for yq in 0..hq {
                let Some(iy) = (yq * st + ry).checked_sub(s.py).filter(|&iy| iy < s.h) else { continue };
                let line = &src[iy * s.w..(iy + 1) * s.w];
                for rx in 0..st {
                    // The first input column whose padded column `ix + px` is in phase `rx`.
                    let ix0 = (rx + st - s.px % st) % st;
                    if ix0 >= s.w {
                        continue;
                    }
                    let q0 = (ix0 + s.px) / st;
                    if q0 >= wq {
                        continue;
                    }
                    let row = ((ch * st + ry) * st + rx) * plane + yq * wq;
                    let dst = &mut buf[row + q0..row + wq];
                    if st == 2 {
                        // Every other column, as pairs (vectorizes where `step_by` does not),
                        // then the last column when it starts a pair of its own.
                        let src = &line[ix0..];
                        let pairs = src.chunks_exact(2);
                        let last = pairs.remainder().first();
                        let n = dst.len().min(pairs.len());
                        for (d, pair) in dst.iter_mut().zip(pairs) {
                            *d = pair[0];
                        }
                        if let (Some(&v), Some(d)) = (last, dst.get_mut(n)) {
                            *d = v;
                        }
                    } else {
                        for (d, &v) in dst.iter_mut().zip(line[ix0..].iter().step_by(st)) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// The weight gradient's vectors of partial sums, reused across calls.
    static SUMS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// One band of the output gradient, its rows padded.
    static BAND_GRAD: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Bytes of padded input that one band of output rows of the weight gradient reads, at most:
/// they stay in a 48 KiB L1 cache while every tile passes over them.
const BAND_BYTES: usize = 40 * 1024;

/// Taps per group of the weight gradient's tiles (a multiple of [`GRAD_TAPS`]).
const TAP_GROUP: usize = 36;

struct WeightGrad<'a> {
    s: &'a ConvShape,
    pp: &'a [f32],
    taps: &'a [usize],
    g: &'a [f32],
    dw: &'a mut [f32],
    band: &'a mut Vec<f32>,
    sums: &'a mut Vec<f32>,
}

impl WithSimd for WeightGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { s, pp, taps, g, dw, band, sums } = self;
        let lanes = lanes::<S>();
        let (rows, pos, wo) = (taps.len(), s.positions(), s.wo);
        let o = dw.len() / rows;
        let (hq, wq) = quarter_dims(s);
        // A vector of partial sums per filter and tap, kept across bands.
        sums.clear();
        sums.resize(o * rows * lanes, 0.0);
        let sums = S::as_mut_simd_f32s(sums).0;
        // Bands of output rows whose input, in every phase plane, fits the budget.
        let planes = s.c * s.g.stride * s.g.stride;
        let reach = hq - s.ho;
        let band_rows = (BAND_BYTES / (planes * wq * std::mem::size_of::<f32>())).saturating_sub(reach).max(1);
        // Whole tiles, then the remaining filters and taps one at a time.
        let (of, tf) = (o - o % GRAD_FILTERS, rows - rows % GRAD_TAPS);
        for oy0 in (0..s.ho).step_by(band_rows) {
            let oy1 = (oy0 + band_rows).min(s.ho);
            // The band's gradient rows `wq` apart, zero past `wo` and to a whole vector.
            let len = ((oy1 - oy0) * wq).next_multiple_of(lanes);
            band.clear();
            band.resize(o * len, 0.0);
            for (dst, src) in band.chunks_exact_mut(len).zip(g.chunks_exact(pos)) {
                for (d, r) in dst.chunks_mut(wq).zip(src[oy0 * wo..oy1 * wo].chunks_exact(wo)) {
                    d[..wo].copy_from_slice(r);
                }
            }
            let (band, start) = (&band[..], oy0 * wq);
            let run = |sums: &mut [S::f32s], f0: usize, t0: usize, f: usize, t: usize| match (f, t) {
                (GRAD_FILTERS, GRAD_TAPS) => {
                    grad_tile::<S, GRAD_FILTERS, GRAD_TAPS>(simd, pp, taps, band, len, start, sums, f0, t0)
                }
                (GRAD_FILTERS, _) => grad_tile::<S, GRAD_FILTERS, 1>(simd, pp, taps, band, len, start, sums, f0, t0),
                (_, GRAD_TAPS) => grad_tile::<S, 1, GRAD_TAPS>(simd, pp, taps, band, len, start, sums, f0, t0),
                _ => grad_tile::<S, 1, 1>(simd, pp, taps, band, len, start, sums, f0, t0),
            };
            // Groups of taps, so that a group's inputs, a tile's gradient rows and the group's
            // partial sums for a tile's filters stay in cache together.
            for g0 in (0..rows).step_by(TAP_GROUP) {
                let g1 = (g0 + TAP_GROUP).min(rows);
                let whole = g1.min(tf);
                for f0 in (0..of).step_by(GRAD_FILTERS).chain(of..o) {
                    let f = if f0 < of { GRAD_FILTERS } else { 1 };
                    for t0 in (g0..whole).step_by(GRAD_TAPS).chain(whole.max(g0)..g1) {
                        run(sums, f0, t0, f, if t0 < whole { GRAD_TAPS } else { 1 });
                    }
                }
            }
        }
        for (d, &v) in dw.iter_mut().zip(sums.iter()) {
            *d += simd.reduce_sum_f32s(v);
        }
    }
}

/// `sums[f0 + m][t0 + t] += g[f0 + m][p] x[tap t0 + t][start + p]` lane by lane over the band's
/// `len` positions (whole vectors; `g` `[O][len]`) for an `F x T` tile.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile<S: Simd, const F: usize, const T: usize>(
    simd: S,
    pp: &[f32],
    taps: &[usize],
    g: &[f32],
    len: usize,
    start: usize,
    sums: &mut [S::f32s],
    f0: usize,
    t0: usize,
) {
    let rows = taps.len();
    let mut acc: [[S::f32s; T]; F] = std::array::from_fn(|m| std::array::from_fn(|t| sums[(f0 + m) * rows + t0 + t]));
    let gs: [&[S::f32s]; F] = std::array::from_fn(|m| S::as_simd_f32s(&g[(f0 + m) * len..(f0 + m + 1) * len]).0);
    let xs: [&[S::f32s]; T] = std::array::from_fn(|t| {
        let at = taps[t0 + t] + start;
        S::as_simd_f32s(&pp[at..at + len]).0
    });
    for (v, &g0) in gs[0].iter().enumerate() {
        let gv: [S::f32s; F] = std::array::from_fn(|m| if m == 0 { g0 } else { gs[m][v] });
        for (t, xs) in xs.iter().enumerate() {
            let xv = xs[v];
            for (a, &gv) in acc.iter_mut().zip(&gv) {
                a[t] = simd.mul_add_f32s(gv, xv, a[t]);
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (t, &v) in a.iter().enumerate() {
            sums[(f0 + m) * rows + t0 + t] = v;
        }
    }
}
