//! Correspondence (Sec. 4.3, Table 1): does the network find the same part in different images?
//!
//! For each image `i` and a part (a box on it), occlude the box with gray (0) and take the
//! change of layer-`l` features, `ε_i = x_i − x̃_i`. If the network locates the part
//! consistently, occluding it changes the features the same way in every image, so the sign
//! patterns `sign(ε_i)` agree. Our definitions (where the paper is silent): the
//! Hamming distance `H` is the fraction of positions whose signs differ (`sign(0) = 0` is a value
//! of its own), `Δ_l` is its mean over ordered pairs `i ≠ j`, and ± is the standard deviation over
//! those pairs. The random baseline ([`RandomBoxes`]) occludes a box of the same size at a random
//! position in each image (seeded) — inside a region such as the face and off the named parts
//! when given, so that it compares parts with other object regions as the paper's "random
//! object parts" do — averaged over several draws. Lower Δ is more consistent. Each row keeps
//! its image-by-image distances, so that a difference of Δs can be given an interval by
//! resampling images.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use zf_model::{LayerKind, Net};

use crate::bail;
use crate::occlusion::occlude;

/// A box `[x0, y0, x1, y1)` in pixels of the preprocessed image.
pub type PartBox = [usize; 4];

/// Per image, the sign pattern of its feature change at one layer.
type Signs = Vec<Vec<i8>>;

/// The name of the random baseline's row.
pub const RANDOM: &str = "random";

/// One row of Table 1 for one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrespondenceRow {
    /// The part's name, or [`RANDOM`].
    pub part: String,
    /// The layer's name (conv5 or fc7 in the paper).
    pub layer: String,
    /// Δ_l: mean Hamming distance over ordered pairs of images.
    pub mean: f32,
    /// Its standard deviation over those pairs.
    pub std: f32,
    /// How many images had this part.
    pub images: usize,
    /// The mean fraction of the layer's units that the occlusion changed (ε ≠ 0).
    #[serde(default)]
    pub changed: f32,
    /// `pairs[i][j]`: the Hamming distance between images `i` and `j` of those that had the
    /// part (in image order; for the random row, the mean over the draws).
    #[serde(default)]
    pub pairs: Vec<Vec<f32>>,
}

/// Where the random baseline's boxes go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomBoxes {
    pub seed: u64,
    /// Independent draws of one box per image, averaged.
    pub draws: usize,
    /// Per image, the region its random boxes lie in (e.g. the face's box); `None`: anywhere.
    pub regions: Option<Vec<PartBox>>,
    /// A random box may cover at most this fraction of its area with any named part's box of
    /// the same image (tried up to 200 times, else the least overlapping try is taken).
    pub max_part_overlap: f32,
}

impl Default for RandomBoxes {
    fn default() -> Self {
        Self { seed: 0, draws: 10, regions: None, max_part_overlap: 0.25 }
    }
}

/// A `size`-pixel square around each named part of `annotation` (in the crop's pixels, see
/// `zf_data::Annotation::in_crop`), shifted to lie inside the `s x s` image.
pub fn part_boxes(annotation: &zf_data::Annotation, size: usize, s: usize) -> BTreeMap<String, PartBox> {
    let half = size as f32 / 2.0;
    annotation
        .parts
        .iter()
        .map(|(k, &[x, y])| {
            let c = |v: f32| (v - half).round().clamp(0.0, s.saturating_sub(size) as f32) as usize;
            let (x0, y0) = (c(x), c(y));
            (k.clone(), [x0, y0, x0 + size, y0 + size])
        })
        .collect()
}

/// The object's box of `annotation` (crop pixels) as whole pixels inside the `s x s` image.
pub fn object_box(annotation: &zf_data::Annotation, s: usize) -> PartBox {
    let b = annotation.bbox.map(|v| v.round().clamp(0.0, s as f32) as usize);
    [b[0], b[1], b[2].max(b[0] + 1), b[3].max(b[1] + 1)]
}

