//! One training step of the paper's recipe, as a value: the network, its parameters and the
//! optimizer ([`Trainer`]). The training loop ([`crate::train()`]) and `zfnet bench --what
//! train` both step through it, so the benchmark times the loop's own step.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use zf_model::init::init_tensors;
use zf_model::weights::expected_shapes;
use zf_model::{Backprop, Dropout, NoTap, Point, ZfNet};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::sgd::{renormalize_in_place, Sgd};

/// The network being trained, its parameters (as `Var`s, in the order of
/// [`expected_shapes`]) and SGD's momentum.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use zf_train::{Trainer, TrainConfig};
///
/// let mut config = TrainConfig::tiny();
/// config.model = config.model.with_input_size(64);
/// let mut trainer = Trainer::new(&config, &Device::Cpu)?;
/// let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu)?;
/// let labels = Tensor::new(&[1u32, 7], &Device::Cpu)?;
/// let loss = trainer.step(&x, &labels, config.lr, 0)?;
/// assert!(loss.is_finite());
/// # Ok::<(), zf_train::TrainError>(())
/// ```
#[derive(Debug)]
pub struct Trainer {
    net: ZfNet,
    params: Vec<(String, Var)>,
    sgd: Sgd,
    /// Indices in `params` of conv1..conv5's weights with their renormalization radius (empty
    /// when renormalization is off).
    conv_weights: Vec<(usize, f64)>,
    seed: u64,
    /// The graph-free forward and backward pass's buffers (CPU, f32).
    backprop: Backprop,
}

impl Trainer {
    /// A fresh network, initialized as `config` says (its init and seed).
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Self> {
        let mut weights = init_tensors(&config.model, config.init, config.seed, device)?;
        if config.conv1_init_scale != 1.0 {
            let key = format!("{}.weight", Point::Conv1.name());
            if let Some(w) = weights.get(&key) {
                let scaled = w.affine(config.conv1_init_scale, 0.0)?;
                weights.insert(key, scaled);
            }
        }
        Self::from_tensors(config, &weights, None, device)
    }

    /// A network from `weights` (by key) and, when given, SGD's momentum (by key): a resumed
    /// run. A missing tensor is an error naming it.
    pub fn from_tensors(
        config: &TrainConfig,
        weights: &HashMap<String, Tensor>,
        momentum: Option<&HashMap<String, Tensor>>,
        device: &Device,
    ) -> Result<Self> {
        let missing = |what: &str, key: &str| TrainError::Config(format!("no {what} `{key}` to train from"));
        let mut params: Vec<(String, Var)> = Vec::new();
        for (key, _) in expected_shapes(&config.model)? {
            let t = weights.get(&key).ok_or_else(|| missing("tensor", &key))?;
            params.push((key, Var::from_tensor(t)?));
        }
        let tensors = params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let net = ZfNet::new(&config.model, VarBuilder::from_tensors(tensors, DType::F32, device))?;
        let mut sgd = Sgd::new(&params, config.momentum, config.weight_decay)?;
        if let Some(m) = momentum {
            for ((k, _), v) in params.iter().zip(sgd.velocity.iter_mut()) {
                *v = m.get(k).cloned().ok_or_else(|| missing("momentum for", k))?;
            }
        }
        let conv_weights = match config.renorm {
            None => Vec::new(),
            Some(radius) => params
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| {
                    k.ends_with(".weight") && Point::WEIGHTED.iter().any(|p| p.is_conv() && k.starts_with(p.name()))
                })
                .map(|(i, (k, v))| (i, layer_radius(config, radius, k, v.dims())))
                .collect(),
        };
        Ok(Self { net, params, sgd, conv_weights, seed: config.seed, backprop: Backprop::default() })
    }

    /// One update on a batch: forward with dropout (its mask drawn from the run's seed and
    /// `step`, so a resumed run repeats an uninterrupted one), cross-entropy against `labels`,
    /// backward, SGD with momentum at learning rate `lr`, then the conv filters renormalized.
    /// Returns the batch's mean loss; a loss that is not finite is returned without updating
    /// anything, for the caller to stop on.
    ///
    /// # Shapes
    /// - `x`: `[B, 3, S, S]`; `labels`: `[B]` u32
    ///
    /// On the CPU in f32 the step runs without an autograd graph ([`Backprop`], the fused
    /// kernels into buffers kept between steps) and SGD updates each parameter in place
    /// ([`Sgd::step_slices`]); elsewhere through candle's autograd. Both give the same update
    /// to float rounding (tested).
    pub fn step(&mut self, x: &Tensor, labels: &Tensor, lr: f64, step: u64) -> Result<f32> {
        let dropout = Dropout::Seeded(mix(self.seed, step));
        let value =
            if zf_model::device::fused(x) && self.params.iter().all(|(_, v)| zf_model::device::fused(v.as_tensor())) {
                let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
                let value = self.backprop.run(&self.net, x, &labels, dropout)?;
                if !value.is_finite() {
                    return Ok(value);
                }
                let grads: Vec<&[f32]> = self.backprop.gradients().map(|(_, g)| g).collect();
                self.sgd.step_slices(&self.params, &grads, lr)?;
                value
            } else {
                let value = self.step_autograd(x, labels, lr, dropout)?;
                if !value.is_finite() {
                    return Ok(value);
                }
                value
            };
        for &(i, radius) in &self.conv_weights {
            renormalize_in_place(&self.params[i].1, radius)?;
        }
        Ok(value)
    }

    fn step_autograd(&mut self, x: &Tensor, labels: &Tensor, lr: f64, dropout: Dropout) -> Result<f32> {
        let logits = self.net.forward_dropout(x, dropout, &mut NoTap)?;
        let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
        let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Ok(value);
        }
        let grads = loss.backward()?;
        let g: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned().map_or_else(|| v.as_tensor().zeros_like(), Ok))
            .collect::<candle_core::Result<_>>()?;
        self.sgd.step(&self.params, &g, lr)?;
        Ok(value)
    }

    /// The network (sharing the parameters being trained).
    pub fn net(&self) -> &ZfNet {
        &self.net
    }

    /// The current weights by key, in [`expected_shapes`] order.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// SGD's momentum buffers, in the order of [`Trainer::weights`].
    pub fn momentum(&self) -> &[Tensor] {
        &self.sgd.velocity
    }
}

