//! `cargo xtask check-gpu`: the GPU features compile. Installs the CUDA toolkit when `nvcc` is
//! missing (Debian's `nvidia-cuda-toolkit`, from the `contrib non-free` components of the
//! machine's own Debian sources; about 1.6 GB), then runs `cargo check --workspace
//! --all-targets --features zf-cli/cuda` and clippy on the same, with `CUDA_COMPUTE_CAP=80`
//! (candle's kernels build without a GPU or `nvidia-smi`) and `CUDAFORGE_THREADS` set to the
//! machine's cores. Measured on 2 cores: about 7 minutes. Metal cannot compile on Linux: CI's
//! macOS job checks `--features zf-cli/metal`. Run it whenever device code changes; it is not
//! part of `.ci/run`.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// Installs `nvidia-cuda-toolkit` with apt, adding `contrib non-free` to the Debian sources.
#[allow(clippy::print_stderr)]
fn install_cuda_toolkit() -> Result<(), String> {
    if !have("apt-get") {
        return Err(
            "nvcc is missing and this is not a Debian-like system: install the CUDA toolkit (nvcc) first".into()
        );
    }
    let sudo = if Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true) && have("sudo") {
        "sudo "
    } else {
        ""
    };
    eprintln!("check-gpu: nvcc not found: installing Debian's nvidia-cuda-toolkit (about 1.6 GB)");
    let script = format!(
        "set -e\n\
         f=/etc/apt/sources.list.d/debian.sources\n\
         if [ -f $f ] && ! grep -q non-free $f; then {sudo}sed -i 's/^Components: main.*/Components: main contrib non-free non-free-firmware/' $f; fi\n\
         if [ -f /etc/apt/sources.list ] && grep -q '^deb .* main$' /etc/apt/sources.list; then {sudo}sed -i 's/ main$/ main contrib non-free/' /etc/apt/sources.list; fi\n\
         {sudo}apt-get update -qq\n\
         DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit\n"
    );
    run(Command::new("bash").args(["-c", &script]))
}

/// See the module docs.
pub fn check_gpu(root: &Path) -> Result<(), String> {
    if !have("nvcc") {
        install_cuda_toolkit()?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).to_string();
    for sub in [
        vec!["check", "--workspace", "--all-targets", "--features", "zf-cli/cuda"],
        vec!["clippy", "--workspace", "--all-targets", "--features", "zf-cli/cuda", "--", "-D", "warnings"],
    ] {
        let mut cmd = Command::new(&cargo);
        cmd.args(&sub).current_dir(root);
        if std::env::var_os("CUDA_COMPUTE_CAP").is_none() {
            cmd.env("CUDA_COMPUTE_CAP", "80");
        }
        if std::env::var_os("CUDAFORGE_THREADS").is_none() {
            cmd.env("CUDAFORGE_THREADS", &threads);
        }
        run(&mut cmd)?;
    }
    Ok(())
}
