//! Any conv stack as one network type: a [`NetSpec`] (the layers in order) with its weights,
//! and the one forward pass that walks it. ZFNet ([`crate::ZfNet`], a typed view of the paper's
//! network) runs through this walker too, as do torchvision's AlexNet and VGG.
//!
//! On the CPU in f32 each layer is the fused kernel ZFNet uses (conv + bias + ReLU by im2col,
//! Winograd for 3x3 stride-1 convs or direct tiles for convs over few channels; max pooling
//! with switches; LRN; linear + ReLU); elsewhere candle's ops.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};
use rand::SeedableRng;

use crate::config::{ConvGeometry, LrnConfig};
use crate::net::{fill_dropout_mask, Dropout};
use crate::pool::Switches;
use crate::spec::{LayerKind, NetSpec};

/// PyTorch's default batch-norm epsilon (torchvision's VGG uses it).
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// Receives what a [`Net`] forward pass observes, by layer index into [`NetSpec::layers`].
pub trait LayerTap {
    /// Layer `layer`'s output: `[N, C, H, W]` for spatial layers, `[N, F]` after flatten (conv
    /// and linear layers after their ReLU, when they have one).
    fn activation(&mut self, layer: usize, value: &Tensor) -> Result<()>;

    /// Max-pool layer `layer`'s switches.
    fn switches(&mut self, _layer: usize, _switches: &Switches) -> Result<()> {
        Ok(())
    }

    /// Whether [`LayerTap::switches`] should be called (with `false`, a CPU pass without a
    /// gradient pools by values alone).
    fn wants_switches(&self) -> bool {
        true
    }
}

/// Everything one [`Net`] forward pass observed, by layer index.
#[derive(Clone, Debug, Default)]
pub struct NetTrace {
    pub activations: Vec<Option<Tensor>>,
    pub switches: Vec<Option<Switches>>,
}

impl LayerTap for NetTrace {
    fn activation(&mut self, layer: usize, value: &Tensor) -> Result<()> {
        if self.activations.len() <= layer {
            self.activations.resize(layer + 1, None);
        }
        self.activations[layer] = Some(value.clone());
        Ok(())
    }

    fn switches(&mut self, layer: usize, switches: &Switches) -> Result<()> {
        if self.switches.len() <= layer {
            self.switches.resize(layer + 1, None);
        }
        self.switches[layer] = Some(switches.clone());
        Ok(())
    }
}

impl NetTrace {
    /// Layer `layer`'s recorded output.
    pub fn activation(&self, layer: usize) -> Option<&Tensor> {
        self.activations.get(layer).and_then(Option::as_ref)
    }

    /// Max-pool layer `layer`'s recorded switches.
    pub fn switches_of(&self, layer: usize) -> Option<&Switches> {
        self.switches.get(layer).and_then(Option::as_ref)
    }
}

/// A tap that keeps the outputs of chosen layers only (and wants no switches, so that a CPU
/// pass pools by values alone): what the probes read.
#[derive(Clone, Debug, Default)]
pub struct Keep {
    layers: Vec<usize>,
    pub trace: NetTrace,
}

impl Keep {
    pub fn new(layers: &[usize]) -> Self {
        Self { layers: layers.to_vec(), trace: NetTrace::default() }
    }

    /// Layer `layer`'s kept output, or an error naming it.
    pub fn get(&self, layer: usize) -> Result<&Tensor> {
        self.trace
            .activation(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("the forward pass did not hand out layer {layer}")))
    }
}

impl LayerTap for Keep {
    fn activation(&mut self, layer: usize, value: &Tensor) -> Result<()> {
        if self.layers.contains(&layer) {
            LayerTap::activation(&mut self.trace, layer, value)?;
        }
        Ok(())
    }

    fn wants_switches(&self) -> bool {
        false
    }
}

/// The weights of one layer.
#[derive(Clone, Debug)]
pub enum Params {
    Conv(Conv2d),
    Linear(Linear),
}

