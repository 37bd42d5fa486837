//! The `zfnet` binary end to end: info, init and forward, and their errors.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use zf_model::{Point, ZfNet};

mod torchvision;

fn zfnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zfnet"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = zfnet(args);
    assert!(out.status.success(), "zfnet {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = zfnet(args);
    assert!(!out.status.success(), "zfnet {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn info_prints_the_papers_totals() {
    let out = ok(&["info"]);
    assert!(out.contains("62,357,608"), "{out}");
    assert!(out.contains("1,168,032,896"), "{out}");
    assert!(out.contains("conv1      96x110x110"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["info", "--config", "alexnet", "--json"])).unwrap();
    assert_eq!(json["layers"][0]["shape"], serde_json::json!([96, 55, 55]));
    assert_eq!(json["config"]["first_layer"], "alexnet");
    let e = fails(&["info", "--config", "vgg"]);
    assert!(e.contains("unknown network config `vgg`: expected one of paper, alexnet, small, tiny"), "{e}");
    let e = fails(&["info", "--input-size", "30"]);
    assert!(e.contains("input size 30 does not fit"), "{e}");
}

fn write_input(path: &Path, x: &Tensor) {
    candle_core::safetensors::save(&HashMap::from([("input".to_string(), x.clone())]), path).unwrap();
}

#[test]
fn init_then_forward_writes_every_tap_and_switch() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let w_s = w.to_str().unwrap();
    ok(&["init", "--config", "tiny", "--input-size", "96", "--init", "he", "--seed", "3", "--out", w_s]);
    let info = ok(&["info", "--weights", w_s]);
    assert!(info.contains("all 16 tensors match (recorded in the weights file config)"), "{info}");

    // One image as [3,S,S], and a batch as [N,3,S,S].
    let x = Tensor::randn(0f32, 50., (2, 3, 96, 96), &Device::Cpu).unwrap();
    let net = ZfNet::load(w_s, None, &Device::Cpu).unwrap();
    let want = net.trace(&x).unwrap();
    for (name, input) in [("batch", x.clone()), ("single", x.get(0).unwrap())] {
        let xin = dir.path().join(format!("{name}.safetensors"));
        write_input(&xin, &input);
        let taps = dir.path().join(format!("{name}-taps.safetensors"));
        let out = ok(&["forward", "--weights", w_s, "--input", xin.to_str().unwrap(), "--out", taps.to_str().unwrap()]);
        assert!(out.contains("most probable class per image"), "{out}");
        let got = candle_core::safetensors::load(&taps, &Device::Cpu).unwrap();
        let n = if name == "batch" { 2 } else { 1 };
        for p in Point::ALL {
            let t = got.get(p.name()).unwrap_or_else(|| panic!("no {p} in the output"));
            let w = want.get(p).unwrap().narrow(0, 0, n).unwrap();
            assert_eq!(t.dims(), w.dims(), "{p}");
            // The same numbers up to float rounding (a batch of one sums in another order).
            let max = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(max(&(t - &w).unwrap()) <= 1e-5 * max(&w).max(1.0), "{p}");
        }
        for pool in Point::POOLS {
            let s = &got[&format!("{pool}.switches")];
            assert_eq!(s.dtype(), DType::I64);
            assert_eq!(s.dims(), want.switches_of(pool).unwrap().indices.narrow(0, 0, n).unwrap().dims());
        }
        let sums: Vec<f32> = got["prob"].sum(1).unwrap().to_vec1().unwrap();
        assert_eq!(sums.len(), n);
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }
}

