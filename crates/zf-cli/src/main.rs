//! The `zfnet` binary: parses arguments and hands each command to the crates. Numerics live in
//! the library crates; this crate holds argument parsing, progress and printing only.

// Doc comments on the clap structs are `--help` texts, not rustdoc: brackets in them are not links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod args;
mod cmd;
mod progress;

use clap::{Parser, Subcommand};

/// zfnet's own source revision, set when it was built (see build.rs): run.json and the report
/// record it.
pub const REVISION: &str = env!("ZFNET_REVISION");

/// candle allocates a fresh buffer for every op; mimalloc keeps freed pages for reuse instead of
/// returning them to the kernel (measured: page faults were about a tenth of a training step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (15 in both its v2 and v3 headers; the Rust bindings name
/// the options around it but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory is kept for reuse instead of purged back to the kernel after mimalloc's default
/// 10 ms: training frees and re-allocates the same large activations every step, and each
/// purge costs a page fault and a page clear per 4 KiB on the next step (measured: training
/// 10% faster at batch 16). Memory held stays at the peak of a step. `MIMALLOC_PURGE_DELAY` in
/// the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's global options; allowed at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

/// Train ZFNet (Zeiler & Fergus 2014), look inside it with the deconvnet, and re-run the paper's
/// analyses.
///
/// ZFNet's layers are named as in the paper's Fig. 3 and the weights files: conv1..conv5, fc6,
/// fc7, fc8 (the paper's "layer 1..7" are conv1..conv5, fc6, fc7; both spellings are accepted).
/// torchvision's AlexNet and VGG load from the files PyTorch wrote (.pth or safetensors); their
/// layers answer to torchvision's keys (features.28) or aliases (conv5_3, fc7): `zfnet info
/// --weights FILE` lists them. Weights are given as a path or as
/// hf://owner/repo[@revision]/file from the Hugging Face hub cache (HF_HOME, HF_HUB_CACHE and
/// HF_HUB_OFFLINE are honoured).
#[derive(Debug, Parser)]
#[command(name = "zfnet", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Where tensors live: cpu, cuda[:N] or metal[:N] (cuda/metal need a build with
    /// `--features cuda` / `--features metal`).
    #[arg(long, global = true, default_value = "cpu")]
    device: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Info(cmd::info::Args),
    Init(cmd::init::Args),
    Forward(cmd::forward::Args),
    Data(cmd::data::Args),
    Train(cmd::train::Args),
    Eval(cmd::train::EvalArgs),
    Predict(cmd::train::PredictArgs),
    Project(cmd::project::Args),
    Visualize(cmd::visualize::Args),
    Occlusion(cmd::occlusion::OcclusionArgs),
    Invariance(cmd::invariance::InvarianceArgs),
    Correspondence(cmd::correspondence::CorrespondenceArgs),
    Filters(cmd::filters::FiltersArgs),
    Evolution(cmd::evolution::EvolutionArgs),
    ProbeLayers(cmd::probe_layers::ProbeArgs),
    Convert(cmd::convert::Args),
    Report(cmd::report::Args),
    Serve(cmd::serve::Args),
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = (|| {
        let device = zf_model::parse_device(&cli.device)?;
        match cli.command {
            Command::Info(a) => cmd::info::run(a, &device),
            Command::Init(a) => cmd::init::run(a, &device),
            Command::Forward(a) => cmd::forward::run(a, &device),
            Command::Data(a) => cmd::data::run(a, &device),
            Command::Train(a) => cmd::train::run(a, &device),
            Command::Eval(a) => cmd::train::eval(a, &device),
            Command::Predict(a) => cmd::train::predict(a, &device),
            Command::Project(a) => cmd::project::run(a, &device),
            Command::Visualize(a) => cmd::visualize::run(a, &device),
            Command::Occlusion(a) => cmd::occlusion::occlusion(a, &device),
            Command::Invariance(a) => cmd::invariance::invariance(a, &device),
            Command::Correspondence(a) => cmd::correspondence::correspondence(a, &device),
            Command::Filters(a) => cmd::filters::filters(a, &device),
            Command::Evolution(a) => cmd::evolution::evolution(a, &device),
            Command::ProbeLayers(a) => cmd::probe_layers::probe_layers(a, &device),
            Command::Convert(a) => cmd::convert::run(a, &device),
            Command::Report(a) => cmd::report::run(a),
            Command::Serve(a) => cmd::serve::run(a, &device),
            Command::Bench(a) => cmd::bench::run(a, &device),
        }
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cmd::train::Interrupted>().is_some() => {
            // Ctrl-C, handled (a checkpoint was written): the shell's status for SIGINT.
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            // candle attaches a backtrace to its errors when RUST_BACKTRACE is set; the message
            // alone says what went wrong.
            let msg = match e.downcast_ref::<zf_model::Error>() {
                Some(zf_model::Error::WithBacktrace { inner, .. }) => inner.to_string(),
                _ => format!("{e:#}"),
            };
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {msg}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's arguments only when it is parsed: two flags of one name in a
    /// command panic at run time. This checks every command at once.
    #[test]
    fn every_command_s_arguments_are_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
