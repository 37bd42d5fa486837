//! The tidy check: every crate's dependencies follow the layering of ARCHITECTURE.md
//! ("Cross-cutting rules"), every source file says why it exists in a first `//!` line, none is
//! longer than [`MAX_LINES`], and every repository path a doc names exists ([`DOC_ROOTS`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which workspace crates each crate may depend on (ARCHITECTURE.md, "Cross-cutting rules").
/// Dependencies point down only; nothing imports zf-cli; xtask imports zf-io alone.
pub const LAYERING: &[(&str, &[&str])] = &[
    ("zf-io", &[]),
    ("zf-data", &["zf-io"]),
    ("zf-model", &["zf-io"]),
    ("zf-viz", &["zf-io"]),
    ("zf-deconv", &["zf-io", "zf-model"]),
    ("zf-train", &["zf-io", "zf-model", "zf-data"]),
    ("zf-probe", &["zf-io", "zf-model", "zf-data", "zf-deconv"]),
    ("zf-report", &["zf-io", "zf-train", "zf-probe"]),
    ("zf-serve", &["zf-io", "zf-model", "zf-data", "zf-deconv", "zf-probe", "zf-viz"]),
    (
        "zf-cli",
        &["zf-io", "zf-data", "zf-model", "zf-deconv", "zf-train", "zf-probe", "zf-viz", "zf-report", "zf-serve"],
    ),
    ("zfnet-tests", &["zf-io", "zf-data", "zf-model", "zf-deconv", "zf-train", "zf-probe", "zf-viz"]),
    ("xtask", &["zf-io"]),
];

/// Crates the thin binary may not depend on directly: its numerics live in the libraries, and
/// it holds tensors only through zf-model's re-exported types.
pub const NUMERIC_CRATES: &[&str] = &["candle-core", "candle-nn", "gemm", "rayon"];
/// The thin binary.
pub const BINARY: &str = "zf-cli";

/// The longest a source file may be: past it, a file holds more than one idea.
pub const MAX_LINES: usize = 800;

/// Where a repository path a doc names starts: a word that begins with one of these in a
/// markdown file at the root or in a crate, or in a Rust comment, must name a file or folder
/// that exists (globs and placeholders, `*`, `{`, `<`, `$`, `...`, are not paths).
pub const DOC_ROOTS: &[&str] = &["crates/", "python/", "xtask/", "data/", "docs/", "tests/", ".ci/"];

/// Runs every check on the workspace at `root`; returns one line per violation.
pub fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let manifests = member_manifests(root);
    let members: BTreeSet<String> = manifests.iter().filter_map(|m| package_name(m)).collect();
    for manifest in &manifests {
        let rel = manifest.strip_prefix(root).unwrap_or(manifest).display().to_string();
        let Some(name) = package_name(manifest) else {
            problems.push(format!("{rel}: no [package] name"));
            continue;
        };
        let Some((_, allowed)) = LAYERING.iter().find(|(n, _)| *n == name) else {
            problems.push(format!(
                "{rel}: crate `{name}` is not in the layering table (xtask/src/tidy.rs, ARCHITECTURE.md)"
            ));
            continue;
        };
        for dep in dependencies(manifest) {
            if members.contains(&dep) && !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "{rel}: `{name}` depends on `{dep}`, which the layering forbids (allowed: {})",
                    list(allowed)
                ));
            }
        }
    }
    for manifest in &manifests {
        if package_name(manifest).as_deref() != Some(BINARY) {
            continue;
        }
        let rel = manifest.strip_prefix(root).unwrap_or(manifest).display().to_string();
        for dep in dependencies_in(manifest, false) {
            if NUMERIC_CRATES.contains(&dep.as_str()) {
                problems.push(format!(
                    "{rel}: `{BINARY}` depends on the numeric crate `{dep}`: the binary parses arguments, calls a library and draws (use zf-model's re-exported tensor types; its tests may use anything)"
                ));
            }
        }
    }
    for dir in ["crates", "xtask", "tests"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let rel = file.strip_prefix(root).unwrap_or(&file).display().to_string();
            if !first.starts_with("//!") {
                problems.push(format!("{rel}: the first line must be a `//!` comment saying why the file exists"));
            }
            let lines = text.lines().count();
            if lines > MAX_LINES {
                problems.push(format!(
                    "{rel}: {lines} lines, over {MAX_LINES}: split it into modules that each hold one idea"
                ));
            }
        }
    }
    problems.extend(missing_doc_paths(root));
    problems
}

