//! SGD with momentum in the Caffe / cuda-convnet form, and the paper's filter renormalization.

use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor, Var, D};
use rayon::prelude::*;

/// `v = momentum * v - lr * (g + weight_decay * w); w = w + v` for every parameter.
#[derive(Debug)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Momentum buffers, in the order of the parameters.
    pub velocity: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: &[(String, Var)], momentum: f64, weight_decay: f64) -> Result<Self> {
        let velocity = params.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<Result<_>>()?;
        Ok(Self { momentum, weight_decay, velocity })
    }

    /// One update with learning rate `lr`; `grads` in the order of `params`. On the CPU in f32
    /// both buffers are updated in place, in one pass (no temporaries: the fc6 weight alone is
    /// 151 MB in the paper's network; see [`Sgd::step_slices`]); elsewhere with candle's ops.
    pub fn step(&mut self, params: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        for (((key, var), g), v) in params.iter().zip(grads).zip(self.velocity.iter_mut()) {
            let w = var.as_tensor();
            let in_place = [w, g, &*v].iter().all(|t| zf_model::device::fused(t));
            if in_place && w.shape() == g.shape() && w.shape() == v.shape() {
                let g = g.contiguous()?;
                let (storage, layout) = g.storage_and_layout();
                let candle_core::Storage::Cpu(g) = &*storage else {
                    return Err(candle_core::Error::Msg(format!("sgd: the gradient of `{key}` is not on the CPU")));
                };
                update_in_place(key, w, v, data(g, layout, "sgd")?, (self.momentum, lr, self.weight_decay))?;
                continue;
            }
            let g = if self.weight_decay > 0.0 { (g + (w * self.weight_decay)?)? } else { g.clone() };
            let new_v = ((&*v * self.momentum)? - (g * lr)?)?;
            var.set(&(w + &new_v)?)?;
            *v = new_v;
        }
        Ok(())
    }

    /// [`Sgd::step`] with the gradients as slices (`grads[i]` laid out as parameter `i`), on
    /// the CPU in f32: the same in-place update.
    pub fn step_slices(&mut self, params: &[(String, Var)], grads: &[&[f32]], lr: f64) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.velocity.len() {
            return Err(candle_core::Error::Msg(format!(
                "sgd: {} parameters, {} gradients and {} momentum buffers",
                params.len(),
                grads.len(),
                self.velocity.len()
            )));
        }
        for (((key, var), &g), v) in params.iter().zip(grads).zip(&self.velocity) {
            update_in_place(key, var.as_tensor(), v, g, (self.momentum, lr, self.weight_decay))?;
        }
        Ok(())
    }
}

/// `v <- momentum v - lr (g + weight_decay w); w <- w + v` in one pass over the f32 CPU
/// tensors `w` and `v` (spread over the threads; the same numbers however it is split).
fn update_in_place(
    key: &str,
    w: &Tensor,
    v: &Tensor,
    g: &[f32],
    (momentum, lr, weight_decay): (f64, f64, f64),
) -> Result<()> {
    if !(zf_model::device::fused(w) && zf_model::device::fused(v)) || v.shape() != w.shape() {
        return Err(candle_core::Error::Msg(format!("sgd: `{key}` and its momentum are not f32 CPU tensors")));
    }
    if w.elem_count() != g.len() {
        return Err(candle_core::Error::Msg(format!(
            "sgd: `{key}` has {} values, its gradient {}",
            w.elem_count(),
            g.len()
        )));
    }
    let (momentum, lr, weight_decay) = (momentum as f32, lr as f32, weight_decay as f32);
    with_data_mut(v, |v| {
        with_data_mut(w, |w| {
            // Elementwise, in chunks (fc6's 38M weights dominate).
            const CHUNK: usize = 1 << 16;
            v.par_chunks_mut(CHUNK).zip(w.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(|((v, w), g)| {
                for ((v, w), &g) in v.iter_mut().zip(w.iter_mut()).zip(g) {
                    *v = momentum * *v - lr * (g + weight_decay * *w);
                    *w += *v;
                }
            })
        })
    })?
}

/// Runs `f` on the contiguous f32 data of the CPU tensor `t`, mutably (through candle's
/// in-place op, which holds the storage's write lock for the call).
fn with_data_mut<R>(t: &Tensor, f: impl FnOnce(&mut [f32]) -> R) -> Result<R> {
    struct Op<F, R> {
        f: std::cell::Cell<Option<F>>,
        out: std::cell::Cell<Option<R>>,
    }
    impl<F: FnOnce(&mut [f32]) -> R, R> InplaceOp1 for Op<F, R> {
        fn name(&self) -> &'static str {
            "sgd-in-place"
        }

        fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
            let data = data_mut(s, l, self.name())?;
            if let Some(f) = self.f.take() {
                self.out.set(Some(f(data)));
            }
            Ok(())
        }
    }
    let op = Op { f: std::cell::Cell::new(Some(f)), out: std::cell::Cell::new(None) };
    t.inplace_op1(&op)?;
    op.out.take().ok_or_else(|| candle_core::Error::Msg("sgd: the in-place op did not run".into()))
}

/// Mutable contiguous f32 data, or an error naming the op.
fn data_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => Err(candle_core::Error::Msg(format!("{op}: expects contiguous f32 tensors"))),
    }
}

fn data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => Err(candle_core::Error::Msg(format!("{op}: expects contiguous f32 tensors"))),
    }
}

