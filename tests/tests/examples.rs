//! The crates' examples run as users would run them (`cargo run --example`), and print what
//! they promise: the occlusion map of a photograph, Fig. 2's top-9 projections, a VGG unit's
//! projection, a training run.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn run_example(package: &str, example: &str, args: &[&str], cwd: &std::path::Path) -> String {
    // `cargo test --workspace` has built the examples beside this test (target/<profile>/
    // examples): run those; otherwise (this crate tested alone) build one with `cargo run`.
    let built = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples").join(example)))
        .filter(|p| p.is_file());
    let out = match built {
        Some(bin) => Command::new(bin).args(args).current_dir(cwd).output().unwrap(),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            Command::new(cargo)
                .args(["run", "-q", "-p", package, "--example", example, "--manifest-path"])
                .arg(root.join("Cargo.toml"))
                .arg("--")
                .args(args)
                .current_dir(cwd)
                .output()
                .unwrap()
        }
    };
    assert!(out.status.success(), "{example}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_examples_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example("zf-probe", "occlusion", &[], dir.path());
    assert!(out.contains("unoccluded") && out.contains("wrote occlusion.png"), "{out}");
    let png = image_dims(&dir.path().join("occlusion.png"));
    // 23 positions of a 48-pixel square at stride 8 on 224 pixels, 8 pixels a cell.
    assert_eq!(png, (184, 184));

    let out = run_example("zf-deconv", "top9", &[], dir.path());
    assert_eq!(out.lines().filter(|l| l.starts_with("conv5 map")).count(), 4 * 9, "{out}");

    // torchvision's VGG-11-BN as PyTorch wrote it (the reduced-width fixture of zf-model).
    let vgg =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/zf-model/tests/torchvision/vgg11_bn.safetensors");
    let out = run_example("zf-deconv", "vgg_deconv", &[vgg.to_str().unwrap(), "", "conv4_2", "5"], dir.path());
    assert!(out.starts_with("vgg11_bn conv4_2 map 5: strongest at") && out.contains("wrote projection.png"), "{out}");
    assert_eq!(image_dims(&dir.path().join("projection.png")), (224, 224));

    let out = run_example("zf-train", "train_tiny", &[], dir.path());
    assert!(out.contains("7 steps in") && out.contains("channels [12, 32, 48, 48, 32]"), "{out}");
}

/// Width and height from a PNG's IHDR chunk.
fn image_dims(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}
