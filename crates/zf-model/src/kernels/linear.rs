//! The fused linear layer: bias, one gemm `x W^T`, ReLU, and its backward.

use super::*;

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
        let threads = rayon::current_num_threads();
        if n < threads && o >= 2 * threads {
            // Few rows (one image): a gemm this flat uses one thread however many it is given,
            // so the output features are split over the threads instead, each block one
            // single-threaded gemm against its rows of W, then copied into place.
            let chunk = o.div_ceil(threads);
            let starts: Vec<usize> = (0..o).step_by(chunk).collect();
            let parts: Vec<(usize, Vec<f32>)> = starts
                .into_par_iter()
                .map(|c0| {
                    let c1 = (c0 + chunk).min(o);
                    let width = c1 - c0;
                    let mut part = vec![0f32; n * width];
                    for line in part.chunks_exact_mut(width) {
                        line.copy_from_slice(&b[c0..c1]);
                    }
                    let rows = Mat::new(&w[c0 * i..c1 * i], width, i).t();
                    gemm(&mut part, Mat::new(x, n, i), rows, true, Parallelism::None);
                    (c0, part)
                })
                .collect();
            for (c0, part) in parts {
                let width = part.len() / n.max(1);
                for (r, line) in part.chunks_exact(width).enumerate() {
                    y[r * o + c0..r * o + c0 + width].copy_from_slice(line);
                }
            }
        } else {
            gemm(&mut y, Mat::new(x, n, i), Mat::new(w, o, i).t(), true, Parallelism::Rayon(threads));
        }
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
