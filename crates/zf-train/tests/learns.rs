//! The generated data set is learned: the tiny network, trained briefly from scratch on a CPU,
//! classifies the validation images far above chance.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use zf_data::{Generated, GeneratedConfig, Preprocess};
/// As in the `zfnet` binary: candle's per-op buffers are reused instead of faulted in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use zf_train::{Data, EpochReport, Observer, StepReport, TrainConfig};

/// Keeps the epoch lines (printed with `--nocapture`).
struct Epochs(Vec<String>);

impl Observer for Epochs {
    fn on_step(&mut self, _: &StepReport) {}
    fn on_epoch(&mut self, e: &EpochReport) {
        let line = format!(
            "epoch {}: loss {:.3}, val top-1 error {:.1}%, {:.0} images/s",
            e.epoch,
            e.train_loss,
            100.0 * e.val.top1_err,
            e.images_per_s
        );
        #[allow(clippy::print_stdout)]
        {
            println!("{line}");
        }
        self.0.push(line);
    }
}

/// The threshold: top-1 accuracy of at least 20% on 300 validation images of 10 classes, after
/// 20,000 training images (2,000 images, 10 epochs; about 70 s here). Chance is 10%: a
/// classifier at chance scores 30 hits on average with a standard deviation of 5.2 (binomial,
/// n = 300, p = 0.1), so 60 hits are 5.8 standard deviations above it (probability below
/// 1e-8) — passing means the network has learned the shapes. Measured: 32.3% (this seed; 19%
/// after 12,000 images, where the test stopped before the first layer started at a tenth of
/// He's std and the backgrounds gained 1/f texture and lighting). Why so few images still
/// learn: 64-pixel inputs, no clutter, He's init with unit-variance inputs and no dropout (see
/// `TrainConfig::tiny`).
const MIN_ACCURACY: f64 = 0.20;
/// Epochs of 2,000 images.
const EPOCHS: usize = 10;

#[test]
fn tiny_network_learns_the_generated_shapes_far_above_chance() {
    let pre = Preprocess::for_input(64);
    let gen = GeneratedConfig { seed: 11, clutter: 0, ..Default::default() };
    let data = Data {
        train: Arc::new(Generated::split(&gen, zf_data::Split::Train, 2000).with_preprocess(pre)),
        val: Arc::new(Generated::split(&gen, zf_data::Split::Val, 300).with_preprocess(pre)),
        description: "generated, no clutter, 64 px".into(),
        spec: None,
    };
    let mut cfg = TrainConfig::tiny().with_epochs(EPOCHS);
    cfg.model = cfg.model.with_input_size(64);
    cfg.model.dropout = 0.0;
    cfg.patience = 10;
    cfg.checkpoint_every = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let mut epochs = Epochs(Vec::new());
    let summary = zf_train::train(&cfg, &data, dir.path(), false, "test", &Device::Cpu, &never, &mut epochs).unwrap();
    let last = summary.last.unwrap();
    let accuracy = 1.0 - last.val.top1_err;
    assert!(
        accuracy >= MIN_ACCURACY,
        "validation accuracy {:.1}% after {} images is not far above chance (10%):\n{}",
        100.0 * accuracy,
        EPOCHS * 2000,
        epochs.0.join("\n")
    );
}
