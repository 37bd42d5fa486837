//! The forward pass of 3x3 stride-1 convolutions (conv3..conv5, and their occlusion windows) by
//! Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016); the conv backward uses it for the input gradient, itself a 3x3
//! stride-1 conv, and [`weight_grad_into`] runs the transforms' adjoints for the weight
//! gradient.
//!
//! Each 2x2 block of outputs ("tile") reads a 4x4 patch `d` of the input; with the transforms
//!
//! ```text
//!        | 1  0 -1  0 |          |  1    0    0  |
//! B^T =  | 0  1  1  0 |     G =  | 1/2  1/2  1/2 |     A^T = | 1  1  1  0 |
//!        | 0 -1  1  0 |          | 1/2 -1/2  1/2 |           | 0  1 -1 -1 |
//!        | 0  1  0 -1 |          |  0    0    1  |
//! ```
//!
//! the tile is `A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A`, `.` elementwise over the 16
//! transformed positions `xi`. Summed over the input channels, that is 16 independent gemms
//! `M[xi] (O x T) = U[xi] (O x C) V[xi] (C x T)` over the T tiles: 16 multiplications per
//! tile and channel pair where im2col's single gemm takes 36, at the price of the input and
//! output transforms (additions only) and of tiles that reach past an odd-sized map. The
//! transforms hold only 0, ±1 and ±1/2, so the result differs from the direct sum by float
//! rounding (tested against the im2col path).

use super::*;

/// The weights' transform `U[o][xi][c] = (G g_oc G^T)[xi]` for `w` `[O, C, 3, 3]`, filters
/// spread over the threads.
fn transform_weights(w: &[f32], c: usize, u: &mut Vec<f32>) {
    u.resize(w.len() / 9 * 16, 0.0);
    u.par_chunks_mut(16 * c).zip(w.par_chunks(9 * c)).for_each(|(u, w)| {
        simd(
            #[inline(always)]
            || {
                for (ch, g) in w.chunks_exact(9).enumerate() {
                    // G g: 4x3.
                    let mut gg = [[0f32; 3]; 4];
                    for j in 0..3 {
                        let (a, b, d) = (g[j], g[3 + j], g[6 + j]);
                        gg[0][j] = a;
                        gg[1][j] = 0.5 * (a + b + d);
                        gg[2][j] = 0.5 * (a - b + d);
                        gg[3][j] = d;
                    }
                    // (G g) G^T: 4x4.
                    for (i, &[a, b, d]) in gg.iter().enumerate() {
                        let row = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                        for (j, v) in row.into_iter().enumerate() {
                            u[(i * 4 + j) * c + ch] = v;
                        }
                    }
                }
            },
        )
    });
}

/// `d = a + sb b` elementwise, the sign `sb` ±1 (so exactly `a ± b`).
#[inline(always)]
fn add2(d: &mut [f32], a: &[f32], b: &[f32], sb: f32) {
    for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
        *d = a + sb * b;
    }
}

/// `d = a + sb b + sc c` elementwise, the signs `sb`, `sc` ±1 (so exactly `a ± b ± c`).
#[inline(always)]
fn add3(d: &mut [f32], a: &[f32], b: &[f32], c: &[f32], sb: f32, sc: f32) {
    for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = a + sb * b + sc * c;
    }
}

/// The geometry of one layer's tiles.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    c: usize,
    h: usize,
    w: usize,
    /// Rows and columns of zero padding before the input ([`ConvShape`]'s `py`, `px`: the
    /// conv's own padding, or what places a transposed conv's window).
    py: usize,
    px: usize,
    ho: usize,
    wo: usize,
    /// Tile rows and columns: `ceil(ho / 2)`, `ceil(wo / 2)`.
    th: usize,
    tw: usize,
}

impl Tiles {
    /// The tiles of a conv of shape `s` (a 3x3 stride-1 one).
    fn new(s: &ConvShape) -> Self {
        Self {
            c: s.c,
            h: s.h,
            w: s.w,
            py: s.py,
            px: s.px,
            ho: s.ho,
            wo: s.wo,
            th: s.ho.div_ceil(2),
            tw: s.wo.div_ceil(2),
        }
    }

