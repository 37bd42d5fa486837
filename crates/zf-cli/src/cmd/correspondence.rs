//! `zfnet correspondence`: Table 1, written from `zf_probe::correspondence_study`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use zf_model::Device;
use zf_probe::records::CorrespondenceDoc;
use zf_probe::PartBox;
use zf_viz::save_text;

use super::analysis::{out_dir, write_json, Source};

/// Correspondence (the paper's Sec. 4.3 and Table 1): occlude the same part in several images and
/// compare the sign patterns of the feature changes; Δ (mean Hamming distance over ordered image
/// pairs, ± its std) for each part and for randomly placed boxes of the same size, at layers 5
/// and 7. Lower is more consistent.
///
/// The random baseline's boxes have the parts' size and lie inside each image's object box, off
/// its named parts (when the images are annotated), averaged over --draws draws.
///
/// Parts come from the generated data set's annotations (a square of --box pixels around each
/// named part; `--split faces` gives aligned frontal faces) or from --boxes FILE: JSON `{"<image name>": {"<part>": [x0, y0, x1, y1]}}` in
/// pixels of the network's input crop, image names as in the output's `images` list.
///
/// Writes OUT/correspondence.json (rows: part, layer, mean, std, images) and OUT/table1.md.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zfnet correspondence --weights run/model.safetensors --data data/gen --split faces --images 30 --out table1"
)]
pub struct CorrespondenceArgs {
    #[command(flatten)]
    src: Source,
    /// Side of the square occluding each annotated part, pixels of the input crop.
    #[arg(long = "box", default_value_t = 24, value_name = "PX")]
    box_size: usize,
    /// Parts, comma-separated (default: every part the images have).
    #[arg(long, value_name = "LIST")]
    parts: Option<String>,
    /// Boxes per image and part (see above).
    #[arg(long, value_name = "FILE")]
    boxes: Option<PathBuf>,
    /// Seed of the random baseline's positions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Draws of the random baseline (one box per image each), averaged.
    #[arg(long, default_value_t = 10, value_name = "N")]
    draws: usize,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn correspondence(args: CorrespondenceArgs, device: &Device) -> Result<()> {
    let loaded = args.src.load(device)?;
    let given: Option<BTreeMap<String, BTreeMap<String, PartBox>>> = match &args.boxes {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)
                .with_context(|| format!("{}: expected {{\"image\": {{\"part\": [x0, y0, x1, y1]}}}}", p.display()))?,
        ),
        None => None,
    };
    let parts = args.parts.as_ref().map(|p| p.split(',').map(|s| s.trim().to_string()).collect());
    let study = zf_probe::correspondence_study(
        &loaded.net,
        &loaded.images,
        given.as_ref(),
        args.box_size,
        parts,
        (args.seed, args.draws),
    )?;
    out_dir(&args.out)?;
    let spec = loaded.net.spec();
    let (n5, n7) = (spec.layers[study.layers[0]].label(), spec.layers[study.layers[1]].label());
    let mut md =
        format!("| occluded | layer 5 ({n5}) Δ | changed | layer 7 ({n7}) Δ | changed |\n|---|---|---|---|---|\n");
    let mut names: Vec<&str> = study.rows.iter().map(|r| r.part.as_str()).collect();
    names.dedup();
    for name in names {
        let cell = |layer: &str| {
            study
                .rows
                .iter()
                .find(|r| r.part == name && r.layer == layer)
                .map(|r| format!("{:.3} ± {:.3} | {:.0}%", r.mean, r.std, 100.0 * r.changed))
                .unwrap_or_else(|| "– | –".into())
        };
        md.push_str(&format!("| {name} | {} | {} |\n", cell(n5), cell(n7)));
    }
    save_text(&md, &args.out.join("table1.md"))?;
    let doc = CorrespondenceDoc {
        weights: args.src.weights.clone(),
        images: loaded.images.iter().map(|i| i.name.clone()).collect(),
        boxes: study.boxes,
        box_size: args.box_size,
        random: Some(study.random),
        rows: study.rows,
    };
    write_json(&args.out.join("correspondence.json"), &doc)?;
    tracing::info!("Table 1:\n{md}");
    Ok(())
}
