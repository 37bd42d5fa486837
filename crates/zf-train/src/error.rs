//! zf-train's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss is {loss} at step {step} (epoch {epoch}): training stopped; the last good checkpoint is in {run}"
    )]
    Diverged { loss: f32, step: usize, epoch: usize, run: PathBuf },
    #[error("{path}: {reason}")]
    Run { path: PathBuf, reason: String },
    #[error(transparent)]
    Data(#[from] zf_data::DataError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
