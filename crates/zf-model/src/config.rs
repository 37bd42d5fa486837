//! The network's configuration: the paper's ZFNet, its variants, and the layer table they imply.
//!
//! Every paper constant of the architecture lives here ([`ZfConfig::paper`]); other code asks
//! the config instead of writing 96, 256 or 224 again.

use candle_core::Result;
use serde::{Deserialize, Serialize};

/// Kernel, stride and padding of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub const fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self { kernel, stride, padding }
    }

    /// Output side for an input side, or `None` when the kernel does not fit.
    pub fn output_size(&self, input: usize) -> Option<usize> {
        let padded = input + 2 * self.padding;
        (padded >= self.kernel && self.stride > 0).then(|| (padded - self.kernel) / self.stride + 1)
    }
}

/// The first two layers: ZFNet's (Fig. 3) or the AlexNet-style ones of the paper's comparison
/// (Sec. 4.1, Fig. 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstLayer {
    /// conv1 7x7 stride 2 pad 1, conv2 5x5 stride 2 pad 0 (ZFNet, Fig. 3).
    Zf,
    /// conv1 11x11 stride 4 pad 2, conv2 5x5 stride 1 pad 2 (Krizhevsky et al.).
    AlexNet,
}

impl FirstLayer {
    /// Geometry of conv1 and conv2.
    pub fn geometry(self) -> (ConvGeometry, ConvGeometry) {
        match self {
            FirstLayer::Zf => (ConvGeometry::new(7, 2, 1), ConvGeometry::new(5, 2, 0)),
            FirstLayer::AlexNet => (ConvGeometry::new(11, 4, 2), ConvGeometry::new(5, 1, 2)),
        }
    }
}

/// Local response normalization ("contrast normalization across feature maps"), in the
/// PyTorch / Caffe form: `y = x / (k + alpha / size * sum_{window} x^2)^beta`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrnConfig {
    pub size: usize,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl LrnConfig {
    /// The values this project fixes where the paper is silent (Krizhevsky et al.'s, in the PyTorch /
    /// Caffe form): size 5, alpha 1e-4, beta 0.75, k 2.
    pub const fn paper() -> Self {
        Self { size: 5, alpha: 1e-4, beta: 0.75, k: 2.0 }
    }
}

/// Max pooling geometry. The network pools 3x3 with stride 2; pool1 and pool2 round up (ceil
/// mode), pool5 rounds down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub ceil_mode: bool,
}

impl PoolGeometry {
    pub const fn new(kernel: usize, stride: usize, ceil_mode: bool) -> Self {
        Self { kernel, stride, ceil_mode }
    }

    /// Output side for an input side (no padding), as PyTorch's `max_pool2d` computes it: in
    /// ceil mode the last window may hang over the edge but must start inside the input.
    /// `None` when the window does not fit.
    pub fn output_size(&self, input: usize) -> Option<usize> {
        if input < self.kernel || self.stride == 0 {
            return None;
        }
        let span = input - self.kernel;
        let mut out = if self.ceil_mode { span.div_ceil(self.stride) + 1 } else { span / self.stride + 1 };
        if self.ceil_mode && (out - 1) * self.stride >= input {
            out -= 1;
        }
        Some(out)
    }
}

/// Everything that decides the network's shape.
///
/// ```
/// use zf_model::ZfConfig;
/// let cfg = ZfConfig::paper();
/// assert_eq!(cfg.table().unwrap().total_params(), 62_357_608);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZfConfig {
    /// conv1/conv2 geometry.
    pub first_layer: FirstLayer,
    /// Feature maps of conv1..conv5.
    pub channels: [usize; 5],
    /// Units of fc6 and fc7.
    pub fc_units: usize,
    /// Classes of fc8.
    pub classes: usize,
    /// LRN after pool1 and pool2; `None` switches it off.
    pub lrn: Option<LrnConfig>,
    /// Side of the square input image.
    pub input_size: usize,
    /// Dropout probability in fc6 and fc7 when training.
    pub dropout: f64,
    /// The input is multiplied by this before conv1 (1 in the paper, whose inputs are pixels
    /// in about -128..128). Training recipes that use He's initialization set it near 1/64 so
    /// that the input has about unit variance; it is part of the network, so weights trained
    /// with it are always run with it.
    #[serde(default = "one")]
    pub input_scale: f64,
    /// The order of ReLU, LRN and pooling in stages 1-2 (and pool5's rounding).
    #[serde(default)]
    pub order: Order,
    /// Per-channel (R, G, B) input multipliers applied after `input_scale`: imgclsmob's ZFNet
    /// divides mean-subtracted pixels by 255 times ImageNet's standard deviations.
    #[serde(default)]
    pub input_channel_scale: Option<[f64; 3]>,
}

