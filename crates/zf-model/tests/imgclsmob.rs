//! Importing imgclsmob's (pytorchcv) ZFNet: the fixture from `imgclsmob/make_fixture.py`
//! (pytorchcv's own model definition, reduced widths, random weights) converts from every form
//! such weights come in — `torch.save`'s zip format, its legacy (pre-1.6) format, a training
//! script's wrapped checkpoint with DataParallel's `module.` prefix, safetensors with the
//! original names — and our forward pass on the converted weights agrees with pytorchcv's to
//! 1e-4 relative.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use zf_model::convert::{from_imgclsmob, read_checkpoint};
use zf_model::{Order, ZfConfig, ZfNet};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/imgclsmob")
}

fn net_from(file: &str) -> ZfNet {
    let (config, tensors) = from_imgclsmob(read_checkpoint(&dir().join(file)).unwrap()).unwrap();
    assert_eq!(config.order, Order::Imgclsmob);
    assert_eq!((config.channels, config.fc_units, config.classes), ([6, 16, 24, 24, 16], 64, 10));
    ZfNet::new(&config, VarBuilder::from_tensors(tensors.into_iter().collect(), DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn converted_weights_reproduce_pytorchcv_logits() {
    let golden = candle_core::safetensors::load(dir().join("zfnet_small.golden.safetensors"), &Device::Cpu).unwrap();
    // Our preprocessing for this network: subtract 255 x ImageNet's mean per channel; the
    // network divides by 255 x std itself.
    let mean = ZfConfig::imgclsmob_mean().map(|m| m as f32);
    let mean = Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &Device::Cpu).unwrap();
    let x = golden["input"].broadcast_sub(&mean).unwrap();
    let want = golden["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for file in ["zfnet_small.pth", "zfnet_small.legacy.pth", "zfnet_small.wrapped.pth", "zfnet_small.orig.safetensors"]
    {
        let got = net_from(file).forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * scale, "{file}: ours {a}, pytorchcv {b}");
        }
    }
}

#[test]
fn a_file_that_is_not_that_network_says_what_did_not_match() {
    let mut t = read_checkpoint(&dir().join("zfnet_small.pth")).unwrap();
    t.remove("output.fc3.bias");
    t.insert("features.stage4.unit1.conv.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    let e = from_imgclsmob(t).unwrap_err().to_string();
    assert!(e.contains("missing `output.fc3.bias` (our fc8.bias)"), "{e}");
    assert!(e.contains("unexpected `features.stage4.unit1.conv.weight`"), "{e}");
    let mut t = read_checkpoint(&dir().join("zfnet_small.pth")).unwrap();
    t.insert("output.fc1.fc.weight".into(), Tensor::zeros((64, 99), DType::F32, &Device::Cpu).unwrap());
    let e = from_imgclsmob(t).unwrap_err().to_string();
    assert!(e.contains("`fc6.weight` is [64, 99], expected [64, 576]"), "{e}");
    let e = read_checkpoint(&dir().join("make_fixture.py")).unwrap_err().to_string();
    assert!(e.contains("not a readable PyTorch checkpoint"), "{e}");
}

#[test]
fn imgclsmob_order_records_norm_before_pool() {
    // conv1 -> norm1 -> pool1: norm1 keeps conv1's size, pool1 shrinks it.
    let net = net_from("zfnet_small.pth");
    let x = Tensor::rand(-100f32, 100.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    let trace = net.trace(&x).unwrap();
    let dims = |p: zf_model::Point| trace.get(p).unwrap().dims().to_vec();
    assert_eq!(dims(zf_model::Point::Norm1), dims(zf_model::Point::Conv1));
    assert_eq!(dims(zf_model::Point::Pool1), vec![1, 6, 55, 55]);
    assert_eq!(dims(zf_model::Point::Norm2), dims(zf_model::Point::Conv2));
}

#[test]
fn the_full_preset_has_the_papers_parameter_count() {
    // imgclsmob's zfnet: 62,357,608 parameters, the same as the paper's network.
    assert_eq!(ZfConfig::imgclsmob().table().unwrap().total_params(), 62_357_608);
    assert_eq!(ZfConfig::imgclsmob().table().unwrap().row("pool5").unwrap().shape, vec![256, 6, 6]);
}

#[test]
fn every_checkpoint_form_holds_the_same_tensors() {
    let want = read_checkpoint(&dir().join("zfnet_small.orig.safetensors")).unwrap();
    for file in ["zfnet_small.pth", "zfnet_small.legacy.pth", "zfnet_small.wrapped.pth"] {
        let got = read_checkpoint(&dir().join(file)).unwrap();
        let mut keys: Vec<_> = got.keys().collect();
        keys.sort();
        let mut want_keys: Vec<_> = want.keys().collect();
        want_keys.sort();
        assert_eq!(keys, want_keys, "{file}");
        for (k, t) in &want {
            let d = (t - &got[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{file}: {k}");
        }
    }
}

#[test]
fn a_truncated_legacy_checkpoint_is_a_clear_error() {
    let bytes = std::fs::read(dir().join("zfnet_small.legacy.pth")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cut.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_checkpoint(&path).unwrap_err().to_string();
    assert!(e.contains("cut.pth: not a readable PyTorch checkpoint") && e.contains("truncated"), "{e}");
}
