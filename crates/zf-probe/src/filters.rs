//! First-layer diagnostics (Fig. 6): how healthy a conv1 filter bank is.
//!
//! - **RMS** of each filter (over all its weights).
//! - **Dead filters**: RMS below [`DEAD_FRACTION`] of the bank's median RMS (ours: the paper
//!   shows dead filters but does not define them; a filter that small contributes nothing next
//!   to its neighbours).
//! - **Spectral energy by band**: each filter's 2-D discrete Fourier transform (per input
//!   channel, energies summed over channels) split by spatial frequency
//!   `r = max(|fx|, |fy|)` in cycles per pixel (0 ..= 0.5): low `r < 1/6` (the DC term
//!   included), mid `1/6 <= r < 1/3`, high `r >= 1/3`. Each filter's energy is normalized to 1
//!   before the bank's mean is taken, so every filter counts the same. The paper's claim: the
//!   11x11 stride-4 first layer has "a mix of extremely high and low frequency information,
//!   with little coverage of the mid frequencies".
//! - **Dominance**: the largest RMS over the median RMS ("one filter dominates" without
//!   renormalization).

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::bail;

/// A filter is dead when its RMS is below this fraction of the bank's median RMS.
pub const DEAD_FRACTION: f32 = 0.1;
/// Band edges in cycles per pixel (see the module docs).
pub const BAND_EDGES: [f32; 2] = [1.0 / 6.0, 1.0 / 3.0];

/// The statistics of one filter bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterStats {
    pub filters: usize,
    pub kernel: usize,
    pub rms: Vec<f32>,
    pub median_rms: f32,
    /// Filters with RMS below `DEAD_FRACTION * median_rms`, as a fraction of the bank.
    pub dead_fraction: f32,
    /// Mean normalized spectral energy in the low, mid and high bands (sums to 1).
    pub band_energy: [f32; 3],
    /// Each filter's band energies (normalized), `[filters][3]`.
    pub filter_bands: Vec<[f32; 3]>,
    /// Largest RMS / median RMS.
    pub dominance: f32,
}

/// Statistics of a filter bank `[N, C, K, K]` (conv1's weights).
pub fn filter_stats(weights: &Tensor) -> Result<FilterStats> {
    let (n, c, kh, kw) = weights.dims4()?;
    if kh != kw || n == 0 {
        bail!("expected a bank of square filters [N, C, K, K], got {:?}", weights.dims())
    }
    let k = kh;
    let w = weights.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let per = c * k * k;
    let rms: Vec<f32> =
        (0..n).map(|i| (w[i * per..(i + 1) * per].iter().map(|v| v * v).sum::<f32>() / per as f32).sqrt()).collect();
    let mut sorted = rms.clone();
    sorted.sort_by(f32::total_cmp);
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let dead = rms.iter().filter(|&&r| r < DEAD_FRACTION * median).count();
    let max = sorted[n - 1];
    let filter_bands: Vec<[f32; 3]> = (0..n).map(|i| bands(&w[i * per..(i + 1) * per], c, k)).collect();
    let mut band_energy = [0f32; 3];
    for b in &filter_bands {
        for j in 0..3 {
            band_energy[j] += b[j] / n as f32;
        }
    }
    Ok(FilterStats {
        filters: n,
        kernel: k,
        rms,
        median_rms: median,
        dead_fraction: dead as f32 / n as f32,
        band_energy,
        filter_bands,
        dominance: if median > 0.0 { max / median } else { f32::INFINITY },
    })
}

/// The band of frequency index `u` of a `k`-point DFT, by `|f| = min(u, k - u) / k`.
fn freq(u: usize, k: usize) -> f32 {
    u.min(k - u) as f32 / k as f32
}

/// One filter's normalized energy in the low, mid and high bands (all zero for a zero filter).
fn bands(filter: &[f32], c: usize, k: usize) -> [f32; 3] {
    let mut e = [0f64; 3];
    let tau = std::f64::consts::TAU;
    for ch in 0..c {
        let plane = &filter[ch * k * k..(ch + 1) * k * k];
        for u in 0..k {
            for v in 0..k {
                let (mut re, mut im) = (0f64, 0f64);
                for y in 0..k {
                    for x in 0..k {
                        let a = -tau * ((u * y) as f64 / k as f64 + (v * x) as f64 / k as f64);
                        re += plane[y * k + x] as f64 * a.cos();
                        im += plane[y * k + x] as f64 * a.sin();
                    }
                }
                let r = freq(u, k).max(freq(v, k));
                let band = if r < BAND_EDGES[0] {
                    0
                } else if r < BAND_EDGES[1] {
                    1
                } else {
                    2
                };
                e[band] += re * re + im * im;
            }
        }
    }
    let total: f64 = e.iter().sum();
    if total == 0.0 {
        return [0.0; 3];
    }
    [(e[0] / total) as f32, (e[1] / total) as f32, (e[2] / total) as f32]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bank(filters: Vec<Vec<f32>>, k: usize) -> Tensor {
        let n = filters.len();
        Tensor::from_vec(filters.concat(), (n, 1, k, k), &Device::Cpu).unwrap()
    }

    #[test]
    fn constant_and_checkerboard_filters_fall_in_the_low_and_high_bands() {
        let k = 6;
        let flat = vec![1.0; k * k];
        // (-1)^(x+y): all energy at fx = fy = 1/2 cycles per pixel.
        let checker: Vec<f32> = (0..k * k).map(|i| if (i / k + i % k) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let s = filter_stats(&bank(vec![flat, checker], k)).unwrap();
        assert!((s.filter_bands[0][0] - 1.0).abs() < 1e-5, "{:?}", s.filter_bands[0]);
        assert!((s.filter_bands[1][2] - 1.0).abs() < 1e-5, "{:?}", s.filter_bands[1]);
        assert!((s.band_energy.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // cos(2 pi x / 4) on an 8-point grid: fx = 1/4 cycles per pixel, in the mid band.
        let k = 8;
        let wave8: Vec<f32> = (0..k * k).map(|i| ((i % k) as f32 * std::f32::consts::TAU / 4.0).cos()).collect();
        let s = filter_stats(&bank(vec![wave8], k)).unwrap();
        assert!((s.filter_bands[0][1] - 1.0).abs() < 1e-4, "{:?}", s.filter_bands[0]);
    }

    #[test]
    fn dead_and_dominant_filters_are_measured_against_the_median() {
        let k = 3;
        let f = |v: f32| vec![v; k * k];
        // RMS 1, 1, 1, 0.05, 8: median 1; one dead (0.05 < 0.1); dominance 8.
        let s = filter_stats(&bank(vec![f(1.0), f(-1.0), f(1.0), f(0.05), f(8.0)], k)).unwrap();
        assert_eq!(s.median_rms, 1.0);
        assert!((s.dead_fraction - 0.2).abs() < 1e-6);
        assert!((s.dominance - 8.0).abs() < 1e-5);
        assert!(filter_stats(&Tensor::zeros((2, 1, 3, 4), DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
