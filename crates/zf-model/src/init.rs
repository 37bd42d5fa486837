//! Fresh weights: the paper's initialization (Gaussian, standard deviation 1e-2, biases 0), or
//! He's, seeded and reproducible on every device.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::config::ZfConfig;
use crate::net::ZfNet;
use crate::weights::expected_shapes;

/// How fresh weights are drawn. Biases are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The paper's: every weight from a Gaussian with standard deviation 0.01 (Sec. 3).
    Paper,
    /// He et al.: standard deviation `sqrt(2 / fan_in)`, which keeps activations from
    /// shrinking layer by layer.
    He,
    /// A Gaussian with the given standard deviation.
    Gaussian(f64),
}

/// The paper's weight standard deviation (Sec. 3).
pub const PAPER_WEIGHT_STD: f64 = 1e-2;

impl Init {
    /// `paper`, `he`, or a standard deviation such as `0.02`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Init::Paper),
            "he" => Ok(Init::He),
            other => match other.parse::<f64>() {
                Ok(std) if std > 0.0 && std.is_finite() => Ok(Init::Gaussian(std)),
                _ => bail!("unknown init `{other}`: expected `paper`, `he` or a positive standard deviation"),
            },
        }
    }

    /// The standard deviation this init draws a weight of `shape` (`[out, in, ...]`) with.
    pub fn std(self, shape: &[usize]) -> f64 {
        match self {
            Init::Paper => PAPER_WEIGHT_STD,
            Init::Gaussian(std) => std,
            Init::He => (2.0 / shape[1..].iter().product::<usize>() as f64).sqrt(),
        }
    }
}

/// Fresh weights for `config`, under their safetensors keys. The same seed gives the same
/// weights on every machine and device: values are drawn on the host in key order from a
/// ChaCha8 generator.
pub fn init_tensors(config: &ZfConfig, init: Init, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    draw_tensors(expected_shapes(config)?, init, seed, device)
}

/// Fresh tensors for `shapes` (names and shapes in the order they are drawn, as
/// [`expected_shapes`] or [`crate::NetSpec::expected_tensors`] list them): `.bias` tensors zero,
/// the others drawn from `init`'s normal distribution on the host from a ChaCha8 generator
/// seeded with `seed`.
pub fn draw_tensors(
    shapes: Vec<(String, Vec<usize>)>,
    init: Init,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let values = if name.ends_with(".bias") {
            vec![0f32; n]
        } else {
            let normal = Normal::new(0.0, init.std(&shape)).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        };
        out.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    Ok(out)
}

/// A network with fresh weights (see [`init_tensors`]).
pub fn init_net(config: &ZfConfig, init: Init, seed: u64, device: &Device) -> Result<ZfNet> {
    let tensors = init_tensors(config, init, seed, device)?;
    ZfNet::new(config, VarBuilder::from_tensors(tensors, candle_core::DType::F32, device))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_scaled() {
        let cfg = ZfConfig::tiny();
        let a = init_tensors(&cfg, Init::Paper, 3, &Device::Cpu).unwrap();
        let b = init_tensors(&cfg, Init::Paper, 3, &Device::Cpu).unwrap();
        let c = init_tensors(&cfg, Init::Paper, 4, &Device::Cpu).unwrap();
        let v = |m: &HashMap<String, Tensor>, k: &str| m[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a, "fc6.weight"), v(&b, "fc6.weight"));
        assert_ne!(v(&a, "fc6.weight"), v(&c, "fc6.weight"));
        assert!(v(&a, "conv2.bias").iter().all(|&x| x == 0.0));
        // The sample standard deviation of ~150k draws is within 1% of 0.01.
        let w = v(&a, "fc6.weight");
        let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((std - 0.01).abs() < 1e-4, "{std}");
        // He: conv3 has fan-in 32 * 9 = 288 in the tiny config.
        let h = init_tensors(&cfg, Init::He, 3, &Device::Cpu).unwrap();
        let w = v(&h, "conv3.weight");
        let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let want = (2.0f64 / 288.0).sqrt();
        assert!((std - want).abs() / want < 0.03, "{std} vs {want}");
    }

    #[test]
    fn parse() {
        assert_eq!(Init::parse("he").unwrap(), Init::He);
        assert_eq!(Init::parse("0.02").unwrap(), Init::Gaussian(0.02));
        assert!(Init::parse("-1").is_err());
    }
}
