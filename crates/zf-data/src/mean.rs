//! The per-pixel mean image (3 x 256 x 256), computed in one parallel streaming pass over a
//! training set, stored as safetensors, loaded back and subtracted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::Dataset;

/// The tensor name in the mean file.
pub const MEAN_KEY: &str = "mean";

/// The mean over a data set of every pixel of the `resize` square, per channel.
///
/// # Shapes
/// `values`: `[3, S, S]` flattened, `S = side`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanImage {
    pub side: usize,
    pub values: Vec<f32>,
    /// Images that went into it.
    pub count: usize,
}

impl MeanImage {
    /// One streaming pass over `dataset` on the current rayon pool: each worker sums into its
    /// own f64 accumulator, so memory does not grow with the data set. Images that fail to
    /// load are skipped with a warning and counted; none usable is an error.
    pub fn compute(dataset: &dyn Dataset) -> Result<Self> {
        let side = dataset.preprocess().resize;
        let n = side * side;
        let skipped = AtomicUsize::new(0);
        let (sum, count) = (0..dataset.len())
            .into_par_iter()
            .fold(
                || (vec![0f64; 3 * n], 0usize),
                |(mut acc, count), i| match dataset.get(i) {
                    Ok(s) => {
                        for (p, px) in s.image.as_raw().chunks_exact(3).enumerate() {
                            for ch in 0..3 {
                                acc[ch * n + p] += px[ch] as f64;
                            }
                        }
                        (acc, count + 1)
                    }
                    Err(e) => {
                        tracing::warn!("skipped: {e}");
                        skipped.fetch_add(1, Ordering::Relaxed);
                        (acc, count)
                    }
                },
            )
            .reduce(
                || (vec![0f64; 3 * n], 0),
                |(mut a, ca), (b, cb)| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    (a, ca + cb)
                },
            );
        if count == 0 {
            return Err(DataError::Empty {
                what: "the mean image's data set".into(),
                detail: format!("all {} images failed to load", dataset.len()),
            });
        }
        let skipped = skipped.into_inner();
        if skipped > 0 {
            tracing::warn!("mean image: {skipped} of {} images skipped", dataset.len());
        }
        Ok(Self { side, values: sum.iter().map(|v| (v / count as f64) as f32).collect(), count })
    }

    /// The mean as a `[3, S, S]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.values, (3, self.side, self.side), device)?)
    }

    /// Writes `mean` `[3, S, S]` f32 to a safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let t = self.to_tensor(&Device::Cpu)?;
        let meta = HashMap::from([("count".to_string(), self.count.to_string())]);
        let bytes = safetensors_bytes(&t, meta)?;
        crate::write_atomic(path, &bytes)
    }

    /// Reads a mean file written by [`MeanImage::save`] (or any safetensors file with a
    /// `[3, S, S]` tensor named `mean`).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| DataError::Format { path: path.into(), reason };
        let map =
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(format!("not a mean image: {e}")))?;
        let t = map.get(MEAN_KEY).ok_or_else(|| bad(format!("no tensor named `{MEAN_KEY}`")))?;
        let (c, h, w) =
            t.dims3().map_err(|_| bad(format!("`{MEAN_KEY}` has shape {:?}, expected [3, S, S]", t.dims())))?;
        if c != 3 || h != w {
            return Err(bad(format!("`{MEAN_KEY}` has shape {:?}, expected [3, S, S]", t.dims())));
        }
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(Self { side: h, values, count: 0 })
    }
}

fn safetensors_bytes(t: &Tensor, meta: HashMap<String, String>) -> Result<Vec<u8>> {
    safetensors::serialize([(MEAN_KEY, t)], Some(meta)).map_err(|e| DataError::Invalid(e.to_string()))
}
