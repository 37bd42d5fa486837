//! `zfnet convert`: imports another project's weights (imgclsmob's ZFNet, torchvision's AlexNet
//! and VGG) into zfnet's safetensors format.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zf_data::folder::IMAGENET_CLASSES;
use zf_model::Device;
use zf_model::{Net, ZfNet};

/// Convert pretrained weights to zfnet's format.
///
/// --from torchvision: torchvision's `alexnet`, `vgg11`, `vgg13`, `vgg16`, `vgg19` or their
/// `_bn` variants (a state dict saved by torch.save, either format, possibly wrapped in a
/// checkpoint dict or DataParallel's `module.` prefix; or a safetensors file): the
/// architecture is inferred from the keys and shapes, batch norms are folded into their convs
/// (w γ/√(σ²+ε), (b−μ) γ/√(σ²+ε) + β, ε = 1e-5), and OUT records the network spec. A residual
/// net, grouped convs or another layout is an error naming the key. (Such files also load
/// directly with --weights; converting folds the batch norms once and writes the files below.)
///
/// --from imgclsmob: osmr/imgclsmob's ImageNet-trained ZFNet (pytorchcv's `zfnet`,
/// `zfnet-1727-d010ddca.pth`: 39.79% top-1 / 17.27% top-5 error) to zfnet's format: maps the key
/// names, checks every shape, and writes OUT with the network config in the metadata (the
/// `imgclsmob` preset: conv → ReLU → LRN → pool, ImageNet normalization) and, beside it,
/// mean.safetensors (ImageNet's channel means as a 256x256 mean image) and, for 1000 classes,
/// classes.txt (ImageNet's class names), so that `--weights OUT` works with every command
/// without `--mean` and `zfnet predict` prints names.
///
/// IN is the PyTorch checkpoint (a pickled state dict) or a safetensors file with pytorchcv's
/// key names. A file that is not that network is an error listing what did not match.
///
/// Both write, beside OUT, mean.safetensors (ImageNet's channel means, which these networks
/// subtract; they divide by 255 x ImageNet's std themselves) and, for 1000 classes,
/// classes.txt (ImageNet's class names).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet convert --from torchvision vgg16-397923af.pth --out vgg16/model.safetensors\n  zfnet project --weights vgg16/model.safetensors --input photo.jpg --layer conv5_3 --channel 7 --out proj\n  zfnet convert --from imgclsmob zfnet-1727-d010ddca.pth --out zfnet-imagenet/model.safetensors\n  zfnet predict --weights zfnet-imagenet/model.safetensors photo.jpg"
)]
pub struct Args {
    /// Where the weights come from: torchvision (alexnet, vgg*, vgg*_bn) or imgclsmob (ZFNet).
    #[arg(long, value_name = "SOURCE", value_parser = ["torchvision", "imgclsmob"])]
    from: String,
    /// The checkpoint: .pth / .pt (PyTorch) or .safetensors.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Output safetensors file (mean.safetensors is written beside it).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    match args.from.as_str() {
        "imgclsmob" => imgclsmob(args, device),
        "torchvision" => torchvision(args, device),
        other => bail!("unknown source `{other}`: expected torchvision or imgclsmob"),
    }
}

fn torchvision(args: Args, device: &Device) -> Result<()> {
    let tensors = zf_model::convert::read_checkpoint(&args.input)?;
    let (spec, tensors) = zf_model::convert::from_torchvision(tensors)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    let net = Net::from_tensors(&spec, tensors, device)?;
    create_parent(&args.out)?;
    net.save(&args.out)?;
    let mean_path = write_beside(&args.out, spec.input_size, spec.classes())?;
    tracing::info!(
        "wrote {} (torchvision {}, {} parameters{}) and {}",
        args.out.display(),
        spec.arch,
        spec.table()?.total_params(),
        if spec.arch.ends_with("_bn") { ", batch norms folded" } else { "" },
        mean_path.display()
    );
    Ok(())
}

fn create_parent(out: &std::path::Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// mean.safetensors (ImageNet's channel means) and, for 1000 classes, classes.txt beside `out`.
fn write_beside(out: &std::path::Path, input_size: usize, classes: usize) -> Result<PathBuf> {
    let mean_path = out.with_file_name("mean.safetensors");
    crate::args::imagenet_mean(input_size).save(&mean_path)?;
    if classes == IMAGENET_CLASSES.lines().count() {
        let names: Vec<String> = IMAGENET_CLASSES.lines().map(String::from).collect();
        zf_data::folder::write_classes(&out.with_file_name(zf_data::folder::CLASSES_FILE), &names)?;
    }
    Ok(mean_path)
}

fn imgclsmob(args: Args, device: &Device) -> Result<()> {
    let tensors = zf_model::convert::read_checkpoint(&args.input)?;
    let (config, tensors) = zf_model::convert::from_imgclsmob(tensors)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    let net = ZfNet::from_tensors(&config, tensors.into_iter().collect(), device)?;
    create_parent(&args.out)?;
    net.save(&args.out)?;
    let mean_path = write_beside(&args.out, config.input_size, config.classes)?;
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
