//! `zfnet occlusion`: Fig. 7, drawn from `zf_probe::occlusion_study`.

use std::path::PathBuf;

use anyhow::Result;
use zf_model::Device;
use zf_probe::records::OcclusionDoc;
use zf_probe::OcclusionConfig;
use zf_viz::heat::{class_legend, class_map, heatmap, overlay_at, range};
use zf_viz::{projection_image, save_png, stack, Direction, Grid};

use super::analysis::{out_dir, write_json, Source};
use crate::progress::bar;

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
