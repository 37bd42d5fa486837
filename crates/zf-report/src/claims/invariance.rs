//! Fig. 5's claims: small transformations move layer 1 more than layer 7, the output is stable
//! to translation but not to rotation, except for objects with rotational symmetry.

use std::collections::BTreeMap;

use zf_probe::records::ImageCurve;

use super::{by_stats, mean, means, Claim};
use crate::results::Results;
use crate::stats::{paired, two_groups};

/// The classes of the generated data set whose objects look the same rotated.
const SYMMETRIC: [&str; 3] = ["ring", "flower", "star"];

/// The images of the sweep `name` (`translate`, `scale`, `rotate`).
fn sweep<'a>(r: &'a Results, name: &str) -> &'a [ImageCurve] {
    r.fig5.as_ref().and_then(|f| f.sweeps.iter().find(|s| s.sweep == name)).map_or(&[], |s| s.images.as_slice())
}

/// The relative change |x' - x| / |x| at layer 1 (or 7) of `img` at the sweep's `amount`.
fn relative_change(img: &ImageCurve, layer7: bool, amount: f64) -> Option<f64> {
    let c = &img.curve;
    let i = c.amounts.iter().position(|&a| (f64::from(a) - amount).abs() < 1e-6)?;
    let (d, n) = if layer7 { (c.layer7_distance[i], c.layer7_norm) } else { (c.layer1_distance[i], c.layer1_norm) };
    (n > 0.0).then(|| f64::from(d) / f64::from(n))
}

/// The translation step: 10 px at 224, scaled with the input (the curve's smallest shift).
fn step(img: &ImageCurve) -> f64 {
    img.curve.amounts.iter().map(|&a| f64::from(a)).filter(|&a| a > 0.0).fold(f64::INFINITY, f64::min)
}

/// The mean p(true class) of `img` over the amounts `keep` accepts.
fn mean_prob(img: &ImageCurve, keep: &dyn Fn(f64) -> bool) -> Option<f64> {
    let c = &img.curve;
    mean(
        &c.amounts
            .iter()
            .zip(&c.true_prob)
            .filter(|(&a, _)| keep(f64::from(a)))
            .map(|(_, &p)| f64::from(p))
            .collect::<Vec<_>>(),
    )
}

fn is_symmetric(img: &ImageCurve) -> bool {
    SYMMETRIC.iter().any(|s| img.image.contains(&format!("/{s}/")))
}

/// Fig. 5: for the smallest vertical shift, per image the relative change at conv1 minus that
/// at fc7.
pub fn fig5_layers(r: &Results) -> Claim {
    let small: Vec<(f64, f64)> = sweep(r, "translate")
        .iter()
        .filter_map(|img| {
            let d = step(img);
            Some((
                (relative_change(img, false, d)? + relative_change(img, false, -d)?) / 2.0,
                (relative_change(img, true, d)? + relative_change(img, true, -d)?) / 2.0,
            ))
        })
        .collect();
    let (s1, s7) = means(&small);
    by_stats(
        "fig5-layers",
        "Fig. 5: small transformations change layer 1 a lot and the top feature layer (7) much less",
        "for the smallest vertical shift (±10 px at 224, scaled with the input), per image the relative change |x' - x| / |x| at conv1 minus that at fc7; held when the 95% interval is above 0".into(),
        s1.zip(s7).map(|(a, b)| format!("conv1 {a:.3} vs fc7 {b:.3}")),
        paired(&small.iter().map(|(a, b)| a - b).collect::<Vec<_>>()),
    )
}

/// Fig. 5: per upright image swept both ways, mean p(true class) under shifts of at most two
/// steps minus that under rotations of 60..300 degrees.
pub fn fig5_output(r: &Results) -> Claim {
    let shifted: BTreeMap<&str, f64> = sweep(r, "translate")
        .iter()
        .filter_map(|i| {
            let d = step(i);
            Some((i.image.as_str(), mean_prob(i, &|a| a.abs() <= 2.0 * d + 1e-6)?))
        })
        .collect();
    let rotated: BTreeMap<&str, f64> = sweep(r, "rotate")
        .iter()
        .filter(|i| !is_symmetric(i))
        .filter_map(|i| Some((i.image.as_str(), mean_prob(i, &|a| (60.0..=300.0).contains(&a))?)))
        .collect();
    let pairs: Vec<(f64, f64)> = rotated.iter().filter_map(|(k, r)| Some((*shifted.get(k)?, *r))).collect();
    let (ps, pr) = means(&pairs);
    by_stats(
        "fig5-output",
        "Fig. 5: the output is stable to translation and scaling, much less to rotation",
        "per upright image, mean p(true class) under shifts of at most two steps (20 px at 224) minus that under rotations of 60..300 degrees; held when the 95% interval is above 0".into(),
        ps.zip(pr).map(|(a, b)| format!("{a:.3} (shifted) vs {b:.3} (rotated)")),
        paired(&pairs.iter().map(|(a, b)| a - b).collect::<Vec<_>>()),
    )
}

/// Fig. 5: mean p(true class) over rotations of 30..330 degrees, symmetric-class images minus
/// upright ones, two groups.
pub fn fig5_symmetric(r: &Results) -> Claim {
    let rot_means = |sym: bool| -> Vec<f64> {
        sweep(r, "rotate")
            .iter()
            .filter(|i| is_symmetric(i) == sym)
            .filter_map(|i| mean_prob(i, &|a| (30.0..=330.0).contains(&a)))
            .collect()
    };
    let (sym, up) = (rot_means(true), rot_means(false));
    by_stats(
        "fig5-symmetric",
        "Fig. 5: rotation changes the output except for objects with rotational symmetry",
        "mean p(true class) over rotations of 30..330 degrees, symmetric-class images (ring, flower, star) minus upright ones; held when the 95% interval is above 0".into(),
        mean(&sym).zip(mean(&up)).map(|(a, b)| format!("{a:.3} (symmetric) vs {b:.3} (upright)")),
        two_groups(&sym, &up),
    )
}
