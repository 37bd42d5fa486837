//! The claims read off occluded images: the class probability drops when the object is covered
//! (Fig. 7), and covering the same part changes layer 5 consistently across images, less so at
//! layer 7 (Table 1).

use zf_probe::CorrespondenceRow;

use super::{by_stats, mean, means, Claim, MIN_N, TABLE1_RESAMPLES};
use crate::results::Results;
use crate::stats::{paired, resampled, Effect};

/// Fig. 7: per image, mean p(true class) with the square's centre off the object's box minus
/// that with it on the box.
pub fn fig7_occlusion(r: &Results) -> Claim {
    let pairs: Vec<(f64, f64)> = r
        .fig7
        .as_ref()
        .map(|f| f.images.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((f64::from(i.mean_prob_square_on_object?), f64::from(i.mean_prob_square_off_object?))))
        .collect();
    let (on, off) = means(&pairs);
    by_stats(
        "fig7-occlusion",
        "Fig. 7: the probability of the correct class drops sharply when the object is occluded",
        "per image, mean p(true class) with the square's centre off the object's box minus that with it on the box; held when the 95% interval is above 0".into(),
        on.zip(off).map(|(on, off)| format!("mean {on:.3} on vs {off:.3} off")),
        paired(&pairs.iter().map(|(on, off)| off - on).collect::<Vec<_>>()),
    )
}

/// Table 1's rows, by the paper's layers 5 and 7: the rows' first and second layer (ZFNet's
/// conv5 and fc7; another network's last conv and last hidden layer, `conv5_3` say).
struct Table1<'a> {
    rows: &'a [CorrespondenceRow],
    layer5: &'a str,
    layer7: &'a str,
    /// Images, when every row is over the same images (else the claims are not testable).
    images: Option<usize>,
}

impl<'a> Table1<'a> {
    fn new(r: &'a Results) -> Self {
        let rows = r.table1.as_ref().map(|t| t.rows.as_slice()).unwrap_or_default();
        let mut layers: Vec<&str> = Vec::new();
        for x in rows {
            if !layers.contains(&x.layer.as_str()) {
                layers.push(&x.layer);
            }
        }
        let n = rows.first().map_or(0, |x| x.pairs.len());
        let comparable = !rows.is_empty() && rows.iter().all(|x| x.pairs.len() == n && x.images == n);
        Self {
            rows,
            layer5: layers.first().copied().unwrap_or("conv5"),
            layer7: layers.get(1).copied().unwrap_or("fc7"),
            images: comparable.then_some(n),
        }
    }

    /// The rows of the paper's layer 5 (`seven`: 7), the parts' or the random boxes'.
    fn at(&self, seven: bool, random: bool) -> Vec<&'a CorrespondenceRow> {
        let layer = if seven { self.layer7 } else { self.layer5 };
        self.rows
            .iter()
            .filter(|x| x.layer == layer && (x.part == zf_probe::correspondence::RANDOM) == random)
            .collect()
    }

    fn mean_of(&self, seven: bool, random: bool, f: impl Fn(&CorrespondenceRow) -> f32) -> Option<f64> {
        mean(&self.at(seven, random).iter().map(|x| f64::from(f(x))).collect::<Vec<_>>())
    }

    /// Random Δ minus the parts' mean Δ at layer 5 (7) on the images `idx`.
    fn gap(&self, seven: bool, idx: &[usize]) -> f64 {
        let d = |x: &&CorrespondenceRow| zf_probe::correspondence::delta_of(&x.pairs, idx);
        let parts = self.at(seven, false);
        let random = self.at(seven, true);
        let p = parts.iter().map(d).sum::<f64>() / parts.len() as f64;
        random.iter().map(d).sum::<f64>() / random.len().max(1) as f64 - p
    }

    /// Whether layer 5 (7) has parts and exactly one random row over common images.
    fn testable(&self, seven: bool) -> bool {
        self.images.is_some() && !self.at(seven, false).is_empty() && self.at(seven, true).len() == 1
    }

    /// A bootstrap over the images of `f` (Δ recomputed on each resample).
    fn resampled(&self, f: impl Fn(&[usize]) -> f64) -> Option<Effect> {
        resampled(self.images?, TABLE1_RESAMPLES, "bootstrap over images (Δ recomputed on each resample)", f)
    }
}

/// Table 1: at layer 5, Δ of random boxes minus the parts' mean Δ, bootstrap over the images.
pub fn table1_parts(r: &Results) -> Claim {
    let t = Table1::new(r);
    let effect = t.testable(false).then(|| t.resampled(|idx| t.gap(false, idx))).flatten();
    let delta = |random: bool| t.mean_of(false, random, |x| x.mean);
    let changed = |random: bool| t.mean_of(false, random, |x| x.changed);
    by_stats(
        "table1-parts",
        "Table 1: occluding the same part changes layer-5 features more consistently than occluding random regions",
        "Δ of random boxes (same size, inside the face, off the named parts, mean of 10 draws) minus the parts' mean Δ at conv5, on aligned frontal faces; bootstrap over the images; held when the 95% interval is above 0".into(),
        delta(false).zip(delta(true)).map(|(a, b)| {
            let ch = changed(false).zip(changed(true));
            format!(
                "Δ {a:.3} (parts) vs {b:.3} (random){}",
                ch.map(|(c, d)| format!(", units changed {:.0}% vs {:.0}%", 100.0 * c, 100.0 * d)).unwrap_or_default()
            )
        }),
        effect,
    )
}

/// Table 1: the layer-5 gap minus the layer-7 gap, bootstrap over the images; not testable
/// when there is no layer-5 gap to narrow ([`table1_parts`] not held).
pub fn table1_layer7(r: &Results) -> Claim {
    let t = Table1::new(r);
    let effect = (t.testable(false) && t.testable(true))
        .then(|| t.resampled(|idx| t.gap(false, idx) - t.gap(true, idx)))
        .flatten();
    let delta = |seven: bool, random: bool| t.mean_of(seven, random, |x| x.mean);
    let mut layer7 = by_stats(
        "table1-layer7",
        "Table 1: at layer 7 the gap between parts and random regions narrows",
        "(Δ random − Δ parts) at conv5 minus the same gap at fc7; bootstrap over the images; held when the 95% interval is above 0; not testable unless the layer-5 gap holds".into(),
        delta(false, false).zip(delta(false, true)).zip(delta(true, false).zip(delta(true, true))).map(
            |((a, b), (c, d))| format!("gap {:.4} at conv5 vs {:.4} at fc7", b - a, d - c),
        ),
        effect,
    );
    let parts = table1_parts(r).stats;
    let parts_held = parts.as_ref().map(|e| e.n >= MIN_N && e.supports());
    if parts_held == Some(false) && layer7.value.is_some() {
        layer7.held = None;
        layer7.value = layer7.value.map(|v| format!("{v} — not testable: there is no layer-5 gap to narrow"));
    }
    layer7
}
