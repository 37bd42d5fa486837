//! `cargo xtask bench`: zfnet against the PyTorch reference (python/zfnet_torch.py), side by
//! side in one run, alternating, with a table of the ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One measurement setting.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// `zfnet` (the paper's network at `width`) or a torchvision architecture (`vgg16`).
    pub arch: &'static str,
    pub what: &'static str,
    pub width: f64,
    pub batch: usize,
    /// What python/zfnet_torch.py times as the peer (its `--what`; `None`: it has none, as for
    /// the batched projection).
    pub torch: Option<&'static str>,
}

const fn case(what: &'static str, width: f64, batch: usize) -> Case {
    Case { arch: "zfnet", what, width, batch, torch: Some(what) }
}

/// A case of torchvision's `arch` at its published widths.
const fn tv(arch: &'static str, what: &'static str, batch: usize, torch: &'static str) -> Case {
    Case { arch, what, width: 1.0, batch, torch: Some(torch) }
}

/// The default cases: forward and training step of the paper's network and of a quarter-width
/// one at batch 16 and 128; one forward image against one deconvnet projection (a projection
/// should cost no more than a forward pass), and nine projections from one forward pass; a
/// quarter-width occlusion map against PyTorch running every occluded image, and the paper
/// network's against Captum's `Occlusion` (the tool people use for it); and VGG-16 (torchvision's
/// definition on both sides): forward at batch 16 and 1, one projection of conv5_3's strongest
/// unit (with its forward pass, and the walk down alone from a recorded one), and an occlusion
/// map against Captum's.
pub const CASES: [Case; 19] = [
    case("forward", 1.0, 16),
    case("forward", 0.25, 16),
    case("train", 1.0, 16),
    case("train", 0.25, 16),
    case("forward", 1.0, 128),
    case("forward", 0.25, 128),
    case("train", 1.0, 128),
    case("train", 0.25, 128),
    case("forward", 1.0, 1),
    case("project", 1.0, 1),
    Case { arch: "zfnet", what: "project", width: 1.0, batch: 9, torch: None },
    case("project", 0.25, 1),
    case("occlusion", 0.25, 64),
    Case { arch: "zfnet", what: "occlusion", width: 1.0, batch: 64, torch: Some("captum-occlusion") },
    tv("vgg16", "forward", 16, "forward"),
    tv("vgg16", "forward", 1, "forward"),
    tv("vgg16", "project", 1, "project"),
    tv("vgg16", "deconv", 1, "deconv"),
    tv("vgg16", "occlusion", 64, "captum-occlusion"),
];

/// `"images_per_s": 12.5` -> 12.5, from one JSON line (xtask has no JSON dependency).
pub fn images_per_s(line: &str) -> Option<f64> {
    let rest = &line[line.find("\"images_per_s\"")? + "\"images_per_s\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The reference script in the checkout.
pub fn torch_script(root: &Path) -> Option<PathBuf> {
    Some(root.join("python/zfnet_torch.py")).filter(|p| p.is_file())
}

/// A Python that imports torch: `$ZF_TORCH_PYTHON`, `.venv-torch/bin/python` in the checkout,
/// or `python3`.
pub fn torch_python(root: &Path) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ZF_TORCH_PYTHON").map(PathBuf::from),
        Some(root.join(".venv-torch/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|py| Command::new(py).args(["-c", "import torch"]).output().map(|o| o.status.success()).unwrap_or(false))
}

/// Runs a command and returns the images/s of its first JSON line.
fn run(cmd: &mut Command) -> Result<f64, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(images_per_s).ok_or_else(|| format!("{cmd:?} printed no images_per_s: {text}"))
}

/// Builds zfnet, then measures every case (of network `only`, when given) with zfnet and (when
/// available) PyTorch, alternating `rounds` times, and prints the medians and their ratio.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn bench(root: &Path, threads: usize, reps: usize, rounds: usize, only: Option<&str>) -> Result<(), String> {
    if let Some(o) = only.filter(|o| !CASES.iter().any(|c| c.arch == *o)) {
        return Err(format!("--only {o}: the cases are of zfnet and vgg16"));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "zf-cli"])
        .current_dir(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("cargo build --release -p zf-cli failed".into());
    }
    let zfnet = crate::target_dir(root).join("release/zfnet");
    let torch = match (torch_script(root), torch_python(root)) {
        (Some(script), Some(py)) => Some((py, script)),
        _ => {
            eprintln!("PyTorch not found (set ZF_TORCH_PYTHON, or run python/setup-torch.sh): timing zfnet alone");
            None
        }
    };
    println!("| bench | network | batch | zfnet img/s | peer img/s | ratio |");
    println!("|---|---|---|---|---|---|");
    for case in CASES.into_iter().filter(|c| only.is_none_or(|o| c.arch == o)) {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            // The flags both programs share (a torchvision network has no width).
            let mut common = vec![
                "--arch".to_string(),
                case.arch.to_string(),
                "--what".to_string(),
                case.what.to_string(),
                "--batch".to_string(),
                case.batch.to_string(),
                "--reps".to_string(),
                reps.to_string(),
            ];
            if case.arch == "zfnet" {
                common.extend(["--width".to_string(), case.width.to_string()]);
            }
            let mut cmd = Command::new(&zfnet);
            cmd.env("RAYON_NUM_THREADS", threads.to_string()).arg("bench").args(&common);
            ours.push(run(&mut cmd)?);
            if let (Some((py, script)), Some(peer)) = (&torch, case.torch) {
                let mut cmd = Command::new(py);
                cmd.arg(script).args(["--threads".to_string(), threads.to_string()]).args(&common);
                // The peer's own name for the case (the last --what wins).
                cmd.args(["--what", peer]);
                theirs.push(run(&mut cmd)?);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let (o, t) = (median(&mut ours).unwrap_or(f64::NAN), median(&mut theirs));
        let (t_s, r_s) = match t {
            Some(t) => (format!("{t:.2}"), format!("{:.2}x", o / t)),
            None => ("-".into(), "-".into()),
        };
        let name = match case.torch {
            Some(peer) if peer != case.what => format!("{} (vs {peer})", case.what),
            _ => case.what.to_string(),
        };
        let network = if case.arch == "zfnet" { format!("zfnet w{}", case.width) } else { case.arch.to_string() };
        println!("| {name} | {network} | {} | {o:.2} | {t_s} | {r_s} |", case.batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_images_per_s_from_both_formats() {
        let ours = r#"{"batch":16,"bench":"forward","images_per_s":12.46,"impl":"zfnet"}"#;
        let theirs = r#"{"bench": "forward", "batch": 16, "median_s": 0.8, "images_per_s": 19.58}"#;
        assert_eq!(images_per_s(ours), Some(12.46));
        assert_eq!(images_per_s(theirs), Some(19.58));
        assert_eq!(images_per_s("{}"), None);
    }
}
