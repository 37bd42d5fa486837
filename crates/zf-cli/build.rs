//! Records zfnet's own source revision at build time (`ZFNET_REVISION`): the git commit of the
//! checkout being built, with `-dirty` when it has uncommitted changes; the crate version when
//! built outside a git checkout (e.g. from crates.io). run.json records it, so a run says which
//! zfnet made it, whatever directory it was started from.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let revision = match git(&dir, &["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if let Some(git_dir) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={git_dir}/HEAD");
                println!("cargo:rerun-if-changed={git_dir}/index");
                if let Some(head_ref) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
                }
            }
            format!("{hash}{}", if dirty { "-dirty" } else { "" })
        }
        None => format!("v{version}"),
    };
    println!("cargo:rustc-env=ZFNET_REVISION={revision}");
}