/// A conv stack built from a [`NetSpec`]: the layers' weights by layer, read by their
/// safetensors keys (`<name>.weight`, `<name>.bias`), batch norms folded into their convs.
///
/// ```
/// use zf_model::{spec::{NetSpec, Widths}, Device, Net, Tensor};
/// let spec = NetSpec::torchvision_with("vgg11_bn", &Widths { convs: vec![4, 8, 8, 8, 8, 8, 8, 8], fc: [16, 16], classes: 5 })?
///     .with_input_size(32);
/// let net = Net::init(&spec, 0, &Device::Cpu)?;
/// let x = Tensor::randn(0f32, 50.0, (2, 3, 32, 32), &Device::Cpu)?;
/// let trace = net.trace(&x)?;
/// let conv4_2 = spec.find("conv4_2")?;
/// assert_eq!(trace.activation(conv4_2).unwrap().dims(), &[2, 8, 4, 4]); // 32 -> 16 -> 8 -> 4
/// assert_eq!(net.forward(&x)?.dims(), &[2, 5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Net {
    spec: NetSpec,
    params: Vec<Option<Params>>,
    /// Every layer's output shape for one image.
    shapes: Vec<Vec<usize>>,
    /// `input_scale` times `input_channel_scale`, `[1, 3, 1, 1]` on the weights' device;
    /// `None` when both are 1.
    input_multiplier: Option<Tensor>,
}

/// What the forward pass multiplies each input channel by, or `None` when it is 1.
pub(crate) fn input_multiplier(scale: f64, channel_scale: Option<[f64; 3]>) -> Option<[f32; 3]> {
    match channel_scale {
        None if scale == 1.0 => None,
        k => Some(k.unwrap_or([1.0; 3]).map(|v| (v * scale) as f32)),
    }
}

impl Net {
    /// Builds `spec` from `vb` (`vb.pp(name)` is a layer's prefix); a conv with a batch norm
    /// reads `<bn>.weight`, `.bias`, `.running_mean`, `.running_var` and folds them in:
    /// `w' = w g / sqrt(v + eps)`, `b' = (b - m) g / sqrt(v + eps) + beta`
    /// ([`BATCH_NORM_EPS`]). An error when the spec does not fit its input size or a tensor is
    /// missing or mis-shaped.
    pub fn new(spec: &NetSpec, vb: VarBuilder<'_>) -> Result<Self> {
        let shapes = spec.shapes()?;
        let mut params = Vec::with_capacity(spec.layers.len());
        for l in &spec.layers {
            let lvb = vb.pp(&l.name);
            params.push(match &l.kind {
                LayerKind::Conv { inputs, outputs, geometry: g, batch_norm, .. } => {
                    let weight = lvb.get((*outputs, *inputs, g.kernel, g.kernel), "weight")?;
                    let bias = lvb.get(*outputs, "bias")?;
                    let (weight, bias) = match batch_norm {
                        None => (weight, bias),
                        Some(bn) => fold_batch_norm(&weight, &bias, vb.pp(bn), *outputs)?,
                    };
                    let cfg = Conv2dConfig { padding: g.padding, stride: g.stride, ..Default::default() };
                    Some(Params::Conv(Conv2d::new(weight, Some(bias), cfg)))
                }
                LayerKind::Linear { inputs, outputs, .. } => {
                    let weight = lvb.get((*outputs, *inputs), "weight")?;
                    let bias = lvb.get(*outputs, "bias")?;
                    Some(Params::Linear(Linear::new(weight, Some(bias))))
                }
                _ => None,
            });
        }
        let input_multiplier = match input_multiplier(spec.input_scale, spec.input_channel_scale) {
            None => None,
            Some(k) => Some(Tensor::from_vec(k.to_vec(), (1, 3, 1, 1), vb.device())?),
        };
        Ok(Self { spec: spec.clone(), params, shapes, input_multiplier })
    }