    /// Floats of [`Self::transform_plane`]'s scratch.
    fn plane_scratch(&self) -> usize {
        let (tw, half) = (self.tw, (self.th + 1) * self.tw);
        (2 * tw + 2) + 2 * (tw + 1) + 8 * half
    }

    /// The input transform `B^T d B` of every tile of one input plane `plane` (`h x w`): the
    /// value at transformed position `xi` of tile `k` (row-major over the `th x tw` tiles) into
    /// `v[xi * stride + k]`. `buf` is scratch of [`Self::plane_scratch`] floats.
    #[inline(always)]
    fn transform_plane(&self, plane: &[f32], buf: &mut [f32], v: &mut [f32], stride: usize) {
        let Self { h, w, py, px: pad, th: rows_t, tw, .. } = *self;
        let per = rows_t * tw;
        // Each padded input row `r` split into its even and odd columns (`tw + 1` each), then
        // B's column transform, row `r` of `cols[j]` at `(r % 2) half + (r / 2) tw`: a tile
        // row's four input rows are then four contiguous runs over all the plane's tiles.
        let half = (rows_t + 1) * tw;
        let wp = 2 * tw + 2;
        let (prow, rest) = buf.split_at_mut(wp);
        let (eo, cols) = rest.split_at_mut(2 * (tw + 1));
        let (even, odd) = eo.split_at_mut(tw + 1);
        for r in 0..2 * rows_t + 2 {
            let iy = r as isize - py as isize;
            if (0..h as isize).contains(&iy) {
                let n = w.min(wp - pad);
                prow[..pad].fill(0.0);
                prow[pad..pad + n].copy_from_slice(&plane[iy as usize * w..][..n]);
                prow[pad + n..].fill(0.0);
                for ((e, od), p) in even.iter_mut().zip(odd.iter_mut()).zip(prow.chunks_exact(2)) {
                    *e = p[0];
                    *od = p[1];
                }
            } else {
                even.fill(0.0);
                odd.fill(0.0);
            }
            let base = (r % 2) * half + (r / 2) * tw;
            let (e0, e1, o0, o1) = (&even[..tw], &even[1..], &odd[..tw], &odd[1..]);
            let (c0, rest) = cols.split_at_mut(2 * half);
            let (c1, rest) = rest.split_at_mut(2 * half);
            let (c2, c3) = rest.split_at_mut(2 * half);
            for k in 0..tw {
                c0[base + k] = e0[k] - e1[k];
                c1[base + k] = o0[k] + e1[k];
                c2[base + k] = e1[k] - o0[k];
                c3[base + k] = o0[k] - o1[k];
            }
        }
        // B^T's row transform over all the plane's tiles at once.
        for (j, cj) in cols[..8 * half].chunks_exact(2 * half).enumerate() {
            let (even, odd) = cj.split_at(half);
            let (d0, d1, d2, d3) = (&even[..per], &odd[..per], &even[tw..tw + per], &odd[tw..tw + per]);
            add2(&mut v[j * stride..][..per], d0, d2, -1.0);
            add2(&mut v[(4 + j) * stride..][..per], d1, d2, 1.0);
            add2(&mut v[(8 + j) * stride..][..per], d2, d1, -1.0);
            add2(&mut v[(12 + j) * stride..][..per], d1, d3, -1.0);
        }
    }

