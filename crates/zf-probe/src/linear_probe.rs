//! Layer probes (Table 7): with the network frozen, how well does a linear softmax classifier
//! on one layer's features separate the classes?
//!
//! Features ([`pooled_features`]; several layers from one pass: [`pooled_features_of`]): conv
//! layers (after ReLU) are average-pooled over a `grid x grid` partition of each map (ours: the
//! paper pools "spatially" without saying how), fc6 and fc7 are taken as they are. The
//! classifier ([`fit_softmax`]): features standardized with the training split's mean and
//! standard deviation, multinomial logistic regression with an L2 penalty, fitted by full-batch
//! Nesterov gradient descent with step `1 / L`, `L` the gradient's Lipschitz bound
//! `λ_max(XᵀX / N) / 2 + l2` (the largest eigenvalue by power iteration), so it needs no
//! tuning and gives the same numbers on every run.

use candle_core::{DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use zf_model::{LayerKind, Net};

use crate::bail;

/// The classifier's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Side of the pooling grid for conv layers.
    pub grid: usize,
    /// L2 penalty on the weights.
    pub l2: f32,
    /// Gradient steps.
    pub steps: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { grid: 2, l2: 1e-3, steps: 300 }
    }
}

/// The probe of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub layer: String,
    pub features: usize,
    pub train_accuracy: f32,
    pub test_accuracy: f32,
    /// Per test image, whether the probe classified it correctly (for intervals by resampling
    /// the test images).
    #[serde(default)]
    pub test_correct: Vec<bool>,
}

/// Table 7 in one call: for each of `layers` (indices into the network's spec: the paper's
/// 1..7 are ZFNet's conv1..conv5, fc6, fc7), its features of the train and test images
/// (`[N, 3, S, S]` with labels below `classes`) pooled on `config.grid`, a softmax fitted on
/// the train split and measured on both. `progress` is called per layer.
pub fn probe_layers(
    net: &impl AsRef<Net>,
    (train_x, train_y): (&Tensor, &[u32]),
    (test_x, test_y): (&Tensor, &[u32]),
    classes: usize,
    layers: &[usize],
    config: ProbeConfig,
    progress: crate::Progress<'_>,
) -> Result<Vec<ProbeResult>> {
    let net = net.as_ref();
    let mut out = Vec::with_capacity(layers.len());
    let train_f = pooled_features_of(net, train_x, layers, config.grid)?;
    let test_f = pooled_features_of(net, test_x, layers, config.grid)?;
    for (k, ((&layer, fa), fb)) in layers.iter().zip(&train_f).zip(&test_f).enumerate() {
        let (train, test, test_correct) = fit_softmax_with(fa, train_y, fb, test_y, classes, config)?;
        out.push(ProbeResult {
            layer: net.spec().layers[layer].label().into(),
            features: fa.dim(1)?,
            train_accuracy: train,
            test_accuracy: test,
            test_correct,
        });
        progress(k + 1, layers.len());
    }
    Ok(out)
}

/// One layer's features `[N, F]` (f32, host) for images `[N, 3, S, S]`, batch by batch: a
/// conv layer's maps average-pooled on a `grid x grid` partition, a hidden linear layer's
/// units as they are (both after their ReLU).
pub fn pooled_features(net: &impl AsRef<Net>, images: &Tensor, layer: usize, grid: usize) -> Result<Tensor> {
    let mut f = pooled_features_of(net, images, &[layer], grid)?;
    Ok(f.remove(0))
}

