//! The batch loader: decoding and preprocessing in parallel, prefetching ahead of the consumer,
//! in a deterministic order from a seed, reshuffled each epoch.

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::mean::MeanImage;
use crate::preprocess::Crop;
use crate::{Dataset, Sample};

/// Which of the ten crops each image gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crops {
    /// One of the ten, drawn uniformly per image per epoch (training, the paper's Sec. 3).
    Random,
    /// The centre crop only.
    Centre,
    /// All ten, image-major: a batch of B images holds 10 B crops (evaluation averages over them).
    Ten,
}

/// How a [`Loader`] batches.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Images per batch (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// Decoding threads.
    pub threads: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Seed of the order and of the random crops.
    pub seed: u64,
    /// Reshuffle every epoch (otherwise the data set's order).
    pub shuffle: bool,
    pub crops: Crops,
    /// Decoded, squared images kept in memory for later epochs, up to this many bytes (0: no
    /// cache). Small data sets are then decoded once; large ones fill the cache and stream the
    /// rest, so memory stays bounded.
    pub cache_bytes: usize,
}

/// The default image cache: 1 GiB (about 5,000 images of 256x256, 20,000 of 128x128).
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

impl LoaderConfig {
    /// Shuffled, random crops: the training loader.
    pub fn train(batch: usize, seed: u64) -> Self {
        Self {
            batch,
            threads: default_threads(),
            prefetch: 2,
            seed,
            shuffle: true,
            crops: Crops::Random,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }

    /// In order, with the given crops: the evaluation loader.
    pub fn eval(batch: usize, crops: Crops) -> Self {
        Self {
            batch,
            threads: default_threads(),
            prefetch: 2,
            seed: 0,
            shuffle: false,
            crops,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// One batch.
///
/// # Shapes
/// - `images`: `[B, 3, C, C]` f32, mean subtracted (`[10 B, 3, C, C]` with [`Crops::Ten`],
///   image-major: the ten crops of image 0, then of image 1, ...)
/// - `labels`: `[B]` u32
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    /// Data set indices of the images, in batch order.
    pub indices: Vec<usize>,
    /// The crop each image gave (the first crop with [`Crops::Ten`]).
    pub crops: Vec<Crop>,
}

/// Batches of a [`Dataset`] (see the module docs). Bad images are skipped with a warning that
/// names them, once, and counted ([`Loader::skipped`]); the loader never stops on them.
pub struct Loader {
    /// Shared with the thread that prepares an epoch's batches.
    work: Arc<Work>,
}

/// Decoded images by index, up to a byte budget.
#[derive(Default)]
struct Cache {
    images: Mutex<(std::collections::HashMap<usize, Arc<Sample>>, usize)>,
    budget: usize,
}

impl Cache {
    fn get(&self, i: usize) -> Option<Arc<Sample>> {
        self.images.lock().ok()?.0.get(&i).cloned()
    }

    fn put(&self, i: usize, sample: Arc<Sample>) {
        let bytes = sample.image.as_raw().len();
        if let Ok(mut g) = self.images.lock() {
            if g.1 + bytes <= self.budget && !g.0.contains_key(&i) {
                g.0.insert(i, sample);
                g.1 += bytes;
            }
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("len", &self.work.dataset.len()).field("config", &self.work.config).finish()
    }
}

impl Loader {
    /// A loader over `dataset`, subtracting `mean` (which must match the data set's resize
    /// size) when given.
    pub fn new(dataset: Arc<dyn Dataset>, mean: Option<&MeanImage>, config: LoaderConfig) -> Result<Self> {
        if config.batch == 0 || config.threads == 0 || config.prefetch == 0 {
            return Err(DataError::Invalid(format!(
                "loader needs batch, threads and prefetch of at least 1, got {config:?}"
            )));
        }
        let side = dataset.preprocess().resize;
        if let Some(m) = mean {
            if m.side != side {
                return Err(DataError::Invalid(format!(
                    "mean image is {0}x{0}, the data set's images are {side}x{side}",
                    m.side
                )));
            }
        }
        if dataset.is_empty() {
            return Err(DataError::Empty { what: "the loader's data set".into(), detail: "it has no images".into() });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("zf-data-{i}"))
            .build()
            .map_err(|e| DataError::Invalid(format!("cannot start loader threads: {e}")))?;
        let cache = Cache { images: Mutex::default(), budget: config.cache_bytes };
        let work = Work {
            dataset,
            mean: mean.map(|m| m.values.clone()),
            config,
            pool,
            bad: Mutex::new(HashSet::new()),
            cache,
        };
        Ok(Self { work: Arc::new(work) })
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.work.dataset
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.work.config
    }

    /// Batches per epoch (counting a smaller last batch).
    pub fn batches_per_epoch(&self) -> usize {
        self.work.dataset.len().div_ceil(self.work.config.batch)
    }

    /// The order of the data set's indices in `epoch`: a permutation from (seed, epoch), or
    /// the identity without shuffling.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.work.dataset.len()).collect();
        if self.work.config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.work.config.seed, epoch as u64, u64::MAX)));
        }
        order
    }

    /// The crop image `index` gives in `epoch` (with [`Crops::Random`], drawn from (seed,
    /// epoch, index), so it does not depend on threads or batch size).
    pub fn crop_for(&self, epoch: usize, index: usize) -> Crop {
        match self.work.config.crops {
            Crops::Random => Crop(
                ChaCha8Rng::seed_from_u64(mix(self.work.config.seed, epoch as u64, index as u64)).random_range(0..10),
            ),
            Crops::Centre | Crops::Ten => Crop::CENTRE,
        }
    }

    /// Distinct images that failed to load so far.
    pub fn skipped(&self) -> usize {
        self.work.bad.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// The batches of `epoch`, prepared by a background thread up to `prefetch` ahead.
    /// Dropping the iterator stops the work.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// As [`Loader::epoch`], starting at batch `first` (to resume in the middle of an epoch).
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Epoch {
        let (tx, rx) = sync_channel(self.work.config.prefetch);
        let order = self.order(epoch);
        let crops: Vec<Crop> = order.iter().map(|&i| self.crop_for(epoch, i)).collect();
        let work = self.work.clone();
        let handle = std::thread::Builder::new()
            .name("zf-data-batches".into())
            .spawn(move || {
                let mut any = false;
                for (b, chunk) in order.chunks(work.config.batch).enumerate().skip(first) {
                    let crops = &crops[b * work.config.batch..b * work.config.batch + chunk.len()];
                    let batch = work.batch(chunk, crops);
                    if let Ok(Some(_)) = &batch {
                        any = true;
                    }
                    let item = match batch {
                        Ok(Some(b)) => Ok(b),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    };
                    if tx.send(item).is_err() {
                        return;
                    }
                }
                if !any && first == 0 {
                    let _ = tx.send(Err(DataError::Empty {
                        what: "the data set".into(),
                        detail: format!("all {} images failed to load", work.dataset.len()),
                    }));
                }
            })
            .ok();
        Epoch { rx, handle }
    }
}