    /// For images `x` (`imgs` of them): the input transform into `v` (`[16][C][T]`, T = imgs
    /// th tw tiles, image-major, then row, then column), the 16 gemms with `u` into `m`
    /// (`[16][O][T]`), and the output transform, with bias and optional ReLU, into `out`
    /// `[imgs][O][Ho][Wo]`.
    /// `par`: the threads each of the 16 gemms may use (more than one when there are fewer
    /// work items than threads).
    #[allow(clippy::too_many_arguments)]
    fn run(&self, x: &[f32], imgs: usize, u: &[f32], b: &[f32], relu: bool, out: &mut [f32], par: Parallelism) {
        let Self { c, h, w, ho: rows, wo, th: rows_t, tw, .. } = *self;
        let o = b.len();
        // Tiles per image, and in all.
        let per = rows_t * tw;
        let t = imgs * per;
        with_scratch(16 * c * t, 16 * o * t, |v, m, buf| {
            simd(
                #[inline(always)]
                || {
                    buf.clear();
                    buf.resize(self.plane_scratch().max(12 * t), 0.0);
                    for img in 0..imgs {
                        for ch in 0..c {
                            let plane = &x[(img * c + ch) * h * w..][..h * w];
                            self.transform_plane(plane, buf, &mut v[ch * t + img * per..], c * t);
                        }
                    }
                    // The 16 products, summed over the channels.
                    for xi in 0..16 {
                        gemm(
                            &mut m[xi * o * t..(xi + 1) * o * t],
                            Mat { data: &u[xi * c..], rows: o, cols: c, rs: 16 * c, cs: 1 },
                            Mat::new(&v[xi * c * t..(xi + 1) * c * t], c, t),
                            false,
                            par,
                        );
                    }
                    // A^T m A over all the tiles of the item at once (s = A^T m, then s A), then bias,
                    // ReLU and into the outputs.
                    let m = &*m;
                    let (s, y) = buf[..12 * t].split_at_mut(8 * t);
                    for oc in 0..o {
                        let mk = |k: usize| &m[(k * o + oc) * t..][..t];
                        for j in 0..4 {
                            add3(&mut s[j * t..][..t], mk(j), mk(4 + j), mk(8 + j), 1.0, 1.0);
                            add3(&mut s[(4 + j) * t..][..t], mk(4 + j), mk(8 + j), mk(12 + j), -1.0, -1.0);
                        }
                        for i in 0..2 {
                            let sk = |j: usize| &s[(4 * i + j) * t..][..t];
                            add3(&mut y[2 * i * t..][..t], sk(0), sk(1), sk(2), 1.0, 1.0);
                            add3(&mut y[(2 * i + 1) * t..][..t], sk(1), sk(2), sk(3), -1.0, -1.0);
                        }
                        let bias = b[oc];
                        let finish = |v: f32| if relu { (v + bias).max(0.0) } else { v + bias };
                        let pairs = wo / 2;
                        for img in 0..imgs {
                            let plane = &mut out[(img * o + oc) * rows * wo..][..rows * wo];
                            for ty in 0..rows_t {
                                let k0 = img * per + ty * tw;
                                for i in 0..2 {
                                    if 2 * ty + i >= rows {
                                        break;
                                    }
                                    let line = &mut plane[(2 * ty + i) * wo..][..wo];
                                    let (a, bb) = (&y[2 * i * t + k0..][..tw], &y[(2 * i + 1) * t + k0..][..tw]);
                                    for (pair, (&a, &bb)) in line.chunks_exact_mut(2).zip(a.iter().zip(bb)) {
                                        pair[0] = finish(a);
                                        pair[1] = finish(bb);
                                    }
                                    if wo % 2 == 1 {
                                        line[wo - 1] = finish(a[pairs]);
                                    }
                                }
                            }
                        }
                    }
                },
            )
        })
    }
}

thread_local! {
    /// [`forward_into`]'s transformed weights, reused across calls.
    static WEIGHTS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`forward_into`] takes a conv of geometry `g` with `ho x wo` outputs for `n`
/// images: not with fewer images than threads, where each of the 16 gemms would pack its
/// share of the transformed weights for a few dozen tiles only (the batch-1 forward measured
/// 10-15% slower than im2col, which packs the weights once).
pub(super) fn applies(g: ConvGeometry, ho: usize, wo: usize, n: usize) -> bool {
    g.kernel == 3 && g.stride == 1 && ho >= 2 && wo >= 2 && n >= rayon::current_num_threads()
}

