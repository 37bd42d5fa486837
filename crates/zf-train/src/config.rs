//! Training configurations: the paper's recipe ([`TrainConfig::paper`]) and small named ones
//! that learn the generated data set on a CPU.

use serde::{Deserialize, Serialize};
use zf_model::init::Init;
use zf_model::ZfConfig;

use crate::error::{Result, TrainError};

/// The paper's snapshot epochs for the feature-evolution figure (Fig. 4), out of 70.
pub const PAPER_SNAPSHOTS: [usize; 8] = [1, 2, 5, 10, 20, 30, 40, 64];
/// The input scale of the CPU presets: mean-subtracted pixels (about -128..128) times 1/64 have
/// about unit variance, which He's initialization assumes.
pub const HE_INPUT_SCALE: f64 = 1.0 / 64.0;

/// The paper's training length (Sec. 3).
pub const PAPER_EPOCHS: usize = 70;
/// The radius of the filter renormalization (Sec. 3): conv filters with RMS above it are
/// scaled back to it.
pub const PAPER_RENORM_RMS: f64 = 0.1;

/// Everything a training run needs besides its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The preset's name, for run.json and the report.
    pub name: String,
    pub model: ZfConfig,
    pub init: Init,
    /// conv1's initial weights are `init`'s times this (1 = as drawn). Below 1 the first layer
    /// starts small, as under the paper's init, so that the filters it learns outweigh their
    /// random start within a short run; its renormalization radius scales with it.
    #[serde(default = "one")]
    pub conv1_init_scale: f64,
    pub seed: u64,
    pub epochs: usize,
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Epochs without validation improvement before the learning rate is divided.
    pub patience: usize,
    /// The learning rate is divided by this on a plateau...
    pub lr_decay: f64,
    /// ...but not below this.
    pub lr_floor: f64,
    /// RMS radius of the conv filter renormalization as the paper states it, for its init (0.1
    /// for weights of std 0.01); under another init each layer's radius scales with that init's
    /// std ([`crate::trainer::renorm_radius`]), so filters start 10x below it as in the paper.
    /// `None` switches renormalization off.
    pub renorm: Option<f64>,
    /// Validate with the softmax averaged over the ten crops (else the centre crop only).
    pub ten_crop_eval: bool,
    /// Epochs (1-based) after which a weights snapshot is kept.
    pub snapshots: Vec<usize>,
    /// Steps between checkpoints (one is also written after every epoch).
    pub checkpoint_every: usize,
    /// Loader threads.
    pub threads: usize,
}

fn one() -> f64 {
    1.0
}

/// conv1's init scale of the CPU presets: He's std / 10 (RMS 0.0117 for ZFNet's 7x7x3 filters,
/// about the paper's 0.01). Measured on the default run: at He's full std, conv1's filters grow
/// only 1.6x in 10 epochs and still look like their random start; at a tenth they grow 10x, to
/// their radius, into colour blobs and oriented edges.
pub const CPU_CONV1_INIT_SCALE: f64 = 0.1;

/// Names of the presets, for help texts.
pub const PRESETS: &[&str] = &["paper", "small", "tiny"];

