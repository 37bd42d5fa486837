//! `zfnet invariance`: Fig. 5, drawn from `zf_probe::invariance_study`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use zf_model::Device;
use zf_probe::invariance::Sweep;
use zf_probe::records::InvarianceDoc;
use zf_viz::plot::{side_by_side, LinePlot};
use zf_viz::save_text;

use super::analysis::{class_name, out_dir, write_json, Source};
use crate::progress::bar;

/// Invariance (the paper's Fig. 5): each image translated vertically, scaled and rotated
/// (borders filled with the mean colour); per step, the Euclidean distance of layer-1 (conv1)
/// and layer-7 (fc7) features to the original image's, and the probability of the true class.
///
/// Writes OUT/<sweep>.svg (three panels per sweep: layer 1, layer 7, p(true class); one curve
/// per image), OUT/invariance.safetensors (`<sweep>.layer1`, `<sweep>.layer7`, `<sweep>.prob`,
/// each [N, steps], and `<sweep>.amounts`) and OUT/invariance.json.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zfnet invariance --weights run/model.safetensors --data data/gen --images 5 --out fig5"
)]
pub struct InvarianceArgs {
    #[command(flatten)]
    src: Source,
    /// Sweeps, comma-separated: translate, scale, rotate.
    #[arg(long, default_value = "translate,scale,rotate", value_name = "LIST")]
    sweeps: String,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn invariance(args: InvarianceArgs, device: &Device) -> Result<()> {
    let loaded = args.src.load(device)?;
    let sweeps: Vec<Sweep> = args
        .sweeps
        .split(',')
        .map(|s| match s.trim() {
            "translate" | "translation" => Ok(Sweep::Translate),
            "scale" => Ok(Sweep::Scale),
            "rotate" | "rotation" => Ok(Sweep::Rotate),
            other => bail!("unknown sweep `{other}`: expected translate, scale or rotate"),
        })
        .collect::<Result<_>>()?;
    out_dir(&args.out)?;
    let pb = bar((sweeps.len() * loaded.images.len()) as u64, "sweeping");
    let records =
        zf_probe::invariance_study(&loaded.net, &loaded.images, &sweeps, &mut |d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    for (sweep, record) in sweeps.iter().zip(&records) {
        let name = sweep.name();
        let panel = |title: &str, y: &str, f: &dyn Fn(&zf_probe::InvarianceCurve) -> Vec<f32>| {
            let mut p = LinePlot::new(title, sweep.unit(), y);
            for (c, img) in record.images.iter().zip(&loaded.images) {
                let label = class_name(&loaded.classes, img.label);
                p = p.series(&label, c.curve.amounts.iter().copied().zip(f(&c.curve)).collect());
            }
            p
        };
        let panels = [
            panel(&format!("{name}: layer 1"), "Euclidean distance", &|c| c.layer1_distance.clone()).svg(),
            panel(&format!("{name}: layer 7"), "Euclidean distance", &|c| c.layer7_distance.clone()).svg(),
            panel(&format!("{name}: output"), "p(true class)", &|c| c.true_prob.clone()).y_range(0.0, 1.0).svg(),
        ];
        save_text(&side_by_side(&panels, 360, 260), &args.out.join(format!("{name}.svg")))?;
    }
    zf_probe::study::save_invariance(&records, &args.out.join("invariance.safetensors"))?;
    write_json(
        &args.out.join("invariance.json"),
        &InvarianceDoc { weights: args.src.weights.clone(), sweeps: records },
    )?;
    tracing::info!("wrote the invariance curves to {}", args.out.display());
    Ok(())
}
