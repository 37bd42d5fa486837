//! `zfnet info`: the layer table of a network, and a check of a weights file against it.

use anyhow::Result;
use zf_model::Device;
use zf_model::WeightsFile;

use crate::args::NetArgs;

/// Print the layer table: output shape, parameters and multiply-adds per layer and in total.
///
/// With --weights, the file is read and checked tensor by tensor against the network (the
/// network config recorded in the file is used unless config flags are given).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet info\n  zfnet info --config alexnet\n  zfnet info --width 0.25 --classes 10 --json\n  zfnet info --weights hf://owner/zfnet/model.safetensors"
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
pub fn run(args: Args, _device: &Device) -> Result<()> {
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
