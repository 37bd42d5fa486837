//! ZFNet itself: named layers conv1..fc8 and a forward pass that hands out every activation and
//! every pool's switches through a [`Tap`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use candle_core::{DType, ModuleT, Result, Tensor};

use candle_nn::{Conv2d, Linear, VarBuilder};
use rand::Rng;

use crate::config::ZfConfig;
use crate::network::{LayerTap, Net};
use crate::pool::Switches;

mod backprop;
pub use backprop::Backprop;

/// A point in the network where a value can be observed, in forward order.
///
/// Conv and fc points are after the ReLU (the paper's "layer 1..7" are conv1..conv5, fc6, fc7);
/// fc6 and fc7 are before dropout; `Fc8` is the logits and `Prob` their softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Point {
    Conv1,
    Pool1,
    Norm1,
    Conv2,
    Pool2,
    Norm2,
    Conv3,
    Conv4,
    Conv5,
    Pool5,
    Fc6,
    Fc7,
    Fc8,
    Prob,
}

impl Point {
    /// Every point, in forward order.
    pub const ALL: [Point; 14] = [
        Point::Conv1,
        Point::Pool1,
        Point::Norm1,
        Point::Conv2,
        Point::Pool2,
        Point::Norm2,
        Point::Conv3,
        Point::Conv4,
        Point::Conv5,
        Point::Pool5,
        Point::Fc6,
        Point::Fc7,
        Point::Fc8,
        Point::Prob,
    ];

    /// The paper's layers 1..7: conv1..conv5, fc6, fc7.
    pub const PAPER_LAYERS: [Point; 7] =
        [Point::Conv1, Point::Conv2, Point::Conv3, Point::Conv4, Point::Conv5, Point::Fc6, Point::Fc7];

    /// The layers with weights, whose names are the safetensors prefixes.
    pub const WEIGHTED: [Point; 8] =
        [Point::Conv1, Point::Conv2, Point::Conv3, Point::Conv4, Point::Conv5, Point::Fc6, Point::Fc7, Point::Fc8];

    /// The pools, which hand out switches.
    pub const POOLS: [Point; 3] = [Point::Pool1, Point::Pool2, Point::Pool5];

    pub fn name(self) -> &'static str {
        match self {
            Point::Conv1 => "conv1",
            Point::Pool1 => "pool1",
            Point::Norm1 => "norm1",
            Point::Conv2 => "conv2",
            Point::Pool2 => "pool2",
            Point::Norm2 => "norm2",
            Point::Conv3 => "conv3",
            Point::Conv4 => "conv4",
            Point::Conv5 => "conv5",
            Point::Pool5 => "pool5",
            Point::Fc6 => "fc6",
            Point::Fc7 => "fc7",
            Point::Fc8 => "fc8",
            Point::Prob => "prob",
        }
    }

    /// The paper's layer number (1..7) of conv1..conv5, fc6, fc7.
    pub fn paper_layer(self) -> Option<usize> {
        Self::PAPER_LAYERS.iter().position(|&p| p == self).map(|i| i + 1)
    }

    /// Whether this is a convolution (conv1..conv5).
    pub fn is_conv(self) -> bool {
        matches!(self, Point::Conv1 | Point::Conv2 | Point::Conv3 | Point::Conv4 | Point::Conv5)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point serializes as its name (`"conv5"`), the word the safetensors keys and the CLI use.
impl serde::Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Point {
    type Err = candle_core::Error;

    /// A point's name (`conv3`, `pool1`, `fc7`, `prob`, ...) or a paper layer number `1`..`7`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if let Ok(n) = s.parse::<usize>() {
            return match n {
                1..=7 => Ok(Self::PAPER_LAYERS[n - 1]),
                _ => bail!("layer {n} does not exist: the paper's layers are 1..7 (conv1..conv5, fc6, fc7)"),
            };
        }
        let s = s.strip_prefix("layer").unwrap_or(&s);
        if let Ok(n) = s.parse::<usize>() {
            return Self::from_str(&n.to_string());
        }
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|p| p.name()).collect();
            candle_core::Error::Msg(format!("unknown layer `{s}`: expected 1..7 or one of {}", names.join(", ")))
        })
    }
}

