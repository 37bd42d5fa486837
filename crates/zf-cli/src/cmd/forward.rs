//! `zfnet forward`: one forward pass, every tap and switch written to a safetensors file.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use zf_model::{DType, Device};

use crate::args::ModelInput;

/// Run the network and write every tap (conv1, pool1, norm1, ..., fc8, prob; conv and fc after
/// the ReLU) and the switches of every pool (`pool1.switches`, ... as int64 flat indices into
/// each pooled H x W plane, as PyTorch's max_pool2d returns them) under the layer names.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet forward --weights model.safetensors --input x.safetensors --out taps.safetensors"
)]
pub struct Args {
    #[command(flatten)]
    src: ModelInput,
    /// Output safetensors file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args, device: &Device) -> Result<()> {
    let (net, x) = args.src.load(device)?;
    let trace = net.trace(&x)?;
    let mut named: Vec<_> = trace.to_named_tensors()?.into_iter().collect();
    named.push(("input".to_string(), x));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (zf_model::weights::CONFIG_KEY.to_string(), serde_json::to_string(net.config())?),
        ("weights".to_string(), args.src.weights.clone()),
    ]);
    zf_model::weights::save_tensors(&named, metadata, &args.out)?;
    println!("{:<16} {:>18} {:>12} {:>12}", "tap", "shape", "mean", "max");
    for (p, t) in &trace.activations {
        let t32 = t.to_dtype(DType::F32)?;
        let mean = t32.mean_all()?.to_scalar::<f32>()?;
        let max = t32.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        println!("{:<16} {:>18} {:>12.4} {:>12.4}", p.name(), format!("{:?}", t.dims()), mean, max);
    }
    let top: Vec<u32> = trace
        .get(zf_model::Point::Prob)
        .map(|p| p.argmax(1))
        .transpose()?
        .map(|t| t.to_vec1())
        .transpose()?
        .unwrap_or_default();
    println!("most probable class per image: {top:?}");
    println!("wrote {} ({} tensors)", args.out.display(), named.len());
    Ok(())
}
