//! The commands on torchvision's networks (the fixtures of zf-model/tests/torchvision):
//! convert, forward, project, occlusion and visualize give PyTorch's numbers or the files they
//! promise.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::{fails, ok, write_input};

#[test]
fn torchvision_networks_convert_forward_project_and_occlude() {
    // The fixtures of zf-model/tests/torchvision (torchvision's own VGG-11-BN and AlexNet,
    // reduced widths): the commands give PyTorch's numbers.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../zf-model/tests/torchvision");
    let dir = tempfile::tempdir().unwrap();
    let g = candle_core::safetensors::load(fixtures.join("vgg11_bn.golden.safetensors"), &Device::Cpu).unwrap();
    let mean = zf_model::config::IMAGENET_MEAN.map(|m| (255.0 * m) as f32);
    let x = g["input"].broadcast_sub(&Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &Device::Cpu).unwrap()).unwrap();
    let xin = dir.path().join("x.safetensors");
    write_input(&xin, &x);
    let x_s = xin.to_str().unwrap();
    let pth = fixtures.join("vgg11_bn.pth");
    let converted = dir.path().join("vgg/model.safetensors");
    let c_s = converted.to_str().unwrap();
    ok(&["convert", "--from", "torchvision", pth.to_str().unwrap(), "--out", c_s]);
    // The layer table names each layer by key and alias; parameters are torchvision's less the
    // batch norms' (folded): 64,186 + 2 x (8 + 16 + 16 + 16 + 24 + 24 + 24 + 24) = 64,490.
    let info = ok(&["info", "--weights", pth.to_str().unwrap(), "--input-size", "64"]);
    assert!(info.contains("features.25    conv5_2          24x4x4"), "{info}");
    assert!(info.contains("64,186"), "{info}");
    assert!(dir.path().join("vgg/mean.safetensors").exists());
    // The .pth as it is and the converted file give the same taps, equal to PyTorch's.
    for w in [pth.to_str().unwrap(), c_s] {
        let taps = dir.path().join("taps.safetensors");
        let out =
            ok(&["forward", "--weights", w, "--input-size", "64", "--input", x_s, "--out", taps.to_str().unwrap()]);
        assert!(out.contains("features.25") && out.contains("conv5_2"), "{out}");
        let t = candle_core::safetensors::load(&taps, &Device::Cpu).unwrap();
        for key in ["features.25", "classifier.6"] {
            let (a, b) = (&t[key], &g[&format!("act.{key}")]);
            let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1e-4 * scale, "{w} {key}: {d}");
        }
        let sw = t["features.28.switches"].flatten_all().unwrap().to_vec1::<i64>().unwrap();
        assert_eq!(sw, g["switch.features.28"].flatten_all().unwrap().to_vec1::<i64>().unwrap());
    }
    // One unit's projection by its alias, as the fixture's PyTorch deconvnet made it.
    let u = g["units.features.25"].to_vec2::<i64>().unwrap()[0].clone();
    let proj = dir.path().join("proj");
    let pos = format!("{},{}", u[2], u[3]);
    let single = dir.path().join("one.safetensors");
    write_input(&single, &x.narrow(0, u[0] as usize, 1).unwrap());
    let (ch, p_s) = (u[1].to_string(), proj.to_str().unwrap().to_string());
    let args = ["project", "--weights", c_s, "--input-size", "64", "--input", single.to_str().unwrap()];
    ok(&[&args[..], &["--layer", "conv5_2", "--channel", &ch, "--position", &pos, "--out", &p_s]].concat());
    let got = candle_core::safetensors::load(proj.join("projection.safetensors"), &Device::Cpu).unwrap();
    let want = g["proj.features.25"].get(0).unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let d = (&got["projection"] - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d <= 1e-4 * scale, "projection: {d} over {scale}");
    // ZFNet's flags are refused for another network; a layer it does not have is named.
    let e = fails(&["forward", "--weights", c_s, "--width", "0.5", "--input", x_s, "--out", "/dev/null"]);
    assert!(e.contains("--width describes a ZFNet"), "{e}");
    let e = fails(&[&args[..], &["--layer", "conv9_9", "--channel", "0", "--out", &p_s]].concat());
    assert!(e.contains("unknown layer `conv9_9` in vgg11_bn"), "{e}");
    // Occlusion of an AlexNet .pth on an image file, ImageNet's mean by default.
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/photos/chelsea.jpg");
    let alex = fixtures.join("alexnet.pth");
    let occ = dir.path().join("occ");
    ok(&[
        "occlusion",
        "--weights",
        alex.to_str().unwrap(),
        "--input-size",
        "96",
        "--input",
        photo.to_str().unwrap(),
        "--label",
        "3",
        "--size",
        "32",
        "--stride",
        "16",
        "--out",
        occ.to_str().unwrap(),
    ]);
    let t = candle_core::safetensors::load(occ.join("occlusion.safetensors"), &Device::Cpu).unwrap();
    // 96 pixels, a 32-pixel square at stride 16: offsets 0..=64, 5 per axis.
    assert_eq!(t["true_prob"].dims(), &[1, 5, 5]);
    assert_eq!(t["projection"].dims(), &[1, 3, 96, 96]);
    // Fig. 2 on AlexNet: by default the conv before each max pool (conv1, conv2, conv5), files
    // named by the layer (the pipeline itself is checked against the search in zf-deconv).
    let fig2 = dir.path().join("fig2");
    let a = alex.to_str().unwrap();
    let f = fig2.to_str().unwrap();
    let common = ["visualize", "--weights", a, "--input-size", "96", "--data", "generated", "--limit", "6"];
    ok(&[&common[..], &["--maps", "2", "--top", "3", "--out", f]].concat());
    for layer in ["conv1", "conv2", "conv5"] {
        assert!(fig2.join(format!("{layer}.png")).exists(), "{layer}.png");
        let p = candle_core::safetensors::load(fig2.join(format!("{layer}.safetensors")), &Device::Cpu).unwrap();
        assert_eq!(p["projection"].dims(), &[2 * 3, 3, 96, 96], "{layer}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(fig2.join("topk.json")).unwrap()).unwrap();
    let layers: Vec<&str> = doc["maps"].as_array().unwrap().iter().map(|m| m["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["conv1", "conv1", "conv2", "conv2", "conv5", "conv5"]);
    let e = fails(&[&common[..], &["--layers", "fc6", "--out", f]].concat());
    assert!(e.contains("visualize shows conv layers"), "{e}");
    // predict and eval on the AlexNet .pth at its own 224 pixels (its adaptive pool takes any
    // size), ImageNet's mean by default.
    let out = ok(&["predict", "--weights", a, photo.to_str().unwrap(), "--top", "2"]);
    assert!(out.starts_with(&format!("{}: class ", photo.display())) && out.matches('%').count() == 2, "{out}");
    let ev = dir.path().join("eval.json");
    ok(&["eval", "--weights", a, "--data", "generated", "--val-size", "10", "--out", ev.to_str().unwrap()]);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&ev).unwrap()).unwrap();
    assert_eq!(e["images"], 10);
    // Table 7's probes on AlexNet's layers 1..7: the conv before each pool, fc6, fc7.
    let t7 = dir.path().join("t7");
    let t = t7.to_str().unwrap();
    let probe = ["probe-layers", "--weights", a, "--input-size", "96", "--data", "generated"];
    ok(&[&probe[..], &["--train-size", "20", "--test-size", "10", "--out", t]].concat());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(t7.join("probes.json")).unwrap()).unwrap();
    let layers: Vec<&str> = doc["layers"].as_array().unwrap().iter().map(|m| m["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["conv1", "conv2", "conv5", "fc6", "fc7"]);
    let e = fails(&[&probe[..], &["--layers", "pool5", "--out", t]].concat());
    assert!(e.contains("layer probes use conv and hidden linear layers"), "{e}");
}
