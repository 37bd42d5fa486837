//! Verdicts by statistics: the mean of per-image differences with a 95% interval from the
//! bootstrap ([`paired`]), the difference of two groups' means ([`two_groups`]), or any
//! statistic of a resampled set of items ([`resampled`], e.g. a similarity computed over
//! images; [`resampled_weights`] when many resamples are cheaper at once). A claim that uses
//! them is `held` only when the whole interval lies on the paper's side of zero, and is not
//! testable below [`MIN_N`] samples. The generator is seeded, so an interval is the same on
//! every machine.

use serde::{Deserialize, Serialize};

/// Fewer samples than this make a claim "not testable" (its interval would mean little).
pub const MIN_N: usize = 10;
/// Bootstrap resamples.
pub const RESAMPLES: usize = 10_000;
/// The interval's coverage.
pub const LEVEL: f64 = 0.95;

/// An effect with its interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The estimate (a mean difference, in the claim's direction: positive supports it).
    pub effect: f64,
    /// The 95% percentile-bootstrap interval.
    pub lo: f64,
    pub hi: f64,
    /// Samples (images, or the smaller group).
    pub n: usize,
    pub method: String,
}

impl Effect {
    /// The interval excludes "no effect" on the paper's side.
    pub fn supports(&self) -> bool {
        self.lo > 0.0
    }

    /// `effect +0.123 [95% CI +0.045, +0.201], n = 40 (method)`.
    pub fn describe(&self) -> String {
        format!(
            "effect {:+.3} [95% CI {:+.3}, {:+.3}], n = {} ({})",
            self.effect, self.lo, self.hi, self.n, self.method
        )
    }
}

/// SplitMix64: a small seeded generator, so that intervals are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    (at((1.0 - LEVEL) / 2.0), at(1.0 - (1.0 - LEVEL) / 2.0))
}

/// The mean of `diffs` (one per image, positive in the claim's direction) and its percentile
/// bootstrap interval (images resampled with replacement). `None` for no samples.
pub fn paired(diffs: &[f64]) -> Option<Effect> {
    let diffs: Vec<f64> = diffs.iter().copied().filter(|d| d.is_finite()).collect();
    if diffs.is_empty() {
        return None;
    }
    resampled(diffs.len(), RESAMPLES, "paired bootstrap over images", |idx| {
        idx.iter().map(|&i| diffs[i]).sum::<f64>() / idx.len() as f64
    })
}

/// `statistic` of all `n` items, and its percentile bootstrap interval: `statistic` evaluated on
/// `resamples` draws of `n` item indices with replacement. `None` for no items.
pub fn resampled(
    n: usize,
    resamples: usize,
    method: &str,
    mut statistic: impl FnMut(&[usize]) -> f64,
) -> Option<Effect> {
    if n == 0 || resamples == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n).collect();
    let effect = statistic(&all);
    let mut rng = Rng(0x5eed);
    let mut idx = vec![0; n];
    let values: Vec<f64> = (0..resamples)
        .map(|_| {
            idx.iter_mut().for_each(|i| *i = rng.below(n));
            statistic(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    let (lo, hi) = percentiles(values);
    Some(Effect { effect, lo, hi, n, method: method.into() })
}

/// [`resampled`] for a statistic that is cheaper over many resamples at once: each resample is
/// given as its multiplicities (`w[i]`: how often item `i` was drawn; they sum to `n`), in
/// batches of at most `batch`, and `statistic` returns one value per resample of the batch. The
/// draws are [`resampled`]'s, so the effect and the interval are the same up to float rounding.
/// The effect is `statistic` of the all-ones multiplicities. `None` for no items.
pub fn resampled_weights<E>(
    n: usize,
    resamples: usize,
    batch: usize,
    method: &str,
    mut statistic: impl FnMut(&[Vec<f64>]) -> std::result::Result<Vec<f64>, E>,
) -> std::result::Result<Option<Effect>, E> {
    if n == 0 || resamples == 0 {
        return Ok(None);
    }
    let effect = statistic(&[vec![1.0; n]])?[0];
    let mut rng = Rng(0x5eed);
    let mut values = Vec::with_capacity(resamples);
    let mut done = 0;
    while done < resamples {
        let weights: Vec<Vec<f64>> = (0..batch.max(1).min(resamples - done))
            .map(|_| {
                let mut w = vec![0.0; n];
                (0..n).for_each(|_| w[rng.below(n)] += 1.0);
                w
            })
            .collect();
        done += weights.len();
        values.extend(statistic(&weights)?.into_iter().filter(|v| v.is_finite()));
    }
    if values.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = percentiles(values);
    Ok(Some(Effect { effect, lo, hi, n, method: method.into() }))
}

/// `statistic(a) - statistic(b)` and its percentile bootstrap interval, each group resampled
/// on its own ([`RESAMPLES`] times). `n` is the smaller group. `None` when a group is empty.
pub fn two_groups_by(a: &[f64], b: &[f64], method: &str, statistic: impl Fn(&[f64]) -> f64) -> Option<Effect> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng(0x5eed);
    let mut draw = |v: &[f64]| -> Vec<f64> { (0..v.len()).map(|_| v[rng.below(v.len())]).collect() };
    let diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let (x, y) = (draw(a), draw(b));
            statistic(&x) - statistic(&y)
        })
        .filter(|d| d.is_finite())
        .collect();
    if diffs.is_empty() {
        return None;
    }
    let (lo, hi) = percentiles(diffs);
    Some(Effect { effect: statistic(a) - statistic(b), lo, hi, n: a.len().min(b.len()), method: method.into() })
}

