//! The generated data set is learned: the tiny network, trained briefly from scratch on a CPU,
//! classifies the validation images far above chance.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use zf_data::{Generated, GeneratedConfig, Preprocess};
use zf_train::{Data, Quiet, TrainConfig};

/// The threshold: top-1 accuracy of at least 25% on 300 validation images of 10 classes.
/// Chance is 10%; a classifier at chance reaches 25% on 300 images with probability below
/// 1e-10 (binomial, n = 300, p = 0.1: the mean is 30 hits, the standard deviation 5.2, and 75
/// hits are 8.7 standard deviations above), so passing means the network has learned shapes.
/// The same recipe in PyTorch (64-pixel inputs, no clutter, He init, SGD 1e-2 momentum 0.9,
/// batch 32, no dropout) measured 41% after 12,000 images; the margin covers seed-to-seed
/// spread.
const MIN_ACCURACY: f64 = 0.25;

#[test]
fn tiny_network_learns_the_generated_shapes_far_above_chance() {
    let pre = Preprocess::for_input(64);
    let gen = GeneratedConfig { seed: 11, clutter: 0, ..Default::default() };
    let data = Data {
        train: Arc::new(Generated::split(&gen, "train", 3000).with_preprocess(pre)),
        val: Arc::new(Generated::split(&gen, "val", 300).with_preprocess(pre)),
        description: "generated, no clutter, 64 px".into(),
    };
    let mut cfg = TrainConfig::tiny().with_epochs(4);
    cfg.model = cfg.model.with_input_size(64);
    cfg.model.dropout = 0.0;
    cfg.patience = 10;
    cfg.checkpoint_every = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let summary = zf_train::train(&cfg, &data, dir.path(), false, "test", &Device::Cpu, &never, &mut Quiet).unwrap();
    let last = summary.last.unwrap();
    let accuracy = 1.0 - last.val.top1_err;
    assert!(
        accuracy >= MIN_ACCURACY,
        "validation accuracy {:.1}% after {} images is not far above chance (10%)",
        100.0 * accuracy,
        4 * 3000
    );
}
