//! Local response normalization across feature maps (the paper's "contrast normalization").

use candle_core::{Result, Tensor};

use crate::config::LrnConfig;

impl LrnConfig {
    /// `y = x / (k + alpha / size * sum_{j in window(c)} x_j^2)^beta`, the window running over
    /// `size` neighbouring maps centred on `c` (`size / 2` before, `(size - 1) / 2` after),
    /// zero beyond the first and last map: PyTorch's `F.local_response_norm`.
    ///
    /// # Shapes
    /// - `xs`: `[N, C, H, W]`; returns the same shape.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = xs.dims4()?;
        let sq = xs.sqr()?.pad_with_zeros(1, self.size / 2, (self.size - 1) / 2)?;
        let mut sum = sq.narrow(1, 0, c)?;
        for i in 1..self.size {
            sum = (sum + sq.narrow(1, i, c)?)?;
        }
        let div = sum.affine(self.alpha / self.size as f64, self.k)?.powf(self.beta)?;
        xs / div
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_formula_on_a_small_case() {
        // Three maps of one pixel: 1, 2, 3. With size 5 every window covers all three maps.
        let cfg = LrnConfig { size: 5, alpha: 1.0, beta: 0.5, k: 2.0 };
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0], (1, 3, 1, 1), &Device::Cpu).unwrap();
        let y = cfg.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = (2.0f32 + 14.0 / 5.0).sqrt();
        for (got, want) in y.iter().zip([1.0 / d, 2.0 / d, 3.0 / d]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        // Size 1: each map normalized by itself only.
        let cfg = LrnConfig { size: 1, alpha: 1.0, beta: 1.0, k: 1.0 };
        let y = cfg.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (got, v) in y.iter().zip([1.0f32, 2.0, 3.0]) {
            assert!((got - v / (1.0 + v * v)).abs() < 1e-6);
        }
    }
}