    /// Builds `spec` from tensors by their safetensors keys, as f32 on `device`.
    pub fn from_tensors(spec: &NetSpec, tensors: HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        Self::new(spec, VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// `spec` with seeded random weights (He's normal init, biases zero:
    /// [`crate::init::draw_tensors`]); batch norms count as folded already. For tests, examples
    /// and benchmarks.
    pub fn init(spec: &NetSpec, seed: u64, device: &Device) -> Result<Self> {
        let spec = Self::folded(spec);
        let tensors = crate::init::draw_tensors(spec.expected_tensors(), crate::init::Init::He, seed, device)?;
        Self::from_tensors(&spec, tensors, device)
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.params.iter().flatten().next().map_or(Device::Cpu, |p| match p {
            Params::Conv(c) => c.weight().device().clone(),
            Params::Linear(l) => l.weight().device().clone(),
        })
    }

    /// Layer `layer`'s output shape for one image.
    pub fn shape(&self, layer: usize) -> Option<&[usize]> {
        self.shapes.get(layer).map(Vec::as_slice)
    }

    /// The layer called `name` (canonical or alias), see [`NetSpec::find`].
    pub fn layer(&self, name: &str) -> Result<usize> {
        self.spec.find(name)
    }

    /// Layer `layer`'s conv (weights folded), if it is a conv layer.
    pub fn conv(&self, layer: usize) -> Option<&Conv2d> {
        match self.params.get(layer) {
            Some(Some(Params::Conv(c))) => Some(c),
            _ => None,
        }
    }

    /// Layer `layer`'s linear layer, if it is one.
    pub fn linear(&self, layer: usize) -> Option<&Linear> {
        match self.params.get(layer) {
            Some(Some(Params::Linear(l))) => Some(l),
            _ => None,
        }
    }

    /// Every weight and bias under its safetensors key, in forward order (batch norms folded).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (l, p) in self.spec.layers.iter().zip(&self.params) {
            let (w, b) = match p {
                Some(Params::Conv(c)) => (c.weight(), c.bias()),
                Some(Params::Linear(l)) => (l.weight(), l.bias()),
                None => continue,
            };
            out.push((format!("{}.weight", l.name), w.clone()));
            if let Some(b) = b {
                out.push((format!("{}.bias", l.name), b.clone()));
            }
        }
        out
    }

    /// The spec as it describes the tensors of [`Net::named_tensors`]: batch norms folded.
    pub fn folded_spec(&self) -> NetSpec {
        Self::folded(&self.spec)
    }

    /// `spec` with its batch norms counted as folded into their convs.
    fn folded(spec: &NetSpec) -> NetSpec {
        let mut spec = spec.clone();
        for l in &mut spec.layers {
            if let LayerKind::Conv { batch_norm, .. } = &mut l.kind {
                *batch_norm = None;
            }
        }
        spec
    }

    /// The input as the first layer sees it: `xs` times the spec's input scale.
    pub fn scale_input(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.input_multiplier {
            None => Ok(xs.clone()),
            Some(k) => xs.broadcast_mul(&k.to_dtype(xs.dtype())?),
        }
    }

