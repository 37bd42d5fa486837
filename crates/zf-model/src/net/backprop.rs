//! The training pass of ZFNet's fixed graph on the CPU, without an autograd graph.
//!
//! candle's backward pass allocates a zeroed tensor for every gradient and adds each op's
//! gradient into it; for the paper's network that is, per step, a zero-fill and an add over
//! fc6's 151 MB weight gradient alone, and every activation and gradient is a fresh buffer
//! whose pages the kernel faults in and clears again. [`Backprop`] runs the same forward and
//! backward through the same fused kernels (`crate::kernels`: conv + ReLU, LRN, max pooling
//! through its switches, linear + ReLU), with the seeded dropout masks of
//! [`Dropout::Seeded`] and softmax cross-entropy in closed form, into buffers it keeps from
//! one step to the next: no graph, no zero-fill, no accumulation, and no allocation after the
//! first step of a batch size.
//!
//! The gradients equal candle's autograd through [`ZfNet::forward_dropout`] to float rounding
//! (the kernels are the same; only the loss gradient is computed in closed form), tested in
//! this module for both layer orders, with and without LRN, and with dropout.
//!
//! CPU and f32 only (the fused kernels'); other devices train through candle's autograd.

use candle_core::{Result, Tensor};
use rand::SeedableRng;

use super::{fill_dropout_mask, input_multiplier, Dropout, ZfNet};
use crate::config::{ConvGeometry, LrnConfig, PoolGeometry};
use crate::kernels::{with_f32, Conv, Linear, Lrn};
use crate::spec::LayerKind;
use crate::Point;

/// One op of the fixed graph.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Convolution with bias and ReLU: the weighted layer's index in [`Point::WEIGHTED`].
    Conv(usize, ConvGeometry),
    Lrn(LrnConfig),
    Pool(PoolGeometry),
    /// Linear layer (weighted index), with its ReLU when `true`.
    Fc(usize, bool),
    /// Multiplication by the dropout mask (of probability `p`).
    Dropout(f64),
}

/// The graph for `net` with or without dropout, each op with its input's shape per image
/// (`[C, H, W]`; a feature vector is `[F, 1, 1]`): the spec's layers ([`ZfConfig::spec`],
/// the order the forward pass walks), flatten dropped.
///
/// [`ZfConfig::spec`]: crate::ZfConfig::spec
fn plan(net: &ZfNet, dropout: bool) -> Result<Vec<(Op, [usize; 3])>> {
    let spec = net.as_net().spec();
    let mut ops = Vec::new();
    let mut weighted = 0;
    for l in &spec.layers {
        ops.push(match &l.kind {
            LayerKind::Conv { geometry, relu: true, .. } => {
                weighted += 1;
                Op::Conv(weighted - 1, *geometry)
            }
            LayerKind::Linear { relu, .. } => {
                weighted += 1;
                Op::Fc(weighted - 1, *relu)
            }
            LayerKind::Lrn(cfg) => Op::Lrn(*cfg),
            LayerKind::MaxPool(g) => Op::Pool(*g),
            LayerKind::Dropout { p } if dropout && *p > 0.0 => Op::Dropout(*p),
            LayerKind::Dropout { .. } | LayerKind::Flatten => continue,
            other => bail!("backprop: {} ({other:?}) is not supported", l.name),
        });
    }
    // Input shapes, and a check that every layer fits.
    let mut shape = [3, spec.input_size, spec.input_size];
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push((op, shape));
        let [c, h, w] = shape;
        shape = match op {
            Op::Conv(i, g) => {
                let channels = net.conv(Point::WEIGHTED[i]).map(|l| l.weight().dim(0)).transpose()?.unwrap_or(0);
                match (g.output_size(h), g.output_size(w)) {
                    (Some(ho), Some(wo)) => [channels, ho, wo],
                    _ => bail!("backprop: {} does not fit a {h}x{w} input", Point::WEIGHTED[i]),
                }
            }
            Op::Pool(g) => match (g.output_size(h), g.output_size(w)) {
                (Some(ho), Some(wo)) => [c, ho, wo],
                _ => bail!("backprop: a pool does not fit a {h}x{w} input"),
            },
            Op::Lrn(_) | Op::Dropout(_) => shape,
            Op::Fc(i, _) => {
                let l = net.linear(Point::WEIGHTED[i]).map(|l| l.weight().dims2()).transpose()?;
                match l {
                    Some((o, inputs)) if inputs == c * h * w => [o, 1, 1],
                    _ => bail!("backprop: {} does not take {c}x{h}x{w} inputs", Point::WEIGHTED[i]),
                }
            }
        };
    }
    Ok(out)
}