#[test]
fn forward_errors_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let w_s = w.to_str().unwrap();
    ok(&["init", "--config", "tiny", "--input-size", "96", "--out", w_s]);
    let wrong = dir.path().join("wrong.safetensors");
    write_input(&wrong, &Tensor::zeros((3, 64, 64), DType::F32, &Device::Cpu).unwrap());
    let e = fails(&["forward", "--weights", w_s, "--input", wrong.to_str().unwrap(), "--out", "/dev/null"]);
    assert!(e.contains("`input` has shape [1, 3, 64, 64], expected [3,96,96] or [N,3,96,96]"), "{e}");
    let unnamed = dir.path().join("unnamed.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([("x".to_string(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())]),
        &unnamed,
    )
    .unwrap();
    let e = fails(&["forward", "--weights", w_s, "--input", unnamed.to_str().unwrap(), "--out", "/dev/null"]);
    assert!(e.contains("has no tensor named `input` (found: x)"), "{e}");
    let e = fails(&[
        "forward",
        "--weights",
        "hf://nobody/nothing/model.safetensors",
        "--input",
        unnamed.to_str().unwrap(),
        "--out",
        "/dev/null",
    ]);
    assert!(e.contains("is not in the Hugging Face cache") && e.contains("HF_HUB_OFFLINE is set"), "{e}");
    let e = fails(&["--device", "cuda", "info"]);
    if !candle_core::utils::cuda_is_available() {
        assert!(e.contains("this build has no CUDA support"), "{e}");
    }
    // The output is written atomically: a failed run leaves nothing behind.
    let e = fails(&[
        "forward",
        "--weights",
        w_s,
        "--input",
        wrong.to_str().unwrap(),
        "--out",
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    assert!(!e.is_empty());
    assert!(!dir.path().join("o.safetensors").exists());
}

#[test]
fn bench_prints_json_lines_in_the_pytorch_format() {
    let out = ok(&["bench", "--what", "forward", "--width", "0.05", "--batch", "2", "--reps", "1"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    for key in ["bench", "impl", "threads", "width", "batch", "median_s", "images_per_s"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["batch"], 2);
    let (median, ips) = (v["median_s"].as_f64().unwrap(), v["images_per_s"].as_f64().unwrap());
    assert!(median > 0.0 && (ips - 2.0 / median).abs() <= 0.01 * ips + 0.01, "{v}");
    let out = ok(&["bench", "--what", "train,project,occlusion", "--width", "0.05", "--batch", "8", "--reps", "1"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["bench"].as_str(), lines[0]["batch"].as_u64()), (Some("train"), Some(8)));
    // --batch 8 projections from one forward pass: images/s counts projections.
    assert_eq!((lines[1]["bench"].as_str(), lines[1]["batch"].as_u64()), (Some("project"), Some(8)));
    let (median, ips) = (lines[1]["median_s"].as_f64().unwrap(), lines[1]["images_per_s"].as_f64().unwrap());
    assert!((ips - 8.0 / median).abs() <= 0.01 * ips + 0.01, "{}", lines[1]);
    // One occlusion map is 23 x 23 = 529 occluded images.
    let (median, ips) = (lines[2]["median_s"].as_f64().unwrap(), lines[2]["images_per_s"].as_f64().unwrap());
    assert!((ips - 529.0 / median).abs() <= 0.01 * ips + 0.01, "{}", lines[2]);
    let e = fails(&["bench", "--what", "dance"]);
    assert!(e.contains("unknown benchmark `dance`"), "{e}");
}

#[test]
fn data_generate_is_deterministic_and_feeds_forward_with_a_mean() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        ok(&[
            "data",
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--per-class",
            "2",
            "--val-per-class",
            "1",
            "--seed",
            "4",
        ]);
    }
    let classes = std::fs::read_to_string(a.join("classes.txt")).unwrap();
    assert_eq!(classes.lines().count(), 10);
    assert_eq!(classes.lines().next(), Some("face"));
    for split in ["train", "val"] {
        for class in classes.lines() {
            let files: Vec<_> =
                std::fs::read_dir(a.join(split).join(class)).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(
                files.len(),
                if split == "train" { 4 } else { 2 },
                "{split}/{class}: a png and a json per image"
            );
            for f in files {
                let (x, y) = (
                    std::fs::read(a.join(split).join(class).join(&f)).unwrap(),
                    std::fs::read(b.join(split).join(class).join(&f)).unwrap(),
                );
                assert_eq!(x, y, "{split}/{class}/{f:?} differs between two runs with the same seed");
            }
        }
    }
    let mean = dir.path().join("mean.safetensors");
    ok(&["data", "mean", "--data", a.join("train").to_str().unwrap(), "--out", mean.to_str().unwrap()]);
    let w = dir.path().join("w.safetensors");
    ok(&["init", "--config", "tiny", "--out", w.to_str().unwrap()]);
    let photo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/photos/chelsea.jpg");
    let taps = dir.path().join("taps.safetensors");
    // `zfnet forward` of the photo with weights `w`, `--mean` when given.
    let forward = |w: &Path, mean: Option<&Path>, out: &Path| {
        let mut args = vec!["forward", "--weights", w.to_str().unwrap(), "--input", photo.to_str().unwrap()];
        if let Some(m) = mean {
            args.extend(["--mean", m.to_str().unwrap()]);
        }
        args.extend(["--out", out.to_str().unwrap()]);
        zfnet(&args)
    };
    assert!(forward(&w, Some(&mean), &taps).status.success());
    let got = candle_core::safetensors::load(&taps, &Device::Cpu).unwrap();
    assert_eq!(got["input"].dims(), &[1, 3, 224, 224]);
    // The input is the photo's centre crop minus the mean: values centred near zero, not 0..255.
    let m = got["input"].mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(m.abs() < 60.0, "{m}");
    // Without --mean, the mean.safetensors beside the weights is used; with none there, an
    // image input is an error.
    let beside = dir.path().join("taps2.safetensors");
    assert!(forward(&w, None, &beside).status.success());
    let again = candle_core::safetensors::load(&beside, &Device::Cpu).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&again["input"]), flat(&got["input"]));
    std::fs::create_dir(dir.path().join("alone")).unwrap();
    let alone = dir.path().join("alone/w.safetensors");
    std::fs::copy(&w, &alone).unwrap();
    let out = forward(&alone, None, &taps);
    assert!(!out.status.success());
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(e.contains("an image input needs --mean FILE"), "{e}");
}