    /// Checks `xs` against the spec's input: `[N, 3, S, S]`.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let (_, c, h, w) = xs.dims4()?;
        let s = self.spec.input_size;
        if (c, h, w) != (3, s, s) {
            bail!("input has shape {:?}, expected [N, 3, {s}, {s}] for {}", xs.dims(), self.spec.arch)
        }
        Ok(())
    }

    /// The forward pass, handing every layer's output and every max pool's switches to `tap`;
    /// returns the last layer's output (the logits).
    ///
    /// # Shapes
    /// - `xs`: `[N, 3, S, S]`, `S = spec.input_size`, mean already subtracted
    /// - returns: `[N, classes]`
    pub fn forward_with(&self, xs: &Tensor, dropout: Dropout, tap: &mut impl LayerTap) -> Result<Tensor> {
        self.check_input(xs)?;
        let xs = self.scale_input(xs)?;
        self.run_layers(&xs, 0..self.spec.layers.len(), dropout, tap)
    }

    /// Logits in evaluation mode.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(xs, Dropout::Off, &mut NoLayerTap)
    }

    /// A forward pass that records every layer's output and every pool's switches.
    pub fn trace(&self, xs: &Tensor) -> Result<NetTrace> {
        let mut trace = NetTrace::default();
        self.forward_with(xs, Dropout::Off, &mut trace)?;
        Ok(trace)
    }

    /// The forward pass up to and including layer `last`, whose output it returns.
    pub fn forward_until(&self, xs: &Tensor, last: usize, tap: &mut impl LayerTap) -> Result<Tensor> {
        self.check_input(xs)?;
        if last >= self.spec.layers.len() {
            bail!("layer {last} does not exist: {} has {} layers", self.spec.arch, self.spec.layers.len())
        }
        let xs = self.scale_input(xs)?;
        self.run_layers(&xs, 0..last + 1, Dropout::Off, tap)
    }

    /// Layers `range` on `xs` (the output of the layer before `range.start`, or the scaled
    /// input): the one walk over the layer list that every forward pass takes.
    pub fn run_layers(
        &self,
        xs: &Tensor,
        range: Range<usize>,
        dropout: Dropout,
        tap: &mut impl LayerTap,
    ) -> Result<Tensor> {
        let fused = crate::device::fused(xs);
        let mut rng = match dropout {
            Dropout::Seeded(seed) => Some(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
            _ => None,
        };
        let mut x = xs.clone();
        for i in range {
            let Some(layer) = self.spec.layers.get(i) else {
                bail!("layer {i} does not exist: {} has {} layers", self.spec.arch, self.spec.layers.len())
            };
            x = match &layer.kind {
                LayerKind::Conv { geometry, relu, .. } => {
                    let c = self.conv(i).ok_or_else(|| missing(&layer.name))?;
                    conv_layer(c, &x, *geometry, *relu, fused)?
                }
                LayerKind::MaxPool(g) => {
                    // Values alone where nobody reads the switches and no gradient flows; else
                    // the values through the switches (which carry the gradient).
                    if fused && !x.track_op() && !tap.wants_switches() {
                        g.forward_values(&x)?
                    } else {
                        let (v, sw) = g.forward_with_switches(&x)?;
                        tap.switches(i, &sw)?;
                        v
                    }
                }
                LayerKind::Lrn(lrn) => lrn_layer(lrn, &x, fused)?,
                LayerKind::AdaptiveAvgPool { size } => adaptive_avg_pool(&x, *size)?,
                LayerKind::Flatten => x.flatten_from(1)?,
                LayerKind::Dropout { p } => dropout_layer(&x, *p, dropout, rng.as_mut())?,
                LayerKind::Linear { relu, .. } => {
                    let l = self.linear(i).ok_or_else(|| missing(&layer.name))?;
                    linear_layer(l, &x, *relu, fused)?
                }
            };
            tap.activation(i, &x)?;
        }
        Ok(x)
    }

    /// Layer `layer` alone on `xs`; a conv with `pad: false` reads no padding (the caller has
    /// put the zeros of the padding, or the neighbouring values, into `xs`), so that a window
    /// of the input gives exactly the matching window of the output. Max pools give values
    /// only. What the windowed occlusion recomputes, stage by stage.
    pub fn apply_layer(&self, layer: usize, xs: &Tensor, pad: bool) -> Result<Tensor> {
        let fused = crate::device::fused(xs);
        let Some(l) = self.spec.layers.get(layer) else { bail!("layer {layer} does not exist") };
        match &l.kind {
            LayerKind::Conv { geometry: g, relu, .. } => {
                let c = self.conv(layer).ok_or_else(|| missing(&l.name))?;
                let g = if pad { *g } else { ConvGeometry::new(g.kernel, g.stride, 0) };
                conv_layer(c, xs, g, *relu, fused)
            }
            LayerKind::MaxPool(g) => g.forward_values(xs),
            LayerKind::Lrn(lrn) => lrn_layer(lrn, xs, fused),
            _ => self.run_layers(xs, layer..layer + 1, Dropout::Off, &mut NoLayerTap),
        }
    }
}

