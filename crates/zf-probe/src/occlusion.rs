//! Occlusion sensitivity (Fig. 7): a gray square slid over the image.

use candle_core::{DType, Device, IndexOp, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use zf_deconv::Deconvnet;
use zf_model::Net;

use crate::{bail, check_image, to_the_end, Progress, Steer};

/// The occluder's side in pixels (ours: the paper shows the square but not its size).
pub const OCCLUDER: usize = 48;
/// The occluder's stride in pixels (ours).
pub const STRIDE: usize = 8;

/// How the square is slid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OcclusionConfig {
    /// Side of the square, pixels.
    pub size: usize,
    /// Step between positions, pixels (top-left corners at 0, stride, 2 stride, ... up to
    /// `S - size`).
    pub stride: usize,
    /// Square positions computed together (occluded images per forward pass on the dense
    /// path).
    pub batch: usize,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        Self { size: OCCLUDER, stride: STRIDE, batch: 64 }
    }
}

impl OcclusionConfig {
    /// Top-left corners along one axis for an `s`-pixel image.
    pub fn offsets(&self, s: usize) -> Result<Vec<usize>> {
        if self.size == 0 || self.size > s || self.stride == 0 || self.batch == 0 {
            bail!(
                "occluder size must be 1..={s} and stride and batch at least 1, got size {}, stride {}, batch {}",
                self.size,
                self.stride,
                self.batch
            )
        }
        Ok((0..=s - self.size).step_by(self.stride).collect())
    }
}

/// The maps of Fig. 7 (b), (d), (e) over occluder positions, row-major `[R, R]` with the
/// square's top-left corner at `(offsets[i], offsets[j])`, and the unoccluded reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Occlusion {
    pub config: OcclusionConfig,
    pub offsets: Vec<usize>,
    /// The true class.
    pub label: usize,
    /// The conv5 feature map with the largest single activation on the unoccluded image.
    pub map: usize,
    /// (b) the total activation of that map.
    pub feature_map: Vec<f32>,
    /// (d) the probability of the true class.
    pub true_prob: Vec<f32>,
    /// (e) the most probable class.
    pub top_label: Vec<u32>,
    /// Unoccluded: the map's total activation, the true class's probability and the top class.
    pub clean_feature_map: f32,
    pub clean_prob: f32,
    pub clean_top: u32,
}

impl Occlusion {
    /// Positions per axis.
    pub fn side(&self) -> usize {
        self.offsets.len()
    }

    /// The occluder position (top-left `(y, x)`) where the true class's probability is lowest.
    pub fn weakest(&self) -> (usize, usize) {
        let i = argmin(&self.true_prob);
        (self.offsets[i / self.side()], self.offsets[i % self.side()])
    }
}

/// Fig. 7's comparison on one image: the true class's mean probability with the square's
/// centre on the object (inside its box) and with it elsewhere, and how many positions each.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectSplit {
    /// NaN when no position's centre falls on the object.
    pub on: f32,
    /// NaN when every position's centre falls on the object.
    pub off: f32,
    pub positions_on: usize,
    pub positions_off: usize,
}

impl Occlusion {
    /// The lowest probability of the true class over the square's positions.
    pub fn min_true_prob(&self) -> f32 {
        self.true_prob.iter().copied().fold(f32::INFINITY, f32::min)
    }

    /// The fraction of positions at which the true class is still the most probable.
    pub fn top_is_true_fraction(&self) -> f32 {
        let n = self.top_label.len().max(1);
        self.top_label.iter().filter(|&&l| l as usize == self.label).count() as f32 / n as f32
    }

    /// Splits the positions by whether the square's centre lies inside `bbox` (`[x0, y0, x1,
    /// y1)`, end-exclusive, in input pixels) — see [`ObjectSplit`].
    pub fn split_by_box(&self, [x0, y0, x1, y1]: [f32; 4]) -> ObjectSplit {
        let half = self.config.size as f32 / 2.0;
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for (i, &p) in self.true_prob.iter().enumerate() {
            let (y, x) = (self.offsets[i / self.side()] as f32 + half, self.offsets[i % self.side()] as f32 + half);
            if x >= x0 && x < x1 && y >= y0 && y < y1 {
                on.push(p);
            } else {
                off.push(p);
            }
        }
        let mean = |v: &[f32]| if v.is_empty() { f32::NAN } else { v.iter().sum::<f32>() / v.len() as f32 };
        ObjectSplit { on: mean(&on), off: mean(&off), positions_on: on.len(), positions_off: off.len() }
    }
}

/// Checks `image` (`[3, S, S]`) and `label` against the network; the square's offsets.
pub(crate) fn checked_offsets(net: &Net, image: &Tensor, label: usize, config: OcclusionConfig) -> Result<Vec<usize>> {
    let s = net.spec().input_size;
    check_image(image, s)?;
    let classes = net.spec().classes();
    if label >= classes {
        bail!("class {label} does not exist: the network has {classes} classes (0..{})", classes - 1)
    }
    config.offsets(s)
}