/// Tiles (of all the images) from which the forward pass takes Winograd's path with fewer
/// images than threads, the 16 gemms then sharing the threads: large maps (VGG's 112- and
/// 224-pixel blocks give 3136 and 12544 tiles an image), where each gemm is long enough to pack
/// its weights once for many tiles. ZFNet's 13x13 maps (49 tiles) stay on im2col at batch 1.
const WIDE_TILES: usize = 1024;

/// Whether [`forward_into`] takes a conv of geometry `g` with `ho x wo` outputs for `n`
/// images: [`applies`], or fewer images than threads over at least [`WIDE_TILES`] tiles.
pub(super) fn applies_forward(g: ConvGeometry, ho: usize, wo: usize, n: usize) -> bool {
    applies(g, ho, wo, n)
        || (g.kernel == 3 && g.stride == 1 && ho >= 2 && wo >= 2 && n * ho.div_ceil(2) * wo.div_ceil(2) >= WIDE_TILES)
}

/// How many tiles one work item aims at (its transformed input is `16 C` floats per tile).
const TILES_PER_ITEM: usize = 256;

/// The forward pass of a 3x3 stride-1 conv (see the module docs): `x` `[N, C, H, W]`, `w`
/// `[O, C, 3, 3]`, `b` `[O]`, into `out` `[N, O, Ho, Wo]` (every element written). Work items
/// are groups of images (several small maps side by side), spread over the threads.
pub(super) fn forward_into(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], n: usize, relu: bool, out: &mut [f32]) {
    let (o, c) = (b.len(), s.c);
    let tiles = Tiles::new(s);
    with_kept(&WEIGHTS, |u| {
        transform_weights(w, c, u);
        let (chw, opos, per_image) = (c * s.h * s.w, o * s.positions(), tiles.th * tiles.tw);
        // Items of about TILES_PER_ITEM tiles, a multiple of the threads in number, with the
        // images spread over them as evenly as possible.
        let items = (n * per_image).div_ceil(TILES_PER_ITEM).next_multiple_of(rayon::current_num_threads()).min(n);
        let mut parts = Vec::with_capacity(items);
        let mut rest = out;
        for k in 0..items {
            let (i0, i1) = (k * n / items, (k + 1) * n / items);
            let (y, tail) = rest.split_at_mut((i1 - i0) * opos);
            parts.push((i0, i1, y));
            rest = tail;
        }
        // Fewer items than threads (fewer images): the gemms share the threads.
        let threads = rayon::current_num_threads();
        let par = if items < threads { Parallelism::Rayon(threads.div_ceil(items.max(1))) } else { Parallelism::None };
        parts.into_par_iter().for_each(|(i0, i1, y)| tiles.run(&x[i0 * chw..i1 * chw], i1 - i0, u, b, relu, y, par));
    })
}

impl Tiles {
    /// Floats of [`Self::transform_grad`]'s scratch.
    fn grad_scratch(&self) -> usize {
        6 * self.th * self.tw
    }

