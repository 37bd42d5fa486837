//! The paper's claims, each a pure function of the typed [`Results`]: what the paper says, the
//! quantity measured, the rule that decides it, the value and the verdict ([`claims`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zf_probe::records::ImageCurve;

use crate::results::Results;
use crate::stats::{paired, resampled, two_groups, Effect, MIN_N};

/// One claim of the paper, the quantity that tests it, its value and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    pub paper: String,
    /// What is measured, and the rule that decides "held".
    pub test: String,
    /// The measured value(s), as text; `None` when the run has no such number.
    pub value: Option<String>,
    /// `None`: not measured (no value) or not testable (a value, but too few samples).
    pub held: Option<bool>,
    /// For claims decided by statistics: the effect, its 95% interval and n.
    #[serde(default)]
    pub stats: Option<Effect>,
}

impl Claim {
    /// The verdict's word: held, not held, not testable (measured on too few samples) or not
    /// measured.
    pub fn verdict(&self) -> &'static str {
        match (self.held, &self.value) {
            (Some(true), _) => "held",
            (Some(false), _) => "not held",
            (None, Some(_)) => "not testable",
            (None, None) => "not measured",
        }
    }
}

/// A claim decided by an [`Effect`]: held when its interval lies on the paper's side of zero;
/// not testable below [`MIN_N`] samples; the value gives the effect and `base` (the means).
fn by_stats(id: &str, paper: &str, test: String, base: Option<String>, effect: Option<Effect>) -> Claim {
    let (value, held) = match &effect {
        None => (None, None),
        Some(e) if e.n < MIN_N => (
            Some(format!("{}; {} — not testable: n = {} < {MIN_N}", base.unwrap_or_default(), e.describe(), e.n)),
            None,
        ),
        Some(e) => (Some(format!("{}; {}", base.unwrap_or_default(), e.describe())), Some(e.supports())),
    };
    Claim { id: id.into(), paper: paper.into(), test, value, held, stats: effect }
}

/// Bootstrap resamples for Table 1 (each recomputes Δ from the distance matrices).
pub const TABLE1_RESAMPLES: usize = 2000;

/// Fewer training snapshots than this make Fig. 4's claim not testable (the paper shows eight).
pub const MIN_SNAPSHOTS: usize = 8;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The mean of the first values of `pairs` and the mean of the second values.
fn means(pairs: &[(f64, f64)]) -> (Option<f64>, Option<f64>) {
    (mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()), mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()))
}

fn claim(id: &str, paper: &str, test: String, value: Option<String>, held: Option<bool>) -> Claim {
    Claim { id: id.into(), paper: paper.into(), test, value, held, stats: None }
}

