//! Weights files: round trips, and every way a file can be wrong giving an error that names the
//! file and the tensor with the expected and the found shape.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use zf_model::init::{init_net, init_tensors, Init};
use zf_model::weights::save_tensors;
use zf_model::{WeightsFile, ZfConfig, ZfNet};

fn cfg() -> ZfConfig {
    ZfConfig::tiny().with_input_size(96)
}

fn write(dir: &Path, name: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> String {
    let mut t = init_tensors(&cfg(), Init::Paper, 1, &Device::Cpu).unwrap();
    edit(&mut t);
    let path = dir.join(name);
    let v: Vec<(String, Tensor)> = t.into_iter().collect();
    save_tensors(&v, HashMap::new(), &path).unwrap();
    path.to_string_lossy().into_owned()
}

fn load_err(spec: &str) -> String {
    ZfNet::load(spec, Some(&cfg()), &Device::Cpu).unwrap_err().to_string()
}

#[test]
fn save_then_load_round_trips_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ZfConfig::alexnet().with_width(0.0625).with_classes(7).with_input_size(160).with_lrn(false);
    let net = init_net(&cfg, Init::He, 5, &Device::Cpu).unwrap();
    let path = dir.path().join("m.safetensors");
    net.save(&path).unwrap();
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let file = WeightsFile::read(&path).unwrap();
    assert_eq!(file.config().unwrap().as_ref(), Some(&cfg));
    let back = file.into_net(None, &Device::Cpu).unwrap();
    assert_eq!(back.config(), &cfg);
    for ((ka, a), (kb, b)) in net.named_tensors().iter().zip(back.named_tensors().iter()) {
        assert_eq!(ka, kb);
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{ka}");
    }
    let x = Tensor::randn(0f32, 50., (2, 3, 160, 160), &Device::Cpu).unwrap();
    let d = (net.forward(&x).unwrap() - back.forward(&x).unwrap()).unwrap().abs().unwrap().sum_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn missing_extra_misshaped_and_wrong_dtype_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "missing.safetensors", |t| {
        t.remove("conv3.weight");
    });
    let e = load_err(&p);
    assert!(
        e.contains("missing.safetensors")
            && e.contains("missing tensor `conv3.weight` (expected shape [48, 32, 3, 3])"),
        "{e}"
    );

    let p = write(dir.path(), "extra.safetensors", |t| {
        t.insert("conv6.weight".into(), Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap());
    });
    let e = load_err(&p);
    assert!(e.contains("unexpected tensor `conv6.weight` (F32 [2, 2])"), "{e}");

    let p = write(dir.path(), "shape.safetensors", |t| {
        t.insert("conv1.weight".into(), Tensor::zeros((12, 3, 11, 11), DType::F32, &Device::Cpu).unwrap());
    });
    let e = load_err(&p);
    assert!(e.contains("tensor `conv1.weight` has shape [12, 3, 11, 11], expected [12, 3, 7, 7]"), "{e}");

    let p = write(dir.path(), "dtype.safetensors", |t| {
        let b = t["fc8.bias"].to_dtype(DType::F16).unwrap();
        t.insert("fc8.bias".into(), b);
    });
    let e = load_err(&p);
    assert!(e.contains("tensor `fc8.bias` has dtype F16, expected F32"), "{e}");
}

#[test]
fn broken_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.safetensors", |_| {});
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(truncated.to_str().unwrap());
    assert!(e.contains("truncated.safetensors is not a valid safetensors file"), "{e}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let e = load_err(garbage.to_str().unwrap());
    assert!(e.contains("garbage.safetensors is not a valid safetensors file"), "{e}");

    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_err(empty.to_str().unwrap()).contains("is not a valid safetensors file"));

    let e = load_err(dir.path().join("nope.safetensors").to_str().unwrap());
    assert!(e.contains("nope.safetensors does not exist"), "{e}");

    // A recorded config that does not parse.
    let bad_meta = dir.path().join("meta.safetensors");
    let t = init_tensors(&cfg(), Init::Paper, 1, &Device::Cpu).unwrap().into_iter().collect::<Vec<_>>();
    save_tensors(
        &t,
        HashMap::from([(zf_model::weights::CONFIG_KEY.to_string(), "{\"nope\":1}".to_string())]),
        &bad_meta,
    )
    .unwrap();
    let e = WeightsFile::read(&bad_meta).unwrap().into_net(None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("metadata `zfnet.config` is not a network config"), "{e}");
}

