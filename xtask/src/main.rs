//! `cargo xtask <task>`: development automation for the zfnet workspace.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "cargo xtask <task>

tasks:
  tidy    check the house rules a machine can check: crate layering (DESIGN.md) and the
          `//!` line that opens every source file
  bench [--threads N] [--reps R] [--rounds K]
          build zfnet (release) and time it against shared/bench/torch_zfnet.py, alternating,
          on the paper network's forward (batch 16), a quarter-width forward and one deconvnet
          projection; prints a table with the ratios. PyTorch is found through
          $ZF_TORCH_PYTHON, .venv-torch/bin/python or python3 (shared/bench/setup-torch.sh
          makes one); without it zfnet is timed alone. Defaults: 2 threads, 5 reps, 3 rounds";

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
