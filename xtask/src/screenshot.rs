//! `cargo xtask report-screenshot DIR`: renders a report's `index.html` in headless Chromium to
//! `DIR/screenshot.png`, and fails when the page shows a broken image or throws a script error
//! (the page counts both itself, see `zf_report::html::PAGE_CHECK`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium binaries tried, in order (Debian's package installs `chromium`).
pub const BROWSERS: [&str; 4] = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/// The first browser found on `PATH` (or `$CHROMIUM`).
pub fn browser() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    BROWSERS.iter().find_map(|b| std::env::split_paths(&path).map(|d| d.join(b)).find(|p| p.is_file()))
}

/// Reads `data-<name>="N"` from the rendered DOM.
pub fn attribute(dom: &str, name: &str) -> Option<usize> {
    let key = format!("data-{name}=\"");
    let start = dom.find(&key)? + key.len();
    dom[start..].split('"').next()?.parse().ok()
}

/// Renders `dir/index.html`, writes `dir/screenshot.png`, and checks the page.
pub fn screenshot(dir: &Path) -> Result<PathBuf, String> {
    let page = dir.join("index.html");
    if !page.is_file() {
        return Err(format!(
            "{} does not exist: give a report folder (cargo xtask reproduce-paper writes one)",
            page.display()
        ));
    }
    let page = page.canonicalize().map_err(|e| format!("{}: {e}", page.display()))?;
    let chrome =
        browser().ok_or("no Chromium found (install Debian's `chromium` package or set CHROMIUM=/path/to/chrome)")?;
    let url = format!("file://{}", page.display());
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"];
    let out = Command::new(&chrome)
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", chrome.display()))?;
    if !out.status.success() {
        return Err(format!("{} --dump-dom failed: {}", chrome.display(), String::from_utf8_lossy(&out.stderr)));
    }
    let dom = String::from_utf8_lossy(&out.stdout);
    let broken =
        attribute(&dom, "broken-images").ok_or("the page did not finish its self-check (no data-broken-images)")?;
    let errors =
        attribute(&dom, "script-errors").ok_or("the page did not finish its self-check (no data-script-errors)")?;
    let png = dir.join("screenshot.png");
    let status = Command::new(&chrome)
        .args(common)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,8000")
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", chrome.display()))?;
    if !status.status.success() || !png.is_file() {
        return Err(format!("{} --screenshot failed: {}", chrome.display(), String::from_utf8_lossy(&status.stderr)));
    }
    if broken > 0 || errors > 0 {
        return Err(format!("{}: {broken} broken image(s), {errors} script error(s)", page.display()));
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_self_check_attributes() {
        let dom = r#"<body data-broken-images="2" data-script-errors="0">"#;
        assert_eq!(attribute(dom, "broken-images"), Some(2));
        assert_eq!(attribute(dom, "script-errors"), Some(0));
        assert_eq!(attribute("<body>", "broken-images"), None);
    }
}