/// The square's top-left corners `(y, x)`, row-major over `offsets` on both axes.
pub(crate) fn positions(offsets: &[usize]) -> Vec<(usize, usize)> {
    offsets.iter().flat_map(|&y| offsets.iter().map(move |&x| (y, x))).collect()
}

/// Of conv5's maps (`values` `[C, plane]`, the unoccluded image's), the one holding the
/// strongest activation (the first on ties), and its total activation: panel (b)'s map.
pub(crate) fn strongest_map(values: &[f32], plane: usize) -> (usize, f32) {
    let peak = |m: usize| values[m * plane..(m + 1) * plane].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let map = (0..values.len() / plane.max(1))
        .fold((0, f32::NEG_INFINITY), |(bi, bv), m| if peak(m) > bv { (m, peak(m)) } else { (bi, bv) })
        .0;
    (map, values[map * plane..(map + 1) * plane].iter().sum())
}

fn argmin(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::INFINITY), |(bi, bv), (i, &x)| if x < bv { (i, x) } else { (bi, bv) }).0
}

/// Slides the occluder over `image` (gray = 0, the data set's mean) and records Fig. 7's maps.
/// Calls `progress(done, total)` after every batch. On the CPU in f32 only the windows the
/// square reaches are recomputed ([`crate::incremental`]); elsewhere every occluded image runs
/// through the whole network ([`occlusion_dense`]). Both give the same maps to float rounding.
///
/// # Shapes
/// `image`: `[3, S, S]`, preprocessed.
pub fn occlusion(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    progress: Progress<'_>,
) -> Result<Occlusion> {
    to_the_end(progress, |steer| occlusion_steered(net, image, label, config, steer))
}

/// [`occlusion()`], stoppable: `steer(done, total)` is called after every batch of square
/// positions and may break, which returns `Ok(None)` (nothing half-computed is returned).
pub fn occlusion_steered(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    steer: Steer<'_>,
) -> Result<Option<Occlusion>> {
    let net = net.as_ref();
    if zf_model::device::fused(image) {
        crate::incremental::occlusion_by_windows_steered(net, image, label, config, steer)
    } else {
        occlusion_dense_steered(net, image, label, config, steer)
    }
}

/// [`occlusion()`] with every occluded image run through the whole network, `config.batch` at
/// a time (any device and dtype).
pub fn occlusion_dense(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    progress: Progress<'_>,
) -> Result<Occlusion> {
    to_the_end(progress, |steer| occlusion_dense_steered(net, image, label, config, steer))
}

/// [`occlusion_dense`], stoppable after every batch (see [`occlusion_steered`]).
pub fn occlusion_dense_steered(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    config: OcclusionConfig,
    steer: Steer<'_>,
) -> Result<Option<Occlusion>> {
    let net = net.as_ref();
    let s = net.spec().input_size;
    let offsets = checked_offsets(net, image, label, config)?;
    let (clean_maps, clean_prob, clean_top) = forward(net, &image.unsqueeze(0)?)?;
    let clean_maps = clean_maps.i(0)?; // [C, H, W] conv5
    let plane = clean_maps.dim(1)? * clean_maps.dim(2)?;
    let (map, clean_feature_map) = strongest_map(&clean_maps.flatten_all()?.to_vec1::<f32>()?, plane);
    let clean_prob_v = clean_prob.i((0, label))?.to_scalar::<f32>()?;
    let clean_top_v = clean_top[0];

    let positions = positions(&offsets);
    let host = image.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (mut feature_map, mut true_prob, mut top_label) = (Vec::new(), Vec::new(), Vec::new());
    for (b, chunk) in positions.chunks(config.batch).enumerate() {
        let mut data = Vec::with_capacity(chunk.len() * host.len());
        for &(y0, x0) in chunk {
            let start = data.len();
            data.extend_from_slice(&host);
            occlude(&mut data[start..], s, [x0, y0, x0 + config.size, y0 + config.size]);
        }
        let xs = Tensor::from_vec(data, (chunk.len(), 3, s, s), &Device::Cpu)?.to_device(image.device())?;
        let (maps, prob, top) = forward(net, &xs)?;
        feature_map.extend(maps.i((.., map))?.flatten_from(1)?.sum(1)?.to_vec1::<f32>()?);
        true_prob.extend(prob.i((.., label))?.to_vec1::<f32>()?);
        top_label.extend(top);
        if steer((b * config.batch + chunk.len()).min(positions.len()), positions.len()).is_break() {
            return Ok(None);
        }
    }
    Ok(Some(Occlusion {
        config,
        offsets,
        label,
        map,
        feature_map,
        true_prob,
        top_label,
        clean_feature_map,
        clean_prob: clean_prob_v,
        clean_top: clean_top_v,
    }))
}