#[test]
fn inputs_of_the_wrong_size_are_errors() {
    let net = init_net(&cfg(), Init::Paper, 0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 100, 100), DType::F32, &Device::Cpu).unwrap();
    let e = net.forward(&x).unwrap_err().to_string();
    assert!(e.contains("input has shape [1, 3, 100, 100], expected [N, 3, 96, 96]"), "{e}");
}

/// Writes `config`'s tensors without any metadata, as a PyTorch script with our keys would.
fn write_bare(dir: &Path, name: &str, config: &ZfConfig, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> String {
    let mut t = init_tensors(config, Init::Paper, 2, &Device::Cpu).unwrap();
    edit(&mut t);
    let path = dir.join(name);
    save_tensors(&t.into_iter().collect::<Vec<_>>(), HashMap::new(), &path).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn weights_without_a_recorded_config_load_with_the_config_their_shapes_imply() {
    let dir = tempfile::tempdir().unwrap();
    // At 224 pixels: widths, classes and the first layer come from the shapes.
    for config in
        [ZfConfig::paper().with_width(0.0625).with_classes(7), ZfConfig::alexnet().with_width(0.125).with_classes(3)]
    {
        let p = write_bare(dir.path(), "bare.safetensors", &config, |_| {});
        let net = ZfNet::load(&p, None, &Device::Cpu).unwrap();
        assert_eq!(net.config(), &config);
    }
    // At another size, the size must be given when several fit, and is then checked.
    let at96 = cfg();
    let p = write_bare(dir.path(), "at96.safetensors", &at96, |_| {});
    let e = ZfNet::load(&p, None, &Device::Cpu).unwrap_err().to_string();
    assert!(
        e.contains(
            "at96.safetensors records no `zfnet.config` metadata and the input size is ambiguous: every size from"
        ) && e.contains("give the size (--input-size)"),
        "{e}"
    );
    let file = WeightsFile::read(Path::new(&p)).unwrap();
    assert_eq!(file.config_or_inferred(Some(96)).unwrap(), at96);
    let e = file.config_or_inferred(Some(224)).unwrap_err().to_string();
    assert!(e.contains("a 224-pixel input does not give the 2x2 pool5 that fc6's 128 inputs imply"), "{e}");
}

#[test]
fn shapes_that_fit_no_zfnet_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = ZfConfig::paper().with_width(0.0625).with_classes(7);
    let p = write_bare(dir.path(), "k5.safetensors", &config, |t| {
        t.insert("conv1.weight".into(), Tensor::zeros((6, 3, 5, 5), DType::F32, &Device::Cpu).unwrap());
    });
    let e = ZfNet::load(&p, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("conv1 has 5x5 filters: neither ZFNet's 7x7 nor the AlexNet-style 11x11"), "{e}");
    // conv3 disagrees with conv2's width: inconsistent.
    let p = write_bare(dir.path(), "c3.safetensors", &config, |t| {
        t.insert("conv3.weight".into(), Tensor::zeros((24, 99, 3, 3), DType::F32, &Device::Cpu).unwrap());
    });
    let e = ZfNet::load(&p, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("its shapes do not fit one ZFNet: `conv3.weight` is [24, 99, 3, 3] where the other shapes imply [24, 16, 3, 3]"), "{e}");
    let p = write_bare(dir.path(), "nofc6.safetensors", &config, |t| {
        t.remove("fc6.weight");
    });
    let e = ZfNet::load(&p, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("has no tensor `fc6.weight`, so it is not a ZFNet weights file"), "{e}");
    let p = write_bare(dir.path(), "fc6.safetensors", &config, |t| {
        t.insert("fc6.weight".into(), Tensor::zeros((256, 17), DType::F32, &Device::Cpu).unwrap());
    });
    let e = ZfNet::load(&p, None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("fc6 takes 17 inputs, which is not conv5's 16 maps times a square pool5"), "{e}");
}
