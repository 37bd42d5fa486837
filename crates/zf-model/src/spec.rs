//! A network as an ordered list of named layers: the one place a network's layer order is
//! written. ZFNet's configs are specs ([`ZfConfig::spec`]); torchvision's `alexnet` and
//! `vgg11`..`vgg19` (with or without batch norm) are presets ([`NetSpec::torchvision`]).
//!
//! The forward pass ([`crate::Net`]), the occlusion stages, the deconvnet and the CPU backward
//! pass all walk [`NetSpec::layers`]. A layer's name is its safetensors prefix — the module key
//! torchvision gives it (`features.0`, `classifier.1`), or ZFNet's own (`conv1`, `fc6`) — and
//! its aliases are the words people use (`conv1_1`, `pool3`, `fc7`, and torchvision's key of the
//! ReLU or batch norm that is folded into it); `--layer` takes either ([`NetSpec::find`]).

use candle_core::Result;
use serde::{Deserialize, Serialize};

use crate::config::{ConvGeometry, LayerRow, LayerTable, LrnConfig, Order, PoolGeometry, ZfConfig, CONV345, POOL12};

/// What one layer computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum LayerKind {
    /// A convolution (groups 1) with bias, then a ReLU when `relu`. A batch norm that follows
    /// it in the source network is folded into its weight and bias when the weights are read
    /// (`batch_norm` names that module's key), so that inference, the deconvnet's transposed
    /// filters and the occlusion windows all see one conv.
    Conv {
        inputs: usize,
        outputs: usize,
        geometry: ConvGeometry,
        relu: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_norm: Option<String>,
    },
    /// Max pooling without padding, floor or ceil mode, which hands out its switches.
    MaxPool(PoolGeometry),
    /// Local response normalization across maps.
    Lrn(LrnConfig),
    /// Adaptive average pooling to `[size, size]` (PyTorch's windows: output `i` averages
    /// inputs `floor(i H / size) .. ceil((i + 1) H / size)`); the identity when the input is
    /// already that size.
    AdaptiveAvgPool { size: usize },
    /// `[N, C, H, W]` -> `[N, C H W]`.
    Flatten,
    /// Dropout with probability `p` when training; the identity otherwise.
    Dropout { p: f64 },
    /// A linear layer with bias, then a ReLU when `relu`.
    Linear { inputs: usize, outputs: usize, relu: bool },
}

impl LayerKind {
    /// Whether the layer has weights (a weight and a bias under its name).
    pub fn is_weighted(&self) -> bool {
        matches!(self, LayerKind::Conv { .. } | LayerKind::Linear { .. })
    }

    /// Whether the layer works on maps (conv, pools, LRN) rather than feature vectors.
    pub fn is_spatial(&self) -> bool {
        matches!(
            self,
            LayerKind::Conv { .. } | LayerKind::MaxPool(_) | LayerKind::Lrn(_) | LayerKind::AdaptiveAvgPool { .. }
        )
    }
}

/// One named layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The safetensors prefix of its weights and its canonical name (`features.0`, `conv1`).
    pub name: String,
    /// Other names it answers to (`conv1_1`, `fc7`, the key of a folded ReLU or batch norm).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub kind: LayerKind,
}

impl LayerSpec {
    pub fn new(name: impl Into<String>, aliases: &[String], kind: LayerKind) -> Self {
        Self { name: name.into(), aliases: aliases.to_vec(), kind }
    }

    /// The readable name: the first alias, else the canonical name.
    pub fn label(&self) -> &str {
        self.aliases.first().unwrap_or(&self.name)
    }

    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

/// A whole network: its layers in forward order and what its input is.
///
/// ```
/// use zf_model::spec::NetSpec;
/// let vgg = NetSpec::torchvision("vgg16", 1000)?;
/// assert_eq!(vgg.layers[vgg.find("conv5_3")?].name, "features.28");
/// assert_eq!(vgg.table()?.total_params(), 138_357_544);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    /// What it is: `zfnet`, `alexnet`, `vgg16_bn`, ...
    pub arch: String,
    pub layers: Vec<LayerSpec>,
    /// Side of the square input image (3 channels).
    pub input_size: usize,
    /// The input is multiplied by this before the first layer.
    #[serde(default = "one")]
    pub input_scale: f64,
    /// Per-channel (R, G, B) multipliers applied after `input_scale` (torchvision's and
    /// imgclsmob's networks divide mean-subtracted pixels by 255 times ImageNet's std).
    #[serde(default)]
    pub input_channel_scale: Option<[f64; 3]>,
}