/// `mean(a) - mean(b)` and its percentile bootstrap interval (each group resampled on its own).
/// `n` is the smaller group. `None` when a group is empty.
pub fn two_groups(a: &[f64], b: &[f64]) -> Option<Effect> {
    let a: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|v| v.is_finite()).collect();
    if a.is_empty() || b.is_empty() {
        return None;
    }
    two_groups_by(&a, &b, "bootstrap of two groups", mean)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_effect_is_supported_and_noise_is_not() {
        // 40 differences of 1 +- 0.5: the interval is about 1 +- 0.15.
        let clear: Vec<f64> = (0..40).map(|i| 1.0 + if i % 2 == 0 { 0.5 } else { -0.5 }).collect();
        let e = paired(&clear).unwrap();
        assert!((e.effect - 1.0).abs() < 1e-12 && e.lo > 0.8 && e.hi < 1.2 && e.supports(), "{e:?}");
        // Symmetric noise around zero: the interval straddles it.
        let noise: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let e = paired(&noise).unwrap();
        assert!(e.lo < 0.0 && e.hi > 0.0 && !e.supports(), "{e:?}");
        // All ties: zero width at zero, not supported.
        let e = paired(&[0.0; 20]).unwrap();
        assert_eq!((e.lo, e.hi), (0.0, 0.0));
        assert!(!e.supports());
        assert!(paired(&[]).is_none() && paired(&[f64::NAN]).is_none());
    }

    #[test]
    fn resampling_by_weights_draws_what_resampling_by_indices_draws() {
        // A weighted mean over multiplicities is the mean over the drawn indices: the same
        // draws give the same effect and interval, whatever the batch size.
        let v: Vec<f64> = (0..37).map(|i| ((i * 13) as f64).sin() + 0.1).collect();
        let by_idx = resampled(v.len(), 500, "m", |idx| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64);
        for batch in [1, 7, 500] {
            let by_w = resampled_weights(v.len(), 500, batch, "m", |ws| {
                Ok::<_, ()>(ws.iter().map(|w| w.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() / 37.0).collect())
            })
            .unwrap();
            let (a, b) = (by_idx.clone().unwrap(), by_w.unwrap());
            assert!((a.effect - b.effect).abs() < 1e-12 && (a.lo - b.lo).abs() < 1e-12, "{a:?} {b:?}");
            assert!((a.hi - b.hi).abs() < 1e-12 && a.n == b.n, "{a:?} {b:?}");
        }
        assert!(resampled_weights(0, 10, 4, "m", |_| Ok::<_, ()>(vec![])).unwrap().is_none());
    }

    #[test]
    fn two_groups_compare_means() {
        let a: Vec<f64> = (0..20).map(|i| 0.8 + 0.01 * (i % 5) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| 0.1 + 0.01 * (i % 7) as f64).collect();
        let e = two_groups(&a, &b).unwrap();
        let m = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(e.supports() && e.n == 20 && (e.effect - (m(&a) - m(&b))).abs() < 1e-12, "{e:?}");
        assert!(!two_groups(&b, &a).unwrap().supports());
        // Deterministic: the same interval every time.
        assert_eq!(two_groups(&a, &b), two_groups(&a, &b));
    }

    #[test]
    fn two_groups_by_the_mean_is_two_groups() {
        let a: Vec<f64> = (0..20).map(|i| 0.8 + 0.01 * (i % 5) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| 0.1 + 0.01 * (i % 7) as f64).collect();
        let by = two_groups_by(&a, &b, "bootstrap of two groups", mean).unwrap();
        assert_eq!(Some(by), two_groups(&a, &b));
        // The largest value over the median: a clear outlier in one group only.
        let ratio = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s[s.len() - 1] / s[s.len() / 2]
        };
        let spiky: Vec<f64> = (0..12).map(|i| if i == 0 { 9.0 } else { 1.0 + 0.01 * i as f64 }).collect();
        let even: Vec<f64> = (0..12).map(|i| 1.0 + 0.01 * i as f64).collect();
        let e = two_groups_by(&spiky, &even, "m", ratio).unwrap();
        assert!(e.effect > 7.0 && e.hi >= e.lo, "{e:?}");
    }

    #[test]
    fn a_resampled_mean_is_the_paired_bootstrap() {
        // The mean as a statistic of resampled items draws the same indices as `paired`.
        let d: Vec<f64> = (0..30).map(|i| (i as f64 * 0.37).sin()).collect();
        let r = resampled(d.len(), RESAMPLES, "m", |idx| idx.iter().map(|&i| d[i]).sum::<f64>() / idx.len() as f64);
        let p = paired(&d).unwrap();
        let r = r.unwrap();
        assert!((r.effect - p.effect).abs() < 1e-12 && (r.lo - p.lo).abs() < 1e-12 && (r.hi - p.hi).abs() < 1e-12);
        assert!(resampled(0, 10, "m", |_| 0.0).is_none());
    }
}
