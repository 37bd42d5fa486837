//! The report's page: every figure and table of the run, readable offline. Every text that comes
//! from the run is escaped ([`esc`]); the page builds from small helpers (a table, a figure).

use std::fmt::Write as _;

use crate::claims::Claim;
use crate::results::Results;
use crate::About;

/// A self-check the page runs once everything has loaded: it counts images that failed to load
/// and script errors into `data-broken-images` / `data-script-errors` on `<body>`, which
/// `cargo xtask report-screenshot` reads from the rendered page.
pub const PAGE_CHECK: &str = "<script>var zfErrors=0;window.addEventListener('error',function(){zfErrors++;});\
window.addEventListener('load',function(){var b=0;document.querySelectorAll('img').forEach(function(i){\
if(!i.complete||i.naturalWidth===0){b++;}});document.body.setAttribute('data-broken-images',String(b));\
document.body.setAttribute('data-script-errors',String(zfErrors));});</script>";

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}img{max-width:100%;border:1px solid #ddd;margin:4px 0}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.held{color:#17702a;font-weight:bold}.not{color:#b00020;font-weight:bold}.na{color:#777}figure{margin:1em 0}figcaption{color:#555;font-size:90%}";

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A table: a header row and body rows, every cell escaped. Cells given as `Cell::Class` carry
/// a CSS class.
fn table(h: &mut String, header: &[&str], rows: &[Vec<Cell>]) {
    h.push_str("<table><tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for row in rows {
        h.push_str("<tr>");
        for c in row {
            match c {
                Cell::Text(t) => {
                    let _ = write!(h, "<td>{}</td>", esc(t));
                }
                Cell::Class(t, class) => {
                    let _ = write!(h, "<td class=\"{class}\">{}</td>", esc(t));
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

enum Cell {
    Text(String),
    Class(String, &'static str),
}

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

/// The page. `figure(from, to)` copies a figure of the run (relative path) into the report and
/// returns its path relative to the page, or `None` when the run has no such file.
pub fn page(
    about: &About,
    results: &Results,
    claims: &[Claim],
    figure: &mut dyn FnMut(&str, &str) -> Option<String>,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>zfnet: Visualizing and Understanding Convolutional Networks, reproduced</title><style>{STYLE}</style></head><body>"
    );
    h.push_str("<h1>Visualizing and Understanding Convolutional Networks — reproduced</h1>");
    let total: f64 = about.stages.iter().map(|s| s.seconds).sum();
    let _ = write!(
        h,
        "<p>Zeiler &amp; Fergus, ECCV 2014. Profile <b>{}</b> ({}); network: {}; data: {}; seed {}; all stages {:.1} min (this invocation {:.1} min) on {}; zfnet revision {}.</p>",
        esc(&about.profile),
        esc(&about.rationale),
        esc(about.weights.as_deref().unwrap_or("trained by this run (runs/zfnet)")),
        esc(&about.data),
        about.seed,
        total / 60.0,
        about.wall_seconds / 60.0,
        esc(&about.machine),
        esc(&about.revision)
    );

    // The claims.
    let held = claims.iter().filter(|c| c.held == Some(true)).count();
    let _ = write!(h, "<h2>Claims ({held} of {} held)</h2>", claims.len());
    let rows: Vec<Vec<Cell>> = claims
        .iter()
        .map(|c| {
            let class = match c.held {
                Some(true) => "held",
                Some(false) => "not",
                None => "na",
            };
            vec![
                t(&c.id),
                t(&c.paper),
                t(&c.test),
                t(c.value.as_deref().unwrap_or("not measured")),
                Cell::Class(c.verdict().into(), class),
            ]
        })
        .collect();
    table(&mut h, &["claim", "the paper says", "measured quantity (rule)", "value", "verdict"], &rows);
    h.push_str("<h2>How this run differs from the paper</h2><ul>");
    for d in &about.departures {
        let _ = write!(h, "<li>{}</li>", esc(d));
    }
    h.push_str("</ul>");

    // Table 2 and training.
    h.push_str("<h2>Classification error (Table 2)</h2>");
    let mut rows = vec![
        vec![t("Krizhevsky et al., 1 convnet"), t("40.7"), t("18.2"), t("paper (ImageNet 2012)")],
        vec![t("1 convnet as per Fig. 3 (ZFNet)"), t("38.4"), t("16.5"), t("paper (ImageNet 2012)")],
    ];
    for (name, label) in [
        ("zfnet", "ZFNet (7x7/2 first layer)"),
        ("alexnet", "AlexNet-style first layer (11x11/4)"),
        ("no-renorm", "ZFNet without renormalization"),
    ] {
        if let Some(e) = results.eval.get(name) {
            // Given weights of another network are evaluated under the main network's name.
            let label = match (name, about.network.as_deref()) {
                ("zfnet", Some(n)) if !n.starts_with("zfnet") => format!("{n} (the given weights)"),
                _ => label.to_string(),
            };
            rows.push(vec![
                t(label),
                t(format!("{:.1}", 100.0 * e.top1_err)),
                t(format!("{:.1}", 100.0 * e.top5_err)),
                t(format!("this run, {} images, {}", e.images, if e.ten_crop { "10 crops" } else { "centre crop" })),
            ]);
        }
    }
    table(&mut h, &["model", "val top-1 (%)", "val top-5 (%)", "source"], &rows);
    if let Some(epochs) = results.training.get("zfnet") {
        h.push_str("<h3>Training (ZFNet)</h3>");
        let rows: Vec<Vec<Cell>> = epochs
            .iter()
            .map(|e| {
                vec![
                    t(e.epoch.to_string()),
                    t(format!("{:.3}", e.train_loss)),
                    t(format!("{:.1}", 100.0 * e.val_top1_err)),
                    t(e.lr.to_string()),
                    t(format!("{:.0}", e.images_per_s)),
                ]
            })
            .collect();
        table(&mut h, &["epoch", "train loss", "val top-1 (%)", "lr", "images/s"], &rows);
    }

    let mut fig = |h: &mut String, from: &str, to: &str, caption: &str| {
        if let Some(src) = figure(from, to) {
            let _ = write!(
                h,
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                esc(&src),
                esc(caption),
                esc(caption)
            );
        }
    };
    h.push_str("<h2>Fig. 2 — top activations projected to pixels</h2><p>For feature maps of layers 1-5, the strongest activations over the validation images (at most one per image), each projected alone with the deconvnet (left) beside the image patch under its receptive field (right).</p>");
    let quality = crate::quality::picture_quality(results);
    if !quality.is_empty() {
        h.push_str("<p>Picture quality, measured: the share of each projection's energy inside its receptive field that falls on the object's box, against the share of the field the box covers (what a projection spread evenly would give). Above 1, the projection is drawn on the object; at 1, it is spread over object and background alike.</p>");
        let rows: Vec<Vec<Cell>> = quality
            .iter()
            .map(|q| {
                vec![
                    t(&q.layer),
                    t(q.hits.to_string()),
                    t(format!("{:.2}", q.energy)),
                    t(format!("{:.2}", q.area)),
                    t(format!("{:.2}", q.energy / q.area.max(1e-9))),
                ]
            })
            .collect();
        table(
            &mut h,
            &["layer", "hits on annotated images", "energy on the object", "area of the object", "ratio"],
            &rows,
        );
    }
    // ZFNet's figures are fig2/layer1..5.png; another network's are named by its layers
    // (fig2/conv5_3.png), in the order topk.json lists them.
    let mut names: Vec<&str> = Vec::new();
    for m in results.fig2.iter().flat_map(|d| &d.maps) {
        if !names.contains(&m.layer.as_str()) {
            names.push(&m.layer);
        }
    }
    let zfnet = about.network.as_deref().is_none_or(|n| n.starts_with("zfnet"));
    if zfnet {
        for l in 1..=5 {
            fig(&mut h, &format!("fig2/layer{l}.png"), &format!("fig2-layer{l}.png"), &format!("Layer {l}"));
        }
    } else {
        for n in names {
            fig(&mut h, &format!("fig2/{n}.png"), &format!("fig2-{n}.png"), n);
        }
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
        "fig4/settling.svg",
        "fig4-settling.svg",
        "Each layer's feature similarity to the final network (linear CKA on the same images) at each snapshot",
    );
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
    let change = crate::quality::spectral_change(results);
    if !change.is_empty() {
        h.push_str("<p>How far training moved each first layer from its random start: the mean over filters of the total-variation distance between a filter's spectrum (energy per frequency ring on a 32x32 DFT grid) and its initial bank's mean spectrum — 0 is still white noise, 1 nothing in common.</p>");
        let rows: Vec<Vec<Cell>> = change.iter().map(|(n, v)| vec![t(n), t(format!("{v:.2}"))]).collect();
        table(&mut h, &["network", "conv1 spectral change from its init"], &rows);
    }
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
    if let Some(t1) = &results.table1 {
        let rows: Vec<Vec<Cell>> = t1
            .rows
            .iter()
            .map(|r| vec![t(&r.part), t(&r.layer), t(format!("{:.4} ± {:.4}", r.mean, r.std)), t(r.images.to_string())])
            .collect();
        table(&mut h, &["occluded", "layer", "Δ (mean ± std over image pairs)", "images"], &rows);
        h.push_str("<p>Paper (5 dog images): right eye 0.067 / 0.069, left eye 0.069 / 0.068, nose 0.079 / 0.069, random 0.107 / 0.073 at layers 5 / 7.</p>");
    }
    h.push_str("<h2>Table 7 — linear probes per layer</h2>");
    fig(
        &mut h,
        "table7/probes.svg",
        "table7-probes.svg",
        "Test accuracy of a softmax classifier on each frozen layer's pooled features",
    );
    if let Some(t7) = &results.table7 {
        let rows: Vec<Vec<Cell>> = t7
            .layers
            .iter()
            .map(|l| {
                vec![
                    t(&l.layer),
                    t(l.features.to_string()),
                    t(format!("{:.1}", 100.0 * l.train_accuracy)),
                    t(format!("{:.1}", 100.0 * l.test_accuracy)),
                ]
            })
            .collect();
        table(&mut h, &["layer", "features", "train accuracy (%)", "test accuracy (%)"], &rows);
    }
    h.push_str("<h2>Stages</h2>");
    let rows: Vec<Vec<Cell>> = about
        .stages
        .iter()
        .map(|s| vec![t(&s.stage), t(format!("{:.1}{}", s.seconds, if s.skipped { " (earlier run)" } else { "" }))])
        .collect();
    table(&mut h, &["stage", "seconds"], &rows);
    h.push_str(
        "<p>Raw numbers: <a href=\"results.json\">results.json</a>; claims: <a href=\"claims.md\">claims.md</a>.</p>",
    );
    h.push_str(PAGE_CHECK);
    h.push_str("</body></html>\n");
    h
}