/// The renormalization radius of a conv weight of `shape`: `radius` is stated for the paper's
/// init (0.1 for weights drawn with std 0.01, Sec. 3) and scales with the init's standard
/// deviation, so that filters start as far below it (10x) whatever the init: He's init at
/// conv1 of ZFNet (std 0.117) gets a radius of 1.17. Under the paper's init it is `radius`.
pub fn renorm_radius(radius: f64, init: zf_model::init::Init, shape: &[usize]) -> f64 {
    radius * init.std(shape) / zf_model::init::PAPER_WEIGHT_STD
}

/// The radius `config` renormalizes the conv weight `key` (of `shape`) to, `radius` being the
/// paper's: [`renorm_radius`] for the init, times conv1's init scale for conv1 (its filters
/// start as far below their radius as every other layer's).
pub fn layer_radius(config: &crate::TrainConfig, radius: f64, key: &str, shape: &[usize]) -> f64 {
    let scale = if key.starts_with(Point::Conv1.name()) { config.conv1_init_scale } else { 1.0 };
    scale * renorm_radius(radius, config.init, shape)
}

/// A 64-bit mix (splitmix64's finalizer) of `(seed, step)`: the dropout seed of one step.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zf_model::init::Init;

    #[test]
    fn the_graph_free_step_trains_like_candles_autograd() {
        // Three steps with dropout, momentum, weight decay and renormalization, once through
        // the graph-free CPU step and once through candle's autograd: the same weights and
        // momentum to float rounding.
        let mut config = TrainConfig::tiny();
        config.model = config.model.with_input_size(64);
        let x = Tensor::randn(0f32, 1.0, (4, 3, 64, 64), &Device::Cpu).unwrap();
        let labels = Tensor::new(&[1u32, 7, 3, 3], &Device::Cpu).unwrap();
        let mut fast = Trainer::new(&config, &Device::Cpu).unwrap();
        let mut slow = Trainer::new(&config, &Device::Cpu).unwrap();
        let lr = config.lr * 10.0;
        for step in 0..3 {
            let a = fast.step(&x, &labels, lr, step).unwrap();
            let dropout = Dropout::Seeded(mix(slow.seed, step));
            let b = slow.step_autograd(&x, &labels, lr, dropout).unwrap();
            for &(i, radius) in &slow.conv_weights {
                renormalize_in_place(&slow.params[i].1, radius).unwrap();
            }
            assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "step {step}: loss {a} vs {b}");
        }
        let pairs = fast.weights().into_iter().zip(slow.weights()).chain(
            fast.momentum()
                .iter()
                .zip(slow.momentum())
                .map(|(a, b)| (("momentum".to_string(), a.clone()), ("momentum".to_string(), b.clone()))),
        );
        let mut moved = 0;
        for ((key, a), (_, b)) in pairs {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * scale, "{key}: worst difference {worst:e} against largest {scale:e}");
            moved += usize::from(scale > 0.0);
        }
        assert!(moved > 16, "the momentum buffers moved");
    }

    #[test]
    fn the_radius_is_the_papers_under_its_init_and_scales_with_another() {
        assert_eq!(renorm_radius(0.1, Init::Paper, &[96, 3, 7, 7]), 0.1);
        let he = renorm_radius(0.1, Init::He, &[96, 3, 7, 7]);
        assert!((he - 10.0 * (2.0f64 / 147.0).sqrt()).abs() < 1e-12, "{he}");
        // Under the CPU preset, every conv filter starts about 10x below its radius, as under
        // the paper's init (RMS 0.01 against 0.1), so renormalization is a real experiment;
        // conv1 starts at a tenth of He's std and so does its radius.
        let config = TrainConfig::tiny();
        assert_eq!(config.conv1_init_scale, crate::config::CPU_CONV1_INIT_SCALE);
        let trainer = Trainer::new(&config, &Device::Cpu).unwrap();
        assert_eq!(trainer.conv_weights.len(), 5);
        for &(i, radius) in &trainer.conv_weights {
            let w = trainer.params[i].1.as_tensor();
            let rms = w.flatten_from(1).unwrap().sqr().unwrap().mean(1).unwrap().sqrt().unwrap();
            let max = rms.max(0).unwrap().to_scalar::<f32>().unwrap() as f64;
            assert!(
                max < 0.2 * radius,
                "{}: filter RMS up to {max:.4} against radius {radius:.4}",
                trainer.params[i].0
            );
            assert!(max > 0.05 * radius, "{}: {max:.4} against {radius:.4}", trainer.params[i].0);
        }
        let (i, radius) = trainer.conv_weights[0];
        assert_eq!(trainer.params[i].0, "conv1.weight");
        let he = renorm_radius(0.1, Init::He, trainer.params[i].1.as_tensor().dims());
        assert!((radius - 0.1 * he).abs() < 1e-12, "{radius} vs {he}");
    }
}