/// Sets the pixels of box `[x0, y0, x1, y1)` (clipped) of a `[3, S, S]` image to 0.
pub fn occlude(image: &mut [f32], s: usize, [x0, y0, x1, y1]: [usize; 4]) {
    for c in 0..3 {
        for y in y0.min(s)..y1.min(s) {
            let row = c * s * s + y * s;
            image[row + x0.min(s)..row + x1.min(s)].fill(0.0);
        }
    }
}

/// The last conv layer (conv5 in ZFNet), after its ReLU, as `[N, C, H, W]` f32, the softmax
/// `[N, classes]` and the arg-max class.
fn forward(net: &Net, xs: &Tensor) -> Result<(Tensor, Tensor, Vec<u32>)> {
    let Some(last) = net.spec().last_conv() else { bail!("{} has no conv layer", net.spec().arch) };
    let mut keep = zf_model::Keep::new(&[last]);
    let logits = net.forward_with(xs, zf_model::Dropout::Off, &mut keep)?;
    let prob = candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let top = prob.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok((keep.get(last)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?, prob, top))
}

/// Fig. 7 (c): the deconvnet projection of the last conv layer's (conv5's) map `map`'s
/// strongest unit on the unoccluded image, `[3, S, S]`.
pub fn projection(net: &impl AsRef<Net>, image: &Tensor, map: usize) -> Result<Tensor> {
    let net = net.as_ref();
    check_image(image, net.spec().input_size)?;
    let Some(last) = net.spec().last_conv() else { bail!("{} has no conv layer", net.spec().arch) };
    let mut trace = zf_model::NetTrace::default();
    net.forward_until(&image.unsqueeze(0)?, last, &mut trace)?;
    let deconv = Deconvnet::new(net);
    let (unit, _) = deconv.strongest_layer(&trace, last, 0, map)?;
    deconv.project_layer(&trace, last, &[unit])?.i(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_object_split_averages_positions_by_where_the_centre_falls() {
        // Squares of 4 px at offsets 0, 2, 4 (centres 2, 4, 6) on both axes.
        let occ = Occlusion {
            config: OcclusionConfig { size: 4, stride: 2, batch: 1 },
            offsets: vec![0, 2, 4],
            label: 1,
            map: 0,
            feature_map: vec![0.0; 9],
            true_prob: (1..=9).map(|v| v as f32 / 10.0).collect(),
            top_label: vec![1, 1, 0, 1, 0, 0, 1, 1, 1],
            clean_feature_map: 0.0,
            clean_prob: 1.0,
            clean_top: 1,
        };
        // Box x in [3, 7), y in [0, 5): centres x 4, 6 and y 2, 4 -> positions 1, 2, 4, 5.
        let s = occ.split_by_box([3.0, 0.0, 7.0, 5.0]);
        assert_eq!((s.positions_on, s.positions_off), (4, 5));
        assert!((s.on - (0.2 + 0.3 + 0.5 + 0.6) / 4.0).abs() < 1e-6, "{s:?}");
        assert!((s.off - (0.1 + 0.4 + 0.7 + 0.8 + 0.9) / 5.0).abs() < 1e-6, "{s:?}");
        // A box no centre falls in: nothing on the object.
        assert!(occ.split_by_box([100.0, 100.0, 101.0, 101.0]).on.is_nan());
        assert_eq!(occ.min_true_prob(), 0.1);
        assert!((occ.top_is_true_fraction() - 6.0 / 9.0).abs() < 1e-6);
    }

    #[test]
    fn offsets_cover_the_image_from_the_corner() {
        let c = OcclusionConfig::default();
        let o = c.offsets(224).unwrap();
        // 0, 8, ..., 176 = 224 - 48: 23 positions, the last flush with the border.
        assert_eq!(o.len(), 23);
        assert_eq!(*o.last().unwrap(), 176);
        assert!(OcclusionConfig { size: 300, ..c }.offsets(224).is_err());
        assert!(OcclusionConfig { stride: 0, ..c }.offsets(224).is_err());
    }

    #[test]
    fn occlude_zeroes_exactly_the_box_in_every_channel() {
        let s = 6;
        let mut img = vec![1f32; 3 * s * s];
        occlude(&mut img, s, [1, 2, 3, 5]);
        let zeros: Vec<usize> = (0..img.len()).filter(|&i| img[i] == 0.0).collect();
        assert_eq!(zeros.len(), 3 * 2 * 3);
        for &i in &zeros {
            let (y, x) = ((i % (s * s)) / s, i % s);
            assert!((2..5).contains(&y) && (1..3).contains(&x));
        }
    }
}
