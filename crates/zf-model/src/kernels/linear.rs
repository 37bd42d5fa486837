//! The fused linear layer: bias, one gemm `x W^T`, ReLU, and its backward.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Linear {
    pub(crate) relu: bool,
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

/// Up to how many rows the forward pass multiplies `W x^T` (see [`Linear::forward_into`]).
const FEW_ROWS: usize = 64;

/// `0..len` cut into one contiguous block per thread, `f(start, width)` run on each in
/// parallel; the results with their starts.
fn par_blocks(len: usize, f: impl Fn(usize, usize) -> Vec<f32> + Sync) -> Vec<(usize, Vec<f32>)> {
    let chunk = len.div_ceil(rayon::current_num_threads()).max(1);
    let starts: Vec<usize> = (0..len).step_by(chunk).collect();
    starts.into_par_iter().map(|c0| (c0, f(c0, (c0 + chunk).min(len) - c0))).collect()
}

impl Linear {
    /// The forward pass on slices: `x` `[N, I]` (`n` rows), `w` `[O, I]`, `b` `[O]`, into `y`
    /// `[N, O]` (every element written).
    pub(crate) fn forward_into(&self, x: &[f32], w: &[f32], b: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
        let o = b.len();
        let i = x.len().checked_div(n).unwrap_or(0);
        if x.len() != n * i || w.len() != o * i || y.len() != n * o {
            bail!("linear: buffers of {} / {} / {} floats for {n} rows and {o} outputs", x.len(), w.len(), y.len())
        }
        for line in y.chunks_exact_mut(o) {
            line.copy_from_slice(b);
        }
        let threads = rayon::current_num_threads();
        if (1..=FEW_ROWS).contains(&n) && o >= 2 * threads {
            // Few rows (a batch of 16, one image): `y^T = W x^T`, so that W, read once, is the
            // gemm's row-major left operand (streamed and packed by contiguous copies) and the
            // few rows of x the small right one. The output features are split over the
            // threads, each block one single-threaded gemm, then transposed into place.
            let parts = par_blocks(o, |c0, width| {
                let mut part = vec![0f32; width * n];
                let rows = Mat::new(&w[c0 * i..(c0 + width) * i], width, i);
                gemm(&mut part, rows, Mat::new(x, n, i).t(), false, Parallelism::None);
                part
            });
            for (c0, part) in parts {
                for (j, line) in part.chunks_exact(n).enumerate() {
                    for (r, &v) in line.iter().enumerate() {
                        y[r * o + c0 + j] += v;
                    }
                }
            }
        } else {
            gemm(y, Mat::new(x, n, i), Mat::new(w, o, i).t(), true, Parallelism::Rayon(threads));
        }
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok(())
    }

    /// The backward pass on slices: from the input `x` `[N, I]`, the weight `w`, the forward's
    /// output `res` and its gradient `grad` (`[N, O]`), writes `dw` `[O, I]`, `db` `[O]` and,
    /// when given, `dx` `[N, I]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_into(
        &self,
        x: &[f32],
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
    ) -> Result<()> {
        let o = db.len();
        let n = grad.len().checked_div(o).unwrap_or(0);
        let i = w.len().checked_div(o).unwrap_or(0);
        if x.len() != n * i || res.len() != n * o || dw.len() != o * i || dx.as_ref().is_some_and(|d| d.len() != n * i)
        {
            bail!("linear backward: buffers do not fit {n} rows, {i} inputs and {o} outputs")
        }
        let par = Parallelism::Rayon(rayon::current_num_threads());
        with_scratch(n * o, 0, |gm, _, _| {
            relu_mask(gm, grad, res, self.relu);
            if let Some(dx) = dx {
                let threads = rayon::current_num_threads();
                if (1..=FEW_ROWS).contains(&n) && i >= 2 * threads {
                    // Few rows: the input features split over the threads, each block
                    // summed by `InputGrad` from its columns of W, then copied into place
                    // (gemm would first pack all of W, for a product only `N` rows tall).
                    // `gm` transposed, its rows padded to whole tiles: `gt[k][r]`.
                    let rows = n.next_multiple_of(INPUT_GRAD_ROWS);
                    let mut gt = vec![0f32; o * rows];
                    for (r, line) in gm.chunks_exact(o).enumerate() {
                        for (k, &v) in line.iter().enumerate() {
                            gt[k * rows + r] = v;
                        }
                    }
                    let parts = par_blocks(i, |c0, width| {
                        let mut part = vec![0f32; n * width];
                        pulp::Arch::new().dispatch(InputGrad { gt: &gt, w, i, c0, n, part: &mut part });
                        part
                    });
                    for (c0, part) in parts {
                        let width = part.len() / n;
                        for (r, line) in part.chunks_exact(width).enumerate() {
                            dx[r * i + c0..r * i + c0 + width].copy_from_slice(line);
                        }
                    }
                } else {
                    gemm(dx, Mat::new(gm, n, o), Mat::new(w, o, i), false, par);
                }
            }
            gemm(dw, Mat::new(gm, n, o).t(), Mat::new(x, n, i), false, par);
            db.fill(0.0);
            for line in gm.chunks_exact(o) {
                add_into(db, line);
            }
        });
        Ok(())
    }
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
        let n = xl.shape().dims2()?.0;
        let o = wl.shape().dims2()?.0;
        let mut y = vec![0f32; n * o];
        self.forward_into(x, w, b, n, &mut y)?;
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
        let need_dx = x.track_op();
        let (dx, dw, db) = with_f32(&[x, w, res, grad], |t| {
            let mut dx = need_dx.then(|| vec![0f32; t[0].len()]);
            let (mut dw, mut db) = (vec![0f32; t[1].len()], vec![0f32; b.elem_count()]);
            self.backward_into(t[0], t[1], t[2], t[3], dx.as_deref_mut(), &mut dw, &mut db)?;
            Ok((dx, dw, db))
        })?;
        gradients([(x, dx), (w, Some(dw)), (b, Some(db))])
    }
}