    /// The output-gradient transform `A dY A^T` (the adjoint of the output transform) of every
    /// tile of one gradient plane `gy` (`ho x wo`; the outputs a tile reaches past the edge
    /// were dropped by the forward pass, so their gradient is 0): position `xi` of tile `k`
    /// into `m[xi * stride + k]`. `buf` is scratch of [`Self::grad_scratch`] floats.
    #[inline(always)]
    fn transform_grad(&self, gy: &[f32], buf: &mut [f32], m: &mut [f32], stride: usize) {
        let Self { ho, wo, th, tw, .. } = *self;
        let per = th * tw;
        let (e0, rest) = buf.split_at_mut(per);
        let (o0, rest) = rest.split_at_mut(per);
        let (e1, rest) = rest.split_at_mut(per);
        let (o1, rest) = rest.split_at_mut(per);
        let (p, q) = rest.split_at_mut(per);
        // Each tile's gradient [[a, b], [c, d]] gathered over the plane's tiles: a into `e0`,
        // b into `o0`, c into `e1`, d into `o1` (0 past the edge).
        for v in [&mut *e0, &mut *o0, &mut *e1, &mut *o1] {
            v.fill(0.0);
        }
        for (oy, line) in gy.chunks_exact(wo).take(ho).enumerate() {
            let (even, odd) = if oy % 2 == 0 { (&mut *e0, &mut *o0) } else { (&mut *e1, &mut *o1) };
            let base = (oy / 2) * tw;
            for ((e, od), pair) in even[base..].iter_mut().zip(odd[base..].iter_mut()).zip(line.chunks_exact(2)) {
                *e = pair[0];
                *od = pair[1];
            }
            if wo % 2 == 1 {
                even[base + wo / 2] = line[wo - 1];
            }
        }
        // A dY has rows (a, b), (a + c, b + d), (a - c, b - d), (-c, -d); each row (p, q)
        // times A^T is (p, p + q, p - q, -q).
        for i in 0..4 {
            match i {
                0 => {
                    p.copy_from_slice(e0);
                    q.copy_from_slice(o0);
                }
                1 | 2 => {
                    let sign = if i == 1 { 1.0 } else { -1.0 };
                    add2(p, e0, e1, sign);
                    add2(q, o0, o1, sign);
                }
                _ => {
                    p.iter_mut().zip(&*e1).for_each(|(d, &v)| *d = -v);
                    q.iter_mut().zip(&*o1).for_each(|(d, &v)| *d = -v);
                }
            }
            let at = |j: usize| (4 * i + j) * stride;
            m[at(0)..][..per].copy_from_slice(p);
            add2(&mut m[at(1)..][..per], p, q, 1.0);
            add2(&mut m[at(2)..][..per], p, q, -1.0);
            for (d, &v) in m[at(3)..][..per].iter_mut().zip(&*q) {
                *d = -v;
            }
        }
    }
}