/// The area of the intersection of two boxes.
fn overlap(a: PartBox, b: PartBox) -> usize {
    let w = a[2].min(b[2]).saturating_sub(a[0].max(b[0]));
    let h = a[3].min(b[3]).saturating_sub(a[1].max(b[1]));
    w * h
}

/// Table 1 for `parts` (each image's boxes by part name; an image without a part is left out
/// of that part's row) at `layers`, plus the random baseline (one row per layer, boxes of the
/// first part's mean size, placed as `random` says).
///
/// # Shapes
/// `images`: `[N, 3, S, S]`, preprocessed; `boxes.len() == N`.
pub fn correspondence(
    net: &impl AsRef<Net>,
    images: &Tensor,
    boxes: &[BTreeMap<String, PartBox>],
    parts: &[String],
    layers: &[usize],
    random: &RandomBoxes,
) -> Result<Vec<CorrespondenceRow>> {
    let net = net.as_ref();
    let s = net.spec().input_size;
    let (n, c, h, w) = images.dims4()?;
    if (c, h, w) != (3, s, s) {
        bail!("expected preprocessed images [N, 3, {s}, {s}], got {:?}", images.dims())
    }
    if boxes.len() != n {
        bail!("{} images but boxes for {}", n, boxes.len())
    }
    if n < 2 {
        bail!("correspondence compares pairs of images: need at least 2, got {n}")
    }
    if parts.is_empty() {
        bail!("no parts to occlude: give at least one part name")
    }
    if random.draws == 0 {
        bail!("the random baseline needs at least one draw")
    }
    if let Some(r) = &random.regions {
        if r.len() != n {
            bail!("{n} images but random-box regions for {}", r.len())
        }
    }
    for (i, b) in boxes.iter().enumerate() {
        for (part, &[x0, y0, x1, y1]) in b {
            if x0 >= x1 || y0 >= y1 || x1 > s || y1 > s {
                bail!("image {i}, part `{part}`: box [{x0}, {y0}, {x1}, {y1}] is empty or outside the {s}x{s} image")
            }
        }
    }
    for &l in layers {
        match net.spec().layers.get(l) {
            Some(spec) if matches!(spec.kind, LayerKind::Conv { .. } | LayerKind::Linear { relu: true, .. }) => {}
            Some(spec) => {
                bail!("correspondence compares conv or hidden linear layers (after ReLU), got {}", spec.label())
            }
            None => bail!("layer {l} does not exist in {}", net.spec().arch),
        }
    }
    let host = images.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let originals = features(net, &host, layers)?;
    // Per layer, the sign patterns of the changes that occluding `chosen` boxes causes, and the
    // fraction of units changed, per chosen image.
    let signs_of = |chosen: &[(usize, PartBox)]| -> Result<(Vec<Signs>, Vec<f32>)> {
        let mut occluded = Vec::with_capacity(chosen.len());
        for &(i, b) in chosen {
            let mut v = host.get(i)?.flatten_all()?.to_vec1::<f32>()?;
            occlude(&mut v, s, b);
            occluded.push(Tensor::from_vec(v, (3, s, s), &Device::Cpu)?);
        }
        let changed = features(net, &Tensor::stack(&occluded, 0)?, layers)?;
        let mut fractions = Vec::new();
        let signs = (0..layers.len())
            .map(|li| {
                let per: Vec<Vec<i8>> = chosen
                    .iter()
                    .enumerate()
                    .map(|(k, &(i, _))| {
                        originals[li][i].iter().zip(&changed[li][k]).map(|(a, b)| sign(a - b)).collect()
                    })
                    .collect();
                let f = per.iter().map(|v| v.iter().filter(|&&x| x != 0).count() as f32 / v.len().max(1) as f32);
                fractions.push(f.sum::<f32>() / per.len().max(1) as f32);
                per
            })
            .collect();
        Ok((signs, fractions))
    };
    let mut rows = Vec::new();
    let mut push = |name: &str, pairs_per_layer: Vec<Vec<Vec<f32>>>, fractions: Vec<f32>, images: usize| {
        for (li, layer) in layers.iter().enumerate() {
            let (mean, std) = pair_stats(&pairs_per_layer[li]);
            rows.push(CorrespondenceRow {
                part: name.to_string(),
                layer: net.spec().layers[*layer].label().to_string(),
                mean,
                std,
                images,
                changed: fractions[li],
                pairs: pairs_per_layer[li].clone(),
            });
        }
    };
    for part in parts {
        let chosen: Vec<(usize, PartBox)> =
            boxes.iter().enumerate().filter_map(|(i, b)| b.get(part).map(|&bx| (i, bx))).collect();
        if chosen.len() < 2 {
            tracing::warn!("part `{part}`: {} image(s) have it, need 2; row left out", chosen.len());
            continue;
        }
        let (signs, fractions) = signs_of(&chosen)?;
        push(part, signs.iter().map(|s| distances(s)).collect(), fractions, chosen.len());
    }
    // The random baseline: the first part's mean box size, `draws` random positions per image.
    let sizes: Vec<(usize, usize)> = parts
        .first()
        .map(|p| boxes.iter().filter_map(|b| b.get(p)).map(|b| (b[2] - b[0], b[3] - b[1])).collect())
        .unwrap_or_default();
    if !sizes.is_empty() {
        let bw = (sizes.iter().map(|s| s.0).sum::<usize>() / sizes.len()).clamp(1, s);
        let bh = (sizes.iter().map(|s| s.1).sum::<usize>() / sizes.len()).clamp(1, s);
        let mut rng = ChaCha8Rng::seed_from_u64(random.seed);
        let mut sum: Vec<Vec<Vec<f32>>> = vec![vec![vec![0.0; n]; n]; layers.len()];
        let mut frac = vec![0f32; layers.len()];
        for _ in 0..random.draws {
            let chosen: Vec<(usize, PartBox)> = (0..n)
                .map(|i| {
                    let region = random.regions.as_ref().map_or([0, 0, s, s], |r| r[i]);
                    (i, random_box(&mut rng, region, (bw, bh), s, boxes[i].values(), random.max_part_overlap))
                })
                .collect();
            let (signs, fractions) = signs_of(&chosen)?;
            for li in 0..layers.len() {
                let d = distances(&signs[li]);
                for (acc, row) in sum[li].iter_mut().zip(&d) {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v / random.draws as f32);
                }
                frac[li] += fractions[li] / random.draws as f32;
            }
        }
        push(RANDOM, sum, frac, n);
    }
    Ok(rows)
}

