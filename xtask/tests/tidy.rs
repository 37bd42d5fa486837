//! The tidy check on this workspace, and on small broken workspaces that it must reject.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn this_workspace_is_tidy() {
    let problems = xtask::tidy::check(&workspace_root());
    assert!(problems.is_empty(), "tidy found:\n{}", problems.join("\n"));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zfnet-tidy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn krate(root: &Path, name: &str, deps: &str, dev_deps: &str) {
    write(
        &root.join("crates").join(name).join("Cargo.toml"),
        &format!("[package]\nname = \"{name}\"\n\n[dependencies]\n{deps}\n\n[dev-dependencies]\n{dev_deps}\n"),
    );
    write(&root.join("crates").join(name).join("src/lib.rs"), "//! A crate.\n");
}

#[test]
fn upward_dependencies_are_rejected() {
    let root = scratch("layering");
    krate(&root, "zf-model", "candle-core.workspace = true", "");
    krate(&root, "zf-data", "zf-model = { path = \"../zf-model\" }", "");
    krate(&root, "zf-deconv", "zf-model.workspace = true", "zf-train.workspace = true");
    krate(&root, "zf-train", "[dependencies.zf-cli]\npath = \"../zf-cli\"", "");
    krate(&root, "zf-cli", "zf-model.workspace = true", "");
    krate(&root, "zf-extra", "", "");
    let problems = xtask::tidy::check(&root);
    let joined = problems.join("\n");
    assert!(
        joined.contains("`zf-data` depends on `zf-model`, which the layering forbids (allowed: zf-io)"),
        "{joined}"
    );
    assert!(joined.contains("`zf-deconv` depends on `zf-train`"), "{joined}");
    assert!(joined.contains("`zf-train` depends on `zf-cli`"), "{joined}");
    assert!(joined.contains("crate `zf-extra` is not in the layering table"), "{joined}");
    assert_eq!(problems.len(), 4, "{joined}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn files_without_a_module_doc_are_rejected() {
    let root = scratch("docs");
    krate(&root, "zf-model", "", "");
    write(&root.join("crates/zf-model/src/pool.rs"), "// a plain comment\nfn f() {}\n");
    write(&root.join("crates/zf-model/tests/t.rs"), "\n\n//! Fine after blank lines.\n");
    write(&root.join("xtask/src/main.rs"), "fn main() {}\n");
    let problems = xtask::tidy::check(&root);
    let joined = problems.join("\n");
    assert!(joined.contains("crates/zf-model/src/pool.rs: the first line must be a `//!` comment"), "{joined}");
    assert!(joined.contains("xtask/src/main.rs"), "{joined}");
    assert_eq!(problems.len(), 2, "{joined}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn files_over_the_line_limit_are_rejected() {
    let root = scratch("long");
    krate(&root, "zf-model", "", "");
    let limit = xtask::tidy::MAX_LINES;
    write(&root.join("crates/zf-model/src/big.rs"), &format!("//! Too much.\n{}", "fn f() {}\n".repeat(limit)));
    write(&root.join("crates/zf-model/src/fits.rs"), &format!("//! Just fits.\n{}", "fn f() {}\n".repeat(limit - 1)));
    let problems = xtask::tidy::check(&root);
    let joined = problems.join("\n");
    assert!(joined.contains(&format!("crates/zf-model/src/big.rs: {} lines, over {limit}", limit + 1)), "{joined}");
    assert_eq!(problems.len(), 1, "{joined}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_binary_may_not_depend_on_a_numeric_crate() {
    let root = scratch("numeric");
    krate(&root, "zf-model", "candle-core.workspace = true", "");
    // Linked into the binary: rejected; in its tests: fine.
    krate(
        &root,
        "zf-cli",
        "zf-model.workspace = true\ncandle-core.workspace = true\ngemm = \"0.17\"",
        "candle-nn = \"0.9\"",
    );
    let problems = xtask::tidy::check(&root);
    let joined = problems.join("\n");
    assert!(joined.contains("`zf-cli` depends on the numeric crate `candle-core`"), "{joined}");
    assert!(joined.contains("`zf-cli` depends on the numeric crate `gemm`"), "{joined}");
    assert_eq!(problems.len(), 2, "{joined}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn docs_naming_missing_paths_are_rejected() {
    let root = scratch("paths");
    krate(&root, "zf-model", "", "");
    write(
        &root.join("crates/zf-model/src/here.rs"),
        "//! See `crates/zf-model/src/lib.rs` and crates/zf-model/src/gone.rs.\n",
    );
    write(
        &root.join("README.md"),
        "Run `python/missing.py`, read [the map](ARCHITECTURE.md) and `crates/zf-model/src/`; \
         globs such as `data/*.jpg` and user paths like runs/small are not checked.\n",
    );
    let problems = xtask::tidy::check(&root);
    let joined = problems.join("\n");
    assert!(joined.contains("crates/zf-model/src/here.rs:1: names `crates/zf-model/src/gone.rs`"), "{joined}");
    assert!(joined.contains("README.md:1: names `python/missing.py`"), "{joined}");
    assert!(joined.contains("README.md:1: names `ARCHITECTURE.md`"), "{joined}");
    assert_eq!(problems.len(), 3, "{joined}");
    std::fs::remove_dir_all(&root).unwrap();
}
