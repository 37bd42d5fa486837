//! The run directory: `run.json`, `metrics.jsonl`, `checkpoint.safetensors` (weights, momentum
//! and the loop's state, written atomically), `model.safetensors` (the latest weights in the
//! plain format `--weights` takes), `mean.safetensors`, and `snapshots/epoch-NNN.safetensors`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Where the training loop is: enough to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// The next batch of that epoch.
    pub batch: usize,
    /// Updates done so far.
    pub step: usize,
    pub lr: f64,
    /// Best validation top-1 error so far, and epochs since it improved.
    pub best_val_top1: Option<f64>,
    pub bad_epochs: usize,
    /// The running sum of the epoch in progress' training loss (times images) and its image
    /// count, so that a resumed epoch reports the same mean loss.
    #[serde(default)]
    pub epoch_loss_sum: f64,
    #[serde(default)]
    pub epoch_images: usize,
}

/// One line of `metrics.jsonl`: an update, or the end of an epoch (`"kind"` says which).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricLine {
    Step {
        step: usize,
        epoch: usize,
        loss: f32,
        lr: f64,
        images_per_s: f64,
    },
    Epoch {
        step: usize,
        epoch: usize,
        train_loss: f64,
        val_top1_err: f64,
        val_top5_err: f64,
        val_loss: f64,
        ten_crop: bool,
        lr: f64,
        seconds: f64,
        images_per_s: f64,
    },
}

/// Metadata key of the loop state in a checkpoint.
pub const STATE_KEY: &str = "zfnet.train_state";

/// What a checkpoint holds: weights by key, momentum by key, the loop state.
pub type Checkpoint = (HashMap<String, Tensor>, HashMap<String, Tensor>, LoopState);

/// Paths of one run.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

/// What `run.json` records: how the run was started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub config: crate::TrainConfig,
    pub seed: u64,
    /// zfnet's own source revision (set when zfnet was built).
    pub revision: String,
    /// A description of the data sets.
    pub data: String,
    /// How to make the data sets again (see [`crate::Data::spec`]).
    #[serde(default)]
    pub data_spec: Option<serde_json::Value>,
    pub train_images: usize,
    pub val_images: usize,
    pub device: String,
    pub zfnet_version: String,
}

impl RunDir {
    /// An existing run directory: one with a `run.json`.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = Self { root: root.to_path_buf() };
        if !dir.run_json().is_file() {
            return Err(TrainError::Run {
                path: root.to_path_buf(),
                reason: "is not a training run (no run.json)".into(),
            });
        }
        Ok(dir)
    }

    /// Reads `run.json`.
    pub fn record(&self) -> Result<RunRecord> {
        let path = self.run_json();
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::Run { path, reason: format!("not a run record this zfnet can read: {e}") })
    }

    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("snapshots")).map_err(|e| io(root, e))?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }
    pub fn model(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }
    pub fn mean(&self) -> PathBuf {
        self.root.join("mean.safetensors")
    }
    pub fn snapshot(&self, epoch: usize) -> PathBuf {
        self.root.join("snapshots").join(format!("epoch-{epoch:03}.safetensors"))
    }

    /// Appends one line to `metrics.jsonl` (flushed, so a kill loses at most that line).
    pub fn log(&self, line: &MetricLine) -> Result<()> {
        let path = self.metrics();
        let json = serde_json::to_string(line).map_err(|e| TrainError::Config(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        writeln!(f, "{json}").map_err(|e| io(&path, e))
    }

    /// The lines of `metrics.jsonl` (none when the run has not logged yet). A line that does not
    /// parse is an error naming it.
    pub fn metrics_lines(&self) -> Result<Vec<MetricLine>> {
        let path = self.metrics();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Vec::new()) };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| TrainError::Run { path: path.clone(), reason: format!("line {}: {e}", i + 1) })
            })
            .collect()
    }

    /// The snapshots written so far, `(epoch, path)` by epoch.
    pub fn snapshots(&self) -> Result<Vec<(usize, PathBuf)>> {
        let dir = self.root.join("snapshots");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for e in entries {
            let p = e.map_err(|e| io(&dir, e))?.path();
            let epoch = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok());
            if let Some(epoch) = epoch {
                out.push((epoch, p));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Drops metric lines past `step` (a resumed run repeats them from its checkpoint).
    pub fn truncate_metrics(&self, step: usize) -> Result<()> {
        let path = self.metrics();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s as usize <= step)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        zf_data::write_atomic(&path, out.as_bytes())?;
        Ok(())
    }

    /// Writes the checkpoint atomically: weights under their keys, momentum under
    /// `momentum.<key>`, the loop state and the training config in the metadata.
    pub fn save_checkpoint(
        &self,
        weights: &[(String, Tensor)],
        momentum: &[Tensor],
        state: &LoopState,
        config_json: &str,
    ) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = weights.to_vec();
        for ((k, _), v) in weights.iter().zip(momentum) {
            named.push((format!("momentum.{k}"), v.clone()));
        }
        let meta = HashMap::from([
            (STATE_KEY.to_string(), serde_json::to_string(state).map_err(|e| TrainError::Config(e.to_string()))?),
            ("zfnet.train_config".to_string(), config_json.to_string()),
        ]);
        zf_model::weights::save_tensors(&named, meta, &self.checkpoint())?;
        Ok(())
    }

    /// Reads the checkpoint back: weights, momentum (by key) and the loop state.
    pub fn load_checkpoint(&self, device: &Device) -> Result<Checkpoint> {
        let path = self.checkpoint();
        let bad = |reason: String| TrainError::Run { path: path.clone(), reason };
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read the checkpoint: {e}")))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        let state = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STATE_KEY))
            .ok_or_else(|| bad(format!("no `{STATE_KEY}` in the metadata")))?;
        let state: LoopState = serde_json::from_str(state).map_err(|e| bad(format!("bad loop state: {e}")))?;
        let all = candle_core::safetensors::load_buffer(&bytes, device)?;
        let (mut weights, mut momentum) = (HashMap::new(), HashMap::new());
        for (k, t) in all {
            match k.strip_prefix("momentum.") {
                Some(rest) => momentum.insert(rest.to_string(), t),
                None => weights.insert(k, t),
            };
        }
        Ok((weights, momentum, state))
    }
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Run { path: path.to_path_buf(), reason: e.to_string() }
}