/// Rows (of the batch) per tile of [`InputGrad`]; with two vectors of inputs, 12 accumulators
/// (16 registers on AVX2).
const INPUT_GRAD_ROWS: usize = 6;

/// Rows of W per pass of [`InputGrad`] along its columns: as many memory streams (16 keeps
/// within what the prefetchers follow; 8 and 64 measured slower on fc6).
const INPUT_GRAD_DEPTH: usize = 16;

/// Columns `c0..c0 + width` of `dx = gm W` for few rows (`part` `[N, width]`, `gt` the
/// transposed gradient `[O][rows]`, rows padded to whole tiles with zeros, `w` `[O, I]`).
/// W is read where it lies, once, in passes of [`INPUT_GRAD_DEPTH`] rows along their columns;
/// within a pass each tile of [`INPUT_GRAD_ROWS`] rows by two vectors of columns sums in
/// registers, carried between passes in `part`. (gemm packs all of W first, a copy as large as
/// the product's work for a product only `N` rows tall: fc6's input gradient at batch 16 took
/// 26-37 ms through gemm, 13-25 ms here, on the 2-core Xeon.)
struct InputGrad<'a> {
    gt: &'a [f32],
    w: &'a [f32],
    i: usize,
    c0: usize,
    n: usize,
    part: &'a mut [f32],
}

impl pulp::WithSimd for InputGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self { gt, w, i, c0, n, part } = self;
        let lanes = lanes::<S>();
        let o = w.len() / i;
        let rows = gt.len() / o.max(1);
        let width = part.len() / n.max(1);
        let step = 2 * lanes;
        let full = width / step * step;
        let zero = simd.splat_f32s(0.0);
        // Blocks of INPUT_GRAD_DEPTH rows of W, each swept along its columns (as many streams
        // as rows); the tiles' sums carried between blocks in `part`.
        for k0 in (0..o).step_by(INPUT_GRAD_DEPTH) {
            let k1 = (k0 + INPUT_GRAD_DEPTH).min(o);
            for c in (0..full).step_by(step) {
                for r0 in (0..n).step_by(INPUT_GRAD_ROWS) {
                    let live = (n - r0).min(INPUT_GRAD_ROWS);
                    let mut acc = [[zero; 2]; INPUT_GRAD_ROWS];
                    if k0 > 0 {
                        for (r, a) in acc.iter_mut().enumerate().take(live) {
                            let at = (r0 + r) * width + c;
                            let (src, _) = S::as_simd_f32s(&part[at..at + step]);
                            *a = [src[0], src[1]];
                        }
                    }
                    for k in k0..k1 {
                        let at = k * i + c0 + c;
                        let (wv, _) = S::as_simd_f32s(&w[at..at + step]);
                        let (w0, w1) = (wv[0], wv[1]);
                        let g = &gt[k * rows + r0..k * rows + r0 + INPUT_GRAD_ROWS];
                        for (a, &g) in acc.iter_mut().zip(g) {
                            let g = simd.splat_f32s(g);
                            a[0] = simd.mul_add_f32s(g, w0, a[0]);
                            a[1] = simd.mul_add_f32s(g, w1, a[1]);
                        }
                    }
                    for (r, a) in acc.iter().enumerate().take(live) {
                        let at = (r0 + r) * width + c;
                        let (dst, _) = S::as_mut_simd_f32s(&mut part[at..at + step]);
                        dst[0] = a[0];
                        dst[1] = a[1];
                    }
                }
            }
        }
        // The last columns, one at a time.
        for r in 0..n {
            for c in full..width {
                part[r * width + c] = (0..o).map(|k| gt[k * rows + r] * w[k * i + c0 + c]).sum();
            }
        }
    }
}
