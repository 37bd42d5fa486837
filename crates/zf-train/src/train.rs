//! The training loop and evaluation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use serde::Serialize;
use zf_data::{Crops, Dataset, Loader, LoaderConfig, MeanImage};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::run::{LoopState, MetricLine, RunDir};
use crate::trainer::Trainer;

/// Top-1 and top-5 error of a network on a data set.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Eval {
    pub top1_err: f64,
    pub top5_err: f64,
    /// Mean cross-entropy of the (averaged) softmax.
    pub loss: f64,
    pub images: usize,
    /// Whether the softmax was averaged over the ten crops (else the centre crop only).
    pub ten_crop: bool,
    /// Per image (data-set index, in index order): whether the top-1 class was right, so that
    /// two networks evaluated on the same set can be compared image by image.
    #[serde(default)]
    pub top1_correct: Vec<(usize, bool)>,
}

/// What one update reports.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub epoch: usize,
    pub batch: usize,
    pub batches: usize,
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub images_per_s: f64,
}

/// What one epoch reports.
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val: Eval,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Receives progress; the binary draws it.
pub trait Observer {
    fn on_step(&mut self, _step: &StepReport) {}
    fn on_epoch(&mut self, _epoch: &EpochReport) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub epochs_done: usize,
    pub steps: usize,
    pub last: Option<EpochReport>,
    /// Stopped by the stop flag (Ctrl-C) with a checkpoint written.
    pub interrupted: bool,
    /// Images that could not be read (skipped).
    pub skipped: usize,
    pub seconds: f64,
}

/// The data of a run.
#[derive(Clone)]
pub struct Data {
    pub train: Arc<dyn Dataset>,
    pub val: Arc<dyn Dataset>,
    /// A description for run.json.
    pub description: String,
    /// How to make these sets again (recorded in run.json as `data_spec`, read back by whoever
    /// resumes the run; the training loop does not interpret it).
    pub spec: Option<serde_json::Value>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({}: {} train, {} val)", self.description, self.train.len(), self.val.len())
    }
}

/// Top-1/top-5 error of `net` over `loader` (built with [`Crops::Ten`] or [`Crops::Centre`]):
/// with ten crops the softmax is averaged over each image's crops.
pub fn evaluate(net: &impl AsRef<zf_model::Net>, loader: &Loader, device: &Device) -> Result<Eval> {
    let net = net.as_ref();
    let ten = loader.config().crops == Crops::Ten;
    let (mut n, mut top1, mut top5, mut loss) = (0usize, 0usize, 0usize, 0f64);
    let mut top1_correct = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let b = batch.indices.len();
        let probs = candle_nn::ops::softmax_last_dim(&net.forward(&batch.images.to_device(device)?)?)?;
        let classes = probs.dim(1)?;
        let probs = if ten { probs.reshape((b, 10, classes))?.mean(1)? } else { probs };
        let probs = probs.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let labels = batch.labels.to_vec1::<u32>()?;
        for ((p, &l), &index) in probs.iter().zip(&labels).zip(&batch.indices) {
            let pl = p[l as usize];
            let rank = p.iter().filter(|&&q| q > pl).count();
            top1_correct.push((index, rank == 0));
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
            loss -= (pl.max(1e-12) as f64).ln();
        }
        n += b;
    }
    if n == 0 {
        return Err(TrainError::Config("no validation image could be read".into()));
    }
    top1_correct.sort_unstable();
    Ok(Eval {
        top1_correct,
        top1_err: 1.0 - top1 as f64 / n as f64,
        top5_err: 1.0 - top5 as f64 / n as f64,
        loss: loss / n as f64,
        images: n,
        ten_crop: ten,
    })
}

