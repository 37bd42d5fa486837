//! The analysis commands: `occlusion` (Fig. 7), `invariance` (Fig. 5), `correspondence`
//! (Table 1), `filters` (Fig. 6), `evolution` (Fig. 4), `probe-layers` (Table 7). Each writes
//! its figures and, beside them, its raw numbers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_model::{Device, Tensor};
use zf_model::{Point, ZfNet};
use zf_probe::invariance::Sweep;
use zf_probe::records::{
    BankRecord, CorrespondenceDoc, EvolutionDoc, EvolutionLayer, FiltersDoc, InvarianceDoc, OcclusionDoc, ProbesDoc,
    StrongestRecord,
};
use zf_probe::{OcclusionConfig, ProbeConfig};
use zf_viz::heat::{class_legend, class_map, heatmap, overlay_at, range};
use zf_viz::plot::{side_by_side, BarPlot, LinePlot};
use zf_viz::{projection_image, save_png, save_text, stack, Direction, Grid};

use super::analysis::{out_dir, write_json, Source};
use crate::args::NetArgs;
use crate::progress::bar;
use zf_data::pick::centre_crops;

/// Occlusion sensitivity (the paper's Fig. 7): a gray square (0 after mean subtraction) slid over
/// each image; as maps over its position, (b) the total activation of the conv5 map strongest on
/// the clean image, (c) that map's projection, (d) the probability of the true class, (e) the most
/// probable class.
///
/// Writes OUT/occlusion.png (one row per image: image, (b) and (d) as heat-map overlays, (c),
/// (e) as a class map with its legend; each map cell is drawn where the square's centre was), OUT/occlusion.safetensors (`feature_map`, `true_prob`,
/// `top_label`, each [N, R, R], and `projection` [N, 3, S, S]) and OUT/occlusion.json.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet occlusion --weights run/model.safetensors --data data/gen --images 3 --out fig7\n  zfnet occlusion --weights run/model.safetensors --input dog.jpg --label 3 --size 32 --stride 4 --out fig7"
)]
pub struct OcclusionArgs {
    #[command(flatten)]
    src: Source,
    /// Side of the gray square, pixels.
    #[arg(long, default_value_t = zf_probe::occlusion::OCCLUDER, value_name = "PX")]
    size: usize,
    /// Step between square positions, pixels.
    #[arg(long, default_value_t = zf_probe::occlusion::STRIDE, value_name = "PX")]
    stride: usize,
    /// Square positions computed together (memory grows with it).
    #[arg(long, default_value_t = zf_probe::OcclusionConfig::default().batch, value_name = "B")]
    batch: usize,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn occlusion(args: OcclusionArgs, device: &Device) -> Result<()> {
    let loaded = args.src.load(device)?;
    let (net, classes) = (&loaded.net, &loaded.classes);
    let s = net.spec().input_size;
    let cfg = OcclusionConfig { size: args.size, stride: args.stride, batch: args.batch };
    let per = cfg.offsets(s)?.len().pow(2);
    let pb = bar((per * loaded.images.len()) as u64, "occluding");
    let study = zf_probe::occlusion_study(net, &loaded.images, classes, cfg, &mut |d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    // Each cell is drawn where the square's centre was: `stride` pixels wide, starting half a
    // square (less half a stride) from the corner.
    let cell = args.stride as u32;
    let at = args.size as i64 / 2 - args.stride as i64 / 2;
    let mut rows = Vec::new();
    for ((img, occ), (proj, rec)) in
        loaded.images.iter().zip(&study.maps).zip(study.projections.iter().zip(&study.records))
    {
        let r = occ.side();
        let base = &img.picture;
        let fmap = overlay_at(base, &heatmap(&occ.feature_map, r, r, range(&occ.feature_map), cell), at, at, 0.6);
        let prob = overlay_at(base, &heatmap(&occ.true_prob, r, r, (0.0, 1.0), cell), at, at, 0.6);
        let cmap = overlay_at(base, &class_map(&occ.top_label, r, r, cell), at, at, 0.85);
        let mut grid = Grid::new(s as u32, s as u32, 5);
        grid.push(base.clone(), Some(format!("(a) {}, p={:.2}", rec.class, occ.clean_prob)));
        grid.push(fmap, Some(format!("(b) conv5 map {}", occ.map)));
        grid.push(projection_image(proj, 3, s, s), Some("(c) its projection".into()));
        grid.push(prob, Some("(d) p(true class)".into()));
        grid.push(cmap, Some("(e) top class".into()));
        let mut present: Vec<u32> = occ.top_label.clone();
        present.sort();
        present.dedup();
        rows.push(stack(&[grid.render(Some(&img.name)), class_legend(&present, classes)], Direction::Across, 4));
    }
    out_dir(&args.out)?;
    save_png(&stack(&rows, Direction::Down, 8), &args.out.join("occlusion.png"))?;
    study.save(&args.out.join("occlusion.safetensors"))?;
    write_json(
        &args.out.join("occlusion.json"),
        &OcclusionDoc { weights: args.src.weights.clone(), images: study.records },
    )?;
    tracing::info!("wrote occlusion.png, occlusion.safetensors and occlusion.json to {}", args.out.display());
    Ok(())
}

fn class_name(classes: &[String], c: usize) -> String {
    classes.get(c).cloned().unwrap_or_else(|| c.to_string())
}

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
    let s = loaded.net.spec().input_size;
    let given: Option<BTreeMap<String, BTreeMap<String, [usize; 4]>>> = match &args.boxes {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)
                .with_context(|| format!("{}: expected {{\"image\": {{\"part\": [x0, y0, x1, y1]}}}}", p.display()))?,
        ),
        None => None,
    };
    let boxes: Vec<BTreeMap<String, [usize; 4]>> = loaded
        .images
        .iter()
        .map(|img| match (&given, &img.annotation) {
            (Some(g), _) => g.get(&img.name).cloned().unwrap_or_default(),
            (None, Some(a)) => zf_probe::correspondence::part_boxes(a, args.box_size, s),
            (None, None) => BTreeMap::new(),
        })
        .collect();
    let parts: Vec<String> = match &args.parts {
        Some(p) => p.split(',').map(|s| s.trim().to_string()).collect(),
        None => {
            let mut all: Vec<String> = boxes.iter().flat_map(|b| b.keys().cloned()).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    if parts.is_empty() {
        bail!("no parts to occlude: the images have no part annotations (use --split faces or --class face on the generated data, or --boxes FILE)")
    }
    // Random boxes inside each object's box (off its parts) when every image has one.
    let regions: Option<Vec<[usize; 4]>> = loaded
        .images
        .iter()
        .map(|i| i.annotation.as_ref().map(|a| zf_probe::correspondence::object_box(a, s)))
        .collect();
    let random = zf_probe::RandomBoxes { seed: args.seed, draws: args.draws, regions, ..Default::default() };
    let images = zf_data::pick::stack(&loaded.images)?;
    // The paper's layers 5 and 7: the last conv and the last hidden linear layer.
    let spec = loaded.net.spec();
    let (Some(l5), Some(l7)) = (spec.last_conv(), spec.last_hidden()) else {
        bail!("{} has no conv or no hidden linear layer to compare", spec.arch)
    };
    let rows = zf_probe::correspondence(&loaded.net, &images, &boxes, &parts, &[l5, l7], &random)?;
    out_dir(&args.out)?;
    let (n5, n7) = (spec.layers[l5].label(), spec.layers[l7].label());
    let mut md =
        format!("| occluded | layer 5 ({n5}) Δ | changed | layer 7 ({n7}) Δ | changed |\n|---|---|---|---|---|\n");
    let mut names: Vec<&str> = rows.iter().map(|r| r.part.as_str()).collect();
    names.dedup();
    for name in names {
        let cell = |layer: &str| {
            rows.iter()
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
        boxes,
        box_size: args.box_size,
        random: Some(random),
        rows,
    };
    write_json(&args.out.join("correspondence.json"), &doc)?;
    tracing::info!("Table 1:\n{md}");
    Ok(())
}

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
        let w = net.conv1.weight().to_device(&Device::Cpu)?;
        let mut stats = zf_probe::filter_stats(&w)?;
        // The bank's own initialization, redrawn from the run's record.
        if let Some(run) = std::path::Path::new(&path).parent().and_then(|d| zf_train::RunDir::open(d).ok()) {
            let c = run.record()?.config;
            let init = zf_model::init::init_tensors(&c.model, c.init, c.seed, &Device::Cpu)?;
            if let Some(w0) = init.get("conv1.weight") {
                stats.against_init(&zf_probe::filter_stats(w0)?);
            }
        }
        if let Some(data) = &args.data {
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
            let (x, _) = centre_crops(set.as_ref(), &idx, &mean, device)?;
            stats.dead_on_data = zf_probe::filters::dead_on_data(&net, &x)?;
        }
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
    let nets: Vec<ZfNet> =
        snaps.iter().map(|(_, p)| ZfNet::load(&p.to_string_lossy(), None, device)).collect::<zf_model::Result<_>>()?;
    let config = nets[0].config().clone();
    let s = config.input_size;
    let pre = zf_data::Preprocess::for_input(s);
    let spec = zf_data::DataSpec::parse(&args.data, &zf_data::GeneratedConfig::default());
    let set = spec.open(zf_data::Split::Val, Some(args.limit.max(args.similarity_images)), pre)?;
    let n = set.len();
    let (images, _) = centre_crops(set.as_ref(), &(0..n).collect::<Vec<_>>(), &mean, device)?;
    out_dir(&args.out)?;
    let layers = [Point::Conv1, Point::Conv2, Point::Conv3, Point::Conv4, Point::Conv5];
    let pb = bar((layers.len() * nets.len() + nets.len()) as u64, "evolution");
    let searched = images.narrow(0, 0, n.min(args.limit))?;
    let mut json_layers = Vec::new();
    for layer in layers {
        let [c, _, _] = zf_deconv::layer_shape(&config, layer)?;
        let m = args.maps.clamp(1, c);
        let maps: Vec<usize> = (0..m).map(|i| i * c / m).collect();
        let mut grid = Grid::new(96, 96, nets.len());
        let mut tiles: Vec<Vec<(image::RgbImage, String)>> = vec![Vec::new(); m];
        let mut values = Vec::new();
        for ((epoch, _), net) in snaps.iter().zip(&nets) {
            // Fig. 2's pipeline with one hit per map, on this snapshot.
            let config = zf_deconv::Fig2Config { top: 1, one_per_image: true, batch: 32 };
            let found =
                zf_deconv::top_projections_of(net, vec![(layer, maps.clone())], config, &searched, &mut |_, _, _| {})?;
            for (mi, m) in found.iter().enumerate() {
                let Some(p) = m.hits.first() else { continue };
                let (h, map, rf) = (p.hit, m.map, p.receptive_field.map(|v| v as u32));
                let pic = projection_image(&p.projection, 3, s, s);
                let crop = image::imageops::crop_imm(&pic, rf[0], rf[1], rf[2] - rf[0], rf[3] - rf[1]).to_image();
                tiles[mi].push((crop, format!("ep {epoch}")));
                values.push(StrongestRecord {
                    epoch: *epoch,
                    map,
                    image: h.image,
                    position: (h.y, h.x),
                    value: h.value,
                });
            }
            pb.inc(1);
        }
        for row in tiles {
            for (img, label) in row {
                grid.push(img, Some(label));
            }
        }
        let file = format!("layer{}", layer.paper_layer().unwrap_or(0));
        save_png(
            &grid.render(Some(&format!("{layer}: maps {maps:?} (rows) over snapshots (columns)"))),
            &args.out.join(format!("{file}.png")),
        )?;
        json_layers.push(EvolutionLayer { layer: layer.name().to_string(), maps, strongest: values });
    }
    // How similar each layer's features are to the final network's, per snapshot.
    let similar = images.narrow(0, 0, n.min(args.similarity_images))?;
    let pairs: Vec<(usize, &ZfNet)> = snaps.iter().map(|(e, _)| *e).zip(&nets).collect();
    let settling = zf_probe::evolution::settling(&pairs, &similar, &layers, &mut |_, _| pb.inc(1))?;
    pb.finish_and_clear();
    let mut plot = LinePlot::new("feature similarity to the final network", "epoch", "linear CKA").y_range(0.0, 1.0);
    for l in &settling.layers {
        plot = plot.series(&l.layer, settling.epochs.iter().zip(&l.cka).map(|(&e, &v)| (e as f32, v)).collect());
    }
    save_text(&plot.svg(), &args.out.join("settling.svg"))?;
    // Weight movement between consecutive snapshots.
    let mut movement = Vec::new();
    let mut plot = LinePlot::new("weight movement between snapshots", "epoch", "|W_t - W_prev| / |W_t|");
    for w in nets.windows(2) {
        movement.push(zf_probe::weight_change(&w[0], &w[1])?);
    }
    for (li, p) in Point::WEIGHTED.iter().enumerate() {
        let pts: Vec<(f32, f32)> =
            movement.iter().zip(snaps.iter().skip(1)).map(|(m, (e, _))| (*e as f32, m[li].relative)).collect();
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
            images_searched: searched.dim(0)?,
            layers: json_layers,
            movement,
            settling: Some(settling),
        },
    )?;
    tracing::info!("wrote the feature evolution to {}", args.out.display());
    Ok(())
}

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