fn one() -> f64 {
    1.0
}

/// The torchvision architectures [`NetSpec::torchvision`] builds.
pub const TORCHVISION: &[&str] =
    &["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"];

/// VGG's `features` configurations (torchvision's `cfgs`): conv widths, 0 for a max pool.
fn vgg_config(depth: usize) -> Option<&'static [usize]> {
    Some(match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => &[64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        16 => &[64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0],
        19 => &[64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0],
        _ => return None,
    })
}

/// The widths of a torchvision network: conv outputs in order, the two hidden fc widths,
/// classes. [`Widths::torchvision`] gives the published ones; reduced widths build the same
/// structure (the test fixtures use them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widths {
    pub convs: Vec<usize>,
    pub fc: [usize; 2],
    pub classes: usize,
}

impl Widths {
    /// The published widths of `arch` (one of [`TORCHVISION`]).
    pub fn torchvision(arch: &str, classes: usize) -> Result<Self> {
        let convs = match arch {
            "alexnet" => vec![64, 192, 384, 256, 256],
            _ => vgg_config(vgg_depth(arch)?.0)
                .map(|c| c.iter().copied().filter(|&w| w > 0).collect())
                .unwrap_or_default(),
        };
        Ok(Self { convs, fc: [4096, 4096], classes })
    }
}

/// `vgg16_bn` -> (16, true).
fn vgg_depth(arch: &str) -> Result<(usize, bool)> {
    let unknown = || {
        candle_core::Error::Msg(format!("unknown architecture `{arch}`: expected one of {}", TORCHVISION.join(", ")))
    };
    let rest = arch.strip_prefix("vgg").ok_or_else(unknown)?;
    let (depth, bn) = match rest.strip_suffix("_bn") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    let depth: usize = depth.parse().map_err(|_| unknown())?;
    vgg_config(depth).ok_or_else(unknown)?;
    Ok((depth, bn))
}

impl NetSpec {
    /// torchvision's `arch` (one of [`TORCHVISION`]) with its published widths and `classes`
    /// outputs, at 224 pixels, expecting ImageNet-normalized input (see
    /// [`NetSpec::torchvision_with`]).
    pub fn torchvision(arch: &str, classes: usize) -> Result<Self> {
        Self::torchvision_with(arch, &Widths::torchvision(arch, classes)?)
    }