/// The paper's claims, tested on `r`. Each is decided by an effect and its 95% bootstrap
/// interval, held only when the interval lies above zero (a tie never is); only the training
/// claim, on an evaluation without per-image results, falls back to its threshold.
pub fn claims(r: &Results) -> Vec<Claim> {
    let mut out = Vec::new();
    let err = |name: &str| r.eval.get(name).map(|e| e.top1_err);
    let classes = r.run.as_ref().map_or(10.0, |run| run.config.model.classes as f64);

    // Training works at all: the error is below half of chance, by a bootstrap over the
    // validation images (per image: half of chance minus 1 when wrong, minus 0 when right).
    let chance = 1.0 - 1.0 / classes;
    let e = err("zfnet");
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
    out.push(if per_image.is_empty() {
        // An evaluation without per-image results: the threshold alone.
        claim("training", paper, test, value, e.map(|e| e <= chance / 2.0))
    } else {
        by_stats("training", paper, test, value, paired(&per_image))
    });

    // Table 2 / Sec. 5: ZFNet's first layer beats AlexNet's: per validation image, AlexNet-style
    // wrong minus ZFNet wrong (both evaluated on the same images).
    let (z, a) = (err("zfnet"), err("alexnet"));
    let per_image = r.eval.get("zfnet").zip(r.eval.get("alexnet")).and_then(|(ze, ae)| {
        let alex: BTreeMap<usize, bool> = ae.top1_correct.iter().copied().collect();
        let diffs: Vec<f64> = ze
            .top1_correct
            .iter()
            .filter_map(|(i, zc)| Some(f64::from(u8::from(*zc)) - f64::from(u8::from(*alex.get(i)?))))
            .collect();
        paired(&diffs)
    });
    out.push(by_stats(
        "table2-first-layer",
        "Table 2 / Sec. 4.1: the 7x7 stride-2 first layer (ZFNet) gives lower error than 11x11 stride 4 (38.4% vs 40.5% top-1)",
        "per validation image, AlexNet-style top-1 wrong minus ZFNet top-1 wrong (same images, same budget); held when the 95% interval is above 0".into(),
        z.zip(a).map(|(z, a)| format!("{:.1}% vs {:.1}%", 100.0 * z, 100.0 * a)),
        per_image,
    ));

    // Fig. 6: filters.
    let bank = |name: &str| r.fig6.as_ref()?.banks.iter().find(|b| b.name == name).map(|b| &b.stats);
    let dom = |n: &str| bank(n).map(|b| f64::from(b.dominance));
    // The spread of the filters' norms: |log(RMS / the bank's median RMS)| per filter (0 for a
    // bank of equal norms; large when a few filters dominate).
    let spread =
        |n: &str| {
            bank(n)
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
    out.push(by_stats(
        "fig6-renorm",
        "Sec. 3 / Fig. 6: without filter renormalization a few first-layer filters come to dominate",
        "per conv1 filter, |log(RMS / the bank's median RMS)| (how far its norm stands out); the mean without renormalization minus with it, bootstrap of two groups of filters; held when the 95% interval is above 0 (the value gives largest/median RMS)".into(),
        dom("no-renorm").zip(dom("zfnet")).map(|(n, z)| {
            // How close the trained filters came to the radius: a radius never reached makes the
            // two runs the same.
            let reach = bank("no-renorm").zip(r.run.as_ref()).and_then(|(b, run)| {
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
    ));
    let mids = |n: &str| {
        bank(n).map(|b| b.filter_bands.iter().map(|f| f64::from(f[1])).collect::<Vec<_>>()).unwrap_or_default()
    };
    let mid = |n: &str| bank(n).map(|b| f64::from(b.band_energy[1]));
    let init_mid = |n: &str| bank(n).and_then(|b| b.init_band_energy).map(|e| format!(" (init {:.3})", e[1]));
    let change = |n: &str| {
        bank(n)
            .filter(|b| !b.spectral_change.is_empty())
            .map(|b| format!("{:.2}", b.spectral_change.iter().sum::<f32>() / b.spectral_change.len() as f32))
    };
    out.push(by_stats(
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
    ));
    // Dead on data when measured, else by RMS.
    let dead_flags = |n: &str| -> Vec<f64> {
        bank(n)
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
    let on_data = bank("zfnet").is_some_and(|b| !b.dead_on_data.is_empty());
    let frac = |v: &[f64]| mean(v).map(|m| format!("{:.0}%", 100.0 * m));
    let (dz, da) = (dead_flags("zfnet"), dead_flags("alexnet"));
    let by_rms = |n: &str| bank(n).map(|b| format!("{:.0}%", 100.0 * b.dead_fraction));
    out.push(by_stats(
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
    ));

    // Fig. 4: lower layers settle first.
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
    out.push(fig4);

    // Fig. 5: invariance.
    let sweep = |name: &str| -> &[ImageCurve] {
        r.fig5.as_ref().and_then(|f| f.sweeps.iter().find(|s| s.sweep == name)).map_or(&[], |s| s.images.as_slice())
    };
    let rel = |img: &ImageCurve, layer7: bool, amount: f64| -> Option<f64> {
        let c = &img.curve;
        let i = c.amounts.iter().position(|&a| (f64::from(a) - amount).abs() < 1e-6)?;
        let (d, n) = if layer7 { (c.layer7_distance[i], c.layer7_norm) } else { (c.layer1_distance[i], c.layer1_norm) };
        (n > 0.0).then(|| f64::from(d) / f64::from(n))
    };
    // The translation step: 10 px at 224, scaled with the input (the curve's smallest shift).
    let step = |img: &ImageCurve| {
        img.curve.amounts.iter().map(|&a| f64::from(a)).filter(|&a| a > 0.0).fold(f64::INFINITY, f64::min)
    };
    let small: Vec<(f64, f64)> = sweep("translate")
        .iter()
        .filter_map(|img| {
            let d = step(img);
            Some(((rel(img, false, d)? + rel(img, false, -d)?) / 2.0, (rel(img, true, d)? + rel(img, true, -d)?) / 2.0))
        })
        .collect();
    let (s1, s7) = means(&small);
    out.push(by_stats(
        "fig5-layers",
        "Fig. 5: small transformations change layer 1 a lot and the top feature layer (7) much less",
        "for the smallest vertical shift (±10 px at 224, scaled with the input), per image the relative change |x' - x| / |x| at conv1 minus that at fc7; held when the 95% interval is above 0".into(),
        s1.zip(s7).map(|(a, b)| format!("conv1 {a:.3} vs fc7 {b:.3}")),
        paired(&small.iter().map(|(a, b)| a - b).collect::<Vec<_>>()),
    ));
    let prob_at = |img: &ImageCurve, pred: &dyn Fn(f64) -> bool| -> Vec<f64> {
        let c = &img.curve;
        c.amounts.iter().zip(&c.true_prob).filter(|(&a, _)| pred(f64::from(a))).map(|(_, &p)| f64::from(p)).collect()
    };
    let symmetric = ["ring", "flower", "star"];
    let is_sym = |img: &ImageCurve| symmetric.iter().any(|s| img.image.contains(&format!("/{s}/")));
    let rot = sweep("rotate");
    // Per image: the mean p(true class) over a range of the sweep.
    let image_mean = |img: &ImageCurve, pred: &dyn Fn(f64) -> bool| mean(&prob_at(img, pred));
    let shifted: BTreeMap<&str, f64> = sweep("translate")
        .iter()
        .filter_map(|i| {
            let d = step(i);
            Some((i.image.as_str(), image_mean(i, &|a| a.abs() <= 2.0 * d + 1e-6)?))
        })
        .collect();
    let rotated: BTreeMap<&str, f64> = rot
        .iter()
        .filter(|i| !is_sym(i))
        .filter_map(|i| Some((i.image.as_str(), image_mean(i, &|a| (60.0..=300.0).contains(&a))?)))
        .collect();
    // The upright images swept both ways: shifted minus rotated, per image.
    let pairs: Vec<(f64, f64)> = rotated.iter().filter_map(|(k, r)| Some((*shifted.get(k)?, *r))).collect();
    let (ps, pr) = means(&pairs);
    out.push(by_stats(
        "fig5-output",
        "Fig. 5: the output is stable to translation and scaling, much less to rotation",
        "per upright image, mean p(true class) under shifts of at most two steps (20 px at 224) minus that under rotations of 60..300 degrees; held when the 95% interval is above 0".into(),
        ps.zip(pr).map(|(a, b)| format!("{a:.3} (shifted) vs {b:.3} (rotated)")),
        paired(&pairs.iter().map(|(a, b)| a - b).collect::<Vec<_>>()),
    ));
    let rot_means = |sym: bool| -> Vec<f64> {
        rot.iter()
            .filter(|i| is_sym(i) == sym)
            .filter_map(|i| image_mean(i, &|a| (30.0..=330.0).contains(&a)))
            .collect()
    };
    let (sym, up) = (rot_means(true), rot_means(false));
    out.push(by_stats(
        "fig5-symmetric",
        "Fig. 5: rotation changes the output except for objects with rotational symmetry",
        "mean p(true class) over rotations of 30..330 degrees, symmetric-class images (ring, flower, star) minus upright ones; held when the 95% interval is above 0".into(),
        mean(&sym).zip(mean(&up)).map(|(a, b)| format!("{a:.3} (symmetric) vs {b:.3} (upright)")),
        two_groups(&sym, &up),
    ));

    // Fig. 7: occlusion.
    let pairs: Vec<(f64, f64)> = r
        .fig7
        .as_ref()
        .map(|f| f.images.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((f64::from(i.mean_prob_square_on_object?), f64::from(i.mean_prob_square_off_object?))))
        .collect();
    let (on, off) = means(&pairs);
    out.push(by_stats(
        "fig7-occlusion",
        "Fig. 7: the probability of the correct class drops sharply when the object is occluded",
        "per image, mean p(true class) with the square's centre off the object's box minus that with it on the box; held when the 95% interval is above 0".into(),
        on.zip(off).map(|(on, off)| format!("mean {on:.3} on vs {off:.3} off")),
        paired(&pairs.iter().map(|(on, off)| off - on).collect::<Vec<_>>()),
    ));

    // Table 1: correspondence, by resampling the images (every row's image-by-image distances).
    let rows = r.table1.as_ref().map(|t| t.rows.as_slice()).unwrap_or_default();
    // The paper's layers 5 and 7 are the rows' first and second layer (ZFNet's conv5 and fc7;
    // another network's last conv and last hidden layer, `conv5_3` say).
    let mut row_layers: Vec<&str> = Vec::new();
    for x in rows {
        if !row_layers.contains(&x.layer.as_str()) {
            row_layers.push(&x.layer);
        }
    }
    let (l5, l7) = (row_layers.first().copied().unwrap_or("conv5"), row_layers.get(1).copied().unwrap_or("fc7"));
    let at = |layer: &str, random: bool| -> Vec<&zf_probe::CorrespondenceRow> {
        let layer = match layer {
            "conv5" => l5,
            "fc7" => l7,
            other => other,
        };
        rows.iter().filter(|x| x.layer == layer && (x.part == zf_probe::correspondence::RANDOM) == random).collect()
    };
    let mean_delta =
        |layer: &str, random: bool| mean(&at(layer, random).iter().map(|x| f64::from(x.mean)).collect::<Vec<_>>());
    let (p5, r5, p7, r7) =
        (mean_delta("conv5", false), mean_delta("conv5", true), mean_delta("fc7", false), mean_delta("fc7", true));
    // Random Δ minus the parts' mean Δ at `layer` on the images `idx`.
    let n_images = rows.first().map_or(0, |x| x.pairs.len());
    let comparable = !rows.is_empty() && rows.iter().all(|x| x.pairs.len() == n_images && x.images == n_images);
    let gap = |layer: &str, idx: &[usize]| -> f64 {
        let parts = at(layer, false);
        let random = at(layer, true);
        let d = |x: &&zf_probe::CorrespondenceRow| zf_probe::correspondence::delta_of(&x.pairs, idx);
        let p = parts.iter().map(d).sum::<f64>() / parts.len() as f64;
        random.iter().map(d).sum::<f64>() / random.len().max(1) as f64 - p
    };
    let testable = comparable && !at("conv5", false).is_empty() && at("conv5", true).len() == 1;
    let parts_effect = testable
        .then(|| {
            resampled(n_images, TABLE1_RESAMPLES, "bootstrap over images (Δ recomputed on each resample)", |idx| {
                gap("conv5", idx)
            })
        })
        .flatten();
    let changed =
        |layer: &str, random: bool| mean(&at(layer, random).iter().map(|x| f64::from(x.changed)).collect::<Vec<_>>());
    let parts_held = parts_effect.as_ref().map(|e| e.n >= MIN_N && e.supports());
    out.push(by_stats(
        "table1-parts",
        "Table 1: occluding the same part changes layer-5 features more consistently than occluding random regions",
        "Δ of random boxes (same size, inside the face, off the named parts, mean of 10 draws) minus the parts' mean Δ at conv5, on aligned frontal faces; bootstrap over the images; held when the 95% interval is above 0".into(),
        p5.zip(r5).map(|(a, b)| {
            let ch = changed("conv5", false).zip(changed("conv5", true));
            format!(
                "Δ {a:.3} (parts) vs {b:.3} (random){}",
                ch.map(|(c, d)| format!(", units changed {:.0}% vs {:.0}%", 100.0 * c, 100.0 * d)).unwrap_or_default()
            )
        }),
        parts_effect,
    ));
    let layer7_effect = (testable && !at("fc7", false).is_empty() && at("fc7", true).len() == 1)
        .then(|| {
            resampled(n_images, TABLE1_RESAMPLES, "bootstrap over images (Δ recomputed on each resample)", |idx| {
                gap("conv5", idx) - gap("fc7", idx)
            })
        })
        .flatten();
    let mut layer7 = by_stats(
        "table1-layer7",
        "Table 1: at layer 7 the gap between parts and random regions narrows",
        "(Δ random − Δ parts) at conv5 minus the same gap at fc7; bootstrap over the images; held when the 95% interval is above 0; not testable unless the layer-5 gap holds".into(),
        p5.zip(r5).zip(p7.zip(r7)).map(|((a, b), (c, d))| format!("gap {:.4} at conv5 vs {:.4} at fc7", b - a, d - c)),
        layer7_effect,
    );
    if parts_held == Some(false) && layer7.value.is_some() {
        layer7.held = None;
        layer7.value = layer7.value.map(|v| format!("{v} — not testable: there is no layer-5 gap to narrow"));
    }
    out.push(layer7);

    // Table 7: deeper features are more discriminative, on classes the network never saw.
    let probes = r.table7.as_ref();
    let layers = probes.map(|t| t.layers.as_slice()).unwrap_or_default();
    // The paper's layers 1 and 7 are the first and last probed (ZFNet's conv1 and fc7).
    let layer = |name: &str| match name {
        "conv1" => layers.first(),
        "fc7" => layers.last(),
        other => layers.iter().find(|l| l.layer == other),
    };
    let acc = |name: &str| layer(name).map(|l| f64::from(l.test_accuracy));
    let per_image = layer("conv1").zip(layer("fc7")).and_then(|(a, b)| {
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
        acc("conv1").zip(acc("fc7")).map(|(a, b)| {
            let all: Vec<String> = layers.iter().map(|l| format!("{} {:.1}%", l.layer, 100.0 * l.test_accuracy)).collect();
            format!("{:.1}% (conv1) vs {:.1}% (fc7); {}", 100.0 * a, 100.0 * b, all.join(", "))
        }),
        per_image.as_deref().and_then(paired),
    );
    if !transfer && t7.value.is_some() {
        t7.held = None;
        t7.value = t7.value.map(|v| format!("{v} — not testable: probed on the trained classes, not on held-out ones"));
    }
    out.push(t7);
    out
}

/// The claims as a markdown table.
/// The claims about training ZFNet: the network learns with the recipe, Table 2's first
/// layers, Fig. 6's renormalization and first-layer comparisons, Fig. 4's evolution.
pub const ABOUT_TRAINING: [&str; 6] =
    ["training", "table2-first-layer", "fig6-renorm", "fig6-mid-frequencies", "fig6-dead-filters", "fig4-evolution"];

/// `claims` for a run on `network`'s given weights (`None`: ZFNet): for another network the
/// claims about training ZFNet ([`ABOUT_TRAINING`]) are not testable, with the reason, whatever
/// the run measured.
pub fn for_network(claims: Vec<Claim>, network: Option<&str>) -> Vec<Claim> {
    let Some(arch) = network.filter(|a| !a.starts_with("zfnet")) else { return claims };
    claims
        .into_iter()
        .map(|c| {
            if !ABOUT_TRAINING.contains(&c.id.as_str()) {
                return c;
            }
            let why = format!("not testable: the claim is about training ZFNet; the run analysed the given {arch} weights, trained elsewhere");
            Claim { value: Some(why), held: None, stats: None, ..c }
        })
        .collect()
}

pub fn claims_markdown(claims: &[Claim]) -> String {
    let mut md = String::from(
        "| claim | the paper says | measured quantity (rule) | value | verdict |\n|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for c in claims {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.id,
            cell(&c.paper),
            cell(&c.test),
            cell(c.value.as_deref().unwrap_or("not measured")),
            c.verdict()
        ));
    }
    md
}