/// Receives what the forward pass observes. Implement only what you need: a no-op tap costs
/// nothing beyond the forward pass itself.
///
/// Also implemented for closures `FnMut(Point, &Tensor) -> Result<()>`.
pub trait Tap {
    /// Whether `point` should be handed out. Only [`Point::Prob`] costs extra work (a softmax);
    /// the default is `true`.
    fn wants(&self, _point: Point) -> bool {
        true
    }

    /// One layer's output. See [`Point`] for what each point holds.
    ///
    /// # Shapes
    /// `[N, C, H, W]` for conv, pool and norm points; `[N, F]` for fc6, fc7, fc8 and prob.
    fn activation(&mut self, point: Point, value: &Tensor) -> Result<()>;

    /// One pool's switches (`pool` is Pool1, Pool2 or Pool5).
    fn switches(&mut self, _pool: Point, _switches: &Switches) -> Result<()> {
        Ok(())
    }

    /// Whether [`Tap::switches`] should be called; the default is `true`. With `false`, a
    /// forward pass on the CPU that needs no gradient pools by values alone (one pass, no
    /// switches kept).
    fn wants_switches(&self) -> bool {
        true
    }
}

/// The tap that observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTap;

impl Tap for NoTap {
    fn wants(&self, _point: Point) -> bool {
        false
    }

    fn wants_switches(&self) -> bool {
        false
    }

    fn activation(&mut self, _point: Point, _value: &Tensor) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(Point, &Tensor) -> Result<()>> Tap for F {
    fn activation(&mut self, point: Point, value: &Tensor) -> Result<()> {
        self(point, value)
    }
}

/// Everything one forward pass observed: every activation and every pool's switches.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub activations: Vec<(Point, Tensor)>,
    pub switches: Vec<(Point, Switches)>,
}

impl Tap for Trace {
    fn activation(&mut self, point: Point, value: &Tensor) -> Result<()> {
        self.activations.push((point, value.clone()));
        Ok(())
    }

    fn switches(&mut self, pool: Point, switches: &Switches) -> Result<()> {
        self.switches.push((pool, switches.clone()));
        Ok(())
    }
}

impl Trace {
    /// The activation recorded at `point`.
    pub fn get(&self, point: Point) -> Option<&Tensor> {
        self.activations.iter().find(|(p, _)| *p == point).map(|(_, t)| t)
    }

    /// The switches recorded at pool `pool`.
    pub fn switches_of(&self, pool: Point) -> Option<&Switches> {
        self.switches.iter().find(|(p, _)| *p == pool).map(|(_, s)| s)
    }

    /// Every activation under its point's name and every pool's switches under
    /// `<pool>.switches` (as `i64`, PyTorch's index type), ready for safetensors.
    pub fn to_named_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (p, t) in &self.activations {
            out.insert(p.name().to_string(), t.clone());
        }
        for (p, s) in &self.switches {
            out.insert(format!("{}.switches", p.name()), s.indices.to_dtype(DType::I64)?);
        }
        Ok(out)
    }
}

/// Dropout in fc6 and fc7 for one forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropout {
    /// Evaluation: no dropout.
    Off,
    /// Masks from candle's random generator.
    Random,
    /// Masks drawn on the host from a ChaCha8 generator seeded with this value (fc6's mask
    /// first, then fc7's): the same seed gives the same masks, so a resumed training run can
    /// repeat them exactly.
    Seeded(u64),
}

/// ZFNet (Zeiler & Fergus 2014, Fig. 3) with named layers whose names are the safetensors keys:
/// a typed view of the general [`Net`] built from [`ZfConfig::spec`], whose forward pass it
/// runs (the layer order is written once, in the spec).
///
/// Build it with [`ZfNet::new`] from a `VarBuilder` (`vb.pp("conv1")` is the `conv1.` prefix),
/// from fresh weights ([`crate::init`]) or from a file ([`crate::weights`]).
#[derive(Clone, Debug)]
pub struct ZfNet {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
    pub conv4: Conv2d,
    pub conv5: Conv2d,
    pub fc6: Linear,
    pub fc7: Linear,
    pub fc8: Linear,
    config: ZfConfig,
    /// The same network as a layer list (the fields above share its tensors).
    net: Net,
    /// The tap point of each of `net`'s layers (`None` for flatten and the dropouts).
    points: Vec<Option<Point>>,
}