/// One spatial stage of the forward pass (a layer up to the last conv) and its window along
/// one axis, `(kernel, stride, padding)` (LRN: `(1, 1, 0)`): what computing only the changed
/// windows of an occluded image needs (`zf_probe`'s incremental occlusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    pub layer: usize,
    pub window: (usize, usize, usize),
}

impl Net {
    /// The layers from the first to the last conv as [`Stage`]s, in forward order; each runs
    /// on any window of its input ([`Net::apply_layer`]), and [`Net::logits_from`] runs the
    /// rest. An error when a layer among them works on anything but maps.
    pub fn stages(&self) -> Result<Vec<Stage>> {
        let Some(last) = self.spec.last_conv() else { bail!("{} has no conv layer", self.spec.arch) };
        self.spec.layers[..=last]
            .iter()
            .enumerate()
            .map(|(layer, l)| {
                let window = match &l.kind {
                    LayerKind::Conv { geometry: g, .. } => (g.kernel, g.stride, g.padding),
                    LayerKind::MaxPool(g) => (g.kernel, g.stride, 0),
                    LayerKind::Lrn(_) => (1, 1, 0),
                    other => bail!("{}: {other:?} among the conv stages is not supported", l.name),
                };
                Ok(Stage { layer, window })
            })
            .collect()
    }

    /// The logits from layer `layer`'s output `xs`: the layers after it, in evaluation mode.
    pub fn logits_from(&self, layer: usize, xs: &Tensor) -> Result<Tensor> {
        self.run_layers(xs, layer + 1..self.spec.layers.len(), Dropout::Off, &mut NoLayerTap)
    }
}

impl AsRef<Net> for Net {
    fn as_ref(&self) -> &Net {
        self
    }
}

impl AsRef<Net> for crate::ZfNet {
    /// ZFNet as a layer list: every analysis written for any conv stack takes it.
    fn as_ref(&self) -> &Net {
        self.as_net()
    }
}

fn missing(name: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("layer {name} has no weights"))
}

/// Folds the batch norm under `bn` into a conv's weight `[O, C, k, k]` and bias `[O]`.
fn fold_batch_norm(w: &Tensor, b: &Tensor, bn: VarBuilder<'_>, outputs: usize) -> Result<(Tensor, Tensor)> {
    let gamma = bn.get(outputs, "weight")?;
    let beta = bn.get(outputs, "bias")?;
    let mean = bn.get(outputs, "running_mean")?;
    let var = bn.get(outputs, "running_var")?;
    // In f64, so that folding adds no rounding of its own beyond the final f32.
    let to64 = |t: &Tensor| t.to_dtype(DType::F64);
    let scale = (to64(&gamma)? / (to64(&var)? + BATCH_NORM_EPS)?.sqrt()?)?;
    let w = to64(w)?.broadcast_mul(&scale.reshape((outputs, 1, 1, 1))?)?.to_dtype(w.dtype())?;
    let b = ((to64(b)? - to64(&mean)?)? * &scale)?.add(&to64(&beta)?)?.to_dtype(b.dtype())?;
    Ok((w, b))
}

/// The tap that observes nothing (and wants no switches).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLayerTap;

impl LayerTap for NoLayerTap {
    fn activation(&mut self, _layer: usize, _value: &Tensor) -> Result<()> {
        Ok(())
    }

    fn wants_switches(&self) -> bool {
        false
    }
}

/// A conv layer with its ReLU: one fused op on the CPU in f32 (`fused`), candle's ops elsewhere.
pub(crate) fn conv_layer(c: &Conv2d, x: &Tensor, g: ConvGeometry, relu: bool, fused: bool) -> Result<Tensor> {
    match (fused, c.bias()) {
        (true, Some(b)) => crate::kernels::conv2d(x, c.weight(), b, g, relu),
        _ if relu => crate::conv::conv2d(x, c.weight(), c.bias(), g)?.relu(),
        _ => crate::conv::conv2d(x, c.weight(), c.bias(), g),
    }
}

