//! `cargo xtask <task>`: development automation for the zfnet workspace.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "cargo xtask <task>

tasks:
  tidy    check the house rules a machine can check: crate layering (DESIGN.md) and the
          `//!` line that opens every source file
  bench [--threads N] [--reps R] [--rounds K]
          build zfnet (release) and time it against shared/bench/torch_zfnet.py, alternating,
          on forward passes and training steps (batch 16, widths 1 and 0.25), one deconvnet
          projection and one quarter-width occlusion map; prints a table with the ratios. PyTorch is found through
          $ZF_TORCH_PYTHON, .venv-torch/bin/python or python3 (shared/bench/setup-torch.sh
          makes one); without it zfnet is timed alone. Defaults: 2 threads, 5 reps, 3 rounds
  reproduce-paper [--quick | --profile default|quick|paper] [--data DIR] [--weights W]
                  [--out DIR] [--force] [--seed N] [--device D] [--zfnet PATH]
          the whole paper with one command: generated data (or --data, an ImageNet-layout
          folder), training with snapshots, the Fig. 6 ablations, evaluation, Figs. 2, 4, 5, 6,
          7 and Tables 1 and 7, then a report (index.html, results.json, claims.md) in
          OUT/report. Stages that finished before are skipped (Ctrl-C and rerun to resume;
          --force reruns them). --weights skips training. Default out: target/reproduce/<profile>.
          The default profile takes about 10 minutes on a 2-core CPU; --quick a minute or two
  report-screenshot DIR
          render DIR/index.html (a report) in headless Chromium to DIR/screenshot.png; fails
          when the page has a broken image or a script error";

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => {
            let problems = xtask::tidy::check(&root);
            for p in &problems {
                eprintln!("tidy: {p}");
            }
            if problems.is_empty() {
                println!("tidy: ok");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("bench") => {
            let flag = |name: &str, default: usize| -> usize {
                args.iter()
                    .position(|a| a == name)
                    .and_then(|i| args.get(i + 1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default)
            };
            match xtask::bench::bench(&root, flag("--threads", 2), flag("--reps", 5), flag("--rounds", 3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("reproduce-paper") => match reproduce_args(&root, &args[1..]) {
            Ok(opts) => match xtask::reproduce::reproduce(&root, opts) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reproduce-paper: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("reproduce-paper: {e}\n\n{HELP}");
                ExitCode::FAILURE
            }
        },
        Some("report-screenshot") => {
            match args.get(1).map(|d| xtask::screenshot::screenshot(std::path::Path::new(d))) {
                Some(Ok(png)) => {
                    println!("report-screenshot: {} (no broken image, no script error)", png.display());
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => {
                    eprintln!("report-screenshot: {e}");
                    ExitCode::FAILURE
                }
                None => {
                    eprintln!("report-screenshot needs a report folder\n\n{HELP}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("-h" | "--help" | "help") | None => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{HELP}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `reproduce-paper`'s flags.
fn reproduce_args(root: &std::path::Path, args: &[String]) -> Result<xtask::reproduce::Options, String> {
    let mut profile = None;
    let (mut out, mut data, mut weights, mut zfnet, mut device) = (None, None, None, None, None);
    let (mut force, mut seed) = (false, 0u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => profile = Some("quick".to_string()),
            "--profile" => profile = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--data" => data = Some(PathBuf::from(value()?)),
            "--weights" => weights = Some(value()?),
            "--zfnet" => zfnet = Some(PathBuf::from(value()?)),
            "--device" => device = Some(value()?),
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--force" => force = true,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    let profile = xtask::reproduce::Profile::named(profile.as_deref().unwrap_or("default"))?;
    let out = out.unwrap_or_else(|| root.join("target/reproduce").join(profile.name));
    Ok(xtask::reproduce::Options { profile, out, force, data, weights, zfnet, seed, device })
}