impl TrainConfig {
    /// The paper's recipe (Sec. 3): the paper's network, batch 128, learning rate
    /// 1e-2, momentum 0.9, no weight decay, Gaussian init with std 1e-2, renormalization to RMS
    /// 0.1, 70 epochs, ten-crop validation, the paper's snapshot epochs.
    pub fn paper() -> Self {
        Self {
            name: "paper".into(),
            model: ZfConfig::paper(),
            init: Init::Paper,
            conv1_init_scale: 1.0,
            seed: 0,
            epochs: PAPER_EPOCHS,
            batch: 128,
            lr: 1e-2,
            momentum: 0.9,
            weight_decay: 0.0,
            patience: 3,
            lr_decay: 10.0,
            lr_floor: 1e-5,
            renorm: Some(PAPER_RENORM_RMS),
            ten_crop_eval: true,
            snapshots: PAPER_SNAPSHOTS.to_vec(),
            checkpoint_every: 500,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    /// A quarter-width network on 10 classes, 20 epochs, with He's initialization and inputs
    /// scaled by [`HE_INPUT_SCALE`]: the paper's std 1e-2 initialization stays at chance for
    /// tens of thousands of images (activations shrink about 5x per layer), which a CPU budget
    /// cannot afford.
    pub fn small() -> Self {
        let mut model = ZfConfig::small();
        model.input_scale = HE_INPUT_SCALE;
        Self {
            name: "small".into(),
            model,
            init: Init::He,
            conv1_init_scale: CPU_CONV1_INIT_SCALE,
            epochs: 20,
            batch: 64,
            ..Self::paper()
        }
        .with_scaled_snapshots()
    }

    /// An eighth-width network on 112-pixel crops, 10 classes, initialized and scaled as
    /// [`TrainConfig::small`]: seconds per epoch on a CPU; the tests train it.
    pub fn tiny() -> Self {
        let mut model = ZfConfig::tiny().with_input_size(112);
        model.input_scale = HE_INPUT_SCALE;
        Self {
            name: "tiny".into(),
            model,
            init: Init::He,
            conv1_init_scale: CPU_CONV1_INIT_SCALE,
            epochs: 4,
            batch: 32,
            ten_crop_eval: false,
            checkpoint_every: 50,
            ..Self::paper()
        }
        .with_scaled_snapshots()
    }

    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "paper" => Self::paper(),
            "small" => Self::small(),
            "tiny" => Self::tiny(),
            other => {
                return Err(TrainError::Config(format!(
                    "unknown training config `{other}`: expected one of {}",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Sets the number of epochs and scales the snapshot epochs with it.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self.with_scaled_snapshots()
    }

    /// The paper's snapshot epochs scaled from 70 to this run's length (at least epoch 1, no
    /// repeats); every epoch when scaling leaves fewer than the paper's eight (a short run), so
    /// that Fig. 4 still sees the layers settle at eight or more points.
    pub fn with_scaled_snapshots(mut self) -> Self {
        let mut s: Vec<usize> = PAPER_SNAPSHOTS
            .iter()
            .map(|&e| {
                ((e as f64 * self.epochs as f64 / PAPER_EPOCHS as f64).round() as usize).clamp(1, self.epochs.max(1))
            })
            .collect();
        s.dedup();
        if s.len() < PAPER_SNAPSHOTS.len() {
            s = (1..=self.epochs).collect();
        }
        self.snapshots = s;
        self
    }

    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 || self.batch == 0 {
            return bad(format!("epochs and batch must be at least 1, got {} and {}", self.epochs, self.batch));
        }
        if !(self.conv1_init_scale > 0.0 && self.conv1_init_scale.is_finite()) {
            return bad(format!("conv1's init scale must be positive, got {}", self.conv1_init_scale));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if self.lr_decay <= 1.0 {
            return bad(format!("lr_decay must be above 1, got {}", self.lr_decay));
        }
        self.model.table()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_scale_with_the_run() {
        assert_eq!(TrainConfig::paper().snapshots, vec![1, 2, 5, 10, 20, 30, 40, 64]);
        // 20 epochs: 0.29, 0.57, 1.43, 2.86, 5.71, 8.57, 11.43, 18.29 -> 1, 1, 1, 3, 6, 9, 11, 18.
        // Scaled to 20 epochs only six distinct epochs remain: every epoch instead.
        assert_eq!(TrainConfig::paper().with_epochs(20).snapshots, (1..=20).collect::<Vec<_>>());
        assert_eq!(TrainConfig::paper().with_epochs(140).snapshots, vec![2, 4, 10, 20, 40, 60, 80, 128]);
        assert_eq!(TrainConfig::paper().with_epochs(1).snapshots, vec![1]);
        assert!(TrainConfig { lr: -1.0, ..TrainConfig::tiny() }.validate().is_err());
        assert!(TrainConfig::preset("huge").is_err());
    }
}
