//! The input side of zfnet: images become tensors as the paper's Sec. 3 says.
//!
//! - [`Preprocess`]: decode anything the `image` crate reads into RGB, resize the shorter side
//!   to 256 (triangle filter, antialiased), crop the centre 256x256, and cut one of the ten
//!   224x224 [`Crop`]s (centre, four corners, and their mirror images) after subtracting the
//!   per-pixel [`MeanImage`].
//! - [`Dataset`]: a small trait (`len`, `get`) with two implementations: [`ImageFolder`]
//!   (ImageNet layout, class index by sorted folder name) and [`Generated`], the embedded
//!   default: ten classes of objects on cluttered backgrounds, deterministic from a seed, with
//!   bounding boxes and named parts.
//! - [`DataSpec`]: what a `--data` argument names (a folder, or the generated set with its
//!   config), parsed once, opened by [`Split`].
//! - [`pick`]: which images an analysis looks at (one class after another), their centre crops
//!   as a batch, annotations in the crop's frame.
//! - [`Loader`]: parallel decoding, prefetching, a seeded order reshuffled each epoch, batches
//!   of candle tensors `[B, 3, 224, 224]` with labels; bad images are skipped and counted.
//!
//! Depends on candle-core (for tensors) and `image`; no other workspace crate. Used by
//! zf-train, zf-probe and the `zfnet` binary. Errors are [`DataError`].

pub mod error;
pub mod folder;
pub mod generated;
pub mod loader;
pub mod mean;
pub mod pick;
pub mod preprocess;
pub mod spec;

use std::path::Path;

use image::RgbImage;

pub use error::{DataError, Result};
pub use folder::ImageFolder;
pub use generated::{Annotation, Class, Generated, GeneratedConfig, Split};
pub use loader::{Batch, Crops, Loader, LoaderConfig};
pub use mean::MeanImage;
pub use preprocess::{Crop, Preprocess};
pub use spec::{DataSpec, Take};

/// One image of a data set, already squared to the preprocessing's `resize` size.
#[derive(Clone, Debug)]
pub struct Sample {
    pub image: RgbImage,
    pub label: usize,
}

/// A labelled set of images, read one at a time (so nothing assumes it fits in memory).
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image `index`, decoded and squared to `preprocess().resize`, with its label.
    fn get(&self, index: usize) -> Result<Sample>;
    /// The label of image `index`, without decoding it.
    fn label(&self, index: usize) -> usize;
    /// Class names, by class index.
    fn classes(&self) -> &[String];
    /// A name for image `index` in messages (its path, say).
    fn describe(&self, index: usize) -> String;
    /// The sizes this data set's images are squared and cropped to.
    fn preprocess(&self) -> Preprocess;
    /// What image `index` shows (its object's box and named parts, in the generated set's
    /// 256-pixel frame), when the data set knows: the generated set always, an image folder
    /// when the image has a `<image>.json` side file.
    fn annotation(&self, _index: usize) -> Result<Option<generated::Annotation>> {
        Ok(None)
    }
}

/// Writes `bytes` to `path` atomically (zf-io's rule: a synced temporary file renamed into
/// place), with zf-data's error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    zf_io::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}
