//! Correspondence (Sec. 4.3, Table 1): does the network find the same part in different images?
//!
//! For each image `i` and a part (a box on it), occlude the box with gray (0) and take the
//! change of layer-`l` features, `ε_i = x_i − x̃_i`. If the network locates the part
//! consistently, occluding it changes the features the same way in every image, so the sign
//! patterns `sign(ε_i)` agree. PAPER.md's definitions (ours where the paper is silent): the
//! Hamming distance `H` is the fraction of positions whose signs differ (`sign(0) = 0` is a value
//! of its own), `Δ_l` is its mean over ordered pairs `i ≠ j`, and ± is the standard deviation over
//! those pairs. The random baseline occludes a box of the same size at a random position in each
//! image (seeded). Lower Δ is more consistent.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use zf_model::{Point, ZfNet};

use crate::bail;
use crate::occlusion::occlude;

/// A box `[x0, y0, x1, y1)` in pixels of the preprocessed image.
pub type PartBox = [usize; 4];

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
}

/// Table 1 for `parts` (each image's boxes by part name; an image without a part is left out
/// of that part's row) at `layers`, plus the random baseline (one row per layer, boxes of the
/// first part's mean size, positions drawn from `seed`).
///
/// # Shapes
/// `images`: `[N, 3, S, S]`, preprocessed; `boxes.len() == N`.
pub fn correspondence(
    net: &ZfNet,
    images: &Tensor,
    boxes: &[BTreeMap<String, PartBox>],
    parts: &[String],
    layers: &[Point],
    seed: u64,
) -> Result<Vec<CorrespondenceRow>> {
    let s = net.config().input_size;
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
    for (i, b) in boxes.iter().enumerate() {
        for (part, &[x0, y0, x1, y1]) in b {
            if x0 >= x1 || y0 >= y1 || x1 > s || y1 > s {
                bail!("image {i}, part `{part}`: box [{x0}, {y0}, {x1}, {y1}] is empty or outside the {s}x{s} image")
            }
        }
    }
    for l in layers {
        if !matches!(
            l,
            Point::Conv1 | Point::Conv2 | Point::Conv3 | Point::Conv4 | Point::Conv5 | Point::Fc6 | Point::Fc7
        ) {
            bail!("correspondence uses the paper's layers 1..7 (conv1..conv5, fc6, fc7), got {l}")
        }
    }
    let host = images.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let originals = features(net, &host, layers)?;
    let mut rows = Vec::new();
    let mut run = |name: &str, chosen: Vec<(usize, PartBox)>| -> Result<()> {
        if chosen.len() < 2 {
            tracing::warn!("part `{name}`: {} image(s) have it, need 2; row left out", chosen.len());
            return Ok(());
        }
        let mut occluded = Vec::with_capacity(chosen.len());
        for &(i, b) in &chosen {
            let mut v = host.get(i)?.flatten_all()?.to_vec1::<f32>()?;
            occlude(&mut v, s, b);
            occluded.push(Tensor::from_vec(v, (3, s, s), &Device::Cpu)?);
        }
        let changed = features(net, &Tensor::stack(&occluded, 0)?, layers)?;
        for (li, layer) in layers.iter().enumerate() {
            let signs: Vec<Vec<i8>> = chosen
                .iter()
                .enumerate()
                .map(|(k, &(i, _))| originals[li][i].iter().zip(&changed[li][k]).map(|(a, b)| sign(a - b)).collect())
                .collect();
            let (mean, std) = delta(&signs);
            rows.push(CorrespondenceRow {
                part: name.to_string(),
                layer: layer.name().to_string(),
                mean,
                std,
                images: chosen.len(),
            });
        }
        Ok(())
    };
    for part in parts {
        let chosen: Vec<(usize, PartBox)> =
            boxes.iter().enumerate().filter_map(|(i, b)| b.get(part).map(|&bx| (i, bx))).collect();
        run(part, chosen)?;
    }
    // The random baseline: the first part's mean box size, a random position per image.
    let sizes: Vec<(usize, usize)> = parts
        .first()
        .map(|p| boxes.iter().filter_map(|b| b.get(p)).map(|b| (b[2] - b[0], b[3] - b[1])).collect())
        .unwrap_or_default();
    if !sizes.is_empty() {
        let bw = (sizes.iter().map(|s| s.0).sum::<usize>() / sizes.len()).clamp(1, s);
        let bh = (sizes.iter().map(|s| s.1).sum::<usize>() / sizes.len()).clamp(1, s);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let chosen = (0..n)
            .map(|i| {
                let (x, y) = (rng.random_range(0..=s - bw), rng.random_range(0..=s - bh));
                (i, [x, y, x + bw, y + bh])
            })
            .collect();
        run(RANDOM, chosen)?;
    }
    Ok(rows)
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
    let mut d = Vec::new();
    for (i, a) in signs.iter().enumerate() {
        for (j, b) in signs.iter().enumerate() {
            if i != j {
                d.push(hamming(a, b) as f64);
            }
        }
    }
    if d.is_empty() {
        return (0.0, 0.0);
    }
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64;
    (mean as f32, var.sqrt() as f32)
}

/// Per layer, per image, the flattened features (after ReLU).
fn features(net: &ZfNet, xs: &Tensor, layers: &[Point]) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); layers.len()];
    let n = xs.dim(0)?;
    for start in (0..n).step_by(16) {
        let len = 16.min(n - start);
        let batch = xs.narrow(0, start, len)?.to_device(net.conv1.weight().device())?;
        let mut err = None;
        let mut tap = |p: Point, t: &Tensor| {
            if let Some(li) = layers.iter().position(|&l| l == p) {
                match t.flatten_from(1).and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec2::<f32>()) {
                    Ok(v) => out[li].extend(v),
                    Err(e) => err = Some(e),
                }
            }
            Ok(())
        };
        net.forward_with(&batch, false, &mut tap)?;
        if let Some(e) = err {
            return Err(e);
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
    }
}