fn one() -> f64 {
    1.0
}

/// Where the LRN sits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The paper's Fig. 3: conv → ReLU → max-pool → LRN; pool5 rounds down.
    #[default]
    Paper,
    /// osmr/imgclsmob's (pytorchcv) ZFNet: conv → ReLU → LRN → max-pool, every pool in ceil
    /// mode (pool5 included; at 224 pixels its size is the same either way).
    Imgclsmob,
}

/// ImageNet's per-channel mean and standard deviation of pixels in 0..1 (R, G, B), which
/// imgclsmob's models expect.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The paper's widths, before any width multiplier.
const PAPER_CHANNELS: [usize; 5] = [96, 256, 384, 384, 256];
const PAPER_FC_UNITS: usize = 4096;
const PAPER_CLASSES: usize = 1000;
/// The paper's input side.
pub const PAPER_INPUT: usize = 224;
const PAPER_DROPOUT: f64 = 0.5;

/// Max pooling of pool1 and pool2 (ceil mode) and pool5 (floor mode).
pub const POOL12: PoolGeometry = PoolGeometry::new(3, 2, true);
pub const POOL5: PoolGeometry = PoolGeometry::new(3, 2, false);
/// conv3..conv5: 3x3, stride 1, pad 1.
pub const CONV345: ConvGeometry = ConvGeometry::new(3, 1, 1);

/// Names of the named presets, for `--config` help texts.
pub const PRESETS: &[&str] = &["paper", "alexnet", "small", "tiny", "imgclsmob"];

impl ZfConfig {
    /// ZFNet exactly as the paper's Fig. 3: 1000 classes, 224x224 input.
    pub fn paper() -> Self {
        Self {
            first_layer: FirstLayer::Zf,
            channels: PAPER_CHANNELS,
            fc_units: PAPER_FC_UNITS,
            classes: PAPER_CLASSES,
            lrn: Some(LrnConfig::paper()),
            input_size: PAPER_INPUT,
            dropout: PAPER_DROPOUT,
            input_scale: 1.0,
            order: Order::Paper,
            input_channel_scale: None,
        }
    }

    /// osmr/imgclsmob's ImageNet-trained ZFNet (`zfnet-1727-d010ddca.pth`, pytorchcv's `zfnet`):
    /// the paper's widths, but conv → ReLU → LRN → pool ([`Order::Imgclsmob`]) and inputs
    /// normalized with ImageNet's mean and std: with the mean image of
    /// [`ZfConfig::imgclsmob_mean`] subtracted, the channels are divided by 255 std.
    pub fn imgclsmob() -> Self {
        Self {
            order: Order::Imgclsmob,
            input_channel_scale: Some(IMAGENET_STD.map(|s| 1.0 / (255.0 * s))),
            ..Self::paper()
        }
    }

    /// The per-channel mean, in pixel units (0..255), that imgclsmob's preprocessing subtracts.
    pub fn imgclsmob_mean() -> [f64; 3] {
        IMAGENET_MEAN.map(|m| 255.0 * m)
    }

    /// The paper's network with the AlexNet-style first layers (11x11 stride 4) of Sec. 4.1.
    pub fn alexnet() -> Self {
        Self { first_layer: FirstLayer::AlexNet, ..Self::paper() }
    }

    /// A quarter-width network with 10 classes: learns the generated data set on a CPU.
    pub fn small() -> Self {
        Self::paper().with_width(0.25).with_classes(10)
    }

    /// An eighth-width network with 10 classes: fast enough for tests.
    pub fn tiny() -> Self {
        Self::paper().with_width(0.125).with_classes(10)
    }

