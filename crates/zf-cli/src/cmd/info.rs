//! `zfnet info`: the layer table of a network, and a check of a weights file against it.

use anyhow::Result;
use zf_model::config::group;
use zf_model::Device;
use zf_model::{LayerKind, WeightsFile};

use crate::args::NetArgs;

/// Print the layer table: output shape, parameters and multiply-adds per layer and in total.
///
/// With --weights, the file is read and checked tensor by tensor against the network (the
/// network config recorded in the file is used unless config flags are given). A file of
/// another network — torchvision's AlexNet or VGG, as PyTorch wrote it or converted — prints
/// that network's table, with each layer's key and alias (the names --layer takes).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet info\n  zfnet info --config alexnet\n  zfnet info --width 0.25 --classes 10 --json\n  zfnet info --weights hf://owner/zfnet/model.safetensors\n  zfnet info --weights vgg16-397923af.pth"
)]
pub struct Args {
    #[command(flatten)]
    net: NetArgs,
    /// Weights file (path or hf://owner/repo[@revision]/file) to check against the network.
    #[arg(long, value_name = "W")]
    weights: Option<String>,
    /// Print the table as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args, device: &Device) -> Result<()> {
    if let Some(w) = &args.weights {
        let zfnet = (w.starts_with("hf://") || w.ends_with(".safetensors"))
            && matches!(WeightsFile::open(w)?.source()?, zf_model::weights::Source::ZfNet(_));
        if !zfnet {
            return other_network(&args, w, device);
        }
    }
    let (config, source) = match &args.weights {
        Some(w) => {
            let file = WeightsFile::open(w)?;
            let source = if file.config()?.is_some() {
                "recorded in the weights file"
            } else {
                "inferred from the tensor shapes"
            };
            let base = match &args.net.config {
                Some(_) => None,
                None => Some(file.config_or_inferred(args.net.input_size)?),
            };
            let config = args.net.resolve(base)?;
            file.check(&config)?;
            (config, Some(format!("{w}: all {} tensors match ({source} config)", file.listing().len())))
        }
        None => (args.net.resolve(None)?, None),
    };
    let table = config.table()?;
    if args.json {
        let v = serde_json::json!({
            "config": config,
            "layers": table.rows,
            "total_params": table.total_params(),
            "total_macs": table.total_macs(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "ZFNet: {:?} first layer, channels {:?}, fc {}, {} classes, {}x{} input, LRN {}",
        config.first_layer,
        config.channels,
        config.fc_units,
        config.classes,
        config.input_size,
        config.input_size,
        if config.lrn.is_some() { "on" } else { "off" }
    );
    println!("{table}");
    println!("({:.2} G multiply-adds per image)", table.total_macs() as f64 / 1e9);
    if let Some(s) = source {
        println!("{s}");
    }
    Ok(())
}
/// `info` for a network other than ZFNet: its spec's table, keys beside aliases.
#[allow(clippy::print_stdout)]
fn other_network(args: &Args, weights: &str, device: &Device) -> Result<()> {
    let net = args.net.load_any(weights, device)?;
    let spec = net.spec();
    let table = spec.table()?;
    if args.json {
        let v = serde_json::json!({
            "spec": spec,
            "layers": table.rows,
            "total_params": table.total_params(),
            "total_macs": table.total_macs(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}: {}x{} input, {} classes", spec.arch, spec.input_size, spec.input_size, spec.classes());
    println!("{:<14} {:<8} {:>14} {:>13} {:>15}", "key", "alias", "output", "params", "mult-adds");
    let mut rows = table.rows.iter();
    for l in spec.layers.iter().filter(|l| !matches!(l.kind, LayerKind::Flatten | LayerKind::Dropout { .. })) {
        let Some(r) = rows.next() else { break };
        let shape = r.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let alias = if l.label() == l.name { "" } else { l.label() };
        println!("{:<14} {:<8} {:>14} {:>13} {:>15}", l.name, alias, shape, group(r.params as u64), group(r.macs));
    }
    println!(
        "{:<14} {:<8} {:>14} {:>13} {:>15}",
        "total",
        "",
        "",
        group(table.total_params() as u64),
        group(table.total_macs())
    );
    println!(
        "({:.2} G multiply-adds per image; batch norms, if any, folded into their convs)",
        table.total_macs() as f64 / 1e9
    );
    println!("{weights}: all tensors match {}", spec.arch);
    Ok(())
}