/// `buf[..len]`, growing `buf` when it is shorter (a buffer is zero-filled only when it grows).
fn slot<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// The buffers of the graph-free training pass, kept between steps: activations, pool
/// switches, dropout masks, two gradient buffers used in turn, and every parameter's gradient.
///
/// ```
/// use zf_model::{Backprop, Device, Dropout, Tensor, ZfConfig, ZfNet};
///
/// let config = ZfConfig::small().with_input_size(64);
/// let weights = zf_model::init::init_tensors(&config, zf_model::init::Init::He, 0, &Device::Cpu)?;
/// let net = ZfNet::from_tensors(&config, weights, &Device::Cpu)?;
/// let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu)?;
/// let mut pass = Backprop::default();
/// let loss = pass.run(&net, &x, &[1, 7], Dropout::Seeded(3))?;
/// assert!(loss.is_finite());
/// let (key, grad) = pass.gradients().next().unwrap();
/// assert_eq!((key, grad.len()), ("conv1.weight", net.conv1.weight().elem_count()));
/// # Ok::<(), zf_model::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Backprop {
    /// `acts[k]`: the input of op `k`; the last one the logits.
    acts: Vec<Vec<f32>>,
    switches: Vec<Vec<u32>>,
    masks: Vec<Vec<f32>>,
    grad: [Vec<f32>; 2],
    /// Parameter gradients under their keys, in [`ZfNet::named_tensors`] order.
    grads: Vec<(String, Vec<f32>)>,
}