    /// torchvision's `arch` with the given widths, layer for layer as torchvision builds it:
    /// names are its module keys, ReLUs (and batch norms) fold into the conv or linear layer
    /// before them and are kept as aliases. The input is mean-subtracted pixels (0..255 scale);
    /// the network divides each channel by 255 times ImageNet's std, so that it sees what
    /// torchvision's `Normalize` gives.
    pub fn torchvision_with(arch: &str, widths: &Widths) -> Result<Self> {
        let mut b = Builder::default();
        let mut inputs = 3;
        let mut convs = widths.convs.iter().copied();
        let mut next_conv = |what: &str| {
            convs.next().ok_or_else(|| candle_core::Error::Msg(format!("{arch}: no width given for {what}")))
        };
        let pool_size = if arch == "alexnet" {
            let geometries = [ConvGeometry::new(11, 4, 2), ConvGeometry::new(5, 1, 2), CONV345, CONV345, CONV345];
            let pools = [true, true, false, false, true];
            let pool = PoolGeometry::new(3, 2, false);
            let mut p = 0;
            for (i, (g, pooled)) in geometries.into_iter().zip(pools).enumerate() {
                let outputs = next_conv(&format!("conv{}", i + 1))?;
                b.conv("features", inputs, outputs, g, None, &format!("conv{}", i + 1));
                inputs = outputs;
                if pooled {
                    p += 1;
                    b.pool("features", pool, &format!("pool{}", if p == 3 { 5 } else { p }));
                }
            }
            6
        } else {
            let (depth, bn) = vgg_depth(arch)?;
            let (mut block, mut within) = (1, 0);
            let pool = PoolGeometry::new(2, 2, false);
            for &w in vgg_config(depth).unwrap_or(&[]) {
                if w == 0 {
                    b.pool("features", pool, &format!("pool{block}"));
                    (block, within) = (block + 1, 0);
                    continue;
                }
                within += 1;
                let outputs = next_conv(&format!("conv{block}_{within}"))?;
                b.conv("features", inputs, outputs, CONV345, Some(bn), &format!("conv{block}_{within}"));
                inputs = outputs;
            }
            7
        };
        if convs.next().is_some() {
            bail!("{arch}: more conv widths given than it has convs ({:?})", widths.convs)
        }
        b.layers.push(LayerSpec::new("avgpool", &[], LayerKind::AdaptiveAvgPool { size: pool_size }));
        b.layers.push(LayerSpec::new("flatten", &[], LayerKind::Flatten));
        let features = inputs * pool_size * pool_size;
        let [f6, f7] = widths.fc;
        let c = "classifier";
        let alex = arch == "alexnet";
        // alexnet: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear;
        // vgg: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
        if alex {
            b.dropout(c);
        }
        b.linear(c, features, f6, true, "fc6");
        if !alex {
            b.dropout(c);
        }
        if alex {
            b.dropout(c);
        }
        b.linear(c, f6, f7, true, "fc7");
        if !alex {
            b.dropout(c);
        }
        b.linear(c, f7, widths.classes, false, "fc8");
        Ok(Self {
            arch: arch.to_string(),
            layers: b.layers,
            input_size: crate::config::PAPER_INPUT,
            input_scale: 1.0,
            input_channel_scale: Some(crate::config::IMAGENET_STD.map(|s| 1.0 / (255.0 * s))),
        })
    }

    pub fn with_input_size(mut self, size: usize) -> Self {
        self.input_size = size;
        self
    }

    /// The index of the layer called `name` (its canonical name or an alias, case-insensitive),
    /// or an error that lists the names it knows.
    pub fn find(&self, name: &str) -> Result<usize> {
        let want = name.trim().to_ascii_lowercase();
        self.layers.iter().position(|l| l.answers_to(&want)).ok_or_else(|| {
            let known: Vec<String> = self
                .layers
                .iter()
                .filter(|l| !matches!(l.kind, LayerKind::Flatten | LayerKind::Dropout { .. }))
                .map(|l| if l.aliases.is_empty() { l.name.clone() } else { format!("{} ({})", l.name, l.label()) })
                .collect();
            candle_core::Error::Msg(format!(
                "unknown layer `{name}` in {}: expected one of {}",
                self.arch,
                known.join(", ")
            ))
        })
    }

