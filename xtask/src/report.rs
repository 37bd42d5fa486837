//! The report of `cargo xtask reproduce-paper`: one folder with `index.html` (every figure and
//! table, readable offline), `figures/`, `results.json` and `claims.md`.
//!
//! Every number in it is read from the files the stages wrote; every claim's verdict is
//! computed here from those numbers by the rule stated beside it ([`claims`]).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::reproduce::{write, Run};

/// One claim of the paper, the quantity that tests it, its value and the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub id: &'static str,
    pub paper: &'static str,
    /// What is measured, and the rule that decides "held".
    pub test: String,
    /// The measured value(s), as text; `None` when the run has no such number.
    pub value: Option<String>,
    pub held: Option<bool>,
}

fn read(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The margin a comparison must clear to count as held: `a` is clearly below `b` when it is
/// below `b` by more than 2% of the larger magnitude (so that equal numbers and float noise are
/// "not held").
pub const MARGIN: f64 = 0.02;

/// `a < b` by more than [`MARGIN`].
pub fn clearly_less(a: f64, b: f64) -> bool {
    b - a > MARGIN * a.abs().max(b.abs())
}

fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// Everything the stages measured, gathered into one JSON value.
pub fn gather(run: &Run) -> Value {
    let p = |rel: &str| read(&run.path(rel)).unwrap_or(Value::Null);
    let mut evals = serde_json::Map::new();
    for name in ["zfnet", "alexnet", "no-renorm"] {
        if let Some(v) = read(&run.path(&format!("eval/{name}.json"))) {
            evals.insert(name.into(), v);
        }
    }
    let mut curves = serde_json::Map::new();
    for name in ["zfnet", "alexnet", "no-renorm"] {
        let path = run.path(&format!("runs/{name}/metrics.jsonl"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let epochs: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["kind"] == "epoch")
                .collect();
            curves.insert(name.into(), Value::Array(epochs));
        }
    }
    json!({
        "eval": evals,
        "training": curves,
        "run_config": p("runs/zfnet/run.json")["config"],
        "fig2": p("fig2/topk.json"),
        "fig4": p("fig4/evolution.json"),
        "fig5": p("fig5/invariance.json"),
        "fig6": p("fig6/filters.json"),
        "fig7": p("fig7/occlusion.json"),
        "table1": p("table1/correspondence.json"),
        "table7": p("table7/probes.json"),
    })
}

/// The paper's claims, tested on `r` (the gathered results).
/// Comparisons count as held only when they clear [`MARGIN`] ([`clearly_less`]).
pub fn claims(r: &Value) -> Vec<Claim> {
    let mut out = Vec::new();
    let err = |name: &str| f(&r["eval"][name]["top1_err"]);
    let classes = f(&r["run_config"]["model"]["classes"]).unwrap_or(10.0);

    // Training works at all.
    let chance = 1.0 - 1.0 / classes;
    let e = err("zfnet");
    out.push(Claim {
        id: "training",
        paper: "Sec. 3: the network trained with the recipe classifies (Table 2: 38.4% top-1 error on ImageNet)",
        test: format!(
            "ZFNet's top-1 validation error (10 crops) is at most half way from chance ({:.0}%) to zero",
            100.0 * chance
        ),
        value: e.map(|e| format!("{:.1}% top-1 error", 100.0 * e)),
        held: e.map(|e| e <= chance / 2.0),
    });

    // Table 2 / Sec. 5: ZFNet's first layer beats AlexNet's.
    let (z, a) = (err("zfnet"), err("alexnet"));
    out.push(Claim {
        id: "table2-first-layer",
        paper: "Table 2 / Sec. 4.1: the 7x7 stride-2 first layer (ZFNet) gives lower error than 11x11 stride 4 (38.4% vs 40.5% top-1)",
        test: "top-1 error of ZFNet <= top-1 error of the AlexNet-style first layer, same data and budget".into(),
        value: z.zip(a).map(|(z, a)| format!("{:.1}% vs {:.1}%", 100.0 * z, 100.0 * a)),
        held: z.zip(a).map(|(z, a)| z <= a),
    });

    // Fig. 6: filters.
    let bank = |name: &str| -> Option<&Value> {
        r["fig6"]["banks"].as_array()?.iter().find(|b| b["name"] == name).map(|b| &b["stats"])
    };
    let dom = |n: &str| bank(n).and_then(|b| f(&b["dominance"]));
    out.push(Claim {
        id: "fig6-renorm",
        paper: "Sec. 3 / Fig. 6: without filter renormalization a few first-layer filters come to dominate",
        test: "largest/median conv1 filter RMS is higher without renormalization than with it".into(),
        value: dom("no-renorm").zip(dom("zfnet")).map(|(n, z)| format!("{n:.2} without vs {z:.2} with")),
        held: dom("no-renorm").zip(dom("zfnet")).map(|(n, z)| clearly_less(z, n)),
    });
    let mid = |n: &str| bank(n).and_then(|b| f(&b["band_energy"][1]));
    let dead = |n: &str| bank(n).and_then(|b| f(&b["dead_fraction"]));
    out.push(Claim {
        id: "fig6-mid-frequencies",
        paper: "Fig. 6 (b) vs (c): the 11x11 stride-4 first layer has little mid-frequency coverage; 7x7 stride 2 covers it better",
        test: "mean fraction of conv1 spectral energy in the mid band (1/6..1/3 cycles/px) is higher for ZFNet".into(),
        value: mid("zfnet").zip(mid("alexnet")).map(|(z, a)| format!("{z:.3} (ZFNet) vs {a:.3} (AlexNet-style)")),
        held: mid("zfnet").zip(mid("alexnet")).map(|(z, a)| clearly_less(a, z)),
    });
    out.push(Claim {
        id: "fig6-dead-filters",
        paper: "Fig. 6 (b): the 11x11 stride-4 first layer has dead filters; 7x7 stride 2 has fewer",
        test: "fraction of dead conv1 filters (RMS < 0.1 x median) is no higher for ZFNet".into(),
        value: dead("zfnet").zip(dead("alexnet")).map(|(z, a)| format!("{:.0}% vs {:.0}%", 100.0 * z, 100.0 * a)),
        held: dead("zfnet").zip(dead("alexnet")).map(|(z, a)| z <= a),
    });

    // Fig. 4: lower layers settle first.
    let movement = r["fig4"]["movement"].as_array().cloned().unwrap_or_default();
    let late = |layer: &str| -> Option<f64> {
        let half = movement.len() / 2;
        let v: Vec<f64> = movement[half..]
            .iter()
            .filter_map(|m| m.as_array()?.iter().find(|c| c["layer"] == layer).and_then(|c| f(&c["relative"])))
            .collect();
        mean(&v)
    };
    let (l1, l5) = (late("conv1"), late("conv5"));
    out.push(Claim {
        id: "fig4-evolution",
        paper: "Fig. 4: lower layers converge within a few epochs; upper layers only after many more",
        test: "over the later half of the snapshot intervals, conv1's weights move less (relative) than conv5's".into(),
        value: l1.zip(l5).map(|(a, b)| format!("conv1 {a:.4} vs conv5 {b:.4}")),
        held: l1.zip(l5).map(|(a, b)| clearly_less(a, b)),
    });

    // Fig. 5: invariance.
    let sweep = |name: &str| -> Vec<Value> {
        r["fig5"]["sweeps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["sweep"] == name))
            .and_then(|s| s["images"].as_array().cloned())
            .unwrap_or_default()
    };
    let rel = |img: &Value, layer: &str, amount: f64| -> Option<f64> {
        let c = &img["curve"];
        let i = c["amounts"].as_array()?.iter().position(|a| f(a).is_some_and(|a| (a - amount).abs() < 1e-6))?;
        let d = f(&c[format!("{layer}_distance")][i])?;
        let n = f(&c[format!("{layer}_norm")])?;
        (n > 0.0).then(|| d / n)
    };
    let small: Vec<(f64, f64)> = sweep("translate")
        .iter()
        .filter_map(|img| {
            Some((
                (rel(img, "layer1", 10.0)? + rel(img, "layer1", -10.0)?) / 2.0,
                (rel(img, "layer7", 10.0)? + rel(img, "layer7", -10.0)?) / 2.0,
            ))
        })
        .collect();
    let (s1, s7) =
        (mean(&small.iter().map(|p| p.0).collect::<Vec<_>>()), mean(&small.iter().map(|p| p.1).collect::<Vec<_>>()));
    out.push(Claim {
        id: "fig5-layers",
        paper: "Fig. 5: small transformations change layer 1 a lot and the top feature layer (7) much less",
        test: "for a ±10 px vertical shift, the relative change |x' - x| / |x| is larger at conv1 than at fc7 (mean over images)".into(),
        value: s1.zip(s7).map(|(a, b)| format!("conv1 {a:.3} vs fc7 {b:.3}")),
        held: s1.zip(s7).map(|(a, b)| clearly_less(b, a)),
    });
    let prob_at = |img: &Value, pred: &dyn Fn(f64) -> bool| -> Vec<f64> {
        let c = &img["curve"];
        let amounts = c["amounts"].as_array().cloned().unwrap_or_default();
        amounts
            .iter()
            .enumerate()
            .filter(|(_, a)| f(a).is_some_and(pred))
            .filter_map(|(i, _)| f(&c["true_prob"][i]))
            .collect()
    };
    let symmetric = ["ring", "flower", "star"];
    let is_sym =
        |img: &Value| symmetric.iter().any(|s| img["image"].as_str().is_some_and(|n| n.contains(&format!("/{s}/"))));
    let rot = sweep("rotate");
    let rot_prob = |sym: bool| {
        let v: Vec<f64> = rot
            .iter()
            .filter(|i| is_sym(i) == sym)
            .flat_map(|i| prob_at(i, &|a| (30.0..=330.0).contains(&a)))
            .collect();
        mean(&v)
    };
    let trans = sweep("translate");
    let shift: Vec<f64> = trans.iter().flat_map(|i| prob_at(i, &|a| a.abs() <= 20.0)).collect();
    let far_rot: Vec<f64> =
        rot.iter().filter(|i| !is_sym(i)).flat_map(|i| prob_at(i, &|a| (60.0..=300.0).contains(&a))).collect();
    let (ps, pr) = (mean(&shift), mean(&far_rot));
    out.push(Claim {
        id: "fig5-output",
        paper: "Fig. 5: the output is stable to translation and scaling, much less to rotation",
        test: "mean p(true class) under shifts of at most 20 px is higher than under rotations of 60..300 degrees (upright classes)".into(),
        value: ps.zip(pr).map(|(a, b)| format!("{a:.3} (shifted) vs {b:.3} (rotated)")),
        held: ps.zip(pr).map(|(a, b)| clearly_less(b, a)),
    });
    let (sym, up) = (rot_prob(true), rot_prob(false));
    out.push(Claim {
        id: "fig5-symmetric",
        paper: "Fig. 5: rotation changes the output except for objects with rotational symmetry",
        test: "mean p(true class) over rotations of 30..330 degrees is higher for the symmetric classes (ring, flower, star) than for upright ones".into(),
        value: sym.zip(up).map(|(a, b)| format!("{a:.3} (symmetric) vs {b:.3} (upright)")),
        held: sym.zip(up).map(|(a, b)| clearly_less(b, a)),
    });

    // Fig. 7: occlusion.
    let occ = r["fig7"]["images"].as_array().cloned().unwrap_or_default();
    let pairs: Vec<(f64, f64)> = occ
        .iter()
        .filter_map(|i| Some((f(&i["mean_prob_square_on_object"])?, f(&i["mean_prob_square_off_object"])?)))
        .collect();
    let drops = pairs.iter().filter(|(on, off)| clearly_less(*on, *off)).count();
    out.push(Claim {
        id: "fig7-occlusion",
        paper: "Fig. 7: the probability of the correct class drops sharply when the object is occluded",
        test: "for most images, mean p(true class) with the square's centre on the object's box is below that with it elsewhere".into(),
        value: (!pairs.is_empty()).then(|| {
            let on = mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).unwrap_or(f64::NAN);
            let off = mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).unwrap_or(f64::NAN);
            format!("{drops} of {} images; mean {on:.3} on vs {off:.3} off", pairs.len())
        }),
        held: (!pairs.is_empty()).then(|| 2 * drops > pairs.len()),
    });

    // Table 1: correspondence.
    let rows = r["table1"]["rows"].as_array().cloned().unwrap_or_default();
    let delta = |layer: &str, random: bool| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|x| x["layer"] == layer && (x["part"] == "random") == random)
            .filter_map(|x| f(&x["mean"]))
            .collect();
        mean(&v)
    };
    let (p5, r5, p7, r7) = (delta("conv5", false), delta("conv5", true), delta("fc7", false), delta("fc7", true));
    out.push(Claim {
        id: "table1-parts",
        paper:
            "Table 1: occluding the same part changes layer-5 features more consistently than occluding random regions",
        test: "mean Δ over the parts < Δ of random boxes, at layer 5 (conv5)".into(),
        value: p5.zip(r5).map(|(a, b)| format!("{a:.3} (parts) vs {b:.3} (random)")),
        held: p5.zip(r5).map(|(a, b)| clearly_less(a, b)),
    });
    let gap = |p: Option<f64>, r: Option<f64>| p.zip(r).map(|(p, r)| r - p);
    let (g5, g7) = (gap(p5, r5), gap(p7, r7));
    out.push(Claim {
        id: "table1-layer7",
        paper: "Table 1: at layer 7 the gap between parts and random regions narrows",
        test: "(Δ random - Δ parts) at fc7 < the same gap at conv5".into(),
        value: g5.zip(g7).map(|(a, b)| format!("gap {a:.4} at conv5 vs {b:.4} at fc7")),
        held: g5.zip(g7).map(|(a, b)| a > 0.0 && clearly_less(b, a)),
    });

    // Table 7: deeper features are more discriminative.
    let layers = r["table7"]["layers"].as_array().cloned().unwrap_or_default();
    let acc = |name: &str| layers.iter().find(|l| l["layer"] == name).and_then(|l| f(&l["test_accuracy"]));
    let deep = ["conv5", "fc6", "fc7"]
        .iter()
        .filter_map(|l| acc(l))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    out.push(Claim {
        id: "table7-depth",
        paper: "Table 7: a linear classifier on deeper layers' features is more accurate (SVM(1) 44.8% ... SVM(7) 85.5% on Caltech-101)",
        test: "the best test accuracy of a softmax on conv5, fc6 or fc7 features exceeds that on conv1's".into(),
        value: acc("conv1").zip(deep).map(|(a, b)| format!("{:.1}% (conv1) vs {:.1}% (best of 5-7)", 100.0 * a, 100.0 * b)),
        held: acc("conv1").zip(deep).map(|(a, b)| clearly_less(a, b)),
    });
    out
}

