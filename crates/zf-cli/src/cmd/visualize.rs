//! `zfnet visualize`: the paper's Fig. 2 — for feature maps of layers 1-5, the top-k
//! activations over a data set, each projected to pixels beside its image patch.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_data::{Crop, GeneratedConfig, MeanImage, Preprocess};
use zf_model::{Device, LayerKind};
use zf_viz::{projection_image, save_png, stack, Direction, Grid};

use crate::args::{layer_arg, NetArgs};

/// Side of each projection and patch tile, pixels. Large enough that an upper layer's receptive
/// field (most of a 112-pixel input) is shown near its own size: shrunk to half, a
/// projection's fine signed pattern averages out to grey.
const TILE: u32 = 96;
use crate::progress::bar;

/// Top-k projections per feature map over a data set (the paper's Fig. 2): one streaming pass
/// keeps each chosen map's K strongest activations (at most one per image), then projects each
/// alone to pixels with the deconvnet and shows it beside the image patch under its receptive
/// field.
///
/// Writes, per layer, OUT/layerN.png (one block per map: projections left, patches right),
/// OUT/layerN.safetensors (`projection`, [maps*K, 3, S, S]), and OUT/topk.json (every hit:
/// image, position, value, receptive field); for a network other than ZFNet the files are
/// named by the layer (OUT/conv5_3.png).
///
/// Any network zfnet loads: ZFNet, or torchvision's AlexNet and VGG (.pth or safetensors).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet visualize --weights model.safetensors --data generated --out fig2\n  zfnet visualize --weights model.safetensors --data imagenet/val --mean mean.safetensors --layers 2,5 --maps 16 --out fig2"
)]
pub struct Args {
    #[command(flatten)]
    net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    weights: String,
    /// An image folder (its val/ split when it has one, else its class sub-folders) or
    /// `generated` (its validation split).
    #[arg(long, value_name = "DIR")]
    data: String,
    /// The training set's per-pixel mean image, a path or hf://... (default: computed over the
    /// searched images).
    #[arg(long, value_name = "FILE")]
    mean: Option<String>,
    /// Conv layers, comma-separated: ZFNet's 1..5 or conv1..conv5 (default: all five);
    /// another network's keys or aliases, e.g. conv3_3,conv5_3 or features.28 (default: the
    /// conv before each max pool).
    #[arg(long, value_name = "LIST")]
    layers: Option<String>,
    /// Feature maps per layer, spread evenly over the layer's maps.
    #[arg(long, default_value_t = 8, value_name = "N")]
    maps: usize,
    /// Strongest activations kept per map.
    #[arg(long, default_value_t = 9, value_name = "K")]
    top: usize,
    /// Allow several of a map's top activations to come from one image.
    #[arg(long)]
    many_per_image: bool,
    /// Images searched (generated data: the set's size; folders: the first N, default all).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32, value_name = "B")]
    batch: usize,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let net = args.net.load_any(&args.weights, device)?;
    let spec = net.spec().clone();
    let size = spec.input_size;
    let spec_arch = spec.arch.clone();
    let is_conv = |i: usize| matches!(spec.layers[i].kind, LayerKind::Conv { .. });
    let layers: Vec<usize> = match &args.layers {
        Some(list) => list.split(',').map(|s| layer_arg(&net, s)).collect::<Result<_>>()?,
        // The paper's layers 1-5 (ZFNet), or the conv before each max pool.
        None => crate::args::paper_layers(&net).into_iter().filter(|&i| is_conv(i)).collect(),
    };
    if let Some(&bad) = layers.iter().find(|&&l| !is_conv(l)) {
        bail!("visualize shows conv layers (the paper's layers 1-5 in ZFNet), got {}", spec.layers[bad].label())
    }
    let label = |i: usize| spec.layers[i].label().to_string();
    let spec = zf_data::DataSpec::parse(&args.data, &GeneratedConfig::default());
    let dataset = spec.open(zf_data::Split::Val, args.limit, Preprocess::for_input(size))?;
    if dataset.preprocess().crop != size {
        bail!("the data set gives {0}x{0} crops, the network takes {size}x{size}", dataset.preprocess().crop)
    }
    let mean = match &args.mean {
        Some(p) => MeanImage::load(&crate::args::file_arg(p)?)?,
        None if net.spec().input_channel_scale.is_some() => {
            crate::cmd::analysis::mean_for_net(&net, &args.weights, None)?
        }
        None => {
            tracing::info!("no --mean: computing the mean image over the {} searched images", dataset.len());
            MeanImage::compute(dataset.as_ref())?
        }
    };
    let mut selection = Vec::new();
    for &layer in &layers {
        let c = net.shape(layer).map_or(1, |s| s[0]);
        let n = args.maps.clamp(1, c);
        let maps: Vec<usize> = (0..n).map(|i| i * c / n).collect();
        selection.push((label(layer), maps));
    }
    let pb = bar(dataset.len() as u64, "searching");
    let config = zf_deconv::Fig2Config { top: args.top, one_per_image: !args.many_per_image, batch: args.batch };
    let study = zf_probe::fig2_study(
        &net,
        dataset.clone(),
        &mean,
        selection,
        config,
        (&args.weights, &args.data),
        &mut |phase, done, total| {
            if phase == zf_deconv::Phase::Project && pb.length() != Some(total as u64) {
                pb.reset();
                pb.set_length(total as u64);
                pb.set_message("projecting");
            }
            pb.set_position(done as u64);
        },
    )?;
    pb.finish_and_clear();
    if study.doc.skipped > 0 {
        tracing::warn!("{} images could not be read and were skipped", study.doc.skipped);
    }
    let pre = dataset.preprocess();
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let (oy, ox) = pre.crop_offsets()[Crop::CENTRE.0];
    for &layer in &layers {
        let mut blocks = Vec::new();
        let name = label(layer);
        for (m, record) in study.maps.iter().zip(&study.doc.maps).filter(|(m, _)| m.layer == name) {
            let (mut left, mut right) = (Grid::new(TILE, TILE, 3), Grid::new(TILE, TILE, 3));
            for (p, h) in m.hits.iter().zip(&record.hits) {
                let [x0, y0, x1, y1] = p.receptive_field.map(|v| v as u32);
                let pic = projection_image(&p.projection, 3, size, size);
                left.push(image::imageops::crop_imm(&pic, x0, y0, x1 - x0, y1 - y0).to_image(), None);
                let img = dataset.get(h.image)?.image;
                right.push(
                    image::imageops::crop_imm(&img, x0 + ox as u32, y0 + oy as u32, x1 - x0, y1 - y0).to_image(),
                    None,
                );
            }
            let title = format!("{name} map {}", m.map);
            blocks.push(stack(&[left.render(Some(&title)), right.render(Some(" "))], Direction::Across, 2));
        }
        let rows: Vec<_> = blocks.chunks(4).map(|r| stack(r, Direction::Across, 12)).collect();
        let file = zf_probe::fig2_index::file_stem(&spec_arch, &name);
        save_png(&stack(&rows, Direction::Down, 12), &args.out.join(format!("{file}.png")))?;
    }
    study.save_index(&args.out, &spec_arch)?;
    tracing::info!("wrote {} layer figures and topk.json to {}", layers.len(), args.out.display());
    Ok(())
}
