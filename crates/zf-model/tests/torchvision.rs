//! torchvision's AlexNet and VGG-11 with batch norm, from `torchvision/make_fixture.py`
//! (torchvision's own model definitions, reduced widths, seeded random weights): the
//! architecture is inferred from every form PyTorch writes (zip and legacy `torch.save`, a
//! safetensors state dict with unfolded batch norms), and our forward pass equals PyTorch's —
//! every layer's output to 1e-5 of its scale, every pool's switches exactly, the logits to 1e-4.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use zf_model::convert::{from_torchvision, read_checkpoint};
use zf_model::{Net, NetTrace};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/torchvision")
}

fn golden(arch: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join(format!("{arch}.golden.safetensors")), &zf_model::test_device().unwrap())
        .unwrap()
}

/// Our input: pixels minus 255 x ImageNet's mean (the network divides by 255 x std itself).
fn input(g: &HashMap<String, Tensor>) -> Tensor {
    let mean = zf_model::config::IMAGENET_MEAN.map(|m| (255.0 * m) as f32);
    g["input"]
        .broadcast_sub(&Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &zf_model::test_device().unwrap()).unwrap())
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

/// `|a - b| <= tol * max|b|` everywhere.
fn close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let (a, b) = (values(got), values(want));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= tol * scale, "{what}: max difference {worst} over scale {scale}");
}

fn load(arch: &str, file: &str) -> Net {
    let size = golden(arch)["input"].dim(3).unwrap();
    Net::load(dir().join(file).to_str().unwrap(), Some(size), &zf_model::test_device().unwrap()).unwrap()
}

fn check_forward(arch: &str, net: &Net) {
    let g = golden(arch);
    let trace: NetTrace = net.trace(&input(&g)).unwrap();
    let mut checked = 0;
    for (i, l) in net.spec().layers.iter().enumerate() {
        if let Some(want) = g.get(&format!("act.{}", l.name)) {
            close(&format!("{arch} {}", l.name), trace.activation(i).unwrap(), want, 1e-5);
            checked += 1;
        }
        if let Some(want) = g.get(&format!("switch.{}", l.name)) {
            let got = trace.switches_of(i).unwrap().indices.to_dtype(DType::I64).unwrap();
            let (a, b) = (
                got.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
            );
            assert_eq!(a, b, "{arch} switches of {}", l.name);
            checked += 1;
        }
    }
    // Every output the fixture recorded was compared (conv, pool, avgpool, linear; switches).
    let recorded = g.keys().filter(|k| k.starts_with("act.") || k.starts_with("switch.")).count();
    assert_eq!(checked, recorded, "{arch}");
    close(&format!("{arch} logits"), &net.forward(&input(&g)).unwrap(), &g["logits"], 1e-4);
}

#[test]
fn alexnet_from_every_form_equals_pytorch() {
    for file in ["alexnet.pth", "alexnet.legacy.pth", "alexnet.safetensors"] {
        let net = load("alexnet", file);
        assert_eq!(net.spec().arch, "alexnet", "{file}");
        check_forward("alexnet", &net);
    }
}

#[test]
fn vgg11_bn_from_every_form_equals_pytorch_with_batch_norm_folded() {
    for file in ["vgg11_bn.pth", "vgg11_bn.legacy.pth", "vgg11_bn.safetensors"] {
        let net = load("vgg11_bn", file);
        assert_eq!(net.spec().arch, "vgg11_bn", "{file}");
        check_forward("vgg11_bn", &net);
    }
}

#[test]
fn a_saved_net_records_its_spec_and_loads_as_it_was() {
    let net = load("vgg11_bn", "vgg11_bn.pth");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vgg.safetensors");
    net.save(&path).unwrap();
    let again = Net::load(path.to_str().unwrap(), None, &Device::Cpu).unwrap();
    // The batch norms are folded in the file: the spec says so and no bn tensor is left.
    assert_eq!(again.spec(), &net.folded_spec());
    assert_eq!(again.spec().input_size, 64);
    check_forward("vgg11_bn", &again);
}

#[test]
fn what_is_not_alexnet_or_vgg_is_a_clear_error() {
    let t = || read_checkpoint(&dir().join("vgg11_bn.pth")).unwrap();
    // A residual net's keys.
    let mut r = t();
    r.insert("layer1.0.conv1.weight".into(), Tensor::zeros((8, 8, 3, 3), DType::F32, &Device::Cpu).unwrap());
    let e = from_torchvision(r).unwrap_err().to_string();
    assert!(e.contains("unexpected key `layer1.0.conv1.weight`") && e.contains("residual"), "{e}");
    // A grouped conv: half the input channels.
    let mut g = t();
    g.insert("features.4.weight".into(), Tensor::zeros((16, 4, 3, 3), DType::F32, &Device::Cpu).unwrap());
    let e = from_torchvision(g).unwrap_err().to_string();
    assert!(e.contains("`features.4.weight` is [16, 4, 3, 3], expected [16, 8, 3, 3] for vgg11_bn (grouped"), "{e}");
    // A module no preset has.
    let mut m = t();
    m.remove("features.25.weight");
    let e = from_torchvision(m).unwrap_err().to_string();
    assert!(e.contains("fit no torchvision preset"), "{e}");
    // A truncated file.
    let bytes = std::fs::read(dir().join("alexnet.legacy.pth")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = Net::load(cut.to_str().unwrap(), None, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("cut.pth") && e.contains("not a readable PyTorch checkpoint"), "{e}");
    // An input too small for the pools names the layer.
    let e = Net::load(dir().join("vgg11_bn.pth").to_str().unwrap(), Some(16), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("input size 16 does not fit the network's strides: features.28"), "{e}");
}