thread_local! {
    /// [`weight_grad_into`]'s transformed inputs (`[C][16][T]`), transformed output gradients
    /// (`[O][16][T]`) and transformed weight gradient (`[16][C][O]`), reused across calls.
    static GRAD_V: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static GRAD_M: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static GRAD_U: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// For every map of `src` (`[N, maps, len]`) and image `i0..i1`: `f(plane, scratch, run)`,
/// `run` the map's `[16][T]` block of `dst` (T = `(i1 - i0) per`) from the image's first tile
/// on; the maps spread over the threads, each with `scratch` floats of its own, and `f` inlined
/// into the SIMD dispatch.
#[inline(always)]
fn transform_maps(
    dst: &mut [f32],
    (src, maps, len): (&[f32], usize, usize),
    (i0, i1, per): (usize, usize, usize),
    scratch: usize,
    f: impl Fn(&[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let t = (i1 - i0) * per;
    dst.par_chunks_mut(16 * t).enumerate().for_each_init(
        || vec![0f32; scratch],
        |buf, (map, block)| {
            simd(
                #[inline(always)]
                || {
                    for img in i0..i1 {
                        f(&src[(img * maps + map) * len..][..len], buf, &mut block[(img - i0) * per..]);
                    }
                },
            )
        },
    );
}

/// How many tiles one chunk of the weight gradient aims at: the depth of its 16 gemms (its
/// transformed inputs are `16 C` floats per tile, its transformed gradients `16 O`).
const GRAD_TILES: usize = 1024;

/// The weight gradient of a 3x3 stride-1 conv by F(2x2, 3x3): the forward pass is
/// `Y = A^T [U . V] A` per tile with `U = G g G^T`, so with `dM = A dY A^T` per tile,
/// `dU[xi]^T (C x O) = sum over tiles V[xi] (C x T) dM[xi]^T (T x O)` (16 gemms, 16
/// multiplications per tile and channel pair where im2col's gemm takes 36 per output; this
/// orientation measured 12-15% faster than `dM V^T`) and `dg = G^T dU G`. `x` `[N, C, H, W]`,
/// `gy` the output gradient `[N, O, Ho, Wo]` (after the ReLU's mask), into `dw` `[O, C, 3, 3]`
/// (every element written).
///
/// The batch goes in chunks of about [`GRAD_TILES`] tiles; within one, the threads share the
/// channels' input transforms, the filters' gradient transforms and then the 16 gemms, each
/// accumulating its `dU[xi]` over the chunks in a fixed order (the same sums on every run).
pub(super) fn weight_grad_into(s: &ConvShape, x: &[f32], gy: &[f32], n: usize, dw: &mut [f32]) {
    let c = s.c;
    let o = dw.len() / (9 * c);
    let tiles = Tiles::new(s);
    let per = tiles.th * tiles.tw;
    let (plane, gplane) = (s.h * s.w, s.positions());
    let chunks = n.div_ceil((GRAD_TILES / per).max(1));
    // More threads than gemms: each gemm gets a share of them.
    let threads = rayon::current_num_threads();
    let par = if threads > 16 { Parallelism::Rayon(threads.div_ceil(16)) } else { Parallelism::None };
    with_kept(&GRAD_V, |v| {
        with_kept(&GRAD_M, |m| {
            with_kept(&GRAD_U, |u| {
                u.resize(16 * o * c, 0.0);
                for k in 0..chunks {
                    let (i0, i1) = (k * n / chunks, (k + 1) * n / chunks);
                    let t = (i1 - i0) * per;
                    v.resize(v.len().max(16 * c * t), 0.0);
                    m.resize(m.len().max(16 * o * t), 0.0);
                    // Per channel and per filter `[16][T]` (every element written).
                    let (v, m) = (&mut v[..16 * c * t], &mut m[..16 * o * t]);
                    let chunk = (i0, i1, per);
                    transform_maps(
                        v,
                        (x, c, plane),
                        chunk,
                        tiles.plane_scratch(),
                        #[inline(always)]
                        |xp, buf, d| tiles.transform_plane(xp, buf, d, t),
                    );
                    transform_maps(
                        m,
                        (gy, o, gplane),
                        chunk,
                        tiles.grad_scratch(),
                        #[inline(always)]
                        |gp, buf, d| tiles.transform_grad(gp, buf, d, t),
                    );
                    let (v, m) = (&*v, &*m);
                    u.par_chunks_mut(c * o).enumerate().for_each(|(xi, ux)| {
                        let mx = Mat { data: &m[xi * t..], rows: o, cols: t, rs: 16 * t, cs: 1 };
                        let vx = Mat { data: &v[xi * t..], rows: c, cols: t, rs: 16 * t, cs: 1 };
                        gemm(ux, vx, mx.t(), k > 0, par);
                    });
                }
                // dg = G^T dU G, per filter.
                let u = &*u;
                dw.par_chunks_mut(9 * c).enumerate().for_each(|(oc, dwo)| {
                    for (ch, g) in dwo.chunks_exact_mut(9).enumerate() {
                        let d = |xi: usize| u[(xi * c + ch) * o + oc];
                        // G^T dU: 3x4, by columns.
                        let col = |j: usize| {
                            let (a, b, e, f) = (d(j), d(4 + j), d(8 + j), d(12 + j));
                            [a + 0.5 * (b + e), 0.5 * (b - e), 0.5 * (b + e) + f]
                        };
                        let cols = [col(0), col(1), col(2), col(3)];
                        let t: [[f32; 4]; 3] = std::array::from_fn(|i| cols.map(|c| c[i]));
                        // (G^T dU) G: 3x3.
                        for (i, &[a, b, e, f]) in t.iter().enumerate() {
                            g[3 * i] = a + 0.5 * (b + e);
                            g[3 * i + 1] = 0.5 * (b - e);
                            g[3 * i + 2] = 0.5 * (b + e) + f;
                        }
                    }
                });
            })
        })
    })
}