    /// The classes of the last linear layer.
    pub fn classes(&self) -> usize {
        self.layers
            .iter()
            .rev()
            .find_map(|l| match l.kind {
                LayerKind::Linear { outputs, .. } => Some(outputs),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Every layer's output shape for one image (`[C, H, W]` or `[F]`), in order; an error
    /// naming the first layer that does not fit its input (an input too small for the pools,
    /// a conv whose input channels differ from what reaches it, a linear layer that does not
    /// take the flattened features).
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        let mut shape = vec![3, self.input_size, self.input_size];
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let side = |s: &[usize]| (s.len() == 3).then(|| (s[0], s[1], s[2]));
            let too_small = |what: String, h: usize| {
                candle_core::Error::Msg(format!(
                    "input size {} does not fit the network's strides: {} ({what}) gets a {h}x{h} input, smaller than its window",
                    self.input_size,
                    l.name
                ))
            };
            shape = match (&l.kind, side(&shape)) {
                (LayerKind::Conv { inputs, outputs, geometry: g, .. }, Some((c, h, w))) => {
                    if *inputs != c {
                        bail!("{}: a conv over {inputs} channels gets {c}", l.name)
                    }
                    let what = || format!("{k}x{k} stride {s} pad {p}", k = g.kernel, s = g.stride, p = g.padding);
                    let ho = g.output_size(h).ok_or_else(|| too_small(what(), h))?;
                    let wo = g.output_size(w).ok_or_else(|| too_small(what(), w))?;
                    vec![*outputs, ho, wo]
                }
                (LayerKind::MaxPool(g), Some((c, h, w))) => {
                    let what = || format!("max {k}x{k} stride {s}", k = g.kernel, s = g.stride);
                    vec![
                        c,
                        g.output_size(h).ok_or_else(|| too_small(what(), h))?,
                        g.output_size(w).ok_or_else(|| too_small(what(), w))?,
                    ]
                }
                (LayerKind::Lrn(_), Some(_)) => shape,
                (LayerKind::AdaptiveAvgPool { size }, Some((c, _, _))) => vec![c, *size, *size],
                (LayerKind::Flatten, _) => vec![shape.iter().product()],
                (LayerKind::Dropout { .. }, _) => shape,
                (LayerKind::Linear { inputs, outputs, .. }, None) => {
                    if shape[0] != *inputs {
                        bail!("{}: a linear layer over {inputs} features gets {}", l.name, shape[0])
                    }
                    vec![*outputs]
                }
                (kind, _) => bail!("{}: {kind:?} cannot take a {shape:?} input", l.name),
            };
            out.push(shape.clone());
        }
        Ok(out)
    }

    /// The layer table: every layer but flatten and dropout, with its output shape, parameters
    /// and multiply-adds (folded batch norms add none: they are in the conv's).
    pub fn table(&self) -> Result<LayerTable> {
        let shapes = self.shapes()?;
        let mut rows = Vec::new();
        for (l, shape) in self.layers.iter().zip(shapes) {
            let (params, macs) = match &l.kind {
                LayerKind::Conv { inputs, outputs, geometry: g, .. } => {
                    let k = g.kernel * g.kernel;
                    (outputs * inputs * k + outputs, shape.iter().product::<usize>() as u64 * (inputs * k) as u64)
                }
                LayerKind::Linear { inputs, outputs, .. } => (inputs * outputs + outputs, (inputs * outputs) as u64),
                LayerKind::Flatten | LayerKind::Dropout { .. } => continue,
                _ => (0, 0),
            };
            rows.push(LayerRow { name: l.label().to_string(), shape, params, macs });
        }
        Ok(LayerTable { rows })
    }

    /// Every tensor the spec's weights file holds, with its shape, in forward order: each conv's
    /// and linear layer's `weight` and `bias`, and an unfolded batch norm's `weight`, `bias`,
    /// `running_mean` and `running_var`.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for l in &self.layers {
            match &l.kind {
                LayerKind::Conv { inputs, outputs, geometry: g, batch_norm, .. } => {
                    out.push((format!("{}.weight", l.name), vec![*outputs, *inputs, g.kernel, g.kernel]));
                    out.push((format!("{}.bias", l.name), vec![*outputs]));
                    if let Some(bn) = batch_norm {
                        for t in ["weight", "bias", "running_mean", "running_var"] {
                            out.push((format!("{bn}.{t}"), vec![*outputs]));
                        }
                    }
                }
                LayerKind::Linear { inputs, outputs, .. } => {
                    out.push((format!("{}.weight", l.name), vec![*outputs, *inputs]));
                    out.push((format!("{}.bias", l.name), vec![*outputs]));
                }
                _ => {}
            }
        }
        out
    }

    /// The index of the first conv layer (ZFNet's conv1, the paper's "layer 1").
    pub fn first_conv(&self) -> Option<usize> {
        self.layers.iter().position(|l| matches!(l.kind, LayerKind::Conv { .. }))
    }

    /// The index of the last hidden linear layer (ZFNet's and torchvision's fc7, the paper's
    /// "layer 7"): the last linear layer with a ReLU.
    pub fn last_hidden(&self) -> Option<usize> {
        self.layers.iter().rposition(|l| matches!(l.kind, LayerKind::Linear { relu: true, .. }))
    }

    /// The index of the last conv layer (where the occlusion stages end).
    pub fn last_conv(&self) -> Option<usize> {
        self.layers.iter().rposition(|l| matches!(l.kind, LayerKind::Conv { .. }))
    }
}

/// Appends torchvision-style modules, counting module indices per container (a folded ReLU or
/// batch norm takes its index and becomes an alias).
#[derive(Default)]
struct Builder {
    layers: Vec<LayerSpec>,
    index: std::collections::HashMap<&'static str, usize>,
}

