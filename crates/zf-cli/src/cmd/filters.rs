//! `zfnet filters`: Fig. 6, drawn from `zf_probe::filter_bank_study` for each first layer.

use std::path::PathBuf;

use anyhow::{bail, Result};
use zf_data::pick::centre_crops;
use zf_model::{Device, ZfNet};
use zf_probe::records::{BankRecord, FiltersDoc};
use zf_viz::plot::BarPlot;
use zf_viz::{save_png, save_text, Grid};

use super::analysis::{out_dir, write_json};

/// First-layer diagnostics (the paper's Fig. 6): for each weights file, the conv1 filters as an
/// image, the fraction of dead filters (by RMS, and on data with --data), the spectral energy
/// in low/mid/high frequency bands on one DFT grid for every kernel size, the change of each
/// filter's spectrum from its initialization (when run.json beside the weights says how it was
/// drawn) and the largest filter's RMS over the median.
///
/// Writes OUT/<name>.png per file, OUT/bands.svg (the band energies side by side) and
/// OUT/filters.json.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  zfnet filters --weights zf=runs/zf/model.safetensors --weights alexnet=runs/alex/model.safetensors --data data/gen --out fig6"
)]
pub struct FiltersArgs {
    /// NAME=WEIGHTS (or just WEIGHTS), repeatable.
    #[arg(long, value_name = "NAME=W", required = true)]
    weights: Vec<String>,
    /// Images to find dead filters on: an image folder (its val/ split) or `generated`; each
    /// network's mean.safetensors beside its weights is subtracted.
    #[arg(long, value_name = "DIR")]
    data: Option<String>,
    /// Images used with --data.
    #[arg(long, default_value_t = 200, value_name = "N")]
    images: usize,
    /// With --data: the mean image for weights without a mean.safetensors beside them (a path or
    /// hf://...).
    #[arg(long, value_name = "FILE", requires = "data")]
    mean: Option<String>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn filters(args: FiltersArgs, device: &Device) -> Result<()> {
    out_dir(&args.out)?;
    let mut json = Vec::new();
    let mut bands = BarPlot::new(
        "conv1 spectral energy",
        "mean fraction of energy",
        vec!["low".into(), "mid".into(), "high".into()],
    )
    .y_range(0.0, 1.0);
    for (i, spec) in args.weights.iter().enumerate() {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_string(), p.to_string()),
            None => (format!("net{i}"), spec.clone()),
        };
        let net = ZfNet::load(&path, None, device)?;
        // The bank's own initialization, redrawn from the run's record.
        let init = match std::path::Path::new(&path).parent().and_then(|d| zf_train::RunDir::open(d).ok()) {
            Some(run) => {
                let c = run.record()?.config;
                zf_model::init::init_tensors(&c.model, c.init, c.seed, &Device::Cpu)?.remove("conv1.weight")
            }
            None => None,
        };
        let images = match &args.data {
            None => None,
            Some(data) => {
                let mean = match (crate::args::mean_beside(&path), &args.mean) {
                    (Some(beside), _) => zf_data::MeanImage::load(&beside)?,
                    (None, Some(m)) => crate::args::mean_for(&path, Some(m))?,
                    (None, None) => bail!(
                        "{path}: no mean.safetensors beside it, and dead filters on data need the training set's mean image: give --mean FILE"
                    ),
                };
                let pre = zf_data::Preprocess::for_input(net.config().input_size);
                let set = zf_data::DataSpec::parse(data, &zf_data::GeneratedConfig::default()).open(
                    zf_data::Split::Val,
                    None,
                    pre,
                )?;
                let idx = zf_data::pick::one_class_after_another(set.as_ref(), None, args.images);
                Some(centre_crops(set.as_ref(), &idx, &mean, device)?.0)
            }
        };
        let stats = zf_probe::filter_bank_study(&net, init.as_ref(), images.as_ref())?;
        let w = net.conv1.weight().to_device(&Device::Cpu)?;
        let (n, _, k, _) = w.dims4()?;
        let zoom = (64 / k as u32).max(2);
        let pic = zf_viz::filters_image(&w.flatten_all()?.to_vec1::<f32>()?, n, k, 16, zoom);
        let on_data = stats.dead_on_data.iter().filter(|&&d| d).count();
        let title = format!(
            "{name}: {n} filters {k}x{k}, dead {:.0}% (on data {on_data}), dominance {:.1}",
            100.0 * stats.dead_fraction,
            stats.dominance
        );
        let mut g = Grid::new(pic.width(), pic.height(), 1);
        g.push(pic, None);
        save_png(&g.render(Some(&title)), &args.out.join(format!("{name}.png")))?;
        bands = bands.series(&name, stats.band_energy.to_vec());
        json.push(BankRecord { name, weights: path, stats });
    }
    save_text(&bands.svg(), &args.out.join("bands.svg"))?;
    write_json(
        &args.out.join("filters.json"),
        &FiltersDoc {
            dead_fraction_of_median: zf_probe::filters::DEAD_FRACTION,
            band_edges_cycles_per_pixel: zf_probe::filters::BAND_EDGES.to_vec(),
            banks: json,
        },
    )?;
    tracing::info!("wrote the filter diagnostics to {}", args.out.display());
    Ok(())
}
