//! zf-data's one error type.

use std::path::PathBuf;

/// Everything that can go wrong on the input side. Messages say what was expected and what
/// was found.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file that does not decode, is truncated, is not an image or is absurdly large.
    #[error("{path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    /// A data set in which no image can be used.
    #[error("no usable image in {what}: {detail}")]
    Empty { what: String, detail: String },
    /// A file or directory that cannot be read or written.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// A file whose contents are not what they should be (class names, mean image, side files).
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// An argument out of range.
    #[error("{0}")]
    Invalid(String),
    /// Tensor code.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), error: source }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