impl Builder {
    fn key(&mut self, container: &'static str) -> String {
        let i = self.index.entry(container).or_insert(0);
        *i += 1;
        format!("{container}.{}", *i - 1)
    }

    fn conv(&mut self, c: &'static str, inputs: usize, outputs: usize, g: ConvGeometry, bn: Option<bool>, alias: &str) {
        let name = self.key(c);
        let mut aliases = vec![alias.to_string()];
        let batch_norm = (bn == Some(true)).then(|| self.key(c));
        aliases.extend(batch_norm.clone());
        aliases.push(self.key(c)); // the ReLU
        self.layers.push(LayerSpec {
            name,
            aliases,
            kind: LayerKind::Conv { inputs, outputs, geometry: g, relu: true, batch_norm },
        });
    }

    fn pool(&mut self, c: &'static str, g: PoolGeometry, alias: &str) {
        let name = self.key(c);
        self.layers.push(LayerSpec::new(name, &[alias.to_string()], LayerKind::MaxPool(g)));
    }

    fn dropout(&mut self, c: &'static str) {
        let name = self.key(c);
        self.layers.push(LayerSpec::new(name, &[], LayerKind::Dropout { p: 0.5 }));
    }

    fn linear(&mut self, c: &'static str, inputs: usize, outputs: usize, relu: bool, alias: &str) {
        let name = self.key(c);
        let mut aliases = vec![alias.to_string()];
        if relu {
            aliases.push(self.key(c));
        }
        self.layers.push(LayerSpec::new(name, &aliases, LayerKind::Linear { inputs, outputs, relu }));
    }
}

