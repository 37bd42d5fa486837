//! `cargo xtask reproduce-paper --quick` end to end: every stage runs through the real `zfnet`
//! binary, and the report has every figure, parsable results and a value in every claim row.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use xtask::reproduce::{reproduce, Options, Profile};

/// The workspace root and the debug `zfnet`, built.
fn built_zfnet() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo).args(["build", "-q", "-p", "zf-cli"]).current_dir(&root).status().unwrap();
    assert!(status.success());
    let zfnet = xtask::target_dir(&root).join("debug/zfnet");
    (root, zfnet)
}

/// The quick profile into `dir/run` with `zfnet`, trained here.
fn quick(dir: &std::path::Path, zfnet: PathBuf) -> Options {
    Options {
        profile: Profile::quick(),
        out: dir.join("run"),
        force: false,
        data: None,
        weights: None,
        zfnet: Some(zfnet),
        seed: 0,
        device: None,
    }
}

#[test]
fn quick_profile_writes_a_complete_report_and_resumes() {
    let (root, zfnet) = built_zfnet();
    let dir = tempfile::tempdir().unwrap();
    let opts = quick(dir.path(), zfnet);
    let report = reproduce(&root, opts.clone()).unwrap();

    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    // Every picture the page shows exists, and every figure of the paper is there.
    let srcs: Vec<&str> = html.split("src=\"").skip(1).filter_map(|s| s.split('"').next()).collect();
    for s in &srcs {
        assert!(report.join(s).exists(), "{s} is missing");
        assert!(!s.starts_with("http"), "{s} is not offline");
    }
    for f in [
        "fig2-layer1.png",
        "fig2-layer5.png",
        "fig4-layer3.png",
        "fig4-movement.svg",
        "fig4-settling.svg",
        "fig5-translate.svg",
        "fig5-scale.svg",
        "fig5-rotate.svg",
        "fig6-zfnet.png",
        "fig6-alexnet.png",
        "fig6-no-renorm.png",
        "fig6-bands.svg",
        "fig6-layer2-alexnet.png",
        "fig7-occlusion.png",
        "table7-probes.svg",
    ] {
        assert!(srcs.contains(&format!("figures/{f}").as_str()), "{f} not on the page");
    }
    for table in ["Table 1", "Table 2", "Table 7"] {
        assert!(html.contains(table), "{table} missing");
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("results.json")).unwrap()).unwrap();
    let claims = results["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 13);
    for c in claims {
        assert!(c["value"].is_string(), "claim {} has no measured value", c["id"]);
        // A verdict, or, for a claim whose precondition fails (too few samples or snapshots in
        // the quick profile), "not testable" and why, said in its value.
        let untestable = c["value"].as_str().is_some_and(|v| v.contains("not testable: "));
        assert!(c["held"].is_boolean() || (c["held"].is_null() && untestable), "claim {} has no verdict", c["id"]);
    }
    assert_eq!(results["about"]["profile"], "quick");
    assert!(results["results"]["eval"]["zfnet"]["top1_err"].is_number());
    let md = std::fs::read_to_string(report.join("claims.md")).unwrap();
    assert_eq!(md.lines().count(), 2 + 13);

    // A second run skips every finished stage and rewrites the same claims.
    reproduce(&root, opts.clone()).unwrap();
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("results.json")).unwrap()).unwrap();
    assert_eq!(again["claims"], results["claims"]);
    assert!(again["about"]["stages"].as_array().unwrap().iter().all(|s| s["skipped"] == true));

    // Given weights and a data folder: the analyses only, and the report names the network.
    let weights = opts.out.join("runs/zfnet/model.safetensors").display().to_string();
    let given = Options {
        out: dir.path().join("given"),
        data: Some(opts.out.join("data")),
        weights: Some(weights.clone()),
        ..opts
    };
    let report = reproduce(&root, given.clone()).unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["about"]["weights"], weights.as_str());
    let stages: Vec<&str> =
        results["about"]["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["eval", "fig2", "fig5", "fig6", "fig7", "table1", "table7"]);
    assert!(!given.out.join("runs").exists(), "nothing was trained");
    // The occluder is the profile's 48 pixels at 224, scaled to the weights' 112-pixel input
    // (read from the file's metadata).
    let occ: serde_json::Value =
        serde_json::from_slice(&std::fs::read(given.out.join("fig7/occlusion.json")).unwrap()).unwrap();
    assert_eq!(occ["images"][0]["config"]["size"], 24);
    assert!(std::fs::read_to_string(report.join("index.html")).unwrap().contains(&weights));
}