/// Scales every filter (output map) of a conv weight `[O, I, K, K]` whose RMS exceeds `radius`
/// back to RMS `radius` (paper Sec. 3); others are left as they are. Returns how many filters
/// were scaled.
pub fn renormalize(weight: &Var, radius: f64) -> Result<usize> {
    let w = weight.as_tensor();
    let rms = w.flatten_from(1)?.sqr()?.mean(D::Minus1)?.sqrt()?; // [O]
    let over = rms.gt(radius)?;
    let n = over.to_dtype(candle_core::DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize;
    if n > 0 {
        let factor = over.where_cond(&(rms.recip()? * radius)?, &rms.ones_like()?)?;
        weight.set(&w.broadcast_mul(&factor.reshape((w.dim(0)?, 1, 1, 1))?)?)?;
    }
    Ok(n)
}

/// [`renormalize`] for the training loop, which does not need the count: on the CPU the same
/// (counting is free there and lets an untouched weight stay as it is); on other devices the
/// factor is applied without reading anything back, so a step makes no host round trip per
/// conv layer.
pub fn renormalize_in_place(weight: &Var, radius: f64) -> Result<()> {
    if weight.as_tensor().device().is_cpu() {
        return renormalize(weight, radius).map(|_| ());
    }
    let w = weight.as_tensor();
    let rms = w.flatten_from(1)?.sqr()?.mean(D::Minus1)?.sqrt()?; // [O]
    let factor = rms.gt(radius)?.where_cond(&(rms.recip()? * radius)?, &rms.ones_like()?)?;
    weight.set(&w.broadcast_mul(&factor.reshape((w.dim(0)?, 1, 1, 1))?)?)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn renormalization_above_at_and_below_the_radius() {
        // Three filters of 1x1x2x2: constant 0.2 (RMS 0.2, above), 0.1 (at), 0.05 (below).
        let w: Vec<f32> = [0.2f32, 0.1, 0.05].iter().flat_map(|&v| [v, -v, v, -v]).collect();
        let var = Var::from_vec(w, (3, 1, 2, 2), &Device::Cpu).unwrap();
        assert_eq!(renormalize(&var, 0.1).unwrap(), 1);
        let got = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want: Vec<f32> = [0.1f32, 0.1, 0.05].iter().flat_map(|&v| [v, -v, v, -v]).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
        // Already inside: nothing changes.
        assert_eq!(renormalize(&var, 0.1).unwrap(), 0);
    }

    #[test]
    fn momentum_in_the_caffe_form() {
        // w = 1, g = 2 twice, lr 0.1, m 0.9: v1 = -0.2, w1 = 0.8; v2 = -0.18 - 0.2 = -0.38, w2 = 0.42.
        let p = vec![("w".to_string(), Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap())];
        let g = vec![Tensor::new(&[2f32], &Device::Cpu).unwrap()];
        let mut sgd = Sgd::new(&p, 0.9, 0.0).unwrap();
        sgd.step(&p, &g, 0.1).unwrap();
        sgd.step(&p, &g, 0.1).unwrap();
        let w = p[0].1.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((w - 0.42).abs() < 1e-6, "{w}");
        // Weight decay adds wd * w to the gradient: w = 1, g = 0, wd 0.5, lr 0.1 -> 0.95.
        let p = vec![("w".to_string(), Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap())];
        let mut sgd = Sgd::new(&p, 0.0, 0.5).unwrap();
        sgd.step(&p, &[Tensor::new(&[0f32], &Device::Cpu).unwrap()], 0.1).unwrap();
        assert!((p[0].1.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.95).abs() < 1e-6);
    }

    #[test]
    fn the_slice_update_equals_the_tensor_update() {
        let w0 = Tensor::randn(0f32, 1.0, (4, 6), &Device::Cpu).unwrap();
        let gs: Vec<Vec<f32>> = (0..3).map(|i| (0..24).map(|j| ((i * 24 + j) as f32 * 0.37).sin()).collect()).collect();
        let run = |slices: bool| {
            let p = vec![("w".to_string(), Var::from_tensor(&w0.copy().unwrap()).unwrap())];
            let mut sgd = Sgd::new(&p, 0.9, 0.01).unwrap();
            for g in &gs {
                if slices {
                    sgd.step_slices(&p, &[g.as_slice()], 0.05).unwrap();
                } else {
                    sgd.step(&p, &[Tensor::from_vec(g.clone(), (4, 6), &Device::Cpu).unwrap()], 0.05).unwrap();
                }
            }
            let v = sgd.velocity[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (p[0].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(), v)
        };
        // The same arithmetic in the same order: equal to the bit.
        assert_eq!(run(true), run(false));
        assert_ne!(run(true).0, w0.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let p = vec![("w".to_string(), Var::from_tensor(&w0).unwrap())];
        let mut sgd = Sgd::new(&p, 0.9, 0.0).unwrap();
        assert!(sgd
            .step_slices(&p, &[&[0.0; 3]], 0.1)
            .unwrap_err()
            .to_string()
            .contains("has 24 values, its gradient 3"));
    }

    #[test]
    fn in_place_update_equals_the_tensor_formula() {
        // f32 takes the in-place kernels, f64 candle's ops: three steps each, same numbers.
        let w0 = Tensor::randn(0f32, 1.0, (3, 5), &Device::Cpu).unwrap();
        let gs: Vec<Tensor> = (0..3).map(|_| Tensor::randn(0f32, 1.0, (3, 5), &Device::Cpu).unwrap()).collect();
        let run = |dtype: DType| {
            let p = vec![("w".to_string(), Var::from_tensor(&w0.to_dtype(dtype).unwrap()).unwrap())];
            let mut sgd = Sgd::new(&p, 0.9, 0.01).unwrap();
            for g in &gs {
                sgd.step(&p, &[g.to_dtype(dtype).unwrap()], 0.05).unwrap();
            }
            p[0].1.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (run(DType::F32), run(DType::F64));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
