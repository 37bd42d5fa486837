//! `zfnet data`: the generated data set written as an image folder, and the per-pixel mean image.

use std::path::PathBuf;

use anyhow::{bail, Result};
use zf_data::folder::{write_classes, CLASSES_FILE};
use zf_data::{Dataset, Generated, GeneratedConfig, ImageFolder, MeanImage, Preprocess};
use zf_model::Device;

use crate::progress::bar;

/// Data sets: write the generated one as an image folder, compute a mean image.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Generate(GenerateArgs),
    Mean(MeanArgs),
}

/// Write the generated data set (ten classes of objects on cluttered backgrounds, 256x256) as
/// an ImageNet-layout folder: OUT/train/<class>/<n>.png and OUT/val/<class>/<n>.png, each with a
/// <n>.json beside it holding the class, bounding box and named parts; OUT/classes.txt. Beside
/// them, for the analyses: OUT/transfer-train/ and OUT/transfer-val/ (five held-out classes the
/// network never trains on, for `zfnet probe-layers`) and OUT/faces/ (aligned frontal faces,
/// for `zfnet correspondence`).
///
/// The same seed always gives the same pixels.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zfnet data generate --out data/gen --per-class 100 --val-per-class 20")]
struct GenerateArgs {
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Training images per class.
    #[arg(long, default_value_t = 100, value_name = "N")]
    per_class: usize,
    /// Validation images per class.
    #[arg(long, default_value_t = 20, value_name = "N")]
    val_per_class: usize,
    /// Seed of the whole set.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per held-out class in each transfer split (0: none).
    #[arg(long, default_value_t = 40, value_name = "N")]
    transfer_per_class: usize,
    /// Aligned frontal faces (0: none).
    #[arg(long, default_value_t = 30, value_name = "N")]
    faces: usize,
    /// Clutter shapes behind each object (more is harder).
    #[arg(long, default_value_t = GeneratedConfig::default().clutter, value_name = "N")]
    clutter: usize,
}

/// Compute the per-pixel mean image (3x256x256) of a training set in one parallel pass and
/// write it as safetensors (tensor `mean`). Bad images are skipped and counted.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet data mean --data imagenet/train --out mean.safetensors\n  zfnet data mean --data generated --out mean.safetensors"
)]
struct MeanArgs {
    /// An image folder (one sub-folder per class), or `generated` for the generated training set.
    #[arg(long, value_name = "DIR")]
    data: String,
    /// Images of the generated set (with --data generated).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    len: usize,
    /// Seed of the generated set (with --data generated).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output safetensors file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args, _device: &Device) -> Result<()> {
    match args.command {
        Command::Generate(a) => generate(a),
        Command::Mean(a) => mean(a),
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    if a.per_class == 0 {
        bail!("--per-class must be at least 1")
    }
    let classes = zf_data::Class::ALL.len();
    let cfg = GeneratedConfig { seed: a.seed, clutter: a.clutter, ..Default::default() };
    let held_out = zf_data::Class::HELD_OUT.len();
    for (split, len) in [
        (zf_data::Split::Train, a.per_class * classes),
        (zf_data::Split::Val, a.val_per_class * classes),
        (zf_data::Split::TransferTrain, a.transfer_per_class * held_out),
        (zf_data::Split::TransferVal, a.transfer_per_class * held_out),
        (zf_data::Split::Faces, a.faces),
    ] {
        if len == 0 {
            continue;
        }
        let set = Generated::split(&cfg, split, len);
        let pb = bar(set.len() as u64, split.name());
        set.write_folder(&a.out.join(split.name()), &|| pb.inc(1))?;
        pb.finish_and_clear();
        tracing::info!("wrote {} {split} images to {}", set.len(), a.out.join(split.name()).display());
        if split == zf_data::Split::Train {
            write_classes(&a.out.join(CLASSES_FILE), set.classes())?;
        }
    }
    Ok(())
}

fn mean(a: MeanArgs) -> Result<()> {
    let set: Box<dyn Dataset> = if a.data == "generated" {
        let cfg = GeneratedConfig { seed: a.seed, ..Default::default() };
        Box::new(Generated::split(&cfg, zf_data::Split::Train, a.len))
    } else {
        Box::new(ImageFolder::open(std::path::Path::new(&a.data), Preprocess::paper())?)
    };
    let t0 = std::time::Instant::now();
    let m = MeanImage::compute(set.as_ref())?;
    m.save(&a.out)?;
    let per_channel: Vec<f32> =
        m.values.chunks(m.side * m.side).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect();
    tracing::info!(
        "mean of {} images in {:.1}s (per channel {:.1?}), written to {}",
        m.count,
        t0.elapsed().as_secs_f64(),
        per_channel,
        a.out.display()
    );
    Ok(())
}
