//! `zfnet convert`: imports another project's ZFNet weights into zfnet's safetensors format.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_data::folder::IMAGENET_CLASSES;
use zf_data::MeanImage;
use zf_model::Device;
use zf_model::{ZfConfig, ZfNet};

/// Convert osmr/imgclsmob's ImageNet-trained ZFNet (pytorchcv's `zfnet`,
/// `zfnet-1727-d010ddca.pth`: 39.79% top-1 / 17.27% top-5 error) to zfnet's format: maps the key
/// names, checks every shape, and writes OUT with the network config in the metadata (the
/// `imgclsmob` preset: conv → ReLU → LRN → pool, ImageNet normalization) and, beside it,
/// mean.safetensors (ImageNet's channel means as a 256x256 mean image) and, for 1000 classes,
/// classes.txt (ImageNet's class names), so that `--weights OUT` works with every command
/// without `--mean` and `zfnet predict` prints names.
///
/// IN is the PyTorch checkpoint (a pickled state dict) or a safetensors file with pytorchcv's
/// key names. A file that is not that network is an error listing what did not match.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet convert --from imgclsmob zfnet-1727-d010ddca.pth --out zfnet-imagenet/model.safetensors\n  zfnet predict --weights zfnet-imagenet/model.safetensors photo.jpg"
)]
pub struct Args {
    /// Where the weights come from (only imgclsmob today).
    #[arg(long, value_name = "SOURCE", value_parser = ["imgclsmob"])]
    from: String,
    /// The checkpoint: .pth / .pt (PyTorch) or .safetensors.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Output safetensors file (mean.safetensors is written beside it).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    if args.from != "imgclsmob" {
        bail!("unknown source `{}`: expected imgclsmob", args.from)
    }
    let tensors = zf_model::convert::read_checkpoint(&args.input)?;
    let (config, tensors) = zf_model::convert::from_imgclsmob(tensors)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    let net = ZfNet::from_tensors(&config, tensors.into_iter().collect(), device)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    net.save(&args.out)?;
    let side = zf_data::Preprocess::for_input(config.input_size).resize;
    let values: Vec<f32> =
        ZfConfig::imgclsmob_mean().iter().flat_map(|&m| std::iter::repeat_n(m as f32, side * side)).collect();
    let mean_path = args.out.with_file_name("mean.safetensors");
    MeanImage { side, values, count: 0 }.save(&mean_path)?;
    if config.classes == IMAGENET_CLASSES.lines().count() {
        let names: Vec<String> = IMAGENET_CLASSES.lines().map(String::from).collect();
        zf_data::folder::write_classes(&args.out.with_file_name(zf_data::folder::CLASSES_FILE), &names)?;
    }
    tracing::info!(
        "wrote {} ({} parameters, imgclsmob order: conv, ReLU, LRN, pool) and {}",
        args.out.display(),
        config.table()?.total_params(),
        mean_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_names_are_in_class_index_order() {
        let names: Vec<&str> = IMAGENET_CLASSES.lines().collect();
        assert_eq!(names.len(), 1000);
        // Landmarks of the ILSVRC-2012 index order (Keras' imagenet_class_index.json).
        assert_eq!((names[0], names[281], names[999]), ("tench", "tabby", "toilet_tissue"));
        assert!(names.iter().all(|n| !n.trim().is_empty() && !n.contains(',')));
    }
}
