//! Table 7's claim: a linear classifier on deeper layers' frozen features is more accurate, on
//! classes the network never trained on.

use super::{by_stats, Claim};
use crate::results::Results;
use crate::stats::paired;

/// Table 7: per test image of the held-out classes, the last probed layer's probe (fc7) correct
/// minus the first's (conv1); not testable when probed on the trained classes.
pub fn table7_depth(r: &Results) -> Claim {
    let probes = r.table7.as_ref();
    let layers = probes.map(|t| t.layers.as_slice()).unwrap_or_default();
    // The paper's layers 1 and 7 are the first and last probed (ZFNet's conv1 and fc7).
    let (first, last) = (layers.first(), layers.last());
    let acc = |l: Option<&zf_probe::ProbeResult>| l.map(|l| f64::from(l.test_accuracy));
    let per_image = first.zip(last).and_then(|(a, b)| {
        (!a.test_correct.is_empty() && a.test_correct.len() == b.test_correct.len()).then(|| {
            a.test_correct
                .iter()
                .zip(&b.test_correct)
                .map(|(&x, &y)| f64::from(u8::from(y)) - f64::from(u8::from(x)))
                .collect::<Vec<_>>()
        })
    });
    let transfer =
        probes.is_some_and(|p| p.train_split.starts_with("transfer") && p.test_split.starts_with("transfer"));
    let mut t7 = by_stats(
        "table7-depth",
        "Table 7: a linear classifier on deeper layers' features is more accurate (SVM(1) 44.8% ... SVM(7) 85.5% on Caltech-101)",
        "softmax probes on frozen features of held-out classes the network never trained on (as the paper's Caltech-101): per test image, fc7's probe correct minus conv1's; held when the 95% interval is above 0".into(),
        acc(first).zip(acc(last)).map(|(a, b)| {
            let all: Vec<String> = layers.iter().map(|l| format!("{} {:.1}%", l.layer, 100.0 * l.test_accuracy)).collect();
            format!("{:.1}% (conv1) vs {:.1}% (fc7); {}", 100.0 * a, 100.0 * b, all.join(", "))
        }),
        per_image.as_deref().and_then(paired),
    );
    if !transfer && t7.value.is_some() {
        t7.held = None;
        t7.value = t7.value.map(|v| format!("{v} — not testable: probed on the trained classes, not on held-out ones"));
    }
    t7
}