/// The paths docs name that do not exist: in `*.md` at the root and in `crates/*`, and in the
/// comments of every Rust file. Root-level markdown names (README.md's links) count too.
fn missing_doc_paths(root: &Path) -> Vec<String> {
    let mut docs: Vec<(PathBuf, bool)> = Vec::new();
    let mds = |dir: &Path| -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut v: Vec<PathBuf> =
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
        v.sort();
        v
    };
    docs.extend(mds(root).into_iter().map(|p| (p, false)));
    for manifest in member_manifests(root) {
        if let Some(dir) = manifest.parent().filter(|d| *d != root) {
            docs.extend(mds(dir).into_iter().map(|p| (p, false)));
        }
    }
    for dir in ["crates", "xtask", "tests"] {
        docs.extend(rust_files(&root.join(dir)).into_iter().map(|p| (p, true)));
    }
    let mut problems = Vec::new();
    for (file, rust) in docs {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let rel = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        for (n, line) in text.lines().enumerate() {
            let line = if rust {
                match line.trim_start().strip_prefix("//") {
                    Some(comment) => comment,
                    None => continue,
                }
            } else {
                line
            };
            for path in named_paths(line) {
                if !root.join(&path).exists() {
                    problems.push(format!("{rel}:{}: names `{path}`, which does not exist", n + 1));
                }
            }
        }
    }
    problems
}

/// The repository paths one line of a doc names (see [`DOC_ROOTS`]).
fn named_paths(line: &str) -> Vec<String> {
    let separators = |c: char| c.is_whitespace() || "`'\"()[]<>,;|=".contains(c);
    line.split(separators)
        .map(|w| w.trim_end_matches(['.', ':', '!', '?']))
        .filter(|w| {
            let rooted = DOC_ROOTS.iter().any(|r| w.starts_with(r));
            let md_link = w.ends_with(".md")
                && !w.contains('/')
                && w.len() > 3
                && w.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            (rooted || md_link) && !w.contains(['*', '{', '}', '$']) && !w.contains("...")
        })
        .map(str::to_string)
        .collect()
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "no workspace crate".to_string()
    } else {
        names.join(", ")
    }
}

/// `crates/*/Cargo.toml`, `xtask/Cargo.toml`, `tests/Cargo.toml`.
fn member_manifests(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join("crates")) {
        let mut dirs: Vec<_> =
            rd.filter_map(|e| e.ok()).map(|e| e.path().join("Cargo.toml")).filter(|p| p.is_file()).collect();
        dirs.sort();
        out.extend(dirs);
    }
    for d in ["xtask", "tests"] {
        let p = root.join(d).join("Cargo.toml");
        if p.is_file() {
            out.push(p);
        }
    }
    out
}

fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("name").map(str::trim).and_then(|r| r.strip_prefix('=')) {
                return Some(v.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

/// Names of every dependency in `[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]` and their `[target.*.…]` forms, in both the `name = …` and the
/// `[dependencies.name]` spellings.
fn dependencies(manifest: &Path) -> Vec<String> {
    dependencies_in(manifest, true)
}

/// The crates `manifest` depends on: in every kind of dependency table (`all_kinds`: dev and
/// build too), or only in the ones linked into the crate (`[dependencies]`, per target too).
fn dependencies_in(manifest: &Path, all_kinds: bool) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let is_dep_table = |t: &str| {
        let last = t.rsplit('.').next().unwrap_or(t);
        let kind_ok = if all_kinds { last.ends_with("dependencies") } else { last == "dependencies" };
        kind_ok && (t.starts_with("target.") || !t.contains('.'))
    };
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            in_deps = is_dep_table(header);
            // [dependencies.name] / [target.x.dependencies.name]
            if let Some((table, name)) = header.rsplit_once('.') {
                if is_dep_table(table) {
                    out.push(name.trim_matches('"').to_string());
                }
            }
            continue;
        }
        if in_deps && !line.starts_with('#') {
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim();
                let name = key.split('.').next().unwrap_or(key).trim_matches('"');
                if !name.is_empty() {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for entry in rd.filter_map(|e| e.ok()) {
        let p = entry.path();
        let name = entry.file_name();
        if p.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                out.extend(rust_files(&p));
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}
