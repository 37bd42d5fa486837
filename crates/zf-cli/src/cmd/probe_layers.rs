//! `zfnet probe-layers`: Table 7, from `zf_probe::probe_layers` on frozen features.

use std::path::PathBuf;

use anyhow::Result;
use zf_data::pick::centre_crops;
use zf_model::{Device, Tensor};
use zf_probe::records::ProbesDoc;
use zf_probe::ProbeConfig;
use zf_viz::plot::BarPlot;
use zf_viz::save_text;

use super::analysis::{out_dir, write_json};
use crate::args::NetArgs;
use crate::progress::bar;

/// Layer probes (the paper's Table 7): with the network frozen, fit a softmax classifier on one
/// layer's features (conv layers average-pooled on a grid) for layers 1..7, on one split of a
/// data set, and measure it on another. By default the transfer splits — classes the network
/// never trained on, as the paper probes an ImageNet network on Caltech-101.
///
/// Writes OUT/probes.svg (test accuracy per layer) and OUT/probes.json.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zfnet probe-layers --weights run/model.safetensors --data data/gen --out table7")]
pub struct ProbeArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    weights: String,
    /// An image folder with the splits below as sub-folders, or `generated`.
    #[arg(long, value_name = "DIR")]
    data: String,
    /// The split the probes are fitted on.
    #[arg(long, default_value = "transfer-train", value_name = "SPLIT")]
    train_split: String,
    /// The split they are measured on.
    #[arg(long, default_value = "transfer-val", value_name = "SPLIT")]
    test_split: String,
    /// The training set's mean image, a path or hf://... (default: mean.safetensors beside the
    /// weights).
    #[arg(long, value_name = "FILE")]
    mean: Option<String>,
    /// Training images used (at most).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    train_size: usize,
    /// Test images used (at most).
    #[arg(long, default_value_t = 500, value_name = "N")]
    test_size: usize,
    /// Side of the pooling grid for conv layers.
    #[arg(long, default_value_t = 2, value_name = "G")]
    grid: usize,
    /// Layers, comma-separated (default: ZFNet's 1..7, conv1..conv5, fc6, fc7; another
    /// network's conv before each max pool, and fc6, fc7).
    #[arg(long, value_name = "LIST")]
    layers: Option<String>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn probe_layers(args: ProbeArgs, device: &Device) -> Result<()> {
    let net = args.net.load_any(&args.weights, device)?;
    let layers = match &args.layers {
        Some(list) => list.split(',').map(|s| crate::args::layer_arg(&net, s)).collect::<Result<Vec<_>>>()?,
        None => crate::args::paper_layers(&net),
    };
    let pre = zf_data::Preprocess::for_input(net.spec().input_size);
    let mean = crate::cmd::analysis::mean_for_net(&net, &args.weights, args.mean.as_deref())?;
    let spec = zf_data::DataSpec::parse(&args.data, &zf_data::GeneratedConfig::default());
    let load = |split: &str, limit: usize| -> Result<(Tensor, Vec<u32>, usize)> {
        let set = spec.open(zf_data::Split::parse(split)?, None, pre)?;
        // Spread the subset over the classes: one class after another.
        let idx = zf_data::pick::one_class_after_another(set.as_ref(), None, limit);
        let (x, y) = centre_crops(set.as_ref(), &idx, &mean, device)?;
        Ok((x, y, set.classes().len()))
    };
    let (xa, ya, classes) = load(&args.train_split, args.train_size)?;
    let (xb, yb, _) = load(&args.test_split, args.test_size)?;
    let cfg = ProbeConfig { grid: args.grid, ..ProbeConfig::default() };
    let pb = bar(layers.len() as u64, "probing");
    let results = zf_probe::probe_layers(&net, (&xa, &ya), (&xb, &yb), classes, &layers, cfg, &mut |d, _| {
        pb.set_position(d as u64)
    })?;
    pb.finish_and_clear();
    out_dir(&args.out)?;
    let names: Vec<String> = results.iter().map(|r| r.layer.clone()).collect();
    let plot = BarPlot::new(
        &format!("softmax on one frozen layer ({} -> {})", args.train_split, args.test_split),
        "test accuracy",
        names,
    )
    .series("test", results.iter().map(|r| r.test_accuracy).collect())
    .y_range(0.0, 1.0);
    save_text(&plot.svg(), &args.out.join("probes.svg"))?;
    write_json(
        &args.out.join("probes.json"),
        &ProbesDoc {
            weights: args.weights.clone(),
            train_split: args.train_split.clone(),
            test_split: args.test_split.clone(),
            train_images: ya.len(),
            test_images: yb.len(),
            config: cfg,
            layers: results.clone(),
        },
    )?;
    for r in &results {
        tracing::info!(
            "{}: {} features, train {:.1}%, test {:.1}%",
            r.layer,
            r.features,
            100.0 * r.train_accuracy,
            100.0 * r.test_accuracy
        );
    }
    Ok(())
}