/// A `w x h` box inside `region` (clipped to the image), overlapping each of `avoid` by at most
/// `max_overlap` of its area when 200 tries find one, else the least overlapping try.
fn random_box<'a>(
    rng: &mut ChaCha8Rng,
    region: PartBox,
    (w, h): (usize, usize),
    s: usize,
    avoid: impl Iterator<Item = &'a PartBox> + Clone,
    max_overlap: f32,
) -> PartBox {
    let (x0, y0) = (region[0].min(s - w), region[1].min(s - h));
    let (x1, y1) = (region[2].min(s).saturating_sub(w).max(x0), region[3].min(s).saturating_sub(h).max(y0));
    let mut best = ([x0, y0, x0 + w, y0 + h], usize::MAX);
    for _ in 0..200 {
        let (x, y) = (rng.random_range(x0..=x1), rng.random_range(y0..=y1));
        let b = [x, y, x + w, y + h];
        let worst = avoid.clone().map(|&a| overlap(a, b)).max().unwrap_or(0);
        if worst < best.1 {
            best = (b, worst);
        }
        if worst as f32 <= max_overlap * (w * h) as f32 {
            break;
        }
    }
    best.0
}

/// The Hamming distances between every two sign patterns (0 on the diagonal).
fn distances(signs: &[Vec<i8>]) -> Vec<Vec<f32>> {
    signs.iter().map(|a| signs.iter().map(|b| hamming(a, b)).collect()).collect()
}

/// Mean and standard deviation of the off-diagonal entries (ordered pairs `i ≠ j`).
fn pair_stats(d: &[Vec<f32>]) -> (f32, f32) {
    let v: Vec<f64> = d
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().enumerate().filter(move |(j, _)| *j != i).map(|(_, &x)| f64::from(x)))
        .collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean as f32, var.sqrt() as f32)
}