/// Hands a [`Net`] pass's layers to a [`Tap`] by their [`Point`]s.
struct PointTap<'a, T: Tap> {
    points: &'a [Option<Point>],
    tap: &'a mut T,
}

impl<T: Tap> LayerTap for PointTap<'_, T> {
    fn activation(&mut self, layer: usize, value: &Tensor) -> Result<()> {
        match self.points.get(layer).copied().flatten() {
            Some(p) => self.tap.activation(p, value),
            None => Ok(()),
        }
    }

    fn switches(&mut self, layer: usize, switches: &Switches) -> Result<()> {
        match self.points.get(layer).copied().flatten() {
            Some(p) => self.tap.switches(p, switches),
            None => Ok(()),
        }
    }

    fn wants_switches(&self) -> bool {
        self.tap.wants_switches()
    }
}

impl ZfNet {
    /// Builds the network for `config` from tensors by their safetensors keys (`conv1.weight`,
    /// ...), as f32 on `device`.
    pub fn from_tensors(
        config: &ZfConfig,
        tensors: std::collections::HashMap<String, Tensor>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::new(config, VarBuilder::from_tensors(tensors, candle_core::DType::F32, device))
    }

    /// Builds the network for `config`, reading `conv1.weight`, `conv1.bias`, ..., `fc8.bias`
    /// from `vb`. An error when the config does not fit its input size.
    pub fn new(config: &ZfConfig, vb: VarBuilder<'_>) -> Result<Self> {
        config.table()?;
        let net = Net::new(&config.spec(), vb)?;
        let points: Vec<Option<Point>> = net.spec().layers.iter().map(|l| l.name.parse::<Point>().ok()).collect();
        let at = |p: Point| points.iter().position(|&q| q == Some(p)).unwrap_or(usize::MAX);
        let missing = |p: Point| candle_core::Error::Msg(format!("the spec has no {p}"));
        let conv = |p: Point| net.conv(at(p)).cloned().ok_or_else(|| missing(p));
        let linear = |p: Point| net.linear(at(p)).cloned().ok_or_else(|| missing(p));
        Ok(Self {
            conv1: conv(Point::Conv1)?,
            conv2: conv(Point::Conv2)?,
            conv3: conv(Point::Conv3)?,
            conv4: conv(Point::Conv4)?,
            conv5: conv(Point::Conv5)?,
            fc6: linear(Point::Fc6)?,
            fc7: linear(Point::Fc7)?,
            fc8: linear(Point::Fc8)?,
            config: config.clone(),
            points,
            net,
        })
    }

    /// The network as a layer list: what the general analyses take.
    pub fn as_net(&self) -> &Net {
        &self.net
    }

    /// The index of `point`'s layer in [`ZfNet::as_net`]'s spec.
    pub fn layer_index(&self, point: Point) -> Option<usize> {
        self.points.iter().position(|&q| q == Some(point))
    }

    pub fn config(&self) -> &ZfConfig {
        &self.config
    }

    /// The convolution at `point` (conv1..conv5), for readers of the weights such as the
    /// deconvnet.
    pub fn conv(&self, point: Point) -> Option<&Conv2d> {
        match point {
            Point::Conv1 => Some(&self.conv1),
            Point::Conv2 => Some(&self.conv2),
            Point::Conv3 => Some(&self.conv3),
            Point::Conv4 => Some(&self.conv4),
            Point::Conv5 => Some(&self.conv5),
            _ => None,
        }
    }

    /// The linear layer at `point` (fc6..fc8).
    pub fn linear(&self, point: Point) -> Option<&Linear> {
        match point {
            Point::Fc6 => Some(&self.fc6),
            Point::Fc7 => Some(&self.fc7),
            Point::Fc8 => Some(&self.fc8),
            _ => None,
        }
    }

