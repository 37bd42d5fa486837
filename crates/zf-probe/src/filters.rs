//! First-layer diagnostics (Fig. 6): how healthy a conv1 filter bank is.
//!
//! - **RMS** of each filter (over all its weights).
//! - **Dead filters**: RMS below [`DEAD_FRACTION`] of the bank's median RMS (ours: the paper
//!   shows dead filters but does not define them; a filter that small contributes nothing next
//!   to its neighbours).
//! - **Spectral energy by band**: each filter's 2-D discrete Fourier transform, zero-padded to
//!   one grid of [`DFT_SIZE`]² for every kernel size (so 7x7 and 11x11 filters are measured at
//!   the same frequencies), per input channel with energies summed over channels, split by
//!   spatial frequency `r = max(|fx|, |fy|)` in cycles per input pixel (0 ..= 0.5): low
//!   `r < 1/6` (the DC term included), mid `1/6 <= r < 1/3`, high `r >= 1/3`. Each filter's
//!   energy is normalized to 1 before the bank's mean is taken, so every filter counts the
//!   same. The paper's claim: the 11x11 stride-4 first layer has "a mix of extremely high and
//!   low frequency information, with little coverage of the mid frequencies".
//! - **Spectral change from the initialization**: the same normalized energy in rings of `r`
//!   (one ring per grid step), and per filter the total-variation distance between its rings
//!   and the initial bank's mean rings (0: as white as the random start; 1: nothing in common)
//!   — how much of the picture training put there.
//! - **Dead on data** ([`dead_on_data`]): a filter whose response is near zero on nearly all
//!   images.
//! - **Dominance**: the largest RMS over the median RMS ("one filter dominates" without
//!   renormalization).

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::bail;

/// A filter is dead when its RMS is below this fraction of the bank's median RMS.
pub const DEAD_FRACTION: f32 = 0.1;
/// Band edges in cycles per pixel (see the module docs).
pub const BAND_EDGES: [f32; 2] = [1.0 / 6.0, 1.0 / 3.0];
/// The common DFT grid every filter is zero-padded to.
pub const DFT_SIZE: usize = 32;
/// Rings of the radial spectrum: `max(|u|, |v|)` of 0..=DFT_SIZE/2 grid steps.
pub const RINGS: usize = DFT_SIZE / 2 + 1;

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
    /// Each filter's normalized energy per ring of `max(|fx|, |fy|)`, `[filters][RINGS]`.
    #[serde(default)]
    pub filter_rings: Vec<Vec<f32>>,
    /// The initial bank's band energies and each filter's spectral change from it (see the
    /// module docs), when the initialization is known.
    #[serde(default)]
    pub init_band_energy: Option<[f32; 3]>,
    #[serde(default)]
    pub spectral_change: Vec<f32>,
    /// Per filter, whether it is dead on data ([`dead_on_data`]), when measured.
    #[serde(default)]
    pub dead_on_data: Vec<bool>,
}

impl FilterStats {
    /// Compares every filter's spectrum with the mean spectrum of `init`, the bank's
    /// initialization (filling `init_band_energy` and `spectral_change`).
    pub fn against_init(&mut self, init: &FilterStats) {
        let mut mean = vec![0f32; RINGS];
        for r in &init.filter_rings {
            mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / init.filter_rings.len() as f32);
        }
        self.spectral_change = self
            .filter_rings
            .iter()
            .map(|r| 0.5 * r.iter().zip(&mean).map(|(a, b)| (a - b).abs()).sum::<f32>())
            .collect();
        self.init_band_energy = Some(init.band_energy);
    }
}

/// A filter's response is "near zero" on an image when its mean activation (after ReLU) is
/// below this fraction of the bank's median filter response on that image.
pub const DEAD_RESPONSE: f32 = 0.01;
/// ...and it is dead when that holds on at least this fraction of the images.
pub const DEAD_IMAGES: f32 = 0.95;

/// Per conv1 filter of `net`, whether it is dead on `images` `[N, 3, S, S]`: its mean
/// activation after ReLU is below [`DEAD_RESPONSE`] times the median filter's on at least
/// [`DEAD_IMAGES`] of the images.
pub fn dead_on_data(net: &zf_model::ZfNet, images: &Tensor) -> Result<Vec<bool>> {
    let n = images.dim(0)?;
    let mut responses: Vec<Vec<f32>> = Vec::new();
    for start in (0..n).step_by(32) {
        let x = images.narrow(0, start, 32.min(n - start))?;
        let a = net.forward_until(&x, false, zf_model::Point::Conv1, &mut zf_model::NoTap)?;
        responses.extend(a.mean((2, 3))?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?);
    }
    let filters = responses.first().map_or(0, Vec::len);
    let mut near_zero = vec![0usize; filters];
    for r in &responses {
        let mut sorted = r.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[filters / 2];
        for (f, &v) in r.iter().enumerate() {
            if v <= DEAD_RESPONSE * median || v == 0.0 {
                near_zero[f] += 1;
            }
        }
    }
    Ok(near_zero.iter().map(|&z| n > 0 && z as f32 >= DEAD_IMAGES * n as f32).collect())
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
    let spectra: Vec<Vec<f32>> = (0..n).map(|i| rings(&w[i * per..(i + 1) * per], c, k)).collect();
    let filter_bands: Vec<[f32; 3]> = spectra.iter().map(|r| bands(r)).collect();
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
        filter_rings: spectra,
        init_band_energy: None,
        spectral_change: Vec::new(),
        dead_on_data: Vec::new(),
    })
}