/// Trains a network as `config` says, in the run directory `run` (see [`RunDir`]).
///
/// With `resume`, continues from `run`'s checkpoint to the same numbers as an uninterrupted run;
/// without it, `run` must not hold a run already. `stop` (set by Ctrl-C) ends the run after the
/// current update with a checkpoint written. A NaN or infinite loss stops with
/// [`TrainError::Diverged`], leaving the last good checkpoint in place.
#[allow(clippy::too_many_arguments)]
pub fn train(
    config: &TrainConfig,
    data: &Data,
    run: &Path,
    resume: bool,
    revision: &str,
    device: &Device,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    config.validate()?;
    let t0 = Instant::now();
    let dir = RunDir::create(run)?;
    if !resume && dir.checkpoint().exists() {
        return Err(TrainError::Run {
            path: run.to_path_buf(),
            reason: "holds a run already: pass --resume to continue it, or choose another output folder".into(),
        });
    }
    // Killed before its first checkpoint (e.g. during the mean-image pass): nothing to continue
    // from, so the run starts from the beginning, with the config it was started with.
    let resume = resume && {
        let has = dir.checkpoint().exists();
        if !has {
            tracing::info!("{} has no checkpoint yet: starting the run from the beginning", run.display());
            dir.truncate_metrics(0)?;
        }
        has
    };
    let config_json = serde_json::to_string(config).map_err(|e| TrainError::Config(e.to_string()))?;
    let pre = data.train.preprocess();
    if pre.crop != config.model.input_size {
        return Err(TrainError::Config(format!(
            "the data gives {0}x{0} crops, the network takes {1}x{1}",
            pre.crop, config.model.input_size
        )));
    }

    // run.json first, so that a run killed at any point can be resumed with its config.
    let run_json = crate::RunRecord {
        config: config.clone(),
        seed: config.seed,
        revision: revision.to_string(),
        data: data.description.clone(),
        data_spec: data.spec.clone(),
        train_images: data.train.len(),
        val_images: data.val.len(),
        device: format!("{device:?}"),
        zfnet_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    zf_data::write_atomic(
        &dir.run_json(),
        &serde_json::to_vec_pretty(&run_json).map_err(|e| TrainError::Config(e.to_string()))?,
    )?;

    // The per-pixel mean of the training set, computed once per run.
    let mean = if dir.mean().exists() {
        MeanImage::load(&dir.mean())?
    } else {
        tracing::info!("computing the mean image over {} training images", data.train.len());
        let m = MeanImage::compute(data.train.as_ref())?;
        m.save(&dir.mean())?;
        m
    };

    // The network and optimizer, fresh or from the checkpoint.
    let (mut trainer, mut state) = if resume {
        let (w, m, s) = dir.load_checkpoint(device)?;
        tracing::info!("resuming at epoch {}, batch {}, step {}", s.epoch + 1, s.batch, s.step);
        dir.truncate_metrics(s.step)?;
        let trainer = Trainer::from_tensors(config, &w, Some(&m), device)
            .map_err(|e| TrainError::Run { path: dir.checkpoint(), reason: e.to_string() })?;
        (trainer, s)
    } else {
        let state = LoopState {
            epoch: 0,
            batch: 0,
            step: 0,
            lr: config.lr,
            best_val_top1: None,
            bad_epochs: 0,
            epoch_loss_sum: 0.0,
            epoch_images: 0,
        };
        (Trainer::new(config, device)?, state)
    };

    let train_loader = Loader::new(
        data.train.clone(),
        Some(&mean),
        LoaderConfig { threads: config.threads, ..LoaderConfig::train(config.batch, config.seed) },
    )?;
    let crops = if config.ten_crop_eval { Crops::Ten } else { Crops::Centre };
    let val_loader = Loader::new(
        data.val.clone(),
        Some(&mean),
        LoaderConfig { threads: config.threads, ..LoaderConfig::eval(config.batch, crops) },
    )?;
    let batches = train_loader.batches_per_epoch();
    let checkpoint = |state: &LoopState, trainer: &Trainer| -> Result<()> {
        dir.save_checkpoint(&trainer.weights(), trainer.momentum(), state, &config_json)
    };
    let mut last = None;
    let summary = |state: &LoopState, last: Option<EpochReport>, interrupted: bool| Summary {
        epochs_done: state.epoch,
        steps: state.step,
        last,
        interrupted,
        skipped: train_loader.skipped() + val_loader.skipped(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    while state.epoch < config.epochs {
        let epoch_start = Instant::now();
        let mut seen = 0usize;
        for batch in train_loader.epoch_from(state.epoch, state.batch) {
            let batch = batch?;
            let t = Instant::now();
            let x = batch.images.to_device(device)?;
            let labels = batch.labels.to_device(device)?;
            let lv = trainer.step(&x, &labels, state.lr, state.step as u64)?;
            if !lv.is_finite() {
                return Err(TrainError::Diverged {
                    loss: lv,
                    step: state.step,
                    epoch: state.epoch + 1,
                    run: run.to_path_buf(),
                });
            }
            state.step += 1;
            state.batch += 1;
            let n = batch.indices.len();
            seen += n;
            state.epoch_loss_sum += lv as f64 * n as f64;
            state.epoch_images += n;
            let report = StepReport {
                epoch: state.epoch + 1,
                batch: state.batch,
                batches,
                step: state.step,
                loss: lv,
                lr: state.lr,
                images_per_s: n as f64 / t.elapsed().as_secs_f64(),
            };
            dir.log(&MetricLine::Step {
                step: state.step,
                epoch: report.epoch,
                loss: lv,
                lr: state.lr,
                images_per_s: report.images_per_s,
            })?;
            observer.on_step(&report);
            if state.step % config.checkpoint_every.max(1) == 0 {
                checkpoint(&state, &trainer)?;
            }
            if stop.load(Ordering::SeqCst) {
                checkpoint(&state, &trainer)?;
                trainer.net().save(&dir.model())?;
                tracing::info!("stopped at step {}; resume with --resume", state.step);
                return Ok(summary(&state, last, true));
            }
        }
        // End of the epoch: validate, anneal on a plateau, write everything.
        let val = evaluate(trainer.net(), &val_loader, device)?;
        let improved = state.best_val_top1.is_none_or(|b| val.top1_err < b - 1e-12);
        if improved {
            state.best_val_top1 = Some(val.top1_err);
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
            if state.bad_epochs >= config.patience {
                let lr = (state.lr / config.lr_decay).max(config.lr_floor);
                if lr < state.lr {
                    tracing::info!(
                        "validation error has not improved for {} epochs: learning rate {} -> {lr}",
                        state.bad_epochs,
                        state.lr
                    );
                }
                state.lr = lr;
                state.bad_epochs = 0;
            }
        }
        let seconds = epoch_start.elapsed().as_secs_f64();
        let report = EpochReport {
            epoch: state.epoch + 1,
            epochs: config.epochs,
            step: state.step,
            train_loss: if state.epoch_images > 0 {
                state.epoch_loss_sum / state.epoch_images as f64
            } else {
                f64::NAN
            },
            val,
            lr: state.lr,
            seconds,
            images_per_s: seen as f64 / seconds,
        };
        dir.log(&MetricLine::Epoch {
            step: state.step,
            epoch: report.epoch,
            train_loss: report.train_loss,
            val_top1_err: report.val.top1_err,
            val_top5_err: report.val.top5_err,
            val_loss: report.val.loss,
            ten_crop: report.val.ten_crop,
            lr: state.lr,
            seconds,
            images_per_s: report.images_per_s,
        })?;
        state.epoch += 1;
        state.batch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_images = 0;
        trainer.net().save(&dir.model())?;
        if config.snapshots.contains(&state.epoch) {
            trainer.net().save(&dir.snapshot(state.epoch))?;
        }
        checkpoint(&state, &trainer)?;
        observer.on_epoch(&report);
        last = Some(report);
    }
    Ok(summary(&state, last, false))
}