/// A linear layer, with its ReLU when `relu`: fused on the CPU in f32, candle's ops elsewhere.
pub(crate) fn linear_layer(l: &Linear, x: &Tensor, relu: bool, fused: bool) -> Result<Tensor> {
    match (fused, l.bias()) {
        (true, Some(b)) => crate::kernels::linear(x, l.weight(), b, relu),
        _ if relu => l.forward(x)?.relu(),
        _ => l.forward(x),
    }
}

/// Local response normalization: fused on the CPU in f32, candle's ops elsewhere.
pub(crate) fn lrn_layer(lrn: &LrnConfig, x: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        crate::kernels::lrn(x, lrn)
    } else {
        lrn.forward(x)
    }
}

/// Dropout with probability `p` (see [`Dropout`]); `rng` is the pass's seeded generator.
pub(crate) fn dropout_layer(
    xs: &Tensor,
    p: f64,
    dropout: Dropout,
    rng: Option<&mut rand_chacha::ChaCha8Rng>,
) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    match (dropout, rng) {
        (Dropout::Off, _) => Ok(xs.clone()),
        (Dropout::Seeded(_), Some(rng)) => {
            // Inverted dropout: kept units are scaled by 1 / (1 - p).
            let mut mask = vec![0f32; xs.elem_count()];
            fill_dropout_mask(rng, p, &mut mask);
            let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
            xs * mask
        }
        _ => candle_nn::ops::dropout(xs, p as f32),
    }
}

/// The class probabilities of logits `[N, classes]`: the softmax over the last dimension.
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(logits)
}

/// PyTorch's adaptive average pooling windows along one axis: output `i` of `out` averages
/// inputs `floor(i n / out) .. ceil((i + 1) n / out)`, as an `[out, n]` matrix of weights.
fn adaptive_matrix(n: usize, out: usize) -> Vec<f32> {
    let mut m = vec![0f32; out * n];
    for i in 0..out {
        let (a, b) = ((i * n) / out, ((i + 1) * n).div_ceil(out));
        for j in a..b {
            m[i * n + j] = 1.0 / (b - a) as f32;
        }
    }
    m
}

