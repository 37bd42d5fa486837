//! The report stage of `cargo xtask reproduce-paper`: what only xtask knows about the run —
//! the profile, the options, the stage times and the departures from the paper they imply — goes
//! to `reproduce.json` in the run's folder; `zfnet report` then writes the report from it and
//! the stages' files (the zf-report crate: typed results, the claims, the page).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::reproduce::{write, Run};

/// How the run differs from the paper (stated for every profile but `paper`).
pub fn departures(run: &Run) -> Vec<String> {
    let p = &run.opts.profile;
    let record: Value = std::fs::read(run.path("runs/zfnet/run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let c = &record["config"];
    let mut d = Vec::new();
    if run.opts.data.is_none() {
        d.push(format!(
            "Data: the generated data set (10 classes of shapes with random colours and textures, partly occluded in 30% of images, on backgrounds with a natural image's 1/f amplitude spectrum, {} clutter shapes, random lighting; {} training and {} validation images per class) instead of ImageNet's 1.3M images of 1000 classes. Table 7 probes five held-out generated classes ({} images per class in each transfer split) instead of Caltech-101; Table 1 uses {} aligned frontal generated faces instead of 5 dog faces, occluded by {} px boxes at 224 (scaled with the input) so that a box covers about 2x2 conv5 cells.",
            p.clutter, p.per_class, p.val_per_class, p.transfer_per_class, p.correspondence_images, p.correspondence_box
        ));
    }
    if let (Some(w), Some(n)) = (&run.opts.weights, &run.network) {
        d.push(format!(
            "Network: the given weights {w} are {} (read off the file's keys and shapes, at {} pixels), not ZFNet and not trained here: the paper's analyses run on it with its layers standing for the paper's (layers 1-5: the conv before each max pool; 7: the last hidden fc layer); the claims about training ZFNet (training, Table 2's first layers, Figs. 4 and 6) are not testable, and Fig. 6's stage is skipped.",
            n.arch, n.input_size
        ));
    } else if let Some(w) = &run.opts.weights {
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
    if run.trains() && c["init"] != "paper" {
        d.push(format!("Renormalization: the paper caps conv filters at RMS 0.1 with weights drawn at std 0.01 — 10x above their start. Its radius here scales with the init (10x each layer's initial std), so filters start as far below it as in the paper and the with/without comparison of Fig. 6 is a real experiment; a fixed 0.1 would bind from the first step (He's conv1 starts at 0.117). conv1 itself is drawn at {} x He's std (RMS 0.0117, about the paper's 0.01; its radius 0.117): measured on this default, at He's full std conv1's filters grew only 1.6x in 10 epochs (15-16% of their radius, renormalization never bound) and still looked like their random start; at a tenth they reach the radius within the run and show colour blobs and oriented edges.", c["conv1_init_scale"]));
    }
    if run.trains() {
        d.push(format!(
            "Budgets: ZFNet and both Fig. 6 ablations (AlexNet-style first layer; no renormalization) train on the same data with the same recipe, {} epochs each, seed {}.",
            p.epochs, run.opts.seed
        ));
    }
    d.push("Measurements that stand in for the paper's pictures: Fig. 4's claim is decided on each layer's feature similarity to the final network (linear CKA on 300 validation images, every epoch a snapshot when the run is shorter than the paper's eight snapshot epochs), not on the pictures; Fig. 6's spectra are taken on one 32x32 DFT grid for both kernel sizes, in cycles per input pixel; dead filters are counted on data (mean response below 1% of the median filter's on 95% of 200 validation images).".into());
    d.push("Where the paper is silent, our choices (marked \"ours\" in the crates' docs) are used: conv1 padding 1, ceil-mode pools, LRN n=5, the occluder's size and stride, invariance ranges, the Hamming distance of Table 1.".into());
    d
}

/// Writes `reproduce.json` and runs `zfnet report` on the run's folder; returns the report's
/// folder.
pub fn write_report(run: &Run, wall: f64) -> Result<PathBuf, String> {
    let p = &run.opts.profile;
    let about = json!({
        "profile": p.name,
        "rationale": p.rationale,
        "data": run.opts.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "generated".into()),
        "weights": run.opts.weights,
        "network": run.network.as_ref().map(|n| n.arch.clone()),
        "seed": run.opts.seed,
        "wall_seconds": wall,
        "stages": run.times,
        "departures": departures(run),
    });
    write(&run.path("reproduce.json"), &serde_json::to_vec_pretty(&about).unwrap_or_default())?;
    run.zfnet(&crate::stages::Cmd::Report { run: run.path("") })?;
    Ok(run.path("report"))
}
