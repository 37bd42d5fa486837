//! `zfnet init`: fresh weights with the paper's (or He's) initialization.

use std::path::PathBuf;

use anyhow::Result;
use zf_model::init::{init_net, Init};
use zf_model::Device;

use crate::args::NetArgs;

/// Write fresh weights: Gaussian with standard deviation 0.01 and zero biases (the paper's
/// Sec. 3), or He's initialization; the same seed gives the same file.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  zfnet init --out model.safetensors\n  zfnet init --config tiny --init he --seed 7 --out tiny.safetensors"
)]
pub struct Args {
    #[command(flatten)]
    net: NetArgs,
    /// paper (std 0.01), he (std sqrt(2 / fan-in)) or a standard deviation such as 0.02.
    #[arg(long, default_value = "paper", value_name = "INIT")]
    init: String,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output safetensors file (the network config is recorded in its metadata).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let config = args.net.resolve(None)?;
    let init = Init::parse(&args.init)?;
    let net = init_net(&config, init, args.seed, device)?;
    net.save(&args.out)?;
    tracing::info!(
        "wrote {} ({} parameters, {:?} init, seed {})",
        args.out.display(),
        config.table()?.total_params(),
        init,
        args.seed
    );
    Ok(())
}
