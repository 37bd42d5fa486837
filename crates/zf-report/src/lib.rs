//! The report of a reproduction of Zeiler & Fergus (2014), as a library: the results a run's
//! stages wrote, read back as types ([`Results`]); the paper's claims as pure functions over
//! them ([`claims()`]); picture-quality numbers ([`quality`]); and the report folder — `index.html` (every figure and table, offline),
//! `results.json`, `claims.md` — written from them ([`write_report`]). `zfnet report RUN` is
//! this crate's one call; `cargo xtask reproduce-paper` runs it after its stages.
//!
//! ```no_run
//! let report = zf_report::write_report(std::path::Path::new("target/reproduce/default"))?;
//! println!("{} of {} claims held", report.held(), report.claims.len());
//! # Ok::<(), zf_report::ReportError>(())
//! ```
//!
//! Depends on zf-train and zf-probe (the types of what the stages write). Errors are
//! [`ReportError`], naming the file.

pub mod claims;
pub mod html;
pub mod quality;
pub mod results;
pub use zf_probe::stats;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use claims::{claims, claims_markdown, Claim};
pub use results::Results;

/// What went wrong, with the file it concerns.
#[derive(Debug)]
pub enum ReportError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not what its stage writes.
    Parse {
        path: PathBuf,
        reason: String,
    },
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ReportError::Parse { path, reason } => write!(f, "{}: not what its stage writes: {reason}", path.display()),
        }
    }
}

impl std::error::Error for ReportError {}

/// One stage's wall time (the record xtask writes; defined once, in zf-io).
pub use zf_io::StageTime;

/// How the run was made: `reproduce.json` in the run's folder, written by `cargo xtask
/// reproduce-paper` (the profile, the options, the stage times and the departures from the
/// paper that the profile implies); `machine` and `revision` are filled in by the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct About {
    pub profile: String,
    pub rationale: String,
    pub data: String,
    pub weights: Option<String>,
    pub seed: u64,
    /// This invocation's wall time.
    pub wall_seconds: f64,
    pub stages: Vec<StageTime>,
    pub departures: Vec<String>,
    /// The given weights' network when it is not ZFNet (`vgg16_bn`); `None` for ZFNet.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub revision: String,
}

/// The file in a run's folder that [`About`] is read from.
pub const ABOUT_FILE: &str = "reproduce.json";

/// A written report: where, and its claims.
#[derive(Clone, Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub claims: Vec<Claim>,
}

impl Report {
    /// How many claims held.
    pub fn held(&self) -> usize {
        self.claims.iter().filter(|c| c.held == Some(true)).count()
    }
}

/// The CPU and threads of this machine, for the page.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} threads, {}", std::env::consts::OS)
}

/// Writes `path` atomically (zf-io), naming it in the error.
fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    zf_io::write_atomic(path, bytes).map_err(|e| ReportError::Io { path: path.to_path_buf(), source: e })
}

/// Writes `run/report/` from the run's files (see the crate docs), with `revision` (the zfnet
/// that writes it) and this machine recorded in `about`. Returns the report.
pub fn write_report_as(run: &Path, revision: &str) -> Result<Report, ReportError> {
    let about_path = run.join(ABOUT_FILE);
    let mut about: About = match std::fs::read(&about_path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| ReportError::Parse { path: about_path.clone(), reason: e.to_string() })?,
        Err(e) => return Err(ReportError::Io { path: about_path, source: e }),
    };
    about.machine = machine();
    about.revision = revision.to_string();
    let results = Results::gather(run)?;
    let claims = claims::for_network(claims(&results), about.network.as_deref());
    let dir = run.join("report");
    let io = |p: &Path, e: std::io::Error| ReportError::Io { path: p.to_path_buf(), source: e };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("figures")).map_err(|e| io(&dir, e))?;
    let doc = serde_json::json!({
        "about": about,
        "claims": claims,
        "picture_quality": quality::picture_quality(&results),
        "conv1_spectral_change": quality::spectral_change(&results),
        "results": results,
    });
    let json = serde_json::to_vec_pretty(&doc)
        .map_err(|e| ReportError::Parse { path: dir.join("results.json"), reason: e.to_string() })?;
    write(&dir.join("results.json"), &json)?;
    write(&dir.join("claims.md"), claims_markdown(&claims).as_bytes())?;
    let mut copy = |from: &str, to: &str| -> Option<String> {
        let src = run.join(from);
        std::fs::copy(&src, dir.join("figures").join(to)).ok()?;
        Some(format!("figures/{to}"))
    };
    let page = html::page(&about, &results, &claims, &mut copy);
    write(&dir.join("index.html"), page.as_bytes())?;
    Ok(Report { dir, claims })
}

/// [`write_report_as`] with this crate's version as the revision.
pub fn write_report(run: &Path) -> Result<Report, ReportError> {
    write_report_as(run, concat!("v", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests;