/// The frequency of index `u` on the common grid, in grid steps: `min(u, N - u)`.
fn step(u: usize) -> usize {
    u.min(DFT_SIZE - u)
}

/// One filter's normalized energy per ring `max(|u|, |v|)` of its DFT zero-padded to
/// [`DFT_SIZE`]² (all zero for a zero filter).
fn rings(filter: &[f32], c: usize, k: usize) -> Vec<f32> {
    let n = DFT_SIZE;
    let tau = std::f64::consts::TAU;
    let (cos, sin): (Vec<f64>, Vec<f64>) =
        (0..n).map(|t| ((tau * t as f64 / n as f64).cos(), -(tau * t as f64 / n as f64).sin())).unzip();
    let mut e = [0f64; RINGS];
    for ch in 0..c {
        let plane = &filter[ch * k * k..(ch + 1) * k * k];
        // Along x: row y's transform at frequency v.
        let mut rows = vec![(0f64, 0f64); k * n];
        for y in 0..k {
            for v in 0..n {
                let (mut re, mut im) = (0.0, 0.0);
                for x in 0..k {
                    let t = (v * x) % n;
                    re += f64::from(plane[y * k + x]) * cos[t];
                    im += f64::from(plane[y * k + x]) * sin[t];
                }
                rows[y * n + v] = (re, im);
            }
        }
        // Along y.
        for u in 0..n {
            for v in 0..n {
                let (mut re, mut im) = (0.0, 0.0);
                for y in 0..k {
                    let t = (u * y) % n;
                    let (a, b) = rows[y * n + v];
                    re += a * cos[t] - b * sin[t];
                    im += a * sin[t] + b * cos[t];
                }
                e[step(u).max(step(v))] += re * re + im * im;
            }
        }
    }
    let total: f64 = e.iter().sum();
    e.iter().map(|&v| if total > 0.0 { (v / total) as f32 } else { 0.0 }).collect()
}

/// A ring spectrum's energy in the low, mid and high bands, by the ring's frequency in cycles
/// per pixel.
fn bands(rings: &[f32]) -> [f32; 3] {
    let mut b = [0f32; 3];
    for (d, &v) in rings.iter().enumerate() {
        let r = d as f32 / DFT_SIZE as f32;
        let band = if r < BAND_EDGES[0] {
            0
        } else if r < BAND_EDGES[1] {
            1
        } else {
            2
        };
        b[band] += v;
    }
    b
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
        // Zero-padded to the common grid, a finite filter leaks a little into the next band:
        // most of the energy stays where its frequency is.
        let k = 7;
        let flat = vec![1.0; k * k];
        // (-1)^(x+y): the energy around fx = fy = 1/2 cycles per pixel.
        let checker: Vec<f32> = (0..k * k).map(|i| if (i / k + i % k) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let s = filter_stats(&bank(vec![flat, checker], k)).unwrap();
        assert!(s.filter_bands[0][0] > 0.8, "{:?}", s.filter_bands[0]);
        assert!(s.filter_bands[1][2] > 0.8, "{:?}", s.filter_bands[1]);
        assert!((s.band_energy.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // cos(2 pi x / 4): fx = 1/4 cycles per pixel, in the mid band, for 7x7 and 11x11 alike.
        for k in [7, 11] {
            let wave: Vec<f32> = (0..k * k).map(|i| ((i % k) as f32 * std::f32::consts::TAU / 4.0).cos()).collect();
            let s = filter_stats(&bank(vec![wave], k)).unwrap();
            assert!(s.filter_bands[0][1] > 0.75, "{k}: {:?}", s.filter_bands[0]);
        }
    }

    #[test]
    fn a_padded_transform_is_parseval_and_change_from_init_is_zero_for_the_init() {
        // Parseval on the padded grid: the summed energy is N^2 times the squared norm.
        let k = 5;
        let f: Vec<f32> = (0..k * k).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let r = rings(&f, 1, k);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let s = filter_stats(&bank(vec![f.clone(), f.iter().map(|v| -v).collect()], k)).unwrap();
        let mut same = s.clone();
        same.against_init(&s);
        assert!(same.spectral_change.iter().all(|&d| d < 1e-6), "{:?}", same.spectral_change);
        // A flat filter against that bank: far from it.
        let mut flat = filter_stats(&bank(vec![vec![1.0; k * k]], k)).unwrap();
        flat.against_init(&s);
        assert!(flat.spectral_change[0] > 0.3 && flat.spectral_change[0] <= 1.0, "{:?}", flat.spectral_change);
        assert_eq!(flat.init_band_energy, Some(s.band_energy));
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
