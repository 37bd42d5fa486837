//! Training as a library: the paper's recipe on the generated data set, a tiny network, one
//! epoch, in a temporary run directory; then the weights load back as a network.
//!
//! ```sh
//! cargo run --release -p zf-train --example train_tiny
//! ```
#![allow(clippy::print_stdout)] // an example prints what it found

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use zf_data::{DataSpec, GeneratedConfig, Preprocess, Split};
use zf_train::{Data, Quiet, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recipe: the `tiny` preset (an eighth of ZFNet's widths), one epoch, at 64 pixels.
    let mut config = TrainConfig::tiny().with_epochs(1);
    config.model = config.model.with_input_size(64);

    // The data: the generated set, 200 training and 50 validation images.
    let spec = DataSpec::parse("generated", &GeneratedConfig::default());
    let pre = Preprocess::for_input(64);
    let data = Data {
        train: spec.open(Split::Train, Some(200), pre)?,
        val: spec.open(Split::Val, Some(50), pre)?,
        description: spec.describe(),
        spec: None,
    };

    // Train in a run directory (run.json, metrics.jsonl, checkpoint, model, snapshots).
    let run = tempfile::tempdir()?;
    let stop = Arc::new(AtomicBool::new(false)); // set it (e.g. from Ctrl-C) to stop with a checkpoint
    let summary = zf_train::train(&config, &data, run.path(), false, "example", &Device::Cpu, &stop, &mut Quiet)?;
    if let Some(epoch) = &summary.last {
        println!(
            "{} steps in {:.1}s: train loss {:.3}, val top-1 error {:.1}%",
            summary.steps,
            summary.seconds,
            epoch.train_loss,
            100.0 * epoch.val.top1_err
        );
    }

    // The weights are an ordinary zfnet file, with the network config in its metadata.
    let net = zf_model::ZfNet::load(&run.path().join("model.safetensors").to_string_lossy(), None, &Device::Cpu)?;
    println!("{:?} first layer, channels {:?}", net.config().first_layer, net.config().channels);
    Ok(())
}
