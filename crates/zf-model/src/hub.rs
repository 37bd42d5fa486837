//! Weights from the Hugging Face hub: `hf://owner/repo[@revision]/path/file.safetensors`,
//! through the hf-hub crate and the standard cache layout that Python's `huggingface_hub` uses.
//!
//! The cache directory is, as in Python: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. A file already in the
//! cache is used without touching the network (a branch is resolved through `refs/<branch>`, a
//! commit hash through `snapshots/<hash>`). Otherwise it is downloaded into that cache, unless
//! `HF_HUB_OFFLINE` is set (`1`, `true`, `yes` or `on`), which makes a missing file an error.

use std::path::{Path, PathBuf};

use candle_core::Result;
use hf_hub::{Cache, Repo, RepoType};

/// A parsed `hf://` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    /// `owner/repo`.
    pub repo: String,
    /// A branch, tag or commit hash; `main` when not given.
    pub revision: String,
    /// The file's path inside the repository.
    pub file: String,
}

impl HubFile {
    /// Parses `hf://owner/repo[@revision]/path/to/file`.
    pub fn parse(spec: &str) -> Result<Self> {
        let Some(rest) = spec.strip_prefix("hf://") else {
            bail!("`{spec}` is not a hub address: expected hf://owner/repo[@revision]/file")
        };
        let mut parts = rest.splitn(3, '/');
        let (owner, repo, file) = match (parts.next(), parts.next(), parts.next()) {
            (Some(o), Some(r), Some(f)) if !o.is_empty() && !r.is_empty() && !f.is_empty() => (o, r, f),
            _ => bail!("`{spec}` is not a hub address: expected hf://owner/repo[@revision]/file"),
        };
        let (repo, revision) = match repo.split_once('@') {
            Some((r, rev)) if !r.is_empty() && !rev.is_empty() => (r, rev),
            Some(_) => bail!("`{spec}`: empty repository or revision around `@`"),
            None => (repo, "main"),
        };
        Ok(Self { repo: format!("{owner}/{repo}"), revision: revision.to_string(), file: file.to_string() })
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The file's path in the cache at `cache_dir`, if it is there.
    pub fn cached(&self, cache_dir: &Path) -> Option<PathBuf> {
        let cache = Cache::new(cache_dir.to_path_buf());
        if let Some(p) = cache.repo(self.hf_repo()).get(&self.file) {
            return Some(p);
        }
        // A commit hash is a snapshot directory of its own, with no ref pointing at it.
        let p = cache_dir.join(self.hf_repo().folder_name()).join("snapshots").join(&self.revision).join(&self.file);
        p.exists().then_some(p)
    }
}

impl std::fmt::Display for HubFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hf://{}@{}/{}", self.repo, self.revision, self.file)
    }
}

/// The hub cache directory, resolved from the environment as Python's `huggingface_hub` does.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("HF_HUB_CACHE") {
        return p;
    }
    if let Some(p) = var("HF_HOME") {
        return p.join("hub");
    }
    let base = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

/// Whether `HF_HUB_OFFLINE` asks for no network access.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Resolves a weights argument to a local file: a path is checked to exist; an `hf://`
/// address is looked up in the cache and, when absent and online, downloaded into it.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    if !spec.starts_with("hf://") {
        let p = PathBuf::from(spec);
        if !p.is_file() {
            bail!("weights file {spec} does not exist (give a path or hf://owner/repo[@revision]/file)")
        }
        return Ok(p);
    }
    let file = HubFile::parse(spec)?;
    let dir = cache_dir();
    if let Some(p) = file.cached(&dir) {
        tracing::debug!("{file} found in the hub cache at {}", p.display());
        return Ok(p);
    }
    if offline() {
        bail!(
            "{file} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set: download it once online, or point HF_HUB_CACHE / HF_HOME at a cache that has it",
            dir.display()
        )
    }
    tracing::info!("downloading {file} into {}", dir.display());
    let api = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(dir.clone()))
        .with_progress(true)
        .build()
        .map_err(|e| candle_core::Error::Msg(format!("cannot reach the hub for {file}: {e}")))?;
    api.repo(file.hf_repo())
        .get(&file.file)
        .map_err(|e| candle_core::Error::Msg(format!("cannot download {file}: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let f = HubFile::parse("hf://me/zfnet@v1/weights/model.safetensors").unwrap();
        assert_eq!(
            f,
            HubFile { repo: "me/zfnet".into(), revision: "v1".into(), file: "weights/model.safetensors".into() }
        );
        let f = HubFile::parse("hf://me/zfnet/model.safetensors").unwrap();
        assert_eq!(f.revision, "main");
        for bad in ["hf://me/model.safetensors", "hf://me/zfnet@/m.safetensors", "me/zfnet/m", "hf:///zfnet/m"] {
            assert!(HubFile::parse(bad).is_err(), "{bad}");
        }
    }
}
