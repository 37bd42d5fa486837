//! `zfnet evolution`: Fig. 4, drawn from `zf_probe::evolution_study` over a run's snapshots.

use std::path::PathBuf;

use anyhow::{bail, Result};
use zf_data::pick::centre_crops;
use zf_model::{Device, Point, ZfNet};
use zf_probe::records::EvolutionDoc;
use zf_viz::plot::LinePlot;
use zf_viz::{projection_image, save_png, save_text, Grid};

use super::analysis::{out_dir, write_json};
use crate::progress::bar;

/// Feature evolution (the paper's Fig. 4): from a training run's snapshots, for a few feature
/// maps of each layer, the strongest activation over a data set and its projection, per
/// snapshot, as one grid per layer; and, per layer, how similar its features at each snapshot
/// are to the final network's (linear CKA on the same images) — the claim that lower layers
/// settle first is decided on that.
///
/// Writes OUT/layerN.png (rows: maps, columns: snapshots), OUT/settling.svg (similarity per
/// layer over the snapshots), OUT/movement.svg (weight movement between snapshots) and
/// OUT/evolution.json.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zfnet evolution --run runs/zf --data generated --out fig4")]
pub struct EvolutionArgs {
    /// The training run (its snapshots/ folder, model.safetensors and mean.safetensors).
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The images: an image folder (its val/ split when it has one) or `generated`.
    #[arg(long, value_name = "DIR")]
    data: String,
    /// Images searched for the strongest activations.
    #[arg(long, default_value_t = 200, value_name = "N")]
    limit: usize,
    /// Images the feature similarity is measured on (the first N of those searched).
    #[arg(long, default_value_t = 300, value_name = "N")]
    similarity_images: usize,
    /// Feature maps per layer.
    #[arg(long, default_value_t = 4, value_name = "N")]
    maps: usize,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn evolution(args: EvolutionArgs, device: &Device) -> Result<()> {
    let run = zf_train::RunDir::open(&args.run)?;
    let mut snaps = run.snapshots()?;
    if snaps.is_empty() {
        bail!("no snapshots (epoch-NNN.safetensors) in {}", args.run.join("snapshots").display())
    }
    // The final network: the trained weights, when the last snapshot is not already them.
    let epochs = run.record()?.config.epochs;
    if snaps.last().is_some_and(|(e, _)| *e < epochs) && run.model().is_file() {
        snaps.push((epochs, run.model()));
    }
    let mean = zf_data::MeanImage::load(&run.mean())?;
    let nets: Vec<(usize, ZfNet)> =
        snaps.iter().map(|(e, p)| Ok((*e, ZfNet::load(&p.to_string_lossy(), None, device)?))).collect::<Result<_>>()?;
    let s = nets[0].1.config().input_size;
    let pre = zf_data::Preprocess::for_input(s);
    let spec = zf_data::DataSpec::parse(&args.data, &zf_data::GeneratedConfig::default());
    let set = spec.open(zf_data::Split::Val, Some(args.limit.max(args.similarity_images)), pre)?;
    let (images, _) = centre_crops(set.as_ref(), &(0..set.len()).collect::<Vec<_>>(), &mean, device)?;
    out_dir(&args.out)?;
    let pb = bar((6 * nets.len()) as u64, "evolution");
    let study =
        zf_probe::evolution_study(&nets, &images, (args.limit, args.similarity_images), args.maps, &mut |d, _| {
            pb.set_position(d as u64)
        })?;
    pb.finish_and_clear();
    // One grid per layer: rows are maps, columns snapshots; each cell the projection cropped to
    // its receptive field.
    for (i, (layer, cells)) in study.layers.iter().zip(&study.cells).enumerate() {
        let mut grid = Grid::new(96, 96, nets.len());
        for cell in cells.iter().flatten() {
            let pic = projection_image(&cell.projection, 3, s, s);
            let rf = cell.receptive_field.map(|v| v as u32);
            let crop = image::imageops::crop_imm(&pic, rf[0], rf[1], rf[2] - rf[0], rf[3] - rf[1]).to_image();
            grid.push(crop, Some(format!("ep {}", cell.epoch)));
        }
        let file = format!("layer{}", i + 1); // conv1..conv5, the paper's layers 1..5
        save_png(
            &grid.render(Some(&format!("{}: maps {:?} (rows) over snapshots (columns)", layer.layer, layer.maps))),
            &args.out.join(format!("{file}.png")),
        )?;
    }
    let settling = &study.settling;
    let mut plot = LinePlot::new("feature similarity to the final network", "epoch", "linear CKA").y_range(0.0, 1.0);
    for l in &settling.layers {
        plot = plot.series(&l.layer, settling.epochs.iter().zip(&l.cka).map(|(&e, &v)| (e as f32, v)).collect());
    }
    save_text(&plot.svg(), &args.out.join("settling.svg"))?;
    let mut plot = LinePlot::new("weight movement between snapshots", "epoch", "|W_t - W_prev| / |W_t|");
    for (li, p) in Point::WEIGHTED.iter().enumerate() {
        let pts: Vec<(f32, f32)> =
            study.movement.iter().zip(snaps.iter().skip(1)).map(|(m, (e, _))| (*e as f32, m[li].relative)).collect();
        plot = plot.series(p.name(), pts);
    }
    save_text(&plot.svg(), &args.out.join("movement.svg"))?;
    for l in &settling.layers {
        tracing::info!("{}: mean similarity to the final network {:.3}", l.layer, l.mean_cka);
    }
    write_json(
        &args.out.join("evolution.json"),
        &EvolutionDoc {
            run: args.run.display().to_string(),
            snapshots: snaps.iter().map(|(e, _)| *e).collect(),
            images_searched: study.images_searched,
            layers: study.layers,
            movement: study.movement,
            settling: Some(study.settling),
        },
    )?;
    tracing::info!("wrote the feature evolution to {}", args.out.display());
    Ok(())
}
