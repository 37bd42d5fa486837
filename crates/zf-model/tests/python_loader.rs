//! The fixture of `python/test_zfnet_torch.py`: a network saved by zfnet (its config in the
//! metadata: imgclsmob's layer order, an input scale and per-channel scales, a 96-pixel input)
//! and our logits and conv5 activations on a fixed input. The Python test builds the network in
//! PyTorch from that file alone (`zfnet_torch.load`) and must reproduce our numbers; this test
//! keeps the committed numbers equal to our forward pass (to float rounding), so the two sides stay tied.
//!
//! `ZF_WRITE_FIXTURE=1 cargo test -p zf-model --test python_loader` rewrites the fixture.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use zf_model::init::{init_net, Init};
use zf_model::{Order, Point, ZfConfig, ZfNet};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python/tests")
}

fn config() -> ZfConfig {
    let mut c = ZfConfig::paper().with_width(0.0625).with_classes(5).with_input_size(96);
    c.order = Order::Imgclsmob;
    c.input_scale = 0.5;
    c.input_channel_scale = Some([0.9, 1.1, 1.3]);
    c
}

fn outputs(net: &ZfNet, x: &Tensor) -> (Tensor, Tensor) {
    let trace = net.trace(x).unwrap();
    (trace.get(Point::Fc8).unwrap().clone(), trace.get(Point::Conv5).unwrap().clone())
}

#[test]
fn the_python_fixture_holds_our_forward_pass() {
    let (weights, golden) = (dir().join("zfnet_tiny.safetensors"), dir().join("zfnet_tiny.golden.safetensors"));
    if std::env::var_os("ZF_WRITE_FIXTURE").is_some() {
        let net = init_net(&config(), Init::He, 3, &Device::Cpu).unwrap();
        net.save(&weights).unwrap();
        let x = Tensor::randn(0f32, 60., (2, 3, 96, 96), &Device::Cpu).unwrap();
        let (fc8, conv5) = outputs(&net, &x);
        let t = vec![("input".to_string(), x), ("fc8".to_string(), fc8), ("conv5".to_string(), conv5)];
        zf_model::weights::save_tensors(&t, HashMap::new(), &golden).unwrap();
    }
    let net = ZfNet::load(weights.to_str().unwrap(), None, &Device::Cpu).unwrap();
    assert_eq!(net.config(), &config());
    let g = candle_core::safetensors::load(&golden, &Device::Cpu).unwrap();
    let (fc8, conv5) = outputs(&net, &g["input"]);
    // To float rounding: gemm's kernels differ between CPUs (AVX2, AVX-512), and so do the
    // last bits of a sum.
    for (name, ours) in [("fc8", fc8), ("conv5", conv5)] {
        let max = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let (d, scale) = (max(&(ours - &g[name]).unwrap()), max(&g[name]));
        assert!(d <= 1e-5 * scale, "{name}: the committed fixture is not our forward pass ({d} of {scale})");
    }
}