/// [`pooled_features`] of several layers (indices into the spec, any order) from one forward
/// pass per batch: `out[k]` is the features of `layers[k]`.
pub fn pooled_features_of(
    net: &impl AsRef<Net>,
    images: &Tensor,
    layers: &[usize],
    grid: usize,
) -> Result<Vec<Tensor>> {
    let net = net.as_ref();
    for &layer in layers {
        match net.spec().layers.get(layer).map(|l| &l.kind) {
            Some(LayerKind::Conv { .. } | LayerKind::Linear { relu: true, .. }) => {}
            Some(_) => bail!(
                "layer probes use conv and hidden linear layers (the paper's layers 1..7 in ZFNet), got {}",
                net.spec().layers[layer].label()
            ),
            None => bail!("layer {layer} does not exist in {}", net.spec().arch),
        }
    }
    if grid == 0 {
        bail!("the pooling grid must be at least 1")
    }
    let Some(&last) = layers.iter().max() else { return Ok(Vec::new()) };
    /// Keeps the wanted layers' outputs, pooled, as the pass goes by.
    struct Pooled<'a> {
        layers: &'a [usize],
        grid: usize,
        got: Vec<Option<Tensor>>,
    }
    impl zf_model::LayerTap for Pooled<'_> {
        fn activation(&mut self, layer: usize, value: &Tensor) -> Result<()> {
            for (k, _) in self.layers.iter().enumerate().filter(|(_, &l)| l == layer) {
                let t = value.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                self.got[k] = Some(if t.rank() == 4 { grid_pool(&t, self.grid)? } else { t });
            }
            Ok(())
        }

        fn wants_switches(&self) -> bool {
            false
        }
    }
    let n = images.dim(0)?;
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); layers.len()];
    for start in (0..n).step_by(32) {
        let xs = images.narrow(0, start, 32.min(n - start))?;
        let mut tap = Pooled { layers, grid, got: vec![None; layers.len()] };
        net.forward_until(&xs, last, &mut tap)?;
        for (p, t) in parts.iter_mut().zip(tap.got) {
            p.push(t.ok_or_else(|| candle_core::Error::Msg("a layer's output was not observed".into()))?);
        }
    }
    parts.iter().map(|p| Tensor::cat(p, 0)).collect()
}

/// Average pooling of `[N, C, H, W]` over a `g x g` partition (bins `[floor(i H / g),
/// ceil((i + 1) H / g))`, as adaptive pooling), flattened to `[N, C g g]`.
fn grid_pool(t: &Tensor, g: usize) -> Result<Tensor> {
    let (_, _, h, w) = t.dims4()?;
    let mut cells = Vec::with_capacity(g * g);
    for i in 0..g {
        let (y0, y1) = (i * h / g, ((i + 1) * h).div_ceil(g));
        for j in 0..g {
            let (x0, x1) = (j * w / g, ((j + 1) * w).div_ceil(g));
            cells.push(t.narrow(2, y0, (y1 - y0).max(1))?.narrow(3, x0, (x1 - x0).max(1))?.mean((2, 3))?);
        }
    }
    // [N, C, g g] -> [N, C g g] (channel-major).
    Tensor::stack(&cells, 2)?.flatten_from(1)
}

/// Fits the softmax classifier on `(train_x [N, F], train_y)` and measures accuracy on both
/// splits (see the module docs).
pub fn fit_softmax(
    train_x: &Tensor,
    train_y: &[u32],
    test_x: &Tensor,
    test_y: &[u32],
    classes: usize,
    config: ProbeConfig,
) -> Result<(f32, f32)> {
    let (train, test, _) = fit_softmax_with(train_x, train_y, test_x, test_y, classes, config)?;
    Ok((train, test))
}