    /// A named preset (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "paper" | "zfnet" => Self::paper(),
            "alexnet" => Self::alexnet(),
            "small" => Self::small(),
            "tiny" => Self::tiny(),
            "imgclsmob" => Self::imgclsmob(),
            other => bail!("unknown network config `{other}`: expected one of {}", PRESETS.join(", ")),
        })
    }

    /// Multiplies every width (conv maps and fc units) of the paper's network by `width`,
    /// rounding to the nearest integer and keeping at least one.
    pub fn with_width(mut self, width: f64) -> Self {
        let scale = |n: usize| ((n as f64 * width).round() as usize).max(1);
        self.channels = PAPER_CHANNELS.map(scale);
        self.fc_units = scale(PAPER_FC_UNITS);
        self
    }

    pub fn with_classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self
    }

    pub fn with_input_size(mut self, size: usize) -> Self {
        self.input_size = size;
        self
    }

    pub fn with_lrn(mut self, on: bool) -> Self {
        self.lrn = on.then(LrnConfig::paper);
        self
    }

    pub fn with_first_layer(mut self, first: FirstLayer) -> Self {
        self.first_layer = first;
        self
    }

    /// The layer table: every layer's output shape, parameters and multiply-adds, from
    /// [`ZfConfig::spec`]. An error when the input size does not fit the strides (some layer
    /// would get an input smaller than its window) or a width is zero.
    pub fn table(&self) -> Result<LayerTable> {
        if self.channels.contains(&0) || self.fc_units == 0 || self.classes == 0 {
            bail!(
                "config has a zero width: channels {:?}, fc units {}, classes {}",
                self.channels,
                self.fc_units,
                self.classes
            )
        }
        self.spec().table()
    }

    /// pool5's geometry: floor mode in the paper's order, ceil mode in imgclsmob's.
    pub fn pool5(&self) -> PoolGeometry {
        match self.order {
            Order::Paper => POOL5,
            Order::Imgclsmob => POOL12,
        }
    }

    /// Number of input features of fc6 (the flattened pool5 output).
    pub fn fc6_inputs(&self) -> Result<usize> {
        let table = self.table()?;
        table
            .row("pool5")
            .map(|r| r.shape.iter().product())
            .ok_or_else(|| candle_core::Error::Msg("no pool5 row".into()))
    }
}

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRow {
    /// The layer's readable name (ZFNet's: its tap point and, for conv/fc, its safetensors
    /// prefix; a torchvision network's: the alias, `conv3_2`, `fc7`).
    pub name: String,
    /// Output shape for one image: `[C, H, W]` or `[features]`.
    pub shape: Vec<usize>,
    /// Weights and biases.
    pub params: usize,
    /// Multiply-adds for one image (convolutions and linear layers only).
    pub macs: u64,
}

/// The whole network's shapes, parameters and multiply-adds, layer by layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerTable {
    pub rows: Vec<LayerRow>,
}

impl LayerTable {
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }

    pub fn total_macs(&self) -> u64 {
        self.rows.iter().map(|r| r.macs).sum()
    }

    pub fn row(&self, name: &str) -> Option<&LayerRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

impl std::fmt::Display for LayerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<6} {:>14} {:>12} {:>15}", "layer", "output", "params", "mult-adds")?;
        for r in &self.rows {
            let shape = r.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            writeln!(f, "{:<6} {:>14} {:>12} {:>15}", r.name, shape, group(r.params as u64), group(r.macs))?;
        }
        write!(
            f,
            "{:<6} {:>14} {:>12} {:>15}",
            "total",
            "",
            group(self.total_params() as u64),
            group(self.total_macs())
        )
    }
}

/// 62357608 -> "62,357,608": thousands separated by commas, as the layer tables print counts.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizes_match_pytorch_ceil_mode() {
        // PyTorch: out = ceil((n - k) / s) + 1, minus one if the last window starts outside.
        assert_eq!(POOL12.output_size(110), Some(55));
        assert_eq!(POOL12.output_size(26), Some(13));
        assert_eq!(POOL12.output_size(4), Some(2)); // window 2 starts at 2 < 4
        assert_eq!(POOL12.output_size(3), Some(1));
        assert_eq!(POOL12.output_size(2), None);
        assert_eq!(POOL5.output_size(13), Some(6));
        assert_eq!(POOL5.output_size(4), Some(1));
        // ceil((4 - 1) / 2) + 1 = 3, but the third window would start at 4, past the edge.
        assert_eq!(PoolGeometry::new(1, 2, true).output_size(4), Some(2));
    }

    #[test]
    fn grouping() {
        assert_eq!(group(62_357_608), "62,357,608");
        assert_eq!(group(608), "608");
        assert_eq!(group(1000), "1,000");
    }
}
