//! Weights from the Hugging Face hub: `hf://owner/repo[@revision]/path/file.safetensors`,
//! through the hf-hub crate and the standard cache layout that Python's `huggingface_hub` uses.
//!
//! The environment is read as Python's `huggingface_hub` reads it ([`HubEnv`]): the cache is
//! `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub` (the home directory is `%USERPROFILE%` on Windows); the token is
//! `$HF_TOKEN`, else the file `$HF_TOKEN_PATH`, else `$HF_HOME/token` (`huggingface-cli login`
//! writes it); `$HF_ENDPOINT` replaces `https://huggingface.co` (a mirror). A file already in
//! the cache is used without touching the network (a branch is resolved through
//! `refs/<branch>`, a commit hash through `snapshots/<hash>`). Otherwise it is downloaded into
//! that cache, unless `HF_HUB_OFFLINE` is set (`1`, `true`, `yes` or `on`), which makes a
//! missing file an error that names it.
//!
//! Files that belong beside the weights (the mean image, class names) come from the same
//! repository and revision: [`resolve_beside`].

use std::path::{Path, PathBuf};

use candle_core::Result;
#[cfg(feature = "hub")]
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

    #[cfg(feature = "hub")]
    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The file's path in the cache at `cache_dir`, if it is there.
    #[cfg(feature = "hub")]
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

/// What the environment says about the hub, read as Python's `huggingface_hub` reads it (see
/// the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubEnv {
    pub cache: PathBuf,
    pub token: Option<String>,
    pub endpoint: String,
    pub offline: bool,
}

impl HubEnv {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests give a map); files named by it (the token file) are read.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .or_else(|| Some(format!("{}{}", var("HOMEDRIVE")?, var("HOMEPATH")?)))
            .map(PathBuf::from);
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")).or_else(|| {
            let file = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home.join("token"));
            std::fs::read_to_string(file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Self { cache, token, endpoint, offline }
    }

    /// `file` from the cache, or downloaded into it (unless offline). Without the `hub` feature,
    /// an error that says so.
    #[cfg(not(feature = "hub"))]
    pub fn fetch(&self, file: &HubFile) -> Result<PathBuf> {
        bail!("{file}: this build of zf-model has no hub support (enable its `hub` feature)")
    }

    /// `file` from the cache, or downloaded into it (unless offline).
    #[cfg(feature = "hub")]
    pub fn fetch(&self, file: &HubFile) -> Result<PathBuf> {
        if let Some(p) = file.cached(&self.cache) {
            tracing::debug!("{file} found in the hub cache at {}", p.display());
            return Ok(p);
        }
        if self.offline {
            bail!(
                "{file} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set: download it once online, or point HF_HUB_CACHE / HF_HOME at a cache that has it",
                self.cache.display()
            )
        }
        tracing::info!("downloading {file} from {} into {}", self.endpoint, self.cache.display());
        let api = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(self.cache.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(true)
            .build()
            .map_err(|e| candle_core::Error::Msg(format!("cannot reach the hub for {file}: {e}")))?;
        api.repo(file.hf_repo())
            .get(&file.file)
            .map_err(|e| candle_core::Error::Msg(format!("cannot download {file} from {}: {e}", self.endpoint)))
    }
}

/// The hub cache directory, resolved from the environment as Python's `huggingface_hub` does.
pub fn cache_dir() -> PathBuf {
    HubEnv::from_env().cache
}

/// Whether `HF_HUB_OFFLINE` asks for no network access.
pub fn offline() -> bool {
    HubEnv::from_env().offline
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
    HubEnv::from_env().fetch(&HubFile::parse(spec)?)
}

/// The file `name` beside the weights `spec`: in the same folder for a path, in the same hub
/// repository, revision and folder for an `hf://` address (through the cache, as
/// [`resolve`]). An error names the file and where it was looked for.
pub fn resolve_beside(spec: &str, name: &str) -> Result<PathBuf> {
    if !spec.starts_with("hf://") {
        let dir = Path::new(spec).parent().unwrap_or(Path::new(""));
        let p = dir.join(name);
        if !p.is_file() {
            bail!("no {name} beside {spec} (looked for {})", p.display())
        }
        return Ok(p);
    }
    let weights = HubFile::parse(spec)?;
    let file = match weights.file.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_string(),
    };
    let beside = HubFile { file, ..weights };
    HubEnv::from_env().fetch(&beside).map_err(|e| candle_core::Error::Msg(format!("no {name} beside {spec}: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_as_huggingface_hub_reads_it() {
        let tmp = std::env::temp_dir().join(format!("zf-hub-env-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("token"), "hf_fromfile\n").unwrap();
        let home = tmp.to_string_lossy().into_owned();
        let env = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            HubEnv::from_lookup(|k| map.get(k).cloned())
        };
        // Linux defaults.
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(e.cache, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!((e.endpoint.as_str(), e.offline), ("https://huggingface.co", false));
        // Windows: no HOME, the profile folder.
        let e = env(&[("USERPROFILE", "C:/Users/u")]);
        assert_eq!(e.cache, PathBuf::from("C:/Users/u/.cache/huggingface/hub"));
        let e = env(&[("HOMEDRIVE", "D:"), ("HOMEPATH", "/Users/v")]);
        assert_eq!(e.cache, PathBuf::from("D:/Users/v/.cache/huggingface/hub"));
        // HF_HOME moves the cache and the token file; HF_HUB_CACHE moves only the cache.
        let e = env(&[("HOME", "/home/u"), ("HF_HOME", &home), ("HF_HUB_CACHE", "/elsewhere")]);
        assert_eq!(e.cache, PathBuf::from("/elsewhere"));
        assert_eq!(e.token.as_deref(), Some("hf_fromfile"));
        // HF_TOKEN wins over the file; HF_ENDPOINT (a mirror) loses its trailing slash.
        let e = env(&[("HF_HOME", &home), ("HF_TOKEN", "hf_env"), ("HF_ENDPOINT", "https://mirror.example/")]);
        assert_eq!(e.token.as_deref(), Some("hf_env"));
        assert_eq!(e.endpoint, "https://mirror.example");
        assert_eq!(e.cache, tmp.join("hub"));
        // XDG_CACHE_HOME, an empty variable as unset, and the offline spellings.
        let e = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", " "), ("HF_HUB_OFFLINE", "ON")]);
        assert_eq!((e.cache, e.token, e.offline), (PathBuf::from("/xdg/huggingface/hub"), None, true));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

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
