//! `zfnet forward`: one forward pass, every tap and switch written to a safetensors file.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use zf_model::{DType, Device, LayerKind};

use crate::args::ModelInput;

/// Run the network and write every layer's output under its name (ZFNet: conv1, pool1, norm1,
/// ..., fc8; torchvision's: features.0, ..., classifier.6; conv and linear layers after their
/// ReLU and folded batch norm), `prob` (the softmax), and the switches of every max pool
/// (`pool1.switches`, `features.4.switches`, ... as int64 flat indices into each pooled H x W
/// plane, as PyTorch's max_pool2d returns them). Works on any network zfnet loads: ZFNet, or
/// torchvision's AlexNet and VGG (.pth or safetensors as PyTorch wrote them).
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
    let (net, x) = args.src.load_any(device)?;
    let trace = net.trace(&x)?;
    // Every layer but flatten and the dropouts (copies of the layer before in evaluation).
    let mut taps = Vec::new();
    for (i, l) in net.spec().layers.iter().enumerate() {
        if matches!(l.kind, LayerKind::Flatten | LayerKind::Dropout { .. }) {
            continue;
        }
        if let Some(t) = trace.activation(i) {
            taps.push((l.name.clone(), l.label().to_string(), t.clone()));
        }
    }
    let logits = taps.last().map(|(_, _, t)| t.clone()).ok_or_else(|| anyhow::anyhow!("the network has no layers"))?;
    let prob = zf_model::network::softmax(&logits)?;
    taps.push(("prob".to_string(), "prob".to_string(), prob.clone()));
    let mut named: Vec<_> = taps.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();
    for (i, l) in net.spec().layers.iter().enumerate() {
        if let Some(sw) = trace.switches_of(i) {
            named.push((format!("{}.switches", l.name), sw.indices.to_dtype(DType::I64)?));
        }
    }
    named.push(("input".to_string(), x));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (zf_model::weights::SPEC_KEY.to_string(), serde_json::to_string(net.spec())?),
        ("weights".to_string(), args.src.weights.clone()),
    ]);
    zf_model::weights::save_tensors(&named, metadata, &args.out)?;
    println!("{:<16} {:<9} {:>18} {:>12} {:>12}", "tap", "alias", "shape", "mean", "max");
    for (name, label, t) in &taps {
        let t32 = t.to_dtype(DType::F32)?;
        let mean = t32.mean_all()?.to_scalar::<f32>()?;
        let max = t32.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let alias = if label == name { "" } else { label.as_str() };
        println!("{:<16} {:<9} {:>18} {:>12.4} {:>12.4}", name, alias, format!("{:?}", t.dims()), mean, max);
    }
    let top: Vec<u32> = prob.argmax(1)?.to_vec1()?;
    println!("most probable class per image: {top:?}");
    println!("wrote {} ({} tensors)", args.out.display(), named.len());
    Ok(())
}