/// A stage whose `zfnet` was stopped by Ctrl-C (exit status 130) ends the run as interrupted
/// and is not marked done, so that running the command again resumes it.
#[cfg(unix)]
#[test]
fn a_stage_stopped_by_ctrl_c_is_not_marked_done() {
    use std::os::unix::fs::PermissionsExt;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let interrupted = dir.path().join("zfnet-interrupted");
    std::fs::write(&interrupted, "#!/bin/sh\nexit 130\n").unwrap();
    std::fs::set_permissions(&interrupted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failing = dir.path().join("zfnet-failing");
    std::fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let opts = |zfnet: &std::path::Path| Options {
        profile: Profile::quick(),
        out: dir.path().join("run"),
        force: false,
        data: None,
        weights: None,
        zfnet: Some(zfnet.to_path_buf()),
        seed: 0,
        device: None,
    };
    // A script just written can be "busy" for a moment when the other test in this binary forks
    // while its file is still open (ETXTBSY): try again then.
    let run = |o: Options| {
        for _ in 0..50 {
            match reproduce(&root, o.clone()) {
                Err(e) if e.contains("Text file busy") => std::thread::sleep(std::time::Duration::from_millis(100)),
                r => return r,
            }
        }
        reproduce(&root, o)
    };
    let e = run(opts(&interrupted)).unwrap_err();
    assert_eq!(e, xtask::reproduce::INTERRUPTED);
    let markers = dir.path().join("run/stages");
    assert!(!markers.join("data.json").exists(), "an interrupted stage was marked done");
    // A failure is reported as one, naming the stage and the command.
    let e = run(opts(&failing)).unwrap_err();
    assert!(e.starts_with("stage data: `zfnet data generate") && e.contains("exit status: 3"), "{e}");
    assert!(!markers.join("data.json").exists());
}

#[test]
fn given_vgg_weights_run_the_analyses_and_mark_the_training_claims_not_testable() {
    // torchvision's VGG-11-BN as PyTorch wrote it (zf-model's reduced-width fixture).
    let (root, zfnet) = built_zfnet();
    let weights = root.join("crates/zf-model/tests/torchvision/vgg11_bn.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { weights: Some(weights.display().to_string()), ..quick(dir.path(), zfnet) };
    let report = reproduce(&root, opts).unwrap();
    let about: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run/reproduce.json")).unwrap()).unwrap();
    assert_eq!(about["network"], "vgg11_bn");
    let claims = std::fs::read_to_string(report.join("claims.md")).unwrap();
    assert_eq!(claims.matches("not testable: the claim is about training ZFNet").count(), 6, "{claims}");
    // The analyses ran on VGG's own layers: Fig. 2 per block end, Table 1 at conv5_2 and fc7.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for f in ["fig2-conv1_1.png", "fig2-conv5_2.png", "fig7-occlusion.png"] {
        assert!(html.contains(f) && report.join("figures").join(f).exists(), "{f}");
    }
    let t1 = std::fs::read_to_string(dir.path().join("run/table1/table1.md")).unwrap();
    assert!(t1.contains("layer 5 (conv5_2)") && t1.contains("layer 7 (fc7)") && !t1.contains("– | –"), "{t1}");
    // Fig. 6 compares ZFNet's first layers: skipped.
    assert!(!dir.path().join("run/fig6").exists());
}
