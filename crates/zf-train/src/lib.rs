//! The paper's training of ZFNet (Sec. 3): mini-batch SGD with momentum 0.9 in the Caffe form,
//! learning rate 1e-2 divided by 10 when validation error stops improving, dropout 0.5 in fc6
//! and fc7, Gaussian initialization, and the renormalization of every conv filter whose RMS
//! exceeds 0.1 after each update.
//!
//! - [`TrainConfig`]: the paper's recipe ([`TrainConfig::paper`]) and small named ones (`small`,
//!   `tiny`) that learn the generated data set on a CPU.
//! - [`train()`]: the loop over zf-data's [`zf_data::Loader`], with top-1/top-5 validation each
//!   epoch ([`evaluate`], ten-crop or centre), writing a run directory ([`RunDir`]): `run.json`,
//!   `metrics.jsonl`, an atomically written checkpoint from which `resume` continues to the same
//!   numbers (weights, momentum, epoch, step, learning rate; the data order, crops and dropout
//!   masks are drawn from (seed, epoch, index) and (seed, step), so they need no saved RNG
//!   state), `model.safetensors`, and snapshots for the feature-evolution figure.
//! - [`Trainer`]: one update of the recipe (forward with dropout, cross-entropy, backward, SGD,
//!   renormalization) on a network and its momentum; the loop and `zfnet bench` step through it.
//!   On the CPU in f32 it runs without an autograd graph ([`zf_model::Backprop`], then
//!   [`Sgd::step_slices`] in place); elsewhere through candle's autograd.
//! - [`Sgd`] and [`renormalize`], usable on their own.
//! - [`bench`](mod@bench): per-layer conv timings forward and backward, for `zfnet bench`.
//!
//! Depends on zf-model and zf-data. Used by the `zfnet` binary. Errors are [`TrainError`].

pub mod bench;
pub mod config;
pub mod error;
pub mod run;
pub mod sgd;
pub mod train;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use run::{LoopState, MetricLine, RunDir, RunRecord};
pub use sgd::{renormalize, Sgd};
pub use train::{evaluate, train, Data, EpochReport, Eval, Observer, Quiet, StepReport, Summary};
pub use trainer::Trainer;