/// The batches of one epoch; see [`Loader::epoch`].
#[derive(Debug)]
pub struct Epoch {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rx.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                if let Some(h) = self.handle.take() {
                    let _ = h.join();
                }
                None
            }
        }
    }
}

/// A loader's state: what the batch thread needs.
struct Work {
    dataset: Arc<dyn Dataset>,
    mean: Option<Vec<f32>>,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    bad: Mutex<HashSet<usize>>,
    cache: Cache,
}

impl Work {
    /// Image `i`, from the cache when it holds it.
    fn sample(&self, i: usize) -> Result<Arc<Sample>> {
        if let Some(s) = self.cache.get(i) {
            return Ok(s);
        }
        let s = Arc::new(self.dataset.get(i)?);
        self.cache.put(i, s.clone());
        Ok(s)
    }

    /// Loads and crops the images of one batch in parallel; `None` when all of them failed.
    fn batch(&self, indices: &[usize], crops: &[Crop]) -> Result<Option<Batch>> {
        let pre = self.dataset.preprocess();
        let per_image = if self.config.crops == Crops::Ten { 10 } else { 1 };
        let crop_len = 3 * pre.crop * pre.crop;
        let loaded: Vec<Option<(Vec<f32>, usize)>> = self.pool.install(|| {
            indices
                .par_iter()
                .zip(crops)
                .map(|(&i, &crop)| match self.sample(i) {
                    Ok(sample) => {
                        let mut out = vec![0f32; per_image * crop_len];
                        let which: Vec<Crop> = if per_image == 10 { Crop::ALL.to_vec() } else { vec![crop] };
                        for (k, c) in which.into_iter().enumerate() {
                            pre.crop_into(
                                &sample.image,
                                self.mean.as_deref(),
                                c,
                                &mut out[k * crop_len..(k + 1) * crop_len],
                            );
                        }
                        Some((out, sample.label))
                    }
                    Err(e) => {
                        let first_time = self.bad.lock().map(|mut b| b.insert(i)).unwrap_or(true);
                        if first_time {
                            tracing::warn!("skipped {}: {e}", self.dataset.describe(i));
                        }
                        None
                    }
                })
                .collect()
        });
        let mut data = Vec::with_capacity(indices.len() * per_image * crop_len);
        let (mut labels, mut kept, mut kept_crops) = (Vec::new(), Vec::new(), Vec::new());
        for ((item, &i), &c) in loaded.into_iter().zip(indices).zip(crops) {
            if let Some((pixels, label)) = item {
                data.extend_from_slice(&pixels);
                labels.push(label as u32);
                kept.push(i);
                kept_crops.push(c);
            }
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let n = kept.len() * per_image;
        let images = Tensor::from_vec(data, (n, 3, pre.crop, pre.crop), &candle_core::Device::Cpu)?;
        let labels = Tensor::from_vec(labels, kept.len(), &candle_core::Device::Cpu)?;
        Ok(Some(Batch { images, labels, indices: kept, crops: kept_crops }))
    }
}

/// A 64-bit mix of three values (splitmix64 steps), for per-(seed, epoch, index) seeds.
fn mix(a: u64, b: u64, c: u64) -> u64 {
    let step = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    step(step(step(a) ^ b) ^ c)
}