/// Adaptive average pooling of `[N, C, H, W]` to `[N, C, size, size]`: `P_h X P_w^T` with
/// PyTorch's windows, on any device; the identity when `H = W = size`.
pub fn adaptive_avg_pool(xs: &Tensor, size: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    if (h, w) == (size, size) {
        return Ok(xs.clone());
    }
    let ph = Tensor::from_vec(adaptive_matrix(h, size), (size, h), xs.device())?.to_dtype(xs.dtype())?;
    let pw = Tensor::from_vec(adaptive_matrix(w, size), (size, w), xs.device())?.to_dtype(xs.dtype())?;
    let x = xs.reshape((n * c, h, w))?;
    let x = x.broadcast_matmul(&pw.t()?)?; // [NC, H, size]
    let x = ph.broadcast_matmul(&x)?; // [NC, size, size]
    x.reshape((n, c, size, size))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::init::{init_net, Init};
    use crate::spec::Widths;
    use crate::{NoTap, ZfConfig};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn the_stages_one_after_another_are_the_forward_pass() {
        let vgg = Net::init(
            &NetSpec::torchvision_with(
                "vgg11",
                &Widths { convs: vec![4, 6, 8, 8, 8, 8, 8, 8], fc: [16, 16], classes: 5 },
            )
            .unwrap()
            .with_input_size(40),
            5,
            &Device::Cpu,
        )
        .unwrap();
        let mut nets = vec![vgg];
        for cfg in [ZfConfig::tiny().with_input_size(64), ZfConfig::imgclsmob().with_width(0.125).with_input_size(64)] {
            let zf = init_net(&cfg, Init::He, 3, &Device::Cpu).unwrap();
            // ZfNet's own forward pass and its layer list's agree.
            let x = Tensor::randn(0f32, 60.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
            assert_eq!(
                max_diff(&zf.forward_with(&x, false, &mut NoTap).unwrap(), &zf.as_net().forward(&x).unwrap()),
                0.0
            );
            nets.push(zf.as_net().clone());
        }
        for net in nets {
            let s = net.spec().input_size;
            let x = Tensor::randn(0f32, 60.0, (2, 3, s, s), &Device::Cpu).unwrap();
            let trace = net.trace(&x).unwrap();
            let mut a = net.scale_input(&x).unwrap();
            let stages = net.stages().unwrap();
            for stage in &stages {
                a = net.apply_layer(stage.layer, &a, true).unwrap();
                let d = max_diff(&a, trace.activation(stage.layer).unwrap());
                assert!(d < 1e-5, "{} {stage:?}: {d}", net.spec().arch);
            }
            let last = stages.last().unwrap().layer;
            assert_eq!(Some(last), net.spec().last_conv());
            let d = max_diff(&net.logits_from(last, &a).unwrap(), &net.forward(&x).unwrap());
            assert!(d < 1e-4, "{d}");
        }
    }

    #[test]
    fn adaptive_pool_windows_are_pytorchs() {
        // n = 5 to 3: windows [0, 2), [1, 4), [3, 5) (floor(i 5 / 3) .. ceil((i + 1) 5 / 3)).
        let m = adaptive_matrix(5, 3);
        let h = 1.0 / 2.0;
        let t = 1.0 / 3.0;
        assert_eq!(m, vec![h, h, 0., 0., 0., 0., t, t, t, 0., 0., 0., 0., h, h]);
        // 2 to 6 replicates: each output reads one input.
        let m = adaptive_matrix(2, 6);
        assert_eq!(m.iter().filter(|&&v| v == 1.0).count(), 6);
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap();
        let y = adaptive_avg_pool(&x, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // 2 to 3: windows [0, 1), [0, 2), [1, 2) on both axes.
        assert_eq!(y, vec![0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn batch_norm_folds_into_the_conv() {
        // conv then BN (eval) equals the folded conv: checked against candle's own ops.
        let spec = NetSpec::torchvision_with(
            "vgg11_bn",
            &Widths { convs: vec![3, 4, 4, 4, 4, 4, 4, 4], fc: [6, 6], classes: 2 },
        )
        .unwrap()
        .with_input_size(32);
        // Only the first conv keeps its batch norm (features.1).
        let mut spec = spec;
        for l in spec.layers.iter_mut().skip(1) {
            if let LayerKind::Conv { batch_norm, .. } = &mut l.kind {
                *batch_norm = None;
            }
        }
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        for (k, v) in Net::init(&spec, 1, &dev).unwrap().named_tensors() {
            t.insert(k, v);
        }
        let bn = |k: &str, v: Tensor, t: &mut HashMap<String, Tensor>| t.insert(format!("features.1.{k}"), v);
        bn("weight", Tensor::new(&[0.5f32, 2.0, -1.0], &dev).unwrap(), &mut t);
        bn("bias", Tensor::new(&[0.1f32, -0.2, 0.3], &dev).unwrap(), &mut t);
        bn("running_mean", Tensor::new(&[1.0f32, -1.0, 0.0], &dev).unwrap(), &mut t);
        bn("running_var", Tensor::new(&[4.0f32, 0.25, 1.0], &dev).unwrap(), &mut t);
        let net = Net::from_tensors(&spec, t.clone(), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &dev).unwrap();
        let conv1 = net.trace(&x).unwrap().activation(0).unwrap().clone();
        let raw = net
            .scale_input(&x)
            .unwrap()
            .conv2d(&t["features.0.weight"], 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&t["features.0.bias"].reshape((1, 3, 1, 1)).unwrap())
            .unwrap();
        let r = |k: &str| t[&format!("features.1.{k}")].reshape((1, 3, 1, 1)).unwrap();
        let want = raw
            .broadcast_sub(&r("running_mean"))
            .unwrap()
            .broadcast_div(&(r("running_var") + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&r("weight"))
            .unwrap()
            .broadcast_add(&r("bias"))
            .unwrap()
            .relu()
            .unwrap();
        let d = (conv1 - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