#[test]
fn project_and_visualize_write_figures_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let w_s = w.to_str().unwrap();
    ok(&["init", "--config", "tiny", "--input-size", "96", "--init", "he", "--seed", "2", "--out", w_s]);
    let x = Tensor::randn(0f32, 50., (2, 3, 96, 96), &Device::Cpu).unwrap();
    let xin = dir.path().join("x.safetensors");
    write_input(&xin, &x);
    let out = dir.path().join("proj");
    ok(&[
        "project",
        "--weights",
        w_s,
        "--input",
        xin.to_str().unwrap(),
        "--layer",
        "4",
        "--channel",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    let got = candle_core::safetensors::load(out.join("projection.safetensors"), &Device::Cpu).unwrap();
    // The same projections as the library's, of each image's strongest conv4 unit of map 7.
    let net = ZfNet::load(w_s, None, &Device::Cpu).unwrap();
    let trace = net.trace(&x).unwrap();
    let d = zf_deconv::Deconvnet::new(&net);
    let units: Vec<_> = (0..2).map(|i| d.strongest(&trace, Point::Conv4, i, 7).unwrap().0).collect();
    let want = d.project(&trace, Point::Conv4, &units).unwrap();
    let diff = (&got["projection"] - &want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("projection.json")).unwrap()).unwrap();
    assert_eq!(json["units"][1]["position"], serde_json::json!([units[1].y, units[1].x]));
    assert!(image::open(out.join("projection.png")).is_ok());
    for (layer, channel, message) in [
        ("fc7", "0", "the deconvnet projects conv layers"),
        ("2", "99", "channel 99 does not exist: conv2 has 32 feature maps"),
    ] {
        let (x, o) = (xin.to_str().unwrap(), out.to_str().unwrap());
        let e = fails(&["project", "--weights", w_s, "--input", x, "--layer", layer, "--channel", channel, "--out", o]);
        assert!(e.contains(message), "{e}");
    }

    // Fig. 2 on 12 generated images at the tiny network's 224 input.
    let w2 = dir.path().join("w2.safetensors");
    ok(&["init", "--config", "tiny", "--init", "he", "--out", w2.to_str().unwrap()]);
    let fig = dir.path().join("fig2");
    ok(&[
        "visualize",
        "--weights",
        w2.to_str().unwrap(),
        "--data",
        "generated",
        "--limit",
        "12",
        "--layers",
        "1,5",
        "--maps",
        "2",
        "--top",
        "3",
        "--batch",
        "6",
        "--out",
        fig.to_str().unwrap(),
    ]);
    let topk: serde_json::Value = serde_json::from_slice(&std::fs::read(fig.join("topk.json")).unwrap()).unwrap();
    let maps = topk["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 4);
    for m in maps {
        let hits = m["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 3);
        let images: std::collections::HashSet<_> = hits.iter().map(|h| h["image"].as_u64().unwrap()).collect();
        assert_eq!(images.len(), 3, "one hit per image");
        let values: Vec<f64> = hits.iter().map(|h| h["value"].as_f64().unwrap()).collect();
        assert!(values.windows(2).all(|v| v[0] >= v[1]), "{values:?}");
    }
    for l in ["layer1", "layer5"] {
        assert!(image::open(fig.join(format!("{l}.png"))).is_ok());
        let t = candle_core::safetensors::load(fig.join(format!("{l}.safetensors")), &Device::Cpu).unwrap();
        assert_eq!(t["projection"].dims(), &[6, 3, 224, 224]);
    }
}

#[test]
fn train_then_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let out = ok(&[
        "train",
        "--data",
        "generated",
        "--config",
        "tiny",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--train-size",
        "16",
        "--val-size",
        "8",
        "--out",
        r,
    ]);
    assert!(out.contains("epoch   1/1: train loss"), "{out}");
    for f in [
        "run.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "model.safetensors",
        "mean.safetensors",
        "classes.txt",
        "snapshots/epoch-001.safetensors",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let run_json: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["config"]["name"], "tiny");
    assert_eq!(run_json["train_images"], 16);
    // Two steps (16 images, batch 8) and one epoch line.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let e = fails(&["train", "--data", "generated", "--config", "tiny", "--out", r]);
    assert!(e.contains("holds a run already"), "{e}");
    // Resuming a finished run has nothing left to do, and says so by finishing at once.
    let out = ok(&["train", "--out", r, "--resume", "--train-size", "16", "--val-size", "8"]);
    assert!(out.contains("1 epochs, 2 steps"), "{out}");

    let w = run.join("model.safetensors");
    let json = dir.path().join("eval.json");
    let out = ok(&[
        "eval",
        "--weights",
        w.to_str().unwrap(),
        "--data",
        "generated",
        "--val-size",
        "10",
        "--ten-crop",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert!(out.contains("on 10 images (softmax averaged over 10 crops)"), "{out}");
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (t1, t5) = (e["top1_err"].as_f64().unwrap(), e["top5_err"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&t1) && t5 <= t1, "{e}");
    let photos = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/photos");
    let out = ok(&[
        "predict",
        "--weights",
        w.to_str().unwrap(),
        photos.join("chelsea.jpg").to_str().unwrap(),
        photos.join("coffee.jpg").to_str().unwrap(),
        "--top",
        "2",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Class names come from classes.txt beside the weights (the generated set's).
    assert!(
        lines[0].contains("chelsea.jpg: ") && zf_data::Class::ALL.iter().any(|c| lines[0].contains(c.name())),
        "{out}"
    );

    // The same model shared on the hub (model, mean and class names in one repository, as the
    // README says), found offline in a cache laid out as huggingface_hub lays it out.
    let cache = dir.path().join("hub-cache");
    let snap = cache.join("models--me--zfnet-tiny/snapshots/0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.join("models--me--zfnet-tiny/refs")).unwrap();
    std::fs::write(cache.join("models--me--zfnet-tiny/refs/main"), "0123456789abcdef0123456789abcdef01234567").unwrap();
    for f in ["model.safetensors", "mean.safetensors", "classes.txt"] {
        std::fs::copy(run.join(f), snap.join(f)).unwrap();
    }
    let hub_predict = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zfnet"))
            .args(["predict", "--weights", "hf://me/zfnet-tiny/model.safetensors", "--top", "2"])
            .args(extra)
            .arg(photos.join("chelsea.jpg"))
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HUB_CACHE", &cache)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = hub_predict(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().split(": ").nth(1), lines[0].split(": ").nth(1));
    // --mean and --classes take hub addresses too.
    let out = hub_predict(&[
        "--mean",
        "hf://me/zfnet-tiny@main/mean.safetensors",
        "--classes",
        "hf://me/zfnet-tiny/classes.txt",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Offline, a file missing from the cache is an error that names it.
    std::fs::remove_file(snap.join("mean.safetensors")).unwrap();
    let out = hub_predict(&[]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("no mean.safetensors beside hf://me/zfnet-tiny/model.safetensors")
            && e.contains("hf://me/zfnet-tiny@main/mean.safetensors is not in the Hugging Face cache")
            && e.contains("HF_HUB_OFFLINE is set"),
        "{e}"
    );
}

/// A tiny training run's flags (16 images, batch 8: two steps an epoch).
fn tiny_train(run: &Path, epochs: &str) -> Vec<String> {
    ["train", "--data", "generated", "--config", "tiny", "--batch", "8", "--train-size", "16", "--val-size", "8"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--epochs".into(), epochs.into(), "--out".into(), run.to_string_lossy().into_owned()])
        .collect()
}

fn same_weights(a: &Path, b: &Path) {
    let (a, b) = (
        candle_core::safetensors::load(a, &Device::Cpu).unwrap(),
        candle_core::safetensors::load(b, &Device::Cpu).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let d = (t - &b[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
}

#[test]
fn resume_starts_over_without_a_checkpoint_extends_with_more_epochs_and_refuses_other_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run_in = |cwd: &Path, args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zfnet")).args(args).current_dir(cwd).output().unwrap();
        assert!(out.status.success(), "zfnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // A finished one-epoch run, started outside any git checkout.
    let run = dir.path().join("run");
    run_in(dir.path(), &tiny_train(&run, "1"));
    let first = dir.path().join("first.safetensors");
    std::fs::copy(run.join("model.safetensors"), &first).unwrap();
    // run.json records zfnet's own revision, not the (absent) git of the working directory.
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    let revision = record["revision"].as_str().unwrap();
    let ours = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match ours {
        Some(hash) => assert!(revision.starts_with(&hash), "run.json has {revision}, zfnet is {hash}"),
        None => assert_eq!(revision, format!("v{}", env!("CARGO_PKG_VERSION"))),
    }

    // Killed before its first checkpoint (only run.json and the mean exist): --resume starts the
    // run from the beginning with the recorded config and gives the same weights.
    for f in ["checkpoint.safetensors", "model.safetensors", "metrics.jsonl"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    let resume = |extra: &[&str]| -> Vec<String> {
        ["train", "--out", run.to_str().unwrap(), "--resume"].iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let out = run_in(dir.path(), &resume(&[]));
    assert!(out.contains("1 epochs, 2 steps"), "{out}");
    same_weights(&first, &run.join("model.safetensors"));

    // Flags that disagree with the recorded run are refused, each named.
    let out = zfnet(
        &resume(&[
            "--batch",
            "4",
            "--train-size",
            "16",
            "--seed",
            "9",
            "--epochs",
            "1",
            "--no-renorm",
            "--alexnet-first-layer",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("--batch 4 (the run has 8)")
            && e.contains("--seed 9 (the run has 0)")
            && e.contains("--no-renorm (the run has filter renormalization)")
            && e.contains("--alexnet-first-layer (the run has ZFNet's first layer)")
            && !e.contains("--train-size"),
        "{e}"
    );
    let out = zfnet(&resume(&["--epochs", "0"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a run can be extended, not shortened"));

    // More epochs extend the run: the same weights as a run trained for two epochs at once.
    let out = run_in(dir.path(), &resume(&["--epochs", "2"]));
    assert!(out.contains("2 epochs, 4 steps"), "{out}");
    assert!(run.join("snapshots/epoch-002.safetensors").exists());
    let two = dir.path().join("two");
    run_in(dir.path(), &tiny_train(&two, "2"));
    same_weights(&two.join("model.safetensors"), &run.join("model.safetensors"));

    // A folder that holds no run has nothing to resume.
    let out = zfnet(&["train", "--out", dir.path().join("nothing").to_str().unwrap(), "--resume"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nothing to resume") && e.contains("no run.json"), "{e}");
}

/// Waits until `path` exists (or panics after `secs`).
#[cfg(unix)]
fn wait_for(path: &std::path::Path, secs: u64) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(t.elapsed().as_secs() < secs, "{} did not appear in {secs}s", path.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_kill_9_leaves_a_resumable_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = |run: &std::path::Path| -> Vec<String> {
        [
            "train",
            "--data",
            "generated",
            "--config",
            "tiny",
            "--epochs",
            "40",
            "--batch",
            "8",
            "--train-size",
            "32",
            "--val-size",
            "8",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([run.to_str().unwrap().to_string()])
        .collect()
    };
    let spawn = |a: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_zfnet"))
            .args(a)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Ctrl-C (SIGINT) after the first epoch's checkpoint: a clean exit that says how to resume.
    let run = dir.path().join("int");
    let child = spawn(&args(&run));
    wait_for(&run.join("checkpoint.safetensors"), 120);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    // Stopped by Ctrl-C: the shell's status for SIGINT (130), not success.
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted at step") && stdout.contains("--resume"), "{stdout}");
    // kill -9 at some moment after the first checkpoint: the latest checkpoint still loads and
    // the run resumes.
    let run = dir.path().join("kill");
    let mut child = spawn(&args(&run));
    wait_for(&run.join("checkpoint.safetensors"), 120);
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, _, state) = zf_train::RunDir { root: run.clone() }.load_checkpoint(&Device::Cpu).unwrap();
    assert!(state.step >= 4);
    let mut resumed: Vec<String> = args(&run);
    resumed.push("--resume".to_string());
    // The resumed run rewrites run.json once its Ctrl-C handler is in place; stop it with SIGINT
    // a little later instead of running all 40 epochs.
    let modified = || std::fs::metadata(run.join("run.json")).and_then(|m| m.modified()).ok();
    let before = modified();
    let child = spawn(&resumed);
    let t = std::time::Instant::now();
    while modified() == before {
        assert!(t.elapsed().as_secs() < 120, "the resumed run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, _, after) = zf_train::RunDir { root: run }.load_checkpoint(&Device::Cpu).unwrap();
    assert!(after.step > state.step, "resumed from step {} and went on to {}", state.step, after.step);
}

#[test]
fn the_analysis_commands_write_figures_and_numbers() {
    // A generated folder and a tiny run with two snapshots; the numerics are tested in
    // zf-probe, here the commands' files, shapes and cross-checks.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gen");
    let d = data.to_str().unwrap();
    ok(&["data", "generate", "--out", d, "--per-class", "2", "--val-per-class", "2", "--clutter", "2"]);
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    ok(&["train", "--data", d, "--config", "tiny", "--epochs", "2", "--batch", "10", "--out", r]);
    let w = run.join("model.safetensors");
    let w = w.to_str().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let json = |path: String| -> serde_json::Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };

    ok(&[
        "occlusion",
        "--weights",
        w,
        "--data",
        d,
        "--images",
        "2",
        "--size",
        "32",
        "--stride",
        "16",
        "--out",
        &out("occ"),
    ]);
    let t = candle_core::safetensors::load(out("occ/occlusion.safetensors"), &candle_core::Device::Cpu).unwrap();
    // 112-pixel input, 32-pixel square, stride 16: offsets 0..=80, 6 per axis.
    assert_eq!(t["true_prob"].dims(), &[2, 6, 6]);
    assert_eq!(t["top_label"].dims(), &[2, 6, 6]);
    assert_eq!(t["projection"].dims(), &[2, 3, 112, 112]);
    let j = json(out("occ/occlusion.json"));
    let min = t["true_prob"].get(0).unwrap().flatten_all().unwrap().min(0).unwrap().to_scalar::<f32>().unwrap();
    assert!((j["images"][0]["min_true_prob"].as_f64().unwrap() - min as f64).abs() < 1e-6);
    assert!(std::path::Path::new(&out("occ/occlusion.png")).exists());

    ok(&["invariance", "--weights", w, "--data", d, "--images", "2", "--sweeps", "rotate,scale", "--out", &out("inv")]);
    let t = candle_core::safetensors::load(out("inv/invariance.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["rotate.layer1"].dims(), &[2, 36]);
    assert_eq!(t["scale.prob"].dims(), &[2, 9]);
    // Rotation by 0 degrees is the image itself.
    assert!(t["rotate.layer1"].get(0).unwrap().get(0).unwrap().to_scalar::<f32>().unwrap() < 1e-3);
    let svg = std::fs::read_to_string(out("inv/rotate.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));

    ok(&["correspondence", "--weights", w, "--data", d, "--class", "face", "--images", "2", "--out", &out("corr")]);
    let rows = json(out("corr/correspondence.json"))["rows"].as_array().unwrap().clone();
    // Four face parts and the random baseline, at conv5 and fc7.
    assert_eq!(rows.len(), 10, "{rows:?}");
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r["mean"].as_f64().unwrap())));
    // A tensor input has no part annotations.
    let x = dir.path().join("x.safetensors");
    write_input(&x, &Tensor::zeros((2, 3, 112, 112), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap());
    let x = x.to_str().unwrap();
    let e = fails(&["correspondence", "--weights", w, "--input", x, "--label", "0", "--out", &out("c2")]);
    assert!(e.contains("no parts"), "{e}");

    let snap = run.join("snapshots/epoch-001.safetensors");
    ok(&[
        "filters",
        "--weights",
        &format!("final={w}"),
        "--weights",
        &format!("first={}", snap.display()),
        "--out",
        &out("filt"),
    ]);
    let banks = json(out("filt/filters.json"))["banks"].as_array().unwrap().clone();
    assert_eq!(banks.len(), 2);
    let bands: f64 = banks[0]["stats"]["band_energy"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((bands - 1.0).abs() < 1e-4);
    // The trained bank is compared with its own init (run.json beside it); the snapshot's is not.
    assert_eq!(banks[0]["stats"]["spectral_change"].as_array().unwrap().len(), 12);
    assert!(banks[1]["stats"]["spectral_change"].as_array().unwrap().is_empty());
    // Dead filters on data need each network's mean image: the snapshot has none beside it.
    let first = format!("first={}", snap.display());
    let e = fails(&["filters", "--weights", &first, "--data", d, "--out", &out("filt2")]);
    assert!(e.contains("give --mean FILE"), "{e}");
    let mean = run.join("mean.safetensors");
    ok(&["filters", "--weights", &first, "--data", d, "--mean", mean.to_str().unwrap(), "--out", &out("filt2")]);
    let banks = json(out("filt2/filters.json"))["banks"].as_array().unwrap().clone();
    assert_eq!(banks[0]["stats"]["dead_on_data"].as_array().unwrap().len(), 12);

    ok(&["evolution", "--run", r, "--data", d, "--maps", "2", "--out", &out("evo")]);
    let j = json(out("evo/evolution.json"));
    assert_eq!(j["snapshots"], serde_json::json!([1, 2]));
    assert_eq!(j["movement"].as_array().unwrap().len(), 1);
    assert!(std::path::Path::new(&out("evo/layer5.png")).exists());
    // Each layer's similarity to the final network, the last snapshot being the final one.
    let settling = &j["settling"];
    assert_eq!(settling["epochs"], serde_json::json!([1, 2]));
    assert_eq!(settling["layers"].as_array().unwrap().len(), 5);
    assert!((settling["layers"][0]["cka"][1].as_f64().unwrap() - 1.0).abs() < 1e-4);

    ok(&["probe-layers", "--weights", w, "--data", d, "--out", &out("probe")]);
    let layers = json(out("probe/probes.json"))["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 7);
    assert_eq!(layers[6]["layer"], "fc7");
    // By default the probes see the held-out classes only (the transfer splits).
    let j = json(out("probe/probes.json"));
    assert_eq!((j["train_split"].as_str(), j["test_split"].as_str()), (Some("transfer-train"), Some("transfer-val")));
    assert_eq!(layers[0]["test_correct"].as_array().unwrap().len(), j["test_images"].as_u64().unwrap() as usize);
}

#[test]
fn convert_imports_imgclsmob_weights_under_our_names() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../zf-model/tests/imgclsmob");
    let out = dir.path().join("imagenet/model.safetensors");
    ok(&[
        "convert",
        "--from",
        "imgclsmob",
        fixtures.join("zfnet_small.pth").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    // Every tensor is the original one under our key; the config and the mean image come along.
    let ours = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let theirs =
        candle_core::safetensors::load(fixtures.join("zfnet_small.orig.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    for (t, o) in zf_model::convert::IMGCLSMOB_KEYS {
        let d = (&ours[o] - &theirs[t]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{o}");
    }
    let cfg = zf_model::WeightsFile::read(&out).unwrap().config().unwrap().unwrap();
    assert_eq!(cfg.order, zf_model::Order::Imgclsmob);
    let mean = zf_data::MeanImage::load(&out.with_file_name("mean.safetensors")).unwrap();
    assert_eq!(mean.side, 256);
    assert!((mean.values[0] - 0.485 * 255.0).abs() < 1e-3 && (mean.values[2 * 256 * 256] - 0.406 * 255.0).abs() < 1e-3);
    let e = fails(&[
        "convert",
        "--from",
        "imgclsmob",
        fixtures.join("make_fixture.py").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("not a readable PyTorch checkpoint"), "{e}");
}
