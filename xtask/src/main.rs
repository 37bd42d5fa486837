//! `cargo xtask <task>`: development automation for the zfnet workspace.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Development automation for zfnet: the paper end to end, benchmarks against PyTorch, house
/// rules, the report's browser check and the GPU build check.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Check the house rules a machine can check: crate layering (ARCHITECTURE.md) and the `//!` line
    /// that opens every source file.
    Tidy,
    /// Build zfnet (release) and time it against the PyTorch reference (python/zfnet_torch.py),
    /// alternating, on forward passes and training steps (batch 16 and 128, widths 1 and
    /// 0.25), a batch-1 forward, deconvnet projections, and occlusion maps (quarter width
    /// against PyTorch, the paper's width against Captum's `Occlusion`); prints a table with the
    /// ratios; then VGG-16 (torchvision's definition on both sides): forward at batch 16 and 1,
    /// a conv5_3 projection, an occlusion map against Captum's. PyTorch is found through
    /// $ZF_TORCH_PYTHON, .venv-torch/bin/python or python3 (python/setup-torch.sh makes one,
    /// with torchvision and Captum); without it zfnet is timed alone.
    Bench {
        /// Threads for both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Repetitions per measurement.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Alternating rounds (zfnet, PyTorch, zfnet, ...).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Only the cases of this network: zfnet or vgg16.
        #[arg(long, value_name = "NETWORK")]
        only: Option<String>,
    },
    /// The whole paper with one command: generated data (or --data, an ImageNet-layout
    /// folder), training with snapshots, the Fig. 6 ablations, evaluation, Figs. 2, 4, 5, 6, 7
    /// and Tables 1 and 7, then a report (index.html, results.json, claims.md) in OUT/report.
    ///
    /// Stages that finished before are skipped: Ctrl-C (the running stage writes its
    /// checkpoint, the command exits with status 130) and run it again to resume; --force
    /// reruns them. The default profile takes about 18 minutes on a 2-core CPU (REPRODUCTION.md
    /// has the stages' times); --quick a minute or two.
    #[command(name = "reproduce-paper")]
    ReproducePaper {
        /// Every stage, tiny (the same as --profile quick).
        #[arg(long, conflicts_with = "profile")]
        quick: bool,
        /// default (generated data, CPU), quick, or paper (the paper's network and recipe:
        /// needs --data and a GPU).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// An ImageNet-layout folder (train/ and val/ with one sub-folder per class).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Trained weights (a path or hf://...): skips training and the ablations.
        #[arg(long, value_name = "W")]
        weights: Option<String>,
        /// Output folder (default: target/reproduce/<profile>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Rerun stages that finished before.
        #[arg(long)]
        force: bool,
        /// Seed of the data, initialization and every sampled choice.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu, cuda[:N] or metal[:N] (zfnet built with the matching feature).
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// A zfnet binary to use instead of building one.
        #[arg(long, value_name = "PATH")]
        zfnet: Option<PathBuf>,
    },
    /// Check that the CUDA build compiles: installs Debian's nvidia-cuda-toolkit when nvcc is
    /// missing, then `cargo check` and clippy with `--features zf-cli/cuda` (CUDA_COMPUTE_CAP=80:
    /// no GPU needed). About 7 minutes on 2 cores; not part of .ci/run.
    #[command(name = "check-gpu")]
    CheckGpu,
    /// Render DIR/index.html (a report) in headless Chromium to DIR/screenshot.png; fails when
    /// the page has a broken image or a script error.
    #[command(name = "report-screenshot")]
    ReportScreenshot {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let cli = Cli::parse();
    let fail = |task: &str, e: String| {
        eprintln!("{task}: {e}");
        ExitCode::FAILURE
    };
    match cli.task {
        Task::Tidy => {
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
        Task::Bench { threads, reps, rounds, only } => {
            match xtask::bench::bench(&root, threads, reps, rounds, only.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("bench", e),
            }
        }
        Task::ReproducePaper { quick, profile, data, weights, out, force, seed, device, zfnet } => {
            let name = if quick { "quick".to_string() } else { profile.unwrap_or_else(|| "default".into()) };
            let profile = match xtask::reproduce::Profile::named(&name) {
                Ok(p) => p,
                Err(e) => return fail("reproduce-paper", e),
            };
            let out = out.unwrap_or_else(|| root.join("target/reproduce").join(profile.name));
            let opts = xtask::reproduce::Options { profile, out, force, data, weights, zfnet, seed, device };
            xtask::reproduce::catch_ctrl_c();
            match xtask::reproduce::reproduce(&root, opts) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) if e == xtask::reproduce::INTERRUPTED => {
                    eprintln!("reproduce-paper: {e}");
                    ExitCode::from(130)
                }
                Err(e) => fail("reproduce-paper", e),
            }
        }
        Task::CheckGpu => match xtask::gpu::check_gpu(&root) {
            Ok(()) => {
                println!("check-gpu: the CUDA build checks and passes clippy");
                ExitCode::SUCCESS
            }
            Err(e) => fail("check-gpu", e),
        },
        Task::ReportScreenshot { dir } => match xtask::screenshot::screenshot(&dir) {
            Ok(png) => {
                println!("report-screenshot: {} (no broken image, no script error)", png.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail("report-screenshot", e),
        },
    }
}