impl Backprop {
    /// The forward pass with `dropout` ([`Dropout::Seeded`] draws the same masks as
    /// [`ZfNet::forward_dropout`]; [`Dropout::Random`] draws them from a fresh seed), the mean
    /// softmax cross-entropy against `labels`, and the backward pass: returns the loss and
    /// leaves every parameter's gradient in [`Backprop::gradients`]. The input's own gradient
    /// is not computed. With a loss that is not finite the gradients are still computed (the
    /// caller decides what to do with them).
    ///
    /// # Shapes
    /// - `x`: `[B, 3, S, S]`, f32 on the CPU; `labels`: `B` class indices
    pub fn run(&mut self, net: &ZfNet, x: &Tensor, labels: &[u32], dropout: Dropout) -> Result<f32> {
        if !crate::device::fused(x) {
            bail!("Backprop runs on the CPU in f32 (got {:?} on {:?})", x.dtype(), x.device())
        }
        let (n, c, h, w) = x.dims4()?;
        let s = net.config().input_size;
        if (c, h, w) != (3, s, s) || labels.len() != n {
            bail!("backprop: input {:?} with {} labels, expected [B, 3, {s}, {s}] and B labels", x.dims(), labels.len())
        }
        let classes = net.config().classes;
        if let Some(&l) = labels.iter().find(|&&l| l as usize >= classes) {
            bail!("backprop: label {l} is not one of the {classes} classes")
        }
        let seed = match dropout {
            Dropout::Off => None,
            Dropout::Seeded(seed) => Some(seed),
            Dropout::Random => Some(rand::random::<u64>()),
        };
        let ops = plan(net, seed.is_some())?;
        let params = net.named_tensors();
        if params.len() != 2 * Point::WEIGHTED.len() {
            bail!("backprop: every layer needs a weight and a bias")
        }
        self.grads.resize_with(params.len(), Default::default);
        for ((key, t), (k, g)) in params.iter().zip(self.grads.iter_mut()) {
            k.clone_from(key);
            slot(g, t.elem_count());
        }
        let len = |shape: [usize; 3]| n * shape.iter().product::<usize>();
        let out_len = n * classes;
        self.acts.resize_with(ops.len() + 1, Vec::new);
        self.switches.resize_with(ops.len(), Vec::new);
        self.masks.resize_with(ops.len(), Vec::new);
        let most = ops.iter().map(|&(_, shape)| len(shape)).max().unwrap_or(0).max(out_len);
        for g in &mut self.grad {
            slot(g, most);
        }
        let tensors: Vec<&Tensor> = std::iter::once(x).chain(params.iter().map(|(_, t)| t)).collect();
        let k = input_multiplier(net.config());
        with_f32(&tensors, |t| {
            let (x, weights) = (t[0], &t[1..]);
            let weight = |i: usize| (weights[2 * i], weights[2 * i + 1]);
            // The input, scaled as the forward pass scales it.
            let plane = s * s;
            let input = slot(&mut self.acts[0], x.len());
            match k {
                None => input.copy_from_slice(x),
                Some(k) => {
                    for (i, (d, v)) in input.chunks_exact_mut(plane).zip(x.chunks_exact(plane)).enumerate() {
                        let f = k[i % 3];
                        d.iter_mut().zip(v).for_each(|(d, &v)| *d = v * f);
                    }
                }
            }
            // Forward.
            let mut rng = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
            for (j, &(op, shape)) in ops.iter().enumerate() {
                let next = ops.get(j + 1).map_or(out_len, |&(_, s)| len(s));
                let (done, rest) = self.acts.split_at_mut(j + 1);
                let (input, out) = (&done[j][..len(shape)], slot(&mut rest[0], next));
                let [c, h, w] = shape;
                match op {
                    Op::Conv(i, g) => {
                        let (wt, b) = weight(i);
                        Conv { g, relu: true }.forward_into(input, wt, b, (n, c, h, w), out)?
                    }
                    Op::Lrn(cfg) => Lrn(cfg).forward_into(input, c, h * w, out)?,
                    Op::Pool(g) => g.forward_into(input, (h, w), slot(&mut self.switches[j], next), out)?,
                    Op::Fc(i, relu) => {
                        let (wt, b) = weight(i);
                        Linear { relu }.forward_into(input, wt, b, n, out)?
                    }
                    Op::Dropout(p) => {
                        let mask = slot(&mut self.masks[j], next);
                        if let Some(rng) = rng.as_mut() {
                            fill_dropout_mask(rng, p, mask);
                        }
                        for ((o, &v), &m) in out.iter_mut().zip(input).zip(mask.iter()) {
                            *o = v * m;
                        }
                    }
                }
            }
            // Softmax cross-entropy, as candle's `log_softmax` and mean negative log-likelihood
            // compute it, and its gradient `(softmax - onehot) / B`.
            let logits = &self.acts[ops.len()][..out_len];
            let [g_out, g_in] = &mut self.grad;
            let (mut g_out, mut g_in) = (&mut g_out[..], &mut g_in[..]);
            let mut loss = 0f32;
            for ((row, grow), &label) in logits.chunks_exact(classes).zip(g_out.chunks_exact_mut(classes)).zip(labels) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (g, &v) in grow.iter_mut().zip(row) {
                    *g = (v - max).exp();
                    sum += *g;
                }
                loss -= (row[label as usize] - max) - sum.ln();
                for g in grow.iter_mut() {
                    *g = *g / sum / n as f32;
                }
                grow[label as usize] -= 1.0 / n as f32;
            }
            let loss = loss / n as f32;
            // Backward, from the logits down; the input's gradient is not needed. A pool right
            // after a conv passes only the gradients of positive pooled values, which is the
            // conv's ReLU mask: that conv then takes its gradient as it is.
            let folded = |j: usize| {
                matches!((ops.get(j), j.checked_sub(1).map(|k| ops[k].0)), (Some((Op::Pool(_), _)), Some(Op::Conv(..))))
            };
            for (j, &(op, shape)) in ops.iter().enumerate().rev() {
                let [c, h, w] = shape;
                let (input, output) = (&self.acts[j][..len(shape)], &self.acts[j + 1][..]);
                let out_n = ops.get(j + 1).map_or(out_len, |&(_, s)| len(s));
                let (grad, output) = (&g_out[..out_n], &output[..out_n]);
                let dx = (j > 0).then(|| &mut g_in[..len(shape)]);
                let param = |i: usize| 2 * i;
                match op {
                    Op::Conv(i, g) => {
                        let (dw, db) = self.grads.split_at_mut(param(i) + 1);
                        let (dw, db) = (&mut dw[param(i)].1[..], &mut db[0].1[..]);
                        Conv { g, relu: !folded(j + 1) }.backward_into(
                            input,
                            weight(i).0,
                            output,
                            grad,
                            (n, c, h, w),
                            dx,
                            dw,
                            db,
                        )?
                    }
                    Op::Fc(i, relu) => {
                        let (dw, db) = self.grads.split_at_mut(param(i) + 1);
                        let (dw, db) = (&mut dw[param(i)].1[..], &mut db[0].1[..]);
                        Linear { relu }.backward_into(input, weight(i).0, output, grad, dx, dw, db)?
                    }
                    Op::Lrn(cfg) => {
                        if let Some(dx) = dx {
                            Lrn(cfg).backward_into(input, grad, c, h * w, dx)?
                        }
                    }
                    Op::Pool(g) => {
                        if let Some(dx) = dx {
                            let pooled = folded(j).then_some(output);
                            g.backward_into(&self.switches[j][..out_n], grad, pooled, (h, w), dx)?
                        }
                    }
                    Op::Dropout(_) => {
                        if let Some(dx) = dx {
                            for ((d, &g), &m) in dx.iter_mut().zip(grad).zip(&self.masks[j][..out_n]) {
                                *d = g * m;
                            }
                        }
                    }
                }
                std::mem::swap(&mut g_out, &mut g_in);
            }
            Ok(loss)
        })
    }

    /// Every parameter's gradient from the last [`Backprop::run`], under its key
    /// (`conv1.weight`, `conv1.bias`, ..., `fc8.bias`, in [`ZfNet::named_tensors`] order),
    /// laid out as the parameter is.
    pub fn gradients(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.grads.iter().map(|(k, g)| (k.as_str(), g.as_slice()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Order, ZfConfig};
    use crate::init::{init_tensors, Init};
    use crate::NoTap;
    use candle_core::{Device, Var};

    /// candle's autograd gradients of the mean cross-entropy through `forward_dropout`.
    fn autograd(
        net_config: &ZfConfig,
        seed: u64,
        x: &Tensor,
        labels: &[u32],
        dropout: Dropout,
    ) -> (f32, Vec<(String, Vec<f32>)>) {
        let weights = init_tensors(net_config, Init::He, seed, &Device::Cpu).unwrap();
        let vars: Vec<(String, Var)> = weights.iter().map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap())).collect();
        let net = ZfNet::from_tensors(
            net_config,
            vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(),
            &Device::Cpu,
        )
        .unwrap();
        let logits = net.forward_dropout(x, dropout, &mut NoTap).unwrap();
        let labels_t = Tensor::new(labels, &Device::Cpu).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels_t).unwrap();
        let grads = loss.backward().unwrap();
        let out = net
            .named_tensors()
            .into_iter()
            .map(|(k, t)| (k, grads.get(&t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        (loss.to_scalar::<f32>().unwrap(), out)
    }

    fn check(config: &ZfConfig, dropout: Dropout) {
        let size = config.input_size;
        let x = Tensor::randn(0f32, 1.0, (3, 3, size, size), &Device::Cpu).unwrap();
        let labels = [1u32, 0, 5];
        let (want_loss, want) = autograd(config, 11, &x, &labels, dropout);
        let weights = init_tensors(config, Init::He, 11, &Device::Cpu).unwrap();
        let net = ZfNet::from_tensors(config, weights, &Device::Cpu).unwrap();
        let mut pass = Backprop::default();
        // Twice: the second run reuses every buffer and must give the same numbers.
        for _ in 0..2 {
            let loss = pass.run(&net, &x, &labels, dropout).unwrap();
            assert!((loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0), "loss {loss} vs {want_loss}");
            let got: Vec<(&str, &[f32])> = pass.gradients().collect();
            assert_eq!(got.len(), want.len());
            for ((key, g), (wkey, w)) in got.iter().zip(&want) {
                assert_eq!(key, wkey);
                assert_eq!(g.len(), w.len(), "{key}");
                // Relative to the largest gradient of the tensor: the kernels are the same, the
                // loss gradient differs by rounding only.
                let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                let worst = g.iter().zip(w.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-4 * scale, "{key}: worst difference {worst:e} against largest {scale:e}");
                assert!(scale > 1e-9 || key.ends_with("bias"), "{key}: an all-zero gradient tests nothing");
            }
        }
    }

    #[test]
    fn gradients_equal_candles_autograd_in_the_papers_order_with_dropout() {
        check(&ZfConfig::small().with_input_size(64), Dropout::Seeded(5));
    }

    #[test]
    fn kept_buffers_give_what_fresh_ones_give_across_batch_sizes() {
        // The last batch of an epoch is smaller: a pass that ran 3 images, then 2, then 3 again
        // gives what fresh passes give.
        let config = ZfConfig::small().with_input_size(64);
        let net = ZfNet::from_tensors(&config, init_tensors(&config, Init::He, 2, &Device::Cpu).unwrap(), &Device::Cpu)
            .unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 3, 64, 64), &Device::Cpu).unwrap();
        let labels = [4u32, 1, 8];
        let run = |pass: &mut Backprop, n: usize| {
            let loss = pass.run(&net, &x.narrow(0, 0, n).unwrap(), &labels[..n], Dropout::Seeded(1)).unwrap();
            (loss, pass.gradients().map(|(_, g)| g.to_vec()).collect::<Vec<_>>())
        };
        let mut kept = Backprop::default();
        let three = run(&mut kept, 3);
        let two = run(&mut kept, 2);
        assert_eq!(two, run(&mut Backprop::default(), 2));
        assert_ne!(two.0, three.0);
        assert_eq!(run(&mut kept, 3), three);
    }

    #[test]
    fn gradients_equal_candles_autograd_without_dropout_and_lrn_before_pooling() {
        let mut config = ZfConfig::small().with_input_size(67);
        config.order = Order::Imgclsmob;
        check(&config, Dropout::Off);
    }

    #[test]
    fn gradients_equal_candles_autograd_without_lrn_with_a_scaled_input() {
        let mut config = ZfConfig::small().with_input_size(64);
        config.lrn = None;
        config.input_scale = 0.5;
        config.input_channel_scale = Some([1.0, 2.0, 0.25]);
        config.first_layer = crate::config::FirstLayer::AlexNet;
        check(&config, Dropout::Seeded(9));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let config = ZfConfig::small().with_input_size(64);
        let net = ZfNet::from_tensors(&config, init_tensors(&config, Init::He, 0, &Device::Cpu).unwrap(), &Device::Cpu)
            .unwrap();
        let mut pass = Backprop::default();
        let x = Tensor::zeros((1, 3, 64, 64), candle_core::DType::F64, &Device::Cpu).unwrap();
        assert!(pass.run(&net, &x, &[0], Dropout::Off).unwrap_err().to_string().contains("f32"));
        let x = Tensor::zeros((1, 3, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(pass.run(&net, &x, &[0, 1], Dropout::Off).unwrap_err().to_string().contains("labels"));
        assert!(pass.run(&net, &x, &[10_000], Dropout::Off).unwrap_err().to_string().contains("label 10000"));
    }
}