    /// Every weight and bias under its safetensors key, in forward order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in Point::WEIGHTED {
            let (w, b) = match (self.conv(p), self.linear(p)) {
                (Some(c), _) => (c.weight(), c.bias()),
                (_, Some(l)) => (l.weight(), l.bias()),
                _ => continue,
            };
            out.push((format!("{}.weight", p.name()), w.clone()));
            if let Some(b) = b {
                out.push((format!("{}.bias", p.name()), b.clone()));
            }
        }
        out
    }

    /// The forward pass, handing every activation and every pool's switches to `tap`.
    /// Returns the logits (fc8). Dropout is applied in fc6 and fc7 when `train` is true.
    ///
    /// # Shapes
    /// - `xs`: `[N, 3, S, S]`, `S = config.input_size`, per-pixel mean already subtracted
    /// - returns: `[N, classes]`
    pub fn forward_with(&self, xs: &Tensor, train: bool, tap: &mut impl Tap) -> Result<Tensor> {
        let dropout = if train { Dropout::Random } else { Dropout::Off };
        self.run(xs, dropout, None, tap)
    }

    /// The forward pass with the given dropout (see [`Dropout`]); returns the logits.
    pub fn forward_dropout(&self, xs: &Tensor, dropout: Dropout, tap: &mut impl Tap) -> Result<Tensor> {
        self.run(xs, dropout, None, tap)
    }

    /// The forward pass up to and including `last`, which it returns; later layers are not
    /// computed. Handy when only lower layers are needed (the deconvnet, occlusion of conv5).
    pub fn forward_until(&self, xs: &Tensor, train: bool, last: Point, tap: &mut impl Tap) -> Result<Tensor> {
        let dropout = if train { Dropout::Random } else { Dropout::Off };
        self.run(xs, dropout, Some(last), tap)
    }

    /// The forward pass; stops after `last` and returns it, or with `None` runs to the end,
    /// hands out `prob` when the tap wants it and returns the logits.
    fn run(&self, xs: &Tensor, dropout: Dropout, last: Option<Point>, tap: &mut impl Tap) -> Result<Tensor> {
        let (_, c, h, w) = xs.dims4()?;
        let s = self.config.input_size;
        if (c, h, w) != (3, s, s) {
            bail!("input has shape {:?}, expected [N, 3, {s}, {s}]", xs.dims())
        }
        let end = match last {
            Some(Point::Prob) | None => self.points.len(),
            Some(p) => match self.layer_index(p) {
                Some(i) => i + 1,
                None if matches!(p, Point::Norm1 | Point::Norm2) => {
                    bail!("the network has no {p}: LRN is off in its config")
                }
                None => bail!("the network has no {p}"),
            },
        };
        let xs = self.net.scale_input(xs)?;
        let out = self.net.run_layers(&xs, 0..end, dropout, &mut PointTap { points: &self.points, tap })?;
        if end < self.points.len() {
            return Ok(out);
        }
        if last == Some(Point::Prob) || tap.wants(Point::Prob) {
            let prob = candle_nn::ops::softmax_last_dim(&out)?;
            tap.activation(Point::Prob, &prob)?;
            if last == Some(Point::Prob) {
                return Ok(prob);
            }
        }
        Ok(out)
    }

    /// Logits in evaluation mode (no dropout).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(xs, false, &mut NoTap)
    }

    /// A forward pass that records everything: every activation (including `prob`) and every
    /// pool's switches.
    pub fn trace(&self, xs: &Tensor) -> Result<Trace> {
        let mut trace = Trace::default();
        self.forward_with(xs, false, &mut trace)?;
        Ok(trace)
    }

    #[cfg(test)]
    fn dropout(&self, xs: &Tensor, dropout: Dropout, rng: Option<&mut rand_chacha::ChaCha8Rng>) -> Result<Tensor> {
        crate::network::dropout_layer(xs, self.config.dropout, dropout, rng)
    }
}