/// The claims as a markdown table.
pub fn claims_markdown(claims: &[Claim]) -> String {
    let mut md = String::from(
        "| claim | the paper says | measured quantity (rule) | value | verdict |\n|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for c in claims {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.id,
            cell(c.paper),
            cell(&c.test),
            cell(c.value.as_deref().unwrap_or("not measured")),
            verdict(c.held)
        ));
    }
    md
}

fn verdict(h: Option<bool>) -> &'static str {
    match h {
        Some(true) => "held",
        Some(false) => "not held",
        None => "not measured",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Copies `from` (relative to the run) into `figures/<to>` when it exists; returns the page's
/// relative path.
fn figure(run: &Run, report: &Path, from: &str, to: &str) -> Option<String> {
    let src = run.path(from);
    if !src.exists() {
        return None;
    }
    let dst = report.join("figures").join(to);
    std::fs::copy(&src, &dst).ok()?;
    Some(format!("figures/{to}"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} threads, {}", std::env::consts::OS)
}

fn revision(root: &Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// How the run differs from the paper (stated for every profile but `paper`).
pub fn departures(run: &Run, r: &Value) -> Vec<String> {
    let p = &run.opts.profile;
    let c = &r["run_config"];
    let mut d = Vec::new();
    if run.opts.data.is_none() {
        d.push(format!(
            "Data: the generated data set (10 classes of shapes on textured backgrounds with {} clutter shapes; {} training and {} validation images per class) instead of ImageNet's 1.3M images of 1000 classes.",
            p.clutter, p.per_class, p.val_per_class
        ));
    }
    if let Some(w) = &run.opts.weights {
        d.push(format!(
            "Network: the given weights {w} (their config from the file's metadata), not trained here; the training-dependent stages (Fig. 4, the Fig. 6 ablations) are skipped."
        ));
    } else if p.name != "paper" {
        if let Some(w) = c["model"]["channels"].as_array() {
            d.push(format!(
                "Network: the paper's layer structure at reduced width (conv maps {:?}, fc units {}) on {}-pixel inputs, so that it trains on a CPU; the layer table is otherwise Fig. 3's.",
                w.iter().filter_map(|v| v.as_u64()).collect::<Vec<_>>(),
                c["model"]["fc_units"],
                c["model"]["input_size"]
            ));
        }
        d.push(format!(
            "Initialization: {} with inputs scaled by {} instead of Gaussian weights of std 0.01 on raw pixels: measured here, the paper's init leaves the loss at chance for tens of thousands of images (activations shrink about 5x per layer), which a CPU budget cannot afford.",
            c["init"], c["model"]["input_scale"]
        ));
        d.push(format!(
            "Training: {} epochs, batch {}, learning rate {}, momentum {}, dropout {} (paper: 70 epochs, batch 128, 1e-2, 0.9, dropout 0.5: dropout slows the early learning a short run depends on), annealing after {} epochs without improvement.",
            c["epochs"], c["batch"], c["lr"], c["momentum"], c["model"]["dropout"], c["patience"]
        ));
    }
    d.push("Where the paper is silent, PAPER.md's choices (marked \"ours\") are used: conv1 padding 1, ceil-mode pools, LRN n=5, the occluder's size and stride, invariance ranges, the Hamming distance of Table 1.".into());
    d
}

/// A self-check the page runs once everything has loaded: it counts images that failed to load
/// and script errors into `data-broken-images` / `data-script-errors` on `<body>`, which
/// `cargo xtask report-screenshot` reads from the rendered page.
pub const PAGE_CHECK: &str = "<script>var zfErrors=0;window.addEventListener('error',function(){zfErrors++;});\
window.addEventListener('load',function(){var b=0;document.querySelectorAll('img').forEach(function(i){\
if(!i.complete||i.naturalWidth===0){b++;}});document.body.setAttribute('data-broken-images',String(b));\
document.body.setAttribute('data-script-errors',String(zfErrors));});</script>";

/// Writes the report folder and returns it.
pub fn write_report(run: &Run, wall: f64) -> Result<PathBuf, String> {
    let report = run.path("report");
    let _ = std::fs::remove_dir_all(&report);
    std::fs::create_dir_all(report.join("figures")).map_err(|e| format!("cannot create {}: {e}", report.display()))?;
    let r = gather(run);
    let claims = claims(&r);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let p = &run.opts.profile;
    let about = json!({
        "profile": p.name,
        "rationale": p.rationale,
        "data": run.opts.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "generated".into()),
        "weights": run.opts.weights,
        "seed": run.opts.seed,
        "wall_seconds": wall,
        "stage_seconds_total": run.times.iter().map(|t| t.seconds).sum::<f64>(),
        "machine": machine(),
        "revision": revision(&root),
        "stages": run.times.iter().map(|t| json!({"stage": t.name, "seconds": t.seconds, "skipped": t.skipped})).collect::<Vec<_>>(),
        "departures": departures(run, &r),
    });
    let claims_json: Vec<Value> = claims
        .iter()
        .map(|c| json!({"id": c.id, "paper": c.paper, "test": c.test, "value": c.value, "held": c.held}))
        .collect();
    let results = json!({ "about": about, "claims": claims_json, "results": r });
    write(&report.join("results.json"), &serde_json::to_vec_pretty(&results).unwrap_or_default())?;
    write(&report.join("claims.md"), claims_markdown(&claims).as_bytes())?;

    // The page.
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>zfnet: Visualizing and Understanding Convolutional Networks, reproduced</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}img{max-width:100%;border:1px solid #ddd;margin:4px 0}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.held{color:#17702a;font-weight:bold}.not{color:#b00020;font-weight:bold}.na{color:#777}figure{margin:1em 0}figcaption{color:#555;font-size:90%}</style></head><body>");
    h.push_str("<h1>Visualizing and Understanding Convolutional Networks — reproduced</h1>");
    h.push_str(&format!(
        "<p>Zeiler &amp; Fergus, ECCV 2014. Profile <b>{}</b> ({}); network: {}; data: {}; seed {}; all stages {:.1} min (this invocation {:.1} min) on {}; zfnet revision {}.</p>",
        esc(p.name),
        esc(p.rationale),
        esc(&run.opts.weights.clone().unwrap_or_else(|| "trained by this run (runs/zfnet)".into())),
        esc(about["data"].as_str().unwrap_or("")),
        run.opts.seed,
        run.times.iter().map(|t| t.seconds).sum::<f64>() / 60.0,
        wall / 60.0,
        esc(&machine()),
        esc(about["revision"].as_str().unwrap_or(""))
    ));
    let held = claims.iter().filter(|c| c.held == Some(true)).count();
    h.push_str(&format!("<h2>Claims ({held} of {} held)</h2><table><tr><th>claim</th><th>the paper says</th><th>measured quantity (rule)</th><th>value</th><th>verdict</th></tr>", claims.len()));
    for c in &claims {
        let class = match c.held {
            Some(true) => "held",
            Some(false) => "not",
            None => "na",
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(c.id),
            esc(c.paper),
            esc(&c.test),
            esc(c.value.as_deref().unwrap_or("not measured")),
            verdict(c.held)
        ));
    }
    h.push_str("</table><h2>How this run differs from the paper</h2><ul>");
    for d in departures(run, &r) {
        h.push_str(&format!("<li>{}</li>", esc(&d)));
    }
    h.push_str("</ul>");

    // Table 2.
    h.push_str("<h2>Classification error (Table 2)</h2><table><tr><th>model</th><th>val top-1 (%)</th><th>val top-5 (%)</th><th>source</th></tr>");
    for (m, t1, t5) in
        [("Krizhevsky et al., 1 convnet", "40.7", "18.2"), ("1 convnet as per Fig. 3 (ZFNet)", "38.4", "16.5")]
    {
        h.push_str(&format!("<tr><td>{m}</td><td>{t1}</td><td>{t5}</td><td>paper (ImageNet 2012)</td></tr>"));
    }
    for (name, label) in [
        ("zfnet", "ZFNet (7x7/2 first layer)"),
        ("alexnet", "AlexNet-style first layer (11x11/4)"),
        ("no-renorm", "ZFNet without renormalization"),
    ] {
        let e = &r["eval"][name];
        if let (Some(t1), Some(t5)) = (f(&e["top1_err"]), f(&e["top5_err"])) {
            h.push_str(&format!(
                "<tr><td>{label}</td><td>{:.1}</td><td>{:.1}</td><td>this run, {} images, {}</td></tr>",
                100.0 * t1,
                100.0 * t5,
                e["images"],
                if e["ten_crop"] == true { "10 crops" } else { "centre crop" }
            ));
        }
    }
    h.push_str("</table>");
    if let Some(t) = r["training"]["zfnet"].as_array() {
        h.push_str("<h3>Training (ZFNet)</h3><table><tr><th>epoch</th><th>train loss</th><th>val top-1 (%)</th><th>lr</th><th>images/s</th></tr>");
        for e in t {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{:.3}</td><td>{:.1}</td><td>{}</td><td>{:.0}</td></tr>",
                e["epoch"],
                f(&e["train_loss"]).unwrap_or(f64::NAN),
                100.0 * f(&e["val_top1_err"]).unwrap_or(f64::NAN),
                e["lr"],
                f(&e["images_per_s"]).unwrap_or(f64::NAN)
            ));
        }
        h.push_str("</table>");
    }

    let fig = |h: &mut String, from: &str, to: &str, caption: &str| {
        if let Some(src) = figure(run, &report, from, to) {
            h.push_str(&format!(
                "<figure><img src=\"{src}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                esc(caption),
                esc(caption)
            ));
        }
    };
    h.push_str("<h2>Fig. 2 — top activations projected to pixels</h2><p>For feature maps of layers 1-5, the strongest activations over the validation images (at most one per image), each projected alone with the deconvnet (left) beside the image patch under its receptive field (right).</p>");
    for l in 1..=5 {
        fig(&mut h, &format!("fig2/layer{l}.png"), &format!("fig2-layer{l}.png"), &format!("Layer {l}"));
    }
    h.push_str("<h2>Fig. 4 — feature evolution during training</h2>");
    for l in 1..=5 {
        fig(
            &mut h,
            &format!("fig4/layer{l}.png"),
            &format!("fig4-layer{l}.png"),
            &format!("Layer {l}: the strongest activation's projection at each snapshot"),
        );
    }
    fig(
        &mut h,
        "fig4/movement.svg",
        "fig4-movement.svg",
        "Relative weight movement per layer between consecutive snapshots",
    );
    h.push_str("<h2>Fig. 5 — invariance</h2><p>Per image (one curve each): Euclidean distance of layer-1 and layer-7 features to the untransformed image's, and the probability of the true class. Borders are filled with the mean colour.</p>");
    for s in ["translate", "scale", "rotate"] {
        fig(&mut h, &format!("fig5/{s}.svg"), &format!("fig5-{s}.svg"), s);
    }
    h.push_str("<h2>Fig. 6 — first layers compared</h2>");
    for n in ["zfnet", "alexnet", "no-renorm"] {
        fig(&mut h, &format!("fig6/{n}.png"), &format!("fig6-{n}.png"), &format!("conv1 filters: {n}"));
    }
    fig(&mut h, "fig6/bands.svg", "fig6-bands.svg", "Mean fraction of conv1 spectral energy by frequency band");
    for n in ["zfnet", "alexnet", "no-renorm"] {
        fig(
            &mut h,
            &format!("fig6/layer2-{n}/layer2.png"),
            &format!("fig6-layer2-{n}.png"),
            &format!("Layer-2 top projections: {n}"),
        );
    }
    h.push_str("<h2>Fig. 7 — occlusion sensitivity</h2>");
    fig(&mut h, "fig7/occlusion.png", "fig7-occlusion.png", "(a) image, (b) total activation of the strongest conv5 map, (c) its projection, (d) p(true class), (e) most probable class — as functions of the gray square's position");
    h.push_str("<h2>Table 1 — correspondence</h2>");
    if let Some(rows) = r["table1"]["rows"].as_array() {
        h.push_str(
            "<table><tr><th>occluded</th><th>layer</th><th>Δ (mean ± std over image pairs)</th><th>images</th></tr>",
        );
        for row in rows {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{:.4} ± {:.4}</td><td>{}</td></tr>",
                esc(row["part"].as_str().unwrap_or("")),
                esc(row["layer"].as_str().unwrap_or("")),
                f(&row["mean"]).unwrap_or(f64::NAN),
                f(&row["std"]).unwrap_or(f64::NAN),
                row["images"]
            ));
        }
        h.push_str("</table><p>Paper (5 dog images): right eye 0.067 / 0.069, left eye 0.069 / 0.068, nose 0.079 / 0.069, random 0.107 / 0.073 at layers 5 / 7.</p>");
    }
    h.push_str("<h2>Table 7 — linear probes per layer</h2>");
    fig(
        &mut h,
        "table7/probes.svg",
        "table7-probes.svg",
        "Test accuracy of a softmax classifier on each frozen layer's pooled features",
    );
    if let Some(layers) = r["table7"]["layers"].as_array() {
        h.push_str(
            "<table><tr><th>layer</th><th>features</th><th>train accuracy (%)</th><th>test accuracy (%)</th></tr>",
        );
        for l in layers {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                esc(l["layer"].as_str().unwrap_or("")),
                l["features"],
                100.0 * f(&l["train_accuracy"]).unwrap_or(f64::NAN),
                100.0 * f(&l["test_accuracy"]).unwrap_or(f64::NAN)
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th></tr>");
    for t in &run.times {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{:.1}{}</td></tr>",
            esc(&t.name),
            t.seconds,
            if t.skipped { " (earlier run)" } else { "" }
        ));
    }
    h.push_str("</table><p>Raw numbers: <a href=\"results.json\">results.json</a>; claims: <a href=\"claims.md\">claims.md</a>.</p>");
    h.push_str(PAGE_CHECK);
    h.push_str("</body></html>\n");
    write(&report.join("index.html"), h.as_bytes())?;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Results in the shape the stages write, with numbers chosen so each verdict follows from
    /// the stated rule.
    fn results() -> Value {
        let bank = |name: &str, dom: f64, mid: f64, dead: f64| json!({"name": name, "stats": {"dominance": dom, "band_energy": [0.5, mid, 0.5 - mid], "dead_fraction": dead}});
        let curve = |name: &str, p_small: f64, p_rot: f64| {
            json!({"image": format!("/d/val/{name}/1.png"), "curve": {
                "amounts": [-10.0, 0.0, 10.0, 90.0, 180.0],
                "layer1_distance": [5.0, 0.0, 5.0, 9.0, 9.0], "layer7_distance": [1.0, 0.0, 1.0, 2.0, 2.0],
                "layer1_norm": 10.0, "layer7_norm": 10.0,
                "true_prob": [p_small, p_small, p_small, p_rot, p_rot]}})
        };
        json!({
            "run_config": {"model": {"classes": 10}},
            "eval": {"zfnet": {"top1_err": 0.30}, "alexnet": {"top1_err": 0.35}},
            "fig6": {"banks": [bank("zfnet", 2.0, 0.3, 0.0), bank("alexnet", 2.1, 0.1, 0.2), bank("no-renorm", 6.0, 0.3, 0.0)]},
            "fig4": {"movement": [
                [{"layer": "conv1", "relative": 0.5}, {"layer": "conv5", "relative": 0.5}],
                [{"layer": "conv1", "relative": 0.01}, {"layer": "conv5", "relative": 0.1}]]},
            "fig5": {"sweeps": [
                {"sweep": "translate", "images": [curve("face", 0.9, 0.0)]},
                {"sweep": "rotate", "images": [curve("face", 0.9, 0.1), curve("ring", 0.9, 0.8)]}]},
            "fig7": {"images": [
                {"mean_prob_square_on_object": 0.2, "mean_prob_square_off_object": 0.8},
                {"mean_prob_square_on_object": 0.5, "mean_prob_square_off_object": 0.5}]},
            "table1": {"rows": [
                {"part": "eye", "layer": "conv5", "mean": 0.06}, {"part": "random", "layer": "conv5", "mean": 0.10},
                {"part": "eye", "layer": "fc7", "mean": 0.07}, {"part": "random", "layer": "fc7", "mean": 0.08}]},
            "table7": {"layers": [{"layer": "conv1", "test_accuracy": 0.4}, {"layer": "fc7", "test_accuracy": 0.8}]},
        })
    }

    #[test]
    fn verdicts_follow_the_stated_rules() {
        let c = claims(&results());
        let held = |id: &str| c.iter().find(|c| c.id == id).unwrap().held;
        // 30% error <= 45% (half way from 90% chance); 30% <= 35%.
        assert_eq!(held("training"), Some(true));
        assert_eq!(held("table2-first-layer"), Some(true));
        assert_eq!(held("fig6-renorm"), Some(true));
        assert_eq!(held("fig6-mid-frequencies"), Some(true));
        assert_eq!(held("fig6-dead-filters"), Some(true));
        // Later half = the second interval: 0.01 < 0.1.
        assert_eq!(held("fig4-evolution"), Some(true));
        // ±10 px: conv1 moves 5/10, fc7 1/10.
        assert_eq!(held("fig5-layers"), Some(true));
        // Shifted 0.9 vs rotated 0.1 (upright face, 90 and 180 degrees).
        assert_eq!(held("fig5-output"), Some(true));
        // Rotations 90, 180: ring 0.8 vs face 0.1.
        assert_eq!(held("fig5-symmetric"), Some(true));
        // One image of two drops clearly: not a majority.
        assert_eq!(held("fig7-occlusion"), Some(false));
        assert_eq!(held("table1-parts"), Some(true));
        // Gap 0.04 at conv5, 0.01 at fc7.
        assert_eq!(held("table1-layer7"), Some(true));
        assert_eq!(held("table7-depth"), Some(true));
    }

    #[test]
    fn missing_numbers_are_not_measured_and_ties_are_not_held() {
        let c = claims(&json!({}));
        assert!(c.iter().all(|c| c.held.is_none() && c.value.is_none()));
        let mut r = results();
        r["eval"]["alexnet"]["top1_err"] = json!(0.2);
        r["table7"]["layers"][1]["test_accuracy"] = json!(0.401);
        let c = claims(&r);
        let held = |id: &str| c.iter().find(|c| c.id == id).unwrap().held;
        assert_eq!(held("table2-first-layer"), Some(false));
        assert_eq!(held("table7-depth"), Some(false), "0.401 vs 0.4 is within the margin");
        assert!(clearly_less(1.0, 1.03) && !clearly_less(1.0, 1.01));
    }
}
