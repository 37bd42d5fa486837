//! `cargo xtask`'s tasks, as a library so that `cargo test` runs them too.
//!
//! - [`tidy`](mod@tidy): the house rules that a machine can check (layering of the crates, module docs).
//! - [`bench`](mod@bench): zfnet against the PyTorch reference, side by side, with ratios.
//! - [`reproduce`](mod@reproduce): `cargo xtask reproduce-paper`, the whole paper in resumable
//!   stages, and [`report`](mod@report), which hands the run to `zfnet report` (the zf-report
//!   crate: typed results, the claims, the page); [`stages`](mod@stages), their `zfnet` commands
//!   as typed values.
//! - [`gpu`](mod@gpu): `cargo xtask check-gpu`, the CUDA build checked (installing the toolkit).
//! - [`screenshot`](mod@screenshot): `cargo xtask report-screenshot DIR`, the report rendered in
//!   headless Chromium, failing on broken images and script errors.
//!
//! xtask imports one workspace crate, zf-io (atomic writes and the `StageTime` record the report
//! reads; beside it serde_json, clap and ctrlc): it builds in seconds and drives the `zfnet`
//! binary, built through `$CARGO`, when it needs the network.

pub mod bench;
pub mod gpu;
pub mod report;
pub mod reproduce;
pub mod screenshot;
pub mod stages;
pub mod tidy;

use std::path::{Path, PathBuf};

/// Where cargo puts the workspace's builds: `$CARGO_TARGET_DIR` when set (a relative one is
/// taken from `root`, where xtask runs cargo), else `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    target_dir_in(root, std::env::var_os("CARGO_TARGET_DIR"))
}

fn target_dir_in(root: &Path, var: Option<std::ffi::OsString>) -> PathBuf {
    match var {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    #[test]
    fn the_target_dir_follows_cargo_target_dir() {
        let root = Path::new("/w");
        assert_eq!(super::target_dir_in(root, None), PathBuf::from("/w/target"));
        assert_eq!(super::target_dir_in(root, Some("".into())), PathBuf::from("/w/target"));
        assert_eq!(super::target_dir_in(root, Some("t2".into())), PathBuf::from("/w/t2"));
        assert_eq!(super::target_dir_in(root, Some("/elsewhere/t".into())), PathBuf::from("/elsewhere/t"));
    }
}