/// What the forward pass multiplies each input channel by (`input_scale` times
/// `input_channel_scale`), or `None` when both are 1.
pub(crate) fn input_multiplier(config: &ZfConfig) -> Option<[f32; 3]> {
    crate::network::input_multiplier(config.input_scale, config.input_channel_scale)
}

/// A seeded dropout mask: each unit dropped (0) with probability `p`, else scaled by
/// `1 / (1 - p)` (inverted dropout), one draw per unit in order.
pub(crate) fn fill_dropout_mask(rng: &mut rand_chacha::ChaCha8Rng, p: f64, mask: &mut [f32]) {
    let scale = (1.0 / (1.0 - p)) as f32;
    for m in mask {
        *m = if rng.random::<f64>() < p { 0.0 } else { scale };
    }
}

impl ModuleT for ZfNet {
    /// Logits; dropout (candle's random masks) when `train`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(xs, train, &mut NoTap)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Order;
    use rand::SeedableRng;

    #[test]
    fn points_serialize_as_their_names() {
        for p in Point::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Point>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Point>("\"conv9\"").unwrap_err().to_string().contains("unknown layer `conv9`"));
    }

    #[test]
    fn pooling_by_values_alone_gives_the_traced_logits() {
        // NoTap pools by values alone (no switches), a Trace through the switches: the same
        // logits to the bit, in both layer orders.
        for order in [Order::Paper, Order::Imgclsmob] {
            let mut config = ZfConfig::small().with_input_size(67);
            config.order = order;
            let device = candle_core::Device::Cpu;
            let weights = crate::init::init_tensors(&config, crate::init::Init::He, 4, &device).unwrap();
            let net = ZfNet::from_tensors(&config, weights, &device).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 3, 67, 67), &device).unwrap();
            let plain = net.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let trace = net.trace(&x).unwrap();
            let traced = trace.get(Point::Fc8).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(plain, traced);
            assert_eq!(trace.switches.len(), 3);
        }
    }

    #[test]
    fn seeded_dropout_repeats_and_scales() {
        let cfg = crate::ZfConfig::tiny().with_input_size(96);
        let net = crate::init::init_net(&cfg, crate::init::Init::He, 0, &candle_core::Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 50., (2, 3, 96, 96), &candle_core::Device::Cpu).unwrap();
        let run = |d: Dropout| {
            let mut fc7 = None;
            net.forward_dropout(&x, d, &mut |p: Point, t: &Tensor| {
                if p == Point::Fc7 {
                    fc7 = Some(t.clone());
                }
                Ok(())
            })
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
        };
        assert_eq!(run(Dropout::Seeded(3)), run(Dropout::Seeded(3)));
        assert_ne!(run(Dropout::Seeded(3)), run(Dropout::Seeded(4)));
        assert_ne!(run(Dropout::Seeded(3)), run(Dropout::Off));
        // Half of fc6's units are dropped and the rest doubled: the fc7 input keeps its mean
        // roughly (checked on the mask itself).
        let ones = Tensor::ones((64, 512), DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let m = net
            .dropout(&ones, Dropout::Seeded(1), Some(&mut rng))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = m.iter().filter(|&&v| v == 2.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.5).abs() < 0.02, "{kept}");
    }

    #[test]
    fn layer_names_and_numbers() {
        assert_eq!("3".parse::<Point>().unwrap(), Point::Conv3);
        assert_eq!("7".parse::<Point>().unwrap(), Point::Fc7);
        assert_eq!("layer5".parse::<Point>().unwrap(), Point::Conv5);
        assert_eq!("Pool2".parse::<Point>().unwrap(), Point::Pool2);
        assert_eq!(Point::Fc6.paper_layer(), Some(6));
        assert_eq!(Point::Pool1.paper_layer(), None);
        let err = "8".parse::<Point>().unwrap_err().to_string();
        assert!(err.contains("layer 8 does not exist"), "{err}");
        let err = "conv9".parse::<Point>().unwrap_err().to_string();
        assert!(err.contains("unknown layer `conv9`"), "{err}");
    }
}
