//! The claims about training ZFNet: the recipe learns (Sec. 3), the 7x7 stride-2 first layer
//! beats AlexNet's (Table 2), lower layers settle first (Fig. 4).

use std::collections::BTreeMap;

use super::{by_stats, claim, Claim, MIN_SNAPSHOTS};
use crate::results::Results;
use crate::stats::paired;

/// The top-1 error of the evaluation `name` (`zfnet`, `alexnet`).
fn top1_err(r: &Results, name: &str) -> Option<f64> {
    r.eval.get(name).map(|e| e.top1_err)
}

/// Training works at all: ZFNet's error is below half of chance, by a bootstrap over the
/// validation images (per image: half of chance minus 1 when wrong, minus 0 when right); an
/// evaluation without per-image results falls back to the threshold alone.
pub fn training(r: &Results) -> Claim {
    let classes = r.run.as_ref().map_or(10.0, |run| run.config.model.classes as f64);
    let chance = 1.0 - 1.0 / classes;
    let e = top1_err(r, "zfnet");
    let paper = "Sec. 3: the network trained with the recipe classifies (Table 2: 38.4% top-1 error on ImageNet)";
    let test = format!(
        "ZFNet's top-1 validation error (10 crops) is below half of chance ({:.0}%): per validation image, {:.0}% minus its top-1 error (0 or 1), bootstrap over the images; held when the 95% interval is above 0",
        100.0 * chance,
        50.0 * chance
    );
    let value = e.map(|e| format!("{:.1}% top-1 error", 100.0 * e));
    let per_image: Vec<f64> = r
        .eval
        .get("zfnet")
        .map(|e| e.top1_correct.iter().map(|&(_, ok)| chance / 2.0 - if ok { 0.0 } else { 1.0 }).collect())
        .unwrap_or_default();
    if per_image.is_empty() {
        claim("training", paper, test, value, e.map(|e| e <= chance / 2.0))
    } else {
        by_stats("training", paper, test, value, paired(&per_image))
    }
}

/// Table 2 / Sec. 4.1: ZFNet's first layer beats AlexNet's: per validation image, AlexNet-style
/// wrong minus ZFNet wrong (both evaluated on the same images).
pub fn table2_first_layer(r: &Results) -> Claim {
    let (z, a) = (top1_err(r, "zfnet"), top1_err(r, "alexnet"));
    let per_image = r.eval.get("zfnet").zip(r.eval.get("alexnet")).and_then(|(ze, ae)| {
        let alex: BTreeMap<usize, bool> = ae.top1_correct.iter().copied().collect();
        let diffs: Vec<f64> = ze
            .top1_correct
            .iter()
            .filter_map(|(i, zc)| Some(f64::from(u8::from(*zc)) - f64::from(u8::from(*alex.get(i)?))))
            .collect();
        paired(&diffs)
    });
    by_stats(
        "table2-first-layer",
        "Table 2 / Sec. 4.1: the 7x7 stride-2 first layer (ZFNet) gives lower error than 11x11 stride 4 (38.4% vs 40.5% top-1)",
        "per validation image, AlexNet-style top-1 wrong minus ZFNet top-1 wrong (same images, same budget); held when the 95% interval is above 0".into(),
        z.zip(a).map(|(z, a)| format!("{:.1}% vs {:.1}%", 100.0 * z, 100.0 * a)),
        per_image,
    )
}

/// Fig. 4: lower layers settle first: conv1's mean CKA to the final network over the snapshots
/// minus conv5's; not testable below [`MIN_SNAPSHOTS`] snapshots.
pub fn fig4_evolution(r: &Results) -> Claim {
    let settling = r.fig4.as_ref().and_then(|f| f.settling.as_ref());
    let mut fig4 = by_stats(
        "fig4-evolution",
        "Fig. 4: lower layers converge within a few epochs; upper layers only after many more",
        "per layer, linear CKA between its features at each snapshot and the final network's on the same images \
         (conv features averaged on a 7x7 grid); effect: conv1's mean CKA over the snapshots minus conv5's, \
         bootstrap over the images; held when the 95% interval is above 0"
            .into(),
        settling.map(|s| {
            let per: Vec<String> = s.layers.iter().map(|l| format!("{} {:.2}", l.layer, l.mean_cka)).collect();
            format!("mean CKA {} over {} snapshots", per.join(", "), s.epochs.len())
        }),
        settling.and_then(|s| s.lower_minus_upper.clone()),
    );
    if let Some(s) = settling.filter(|s| s.epochs.len() < MIN_SNAPSHOTS) {
        fig4.held = None;
        fig4.value = fig4.value.map(|v| format!("{v} — not testable: {} snapshots < {MIN_SNAPSHOTS}", s.epochs.len()));
    }
    fig4
}
