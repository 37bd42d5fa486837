//! SGD with momentum in the Caffe / cuda-convnet form, and the paper's filter renormalization.

use candle_core::{Result, Tensor, Var, D};

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

    /// One update with learning rate `lr`; `grads` in the order of `params`.
    pub fn step(&mut self, params: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        for (((_, w), g), v) in params.iter().zip(grads).zip(self.velocity.iter_mut()) {
            let g = if self.weight_decay > 0.0 { (g + (w.as_tensor() * self.weight_decay)?)? } else { g.clone() };
            let new_v = ((&*v * self.momentum)? - (g * lr)?)?;
            w.set(&(w.as_tensor() + &new_v)?)?;
            *v = new_v;
        }
        Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

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
}
