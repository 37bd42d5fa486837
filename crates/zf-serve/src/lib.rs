//! An explorer for conv nets in the browser, in the spirit of Yosinski et al.'s Deep
//! Visualization Toolbox (2015): choose or upload an image, see the prediction and every
//! channel of a layer live, click a channel for its deconvnet projection (Zeiler & Fergus
//! 2014, Sec. 2.1) and its top-9 images over a data set (Fig. 2), and ask for the occlusion
//! map (Fig. 7) with progress and a cancel button. `zfnet serve` runs it; any network zfnet
//! loads works (ZFNet, torchvision's AlexNet and VGG).
//!
//! - [`explorer`] — the analyses as one synchronous type, [`Explorer`], that answers with typed
//!   views (pictures as PNG data URLs); no HTTP.
//! - [`queue`] — the bounded work queue: analyses run off the async threads, at most one per
//!   worker at a time, and requests beyond the queue are refused (503 with Retry-After).
//! - [`jobs`] — long analyses (occlusion) as jobs the page polls and may cancel.
//! - [`server`] — the HTTP API and the page, on axum and tokio; every asset is embedded in the
//!   binary (no CDN: the explorer works offline).
//! - [`limits`] — what the server accepts and keeps, in one place.
//!
//! Depends on zf-model (the network), zf-data (preprocessing, data sets), zf-deconv (the
//! projections), zf-probe (occlusion, the Fig. 2 index) and zf-viz (pictures). Errors are one
//! enum, [`ExploreError`], each variant an HTTP status.

pub mod explorer;
pub mod jobs;
pub mod limits;
pub mod queue;
pub mod server;

pub use explorer::{Explorer, ExplorerParts};
pub use server::{router, serve, ServeConfig};

/// What went wrong with a request; each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A parameter that does not fit (400).
    #[error("{0}")]
    BadRequest(String),
    /// Something that is not there (404).
    #[error("{0}")]
    NotFound(String),
    /// An upload over the limits (413).
    #[error("{0}")]
    TooLarge(String),
    /// A content type the endpoint does not take (415).
    #[error("{0}")]
    UnsupportedType(String),
    /// Every worker busy and the queue full (503, with Retry-After).
    #[error("busy: {0}")]
    Busy(String),
    /// A failure of the analysis itself (500).
    #[error("{0}")]
    Internal(String),
}

impl ExploreError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound(_) => 404,
            Self::TooLarge(_) => 413,
            Self::UnsupportedType(_) => 415,
            Self::Busy(_) => 503,
            Self::Internal(_) => 500,
        }
    }
}