impl ZfConfig {
    /// ZFNet as a [`NetSpec`]: the one place its layer order is written (the forward pass, the
    /// occlusion stages, the layer table and the CPU backward pass read it). Layers are named
    /// as the paper's points (`conv1`, `pool1`, `norm1`, ..., `fc8`); the dropouts after fc6
    /// and fc7 are `drop6` and `drop7`.
    pub fn spec(&self) -> NetSpec {
        let (g1, g2) = self.first_layer.geometry();
        let [c1, c2, c3, c4, c5] = self.channels;
        let conv = |name: &str, inputs, outputs, geometry| {
            LayerSpec::new(name, &[], LayerKind::Conv { inputs, outputs, geometry, relu: true, batch_norm: None })
        };
        let mut layers = Vec::new();
        for (i, (inputs, outputs, g)) in [(3, c1, g1), (c1, c2, g2)].into_iter().enumerate() {
            let n = i + 1;
            layers.push(conv(&format!("conv{n}"), inputs, outputs, g));
            let pool = LayerSpec::new(format!("pool{n}"), &[], LayerKind::MaxPool(POOL12));
            let norm = self.lrn.map(|lrn| LayerSpec::new(format!("norm{n}"), &[], LayerKind::Lrn(lrn)));
            match self.order {
                Order::Paper => layers.extend([Some(pool), norm].into_iter().flatten()),
                Order::Imgclsmob => layers.extend([norm, Some(pool)].into_iter().flatten()),
            }
        }
        layers.push(conv("conv3", c2, c3, CONV345));
        layers.push(conv("conv4", c3, c4, CONV345));
        layers.push(conv("conv5", c4, c5, CONV345));
        layers.push(LayerSpec::new("pool5", &[], LayerKind::MaxPool(self.pool5())));
        layers.push(LayerSpec::new("flatten", &[], LayerKind::Flatten));
        // fc6's inputs: pool5's flattened output (0 when the input does not fit: `shapes`
        // then names the layer that does not).
        let fc6_inputs = {
            let partial = NetSpec {
                arch: "zfnet".into(),
                layers: layers.clone(),
                input_size: self.input_size,
                input_scale: 1.0,
                input_channel_scale: None,
            };
            partial.shapes().ok().and_then(|s| s.last().map(|s| s[0])).unwrap_or(0)
        };
        let linear =
            |name: &str, inputs, outputs, relu| LayerSpec::new(name, &[], LayerKind::Linear { inputs, outputs, relu });
        let drop = |name: &str| LayerSpec::new(name, &[], LayerKind::Dropout { p: self.dropout });
        layers.push(linear("fc6", fc6_inputs, self.fc_units, true));
        layers.push(drop("drop6"));
        layers.push(linear("fc7", self.fc_units, self.fc_units, true));
        layers.push(drop("drop7"));
        layers.push(linear("fc8", self.fc_units, self.classes, false));
        NetSpec {
            arch: match self.first_layer {
                crate::config::FirstLayer::Zf => "zfnet".into(),
                crate::config::FirstLayer::AlexNet => "zfnet-alexnet-first".into(),
            },
            layers,
            input_size: self.input_size,
            input_scale: self.input_scale,
            input_channel_scale: self.input_channel_scale,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_presets_have_torchvisions_parameter_counts() {
        // torchvision's documented sizes (sum of p.numel() over parameters(); batch norm's
        // weight and bias count there, 2 per channel, although here they fold into the conv).
        for (arch, params, bn_channels) in [
            ("alexnet", 61_100_840usize, 0usize),
            ("vgg11", 132_863_336, 0),
            ("vgg13", 133_047_848, 0),
            ("vgg16", 138_357_544, 0),
            ("vgg19", 143_667_240, 0),
            ("vgg11_bn", 132_868_840, 2 * 2752),
            ("vgg16_bn", 138_365_992, 2 * 4224),
        ] {
            let t = NetSpec::torchvision(arch, 1000).unwrap().table().unwrap();
            assert_eq!(t.total_params() + bn_channels, params, "{arch}");
        }
    }

    #[test]
    fn names_keys_and_aliases() {
        let vgg = NetSpec::torchvision("vgg16_bn", 1000).unwrap();
        // features.0 conv, .1 batch norm, .2 ReLU, ..., features.6 the first pool.
        let l = &vgg.layers[vgg.find("conv1_1").unwrap()];
        assert_eq!(
            (l.name.as_str(), l.aliases.as_slice()),
            ("features.0", &["conv1_1".to_string(), "features.1".into(), "features.2".into()][..])
        );
        assert_eq!(vgg.layers[vgg.find("pool1").unwrap()].name, "features.6");
        assert_eq!(vgg.layers[vgg.find("conv5_3").unwrap()].name, "features.40");
        assert_eq!(vgg.layers[vgg.find("pool5").unwrap()].name, "features.43");
        assert_eq!(vgg.find("FC7").unwrap(), vgg.find("classifier.3").unwrap());
        assert_eq!(vgg.find("classifier.4").unwrap(), vgg.find("fc7").unwrap());
        let alex = NetSpec::torchvision("alexnet", 1000).unwrap();
        assert_eq!(alex.layers[alex.find("conv5").unwrap()].name, "features.10");
        assert_eq!(alex.layers[alex.find("pool5").unwrap()].name, "features.12");
        assert_eq!(alex.layers[alex.find("fc6").unwrap()].name, "classifier.1");
        assert_eq!(alex.layers[alex.find("fc8").unwrap()].name, "classifier.6");
        let e = alex.find("conv6").unwrap_err().to_string();
        assert!(e.contains("unknown layer `conv6` in alexnet") && e.contains("features.10 (conv5)"), "{e}");
    }

    #[test]
    fn shapes_at_224_and_too_small_inputs() {
        let vgg = NetSpec::torchvision("vgg11", 10).unwrap();
        let s = vgg.shapes().unwrap();
        assert_eq!(s[vgg.find("pool5").unwrap()], vec![512, 7, 7]);
        assert_eq!(s.last().unwrap(), &vec![10]);
        let e = vgg.clone().with_input_size(16).shapes().unwrap_err().to_string();
        // 16 -> 8 -> 4 -> 2 -> 1: the fifth pool (features.20) gets one pixel.
        let want = "input size 16 does not fit the network's strides: features.20 (max 2x2 stride 2) gets a 1x1 input";
        assert!(e.contains(want), "{e}");
    }

    #[test]
    fn zfnet_spec_gives_the_papers_table() {
        let t = ZfConfig::paper().spec().table().unwrap();
        assert_eq!(t.total_params(), 62_357_608);
        let names: Vec<_> = t.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7",
                "fc8"
            ]
        );
        let i = ZfConfig::imgclsmob().spec();
        let names: Vec<_> = i.layers.iter().map(|l| l.name.as_str()).take(3).collect();
        assert_eq!(names, ["conv1", "norm1", "pool1"]);
    }
}
