//! What the server accepts and keeps. Uploads over these are refused with 413 and a message
//! that states the limit; caches never grow past their counts, so memory stays bounded under
//! any load.

/// The largest upload, bytes (16 MiB).
pub const MAX_UPLOAD_BYTES: usize = 16 << 20;

/// The most pixels an uploaded image may have (width x height, 40 megapixels), checked from
/// its header before it is decoded.
pub const MAX_UPLOAD_PIXELS: u64 = 40_000_000;

/// Images kept ready (uploads and data set images, preprocessed), most recently used first.
/// An upload older than this must be uploaded again.
pub const UPLOADS_KEPT: usize = 64;

/// Bytes of forward passes (activations and switches) kept for projections, 128 MiB: two
/// VGG-16 passes to conv5_3 at 224 pixels (66 MB each), thirteen of ZFNet's to conv5 (10 MB).
pub const FORWARDS_BYTES: usize = 128 << 20;

/// Occlusion jobs remembered (running or finished); the oldest is dropped, and stopped if it
/// still runs, when a new one starts.
pub const JOBS_KEPT: usize = 16;

/// Side of one channel's thumbnail in the activation grid, pixels.
pub const THUMB: u32 = 48;

/// Data set images listed per request at most.
pub const LIST_MAX: usize = 200;

/// Seconds a client is told to wait (Retry-After) when the queue is full.
pub const RETRY_AFTER_S: u64 = 1;

/// Analyses waiting for a worker, beyond those running, before the server answers 503.
pub const QUEUE_DEFAULT: usize = 32;