/// [`fit_softmax`], with each test image's correctness.
fn fit_softmax_with(
    train_x: &Tensor,
    train_y: &[u32],
    test_x: &Tensor,
    test_y: &[u32],
    classes: usize,
    config: ProbeConfig,
) -> Result<(f32, f32, Vec<bool>)> {
    let (n, f) = train_x.dims2()?;
    if n != train_y.len() || test_x.dim(0)? != test_y.len() || test_x.dim(1)? != f {
        bail!(
            "features and labels disagree: train {:?} with {} labels, test {:?} with {} labels",
            train_x.dims(),
            train_y.len(),
            test_x.dims(),
            test_y.len()
        )
    }
    if let Some(&bad) = train_y.iter().chain(test_y).find(|&&y| y as usize >= classes) {
        bail!("label {bad} is not below the number of classes {classes}")
    }
    let dev = Device::Cpu;
    let mean = train_x.mean_keepdim(0)?;
    let std = train_x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?.sqrt()?.affine(1.0, 1e-6)?;
    let standardize = |x: &Tensor| x.broadcast_sub(&mean)?.broadcast_div(&std);
    let x = standardize(train_x)?;
    let xt = standardize(test_x)?;
    let onehot = {
        let mut v = vec![0f32; n * classes];
        for (i, &y) in train_y.iter().enumerate() {
            v[i * classes + y as usize] = 1.0;
        }
        Tensor::from_vec(v, (n, classes), &dev)?
    };
    // Lipschitz constant of the mean cross-entropy's gradient: λ_max(XᵀX / N) / 2 + l2.
    let gram = x.t()?.matmul(&x)?.affine(1.0 / n as f64, 0.0)?;
    let mut v = Tensor::ones((f, 1), DType::F32, &dev)?;
    let mut lambda = 1f32;
    for _ in 0..30 {
        let gv = gram.matmul(&v)?;
        lambda = gv.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
        if lambda == 0.0 {
            break;
        }
        v = gv.affine(1.0 / lambda as f64, 0.0)?;
    }
    let step = 1.0 / (lambda / 2.0 + config.l2).max(1e-6);
    let mut w = Tensor::zeros((f, classes), DType::F32, &dev)?;
    let mut b = Tensor::zeros((1, classes), DType::F32, &dev)?;
    let (mut w_prev, mut b_prev) = (w.clone(), b.clone());
    for t in 0..config.steps {
        // Nesterov: look ahead along the last step.
        let mom = t as f64 / (t as f64 + 3.0);
        let wy = (&w + (&w - &w_prev)?.affine(mom, 0.0)?)?;
        let by = (&b + (&b - &b_prev)?.affine(mom, 0.0)?)?;
        let p = candle_nn::ops::softmax_last_dim(&x.matmul(&wy)?.broadcast_add(&by)?)?;
        let g = (p - &onehot)?.affine(1.0 / n as f64, 0.0)?;
        let gw = (x.t()?.matmul(&g)? + wy.affine(config.l2 as f64, 0.0)?)?;
        let gb = g.sum_keepdim(0)?;
        w_prev = w;
        b_prev = b;
        w = (&wy - gw.affine(step as f64, 0.0)?)?;
        b = (&by - gb.affine(step as f64, 0.0)?)?;
    }
    let correct = |x: &Tensor, y: &[u32]| -> Result<Vec<bool>> {
        let pred = x.matmul(&w)?.broadcast_add(&b)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(pred.iter().zip(y).map(|(a, b)| a == b).collect())
    };
    let rate = |c: &[bool]| c.iter().filter(|&&v| v).count() as f32 / c.len().max(1) as f32;
    let (train, test) = (correct(&x, train_y)?, correct(&xt, test_y)?);
    Ok((rate(&train), rate(&test), test))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grid_pool_averages_each_cell() {
        // One 4x4 map holding 0..16: the 2x2 cells average to 2.5, 4.5, 10.5, 12.5.
        let t = Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap().reshape((1, 1, 4, 4)).unwrap();
        let p = grid_pool(&t, 2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(p, vec![vec![2.5, 4.5, 10.5, 12.5]]);
    }

    #[test]
    fn separable_classes_are_learned_and_noise_is_not() {
        // Three classes at the corners of a triangle with small noise: linearly separable, so
        // both accuracies reach 1. Labels independent of the features: test accuracy near 1/3.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let centres = [[4.0f32, 0.0], [-2.0, 3.0], [-2.0, -3.0]];
        let mut make = |n: usize, informative: bool| {
            let (mut x, mut y) = (vec![], vec![]);
            for i in 0..n {
                let c = i % 3;
                let noise = |r: &mut rand_chacha::ChaCha8Rng| r.random_range(-1.0f32..1.0);
                if informative {
                    x.extend([centres[c][0] + noise(&mut rng), centres[c][1] + noise(&mut rng)]);
                } else {
                    x.extend([noise(&mut rng), noise(&mut rng)]);
                }
                y.push(c as u32);
            }
            (Tensor::from_vec(x, (n, 2), &Device::Cpu).unwrap(), y)
        };
        let (xa, ya) = make(90, true);
        let (xb, yb) = make(60, true);
        let (train, test) = fit_softmax(&xa, &ya, &xb, &yb, 3, ProbeConfig::default()).unwrap();
        assert_eq!((train, test), (1.0, 1.0));
        let (xa, ya) = make(300, false);
        let (xb, yb) = make(300, false);
        let (_, test) = fit_softmax(&xa, &ya, &xb, &yb, 3, ProbeConfig::default()).unwrap();
        assert!(test < 0.45, "{test}");
        assert!(fit_softmax(&xa, &ya, &xb, &yb[..10], 3, ProbeConfig::default()).is_err());
    }
}
