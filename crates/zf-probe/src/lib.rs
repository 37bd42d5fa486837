//! The analyses of Zeiler & Fergus (2014) that look at a trained network from outside: what
//! part of an image it uses, what it is invariant to, whether it finds parts consistently, how
//! healthy its first layer is, how its weights settled, and how discriminative each layer is.
//!
//! - [`occlusion`](mod@occlusion) — Fig. 7: a gray square slid over the image; per position the total activation
//!   of the strongest conv5 map, the probability of the true class and the most probable class.
//! - [`incremental`](mod@incremental) — Fig. 7 by windows: each occluded image computed from the
//!   unoccluded activations, recomputing only what the square reaches (the CPU path).
//! - [`invariance`](mod@invariance) — Fig. 5: vertical translation, scale and rotation sweeps; per step the
//!   Euclidean distance of layer-1 and layer-7 features to the untransformed image's and the
//!   probability of the true class.
//! - [`correspondence`](mod@correspondence) — Sec. 4.3, Table 1: Δ_l, the mean Hamming distance between the sign
//!   patterns of the feature changes that occluding the same part causes in different images,
//!   against occluding random regions.
//! - [`filters`](mod@filters) — Fig. 6: dead filters, spectral energy by frequency band and the dominance of
//!   the largest filter in a conv1 filter bank.
//! - [`evolution`](mod@evolution) — Fig. 4: how much each layer's weights still move between training
//!   snapshots.
//! - [`linear_probe`](mod@linear_probe) — Table 7: a softmax classifier fitted on one frozen layer's pooled
//!   features.
//! - [`fig2_index`](mod@fig2_index) — Fig. 2's top-k hits and projections on disk, written once
//!   by `zfnet visualize` and read by the explorer (`zfnet serve`).
//! - [`study`](mod@study) — the analyses over a set of picked images, one call each, with the
//!   files the `zfnet` commands write.
//! - [`stats`](mod@stats) — bootstrap intervals, so that a claim is decided by an effect and its
//!   95% interval rather than by a threshold.
//! - [`records`](mod@records) — the files the `zfnet` analysis commands write, as types the
//!   report reads back.
//!
//! Every function takes a [`zf_model::ZfNet`] and preprocessed images (`[3, S, S]` or
//! `[N, 3, S, S]`, per-pixel mean subtracted, so that 0 is the data set's mean: the "gray" of
//! the occluder and of transformed borders) and returns plain numbers (`Vec<f32>`, structs that
//! serialize to JSON); pictures are drawn by the caller (zf-viz). Nothing here prints.
//!
//! Depends on zf-model, zf-deconv and zf-data (picked images). Errors are `candle_core::Result` with messages that name
//! what did not fit.

pub mod correspondence;
pub mod evolution;
pub mod fig2_index;
pub mod filters;
pub mod incremental;
pub mod invariance;
pub mod linear_probe;
pub mod occlusion;
pub mod records;
pub mod stats;
pub mod study;

pub use correspondence::{correspondence, CorrespondenceRow, PartBox, RandomBoxes};
pub use evolution::weight_change;
pub use filters::{filter_stats, FilterStats};
pub use invariance::{invariance, transform, InvarianceCurve, Transform};
pub use linear_probe::{fit_softmax, pooled_features, pooled_features_of, probe_layers, ProbeConfig, ProbeResult};
pub use occlusion::{occlusion, occlusion_steered, ObjectSplit, Occlusion, OcclusionConfig};
pub use study::{
    correspondence_study, evolution_study, fig2_study, filter_bank_study, invariance_study, occlusion_study,
    CorrespondenceStudy, EvolutionStudy, Fig2Study, OcclusionStudy,
};

pub(crate) use zf_model::bail;

use candle_core::{Result, Tensor};

/// Checks that `image` is one preprocessed image `[3, S, S]` for a network with input size `s`.
pub(crate) fn check_image(image: &Tensor, s: usize) -> Result<()> {
    if image.dims() != [3, s, s] {
        bail!("expected one preprocessed image of shape [3, {s}, {s}], got {:?}", image.dims())
    }
    Ok(())
}

/// Progress callback: `(done, total)`.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// A progress callback that may stop the work: `(done, total)`, returning
/// [`ControlFlow::Break`](std::ops::ControlFlow::Break) to stop after the current batch (an
/// explorer's cancel button).
pub type Steer<'a> = &'a mut dyn FnMut(usize, usize) -> std::ops::ControlFlow<()>;

/// Runs a steered computation with a [`Steer`] that never stops, reporting to `progress`: the
/// plain forms of the steered functions (their `Ok(None)` cannot happen).
pub(crate) fn to_the_end<T>(
    progress: Progress<'_>,
    steered: impl FnOnce(Steer<'_>) -> candle_core::Result<Option<T>>,
) -> candle_core::Result<T> {
    let mut steer = |done, total| {
        progress(done, total);
        std::ops::ControlFlow::Continue(())
    };
    steered(&mut steer)?.ok_or_else(|| candle_core::Error::Msg("stopped without a stop request".into()))
}
