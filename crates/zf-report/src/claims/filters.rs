//! Fig. 6's claims on the first layer's filters: renormalization keeps any filter from
//! dominating, the 7x7 stride-2 layer covers the mid frequencies, and it has fewer dead filters.

use zf_probe::FilterStats;

use super::{by_stats, mean, Claim};
use crate::results::Results;
use crate::stats::two_groups;

/// The conv1 statistics of the bank `name` (`zfnet`, `alexnet`, `no-renorm`).
fn bank<'a>(r: &'a Results, name: &str) -> Option<&'a FilterStats> {
    r.fig6.as_ref()?.banks.iter().find(|b| b.name == name).map(|b| &b.stats)
}

/// Sec. 3 / Fig. 6: without renormalization a few filters come to dominate. Per filter, how far
/// its norm stands out, |log(RMS / the bank's median RMS)| (0 for a bank of equal norms); the
/// mean without renormalization minus with it, two groups of filters.
pub fn fig6_renorm(r: &Results) -> Claim {
    let dom = |n: &str| bank(r, n).map(|b| f64::from(b.dominance));
    let spread =
        |n: &str| {
            bank(r, n)
                .map(|b| {
                    b.rms
                        .iter()
                        .map(|&v| {
                            if v > 0.0 && b.median_rms > 0.0 {
                                f64::from(v / b.median_rms).ln().abs()
                            } else {
                                f64::NAN
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
    by_stats(
        "fig6-renorm",
        "Sec. 3 / Fig. 6: without filter renormalization a few first-layer filters come to dominate",
        "per conv1 filter, |log(RMS / the bank's median RMS)| (how far its norm stands out); the mean without renormalization minus with it, bootstrap of two groups of filters; held when the 95% interval is above 0 (the value gives largest/median RMS)".into(),
        dom("no-renorm").zip(dom("zfnet")).map(|(n, z)| {
            // How close the trained filters came to the radius: a radius never reached makes the
            // two runs the same.
            let reach = bank(r, "no-renorm").zip(r.run.as_ref()).and_then(|(b, run)| {
                let radius = run.config.renorm?;
                let shape = [b.filters, 3, b.kernel, b.kernel];
                let radius = zf_train::trainer::layer_radius(&run.config, radius, "conv1.weight", &shape);
                let max = b.rms.iter().copied().fold(0f32, f32::max);
                Some(format!(
                    "; the largest conv1 filter RMS without it is {max:.3}, {:.0}% of ZFNet's radius {radius:.3}",
                    100.0 * f64::from(max) / radius
                ))
            });
            format!("{n:.2} without vs {z:.2} with{}", reach.unwrap_or_default())
        }),
        two_groups(&spread("no-renorm"), &spread("zfnet")),
    )
}

/// Fig. 6 (b) vs (c): per filter, the fraction of conv1's spectral energy in the mid band,
/// ZFNet's filters minus the AlexNet-style ones, two groups of filters.
pub fn fig6_mid_frequencies(r: &Results) -> Claim {
    let mids = |n: &str| {
        bank(r, n).map(|b| b.filter_bands.iter().map(|f| f64::from(f[1])).collect::<Vec<_>>()).unwrap_or_default()
    };
    let mid = |n: &str| bank(r, n).map(|b| f64::from(b.band_energy[1]));
    let init_mid = |n: &str| bank(r, n).and_then(|b| b.init_band_energy).map(|e| format!(" (init {:.3})", e[1]));
    let change = |n: &str| {
        bank(r, n)
            .filter(|b| !b.spectral_change.is_empty())
            .map(|b| format!("{:.2}", b.spectral_change.iter().sum::<f32>() / b.spectral_change.len() as f32))
    };
    by_stats(
        "fig6-mid-frequencies",
        "Fig. 6 (b) vs (c): the 11x11 stride-4 first layer has little mid-frequency coverage; 7x7 stride 2 covers it better",
        "per filter, the fraction of conv1 spectral energy in the mid band (1/6..1/3 cycles per input pixel, both kernel sizes zero-padded to one 32x32 DFT grid); ZFNet's filters minus the AlexNet-style ones, bootstrap of two groups; held when the 95% interval is above 0".into(),
        mid("zfnet").zip(mid("alexnet")).map(|(z, a)| {
            format!(
                "{z:.3}{} (ZFNet) vs {a:.3}{} (AlexNet-style); spectral change from the init {} vs {}",
                init_mid("zfnet").unwrap_or_default(),
                init_mid("alexnet").unwrap_or_default(),
                change("zfnet").unwrap_or_else(|| "–".into()),
                change("alexnet").unwrap_or_else(|| "–".into())
            )
        }),
        two_groups(&mids("zfnet"), &mids("alexnet")),
    )
}

/// Fig. 6 (b): the AlexNet-style first layer has dead filters, ZFNet's fewer: the fraction of
/// dead conv1 filters (on data when measured, else by RMS), AlexNet-style minus ZFNet.
pub fn fig6_dead_filters(r: &Results) -> Claim {
    let dead_flags = |n: &str| -> Vec<f64> {
        bank(r, n)
            .map(|b| {
                if b.dead_on_data.is_empty() {
                    b.rms
                        .iter()
                        .map(|&v| f64::from(u8::from(v < b.median_rms * zf_probe::filters::DEAD_FRACTION)))
                        .collect()
                } else {
                    b.dead_on_data.iter().map(|&d| f64::from(u8::from(d))).collect()
                }
            })
            .unwrap_or_default()
    };
    let on_data = bank(r, "zfnet").is_some_and(|b| !b.dead_on_data.is_empty());
    let frac = |v: &[f64]| mean(v).map(|m| format!("{:.0}%", 100.0 * m));
    let (dz, da) = (dead_flags("zfnet"), dead_flags("alexnet"));
    let by_rms = |n: &str| bank(r, n).map(|b| format!("{:.0}%", 100.0 * b.dead_fraction));
    by_stats(
        "fig6-dead-filters",
        "Fig. 6 (b): the 11x11 stride-4 first layer has dead filters; 7x7 stride 2 has fewer",
        format!(
            "fraction of dead conv1 filters ({}), AlexNet-style minus ZFNet, bootstrap of two groups; held when the 95% interval is above 0 (0% vs 0% is a tie: not held)",
            if on_data { "mean ReLU response below 1% of the median filter's on at least 95% of 200 validation images" } else { "RMS < 0.1 x the bank's median" }
        ),
        frac(&dz).zip(frac(&da)).map(|(z, a)| {
            format!(
                "{z} (ZFNet) vs {a} (AlexNet-style); by RMS {} vs {}",
                by_rms("zfnet").unwrap_or_default(),
                by_rms("alexnet").unwrap_or_default()
            )
        }),
        two_groups(&da, &dz),
    )
}