/// Δ averaged over the ordered pairs of distinct items among `idx` (repeats allowed: a pair of
/// two copies of one image is left out), from a distance matrix: the statistic a bootstrap over
/// images recomputes.
pub fn delta_of(pairs: &[Vec<f32>], idx: &[usize]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for &a in idx {
        for &b in idx {
            if a != b {
                sum += f64::from(pairs[a][b]);
                count += 1;
            }
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

fn sign(v: f32) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// The fraction of positions where two sign patterns differ.
pub fn hamming(a: &[i8], b: &[i8]) -> f32 {
    if a.is_empty() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f32 / a.len() as f32
}

/// Δ: mean and standard deviation of [`hamming`] over ordered pairs `i ≠ j`.
pub fn delta(signs: &[Vec<i8>]) -> (f32, f32) {
    pair_stats(&distances(signs))
}

/// Per layer, per image, the flattened features (after ReLU).
fn features(net: &Net, xs: &Tensor, layers: &[usize]) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); layers.len()];
    let n = xs.dim(0)?;
    for start in (0..n).step_by(16) {
        let len = 16.min(n - start);
        let batch = xs.narrow(0, start, len)?.to_device(&net.device())?;
        let mut keep = zf_model::Keep::new(layers);
        net.forward_with(&batch, zf_model::Dropout::Off, &mut keep)?;
        for (li, &l) in layers.iter().enumerate() {
            out[li].extend(keep.get(l)?.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hamming_counts_differing_signs_with_zero_its_own_value() {
        assert_eq!(hamming(&[1, -1, 0, 1], &[1, 1, 0, 0]), 0.5);
        assert_eq!(hamming(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn delta_is_the_mean_and_std_over_ordered_pairs() {
        // Three patterns: d(0,1) = 1/2, d(0,2) = 0, d(1,2) = 1/2; each ordered pair twice.
        let s = vec![vec![1, 1], vec![1, -1], vec![1, 1]];
        let (m, sd) = delta(&s);
        assert!((m - 1.0 / 3.0).abs() < 1e-6);
        // Opposite changes everywhere: every position differs, Δ = 1 with no spread.
        assert_eq!(delta(&[vec![1, -1, 1], vec![-1, 1, -1]]), (1.0, 0.0));
        assert_eq!(delta(&[vec![1, 0, -1], vec![1, 0, -1]]), (0.0, 0.0));
        // Values {1/2, 0, 1/2} (each twice): variance = mean of squares - square of mean
        // = 1/6 - 1/9 = 1/18.
        assert!((sd - (1.0f32 / 18.0).sqrt()).abs() < 1e-6);
        // Resampled: the same pairs from the matrix; two copies of one image are not a pair.
        let d = distances(&s);
        assert!((delta_of(&d, &[0, 1, 2]) - 1.0 / 3.0).abs() < 1e-6);
        assert!((delta_of(&d, &[0, 0, 1]) - 0.5).abs() < 1e-6);
        assert!(delta_of(&d, &[2, 2]).is_nan());
    }

    #[test]
    fn random_boxes_stay_in_their_region_and_off_the_parts() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let parts = [[30, 30, 50, 50], [60, 30, 80, 50]];
        for _ in 0..100 {
            let b = random_box(&mut rng, [20, 20, 100, 100], (20, 20), 112, parts.iter(), 0.25);
            assert!(b[0] >= 20 && b[1] >= 20 && b[2] <= 100 && b[3] <= 100, "{b:?}");
            assert!(parts.iter().all(|&p| overlap(p, b) <= 100), "{b:?}");
        }
        // A region too small for the box: the box is clipped to the image, never outside it.
        let b = random_box(&mut rng, [100, 100, 112, 112], (20, 20), 112, parts.iter(), 0.25);
        assert!(b[2] <= 112 && b[3] <= 112, "{b:?}");
        assert_eq!(overlap([0, 0, 10, 10], [5, 5, 20, 20]), 25);
    }
}
