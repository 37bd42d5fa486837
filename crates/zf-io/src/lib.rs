//! The one way every zfnet crate writes a file ([`write_atomic_with`]): into a fresh temporary
//! file beside the target (tempfile's, removed if anything fails), synced to disk, then renamed
//! into place. A reader or a crash never sees a half-written file, two writers never share a
//! temporary file, and the result has an ordinary file's mode (0o666 less the umask on Unix),
//! not a temporary file's 0o600.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("run.json");
//! zf_io::write_atomic(&path, b"{}")?;
//! assert_eq!(std::fs::read(&path)?, b"{}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Also the one record that crosses from the driver to the report: [`StageTime`], which
//! `cargo xtask reproduce-paper` writes into `reproduce.json` and zf-report reads back.
//!
//! Depends on tempfile and serde only; every other workspace crate, and xtask, may use it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `path` through `write` (see the crate docs).
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One stage of a reproduction and its wall time, as `reproduce.json` lists them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
    /// Done by an earlier invocation (its recorded time).
    pub skipped: bool,
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // A writer that fails leaves the old file and no temporary file.
        let e = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            // The mode File::create gives under this process's umask.
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.path().join("plain");
            std::fs::File::create(&plain).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
        }
    }
}
