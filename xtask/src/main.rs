//! `cargo xtask <task>`: development automation for the zfnet workspace.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "cargo xtask <task>

tasks:
  tidy    check the house rules a machine can check: crate layering (DESIGN.md) and the
          `//!` line that opens every source file";

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
