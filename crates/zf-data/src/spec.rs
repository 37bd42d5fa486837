//! What `--data` names, parsed in one place: an image folder, or the generated set with its
//! full config ([`DataSpec`]); and a split of it as a data set ([`DataSpec::open`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::generated::{Generated, GeneratedConfig, Split};
use crate::preprocess::Preprocess;
use crate::{Dataset, ImageFolder, Sample};

/// The word `--data` takes for the generated set.
pub const GENERATED: &str = "generated";

/// A source of images: an image folder (ImageNet layout — `train/` and `val/`, each with one
/// sub-folder per class — or class folders directly), or the generated set.
///
/// ```
/// use zf_data::{DataSpec, GeneratedConfig, Preprocess, Split};
/// let spec = DataSpec::parse("generated", &GeneratedConfig { clutter: 3, ..Default::default() });
/// let val = spec.open(Split::Val, Some(20), Preprocess::paper())?;
/// assert_eq!(val.len(), 20);
/// # Ok::<(), zf_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSpec {
    Folder(PathBuf),
    /// The generated set as `config` draws it (`config.len` is not used: each split's size is
    /// given when it is opened).
    Generated(GeneratedConfig),
}

impl DataSpec {
    /// `generated` (drawn as `generated` says), else a folder path.
    pub fn parse(data: &str, generated: &GeneratedConfig) -> Self {
        if data == GENERATED {
            DataSpec::Generated(generated.clone())
        } else {
            DataSpec::Folder(PathBuf::from(data))
        }
    }

    /// The split `split`, at most `limit` images, served at `preprocess`'s sizes.
    ///
    /// A folder's split is its `train/` or `val/` sub-folder; a folder without that sub-folder
    /// is itself the split (class folders directly), for `Split::Val` only — training needs
    /// both. The generated split has `limit` images (500 when not given).
    pub fn open(&self, split: Split, limit: Option<usize>, preprocess: Preprocess) -> Result<Arc<dyn Dataset>> {
        let set: Arc<dyn Dataset> = match self {
            DataSpec::Generated(config) => {
                Arc::new(Generated::split(config, split, limit.unwrap_or(500)).with_preprocess(preprocess))
            }
            DataSpec::Folder(root) => {
                let dir = split_dir(root, split)?;
                Arc::new(ImageFolder::open(&dir, preprocess)?)
            }
        };
        Ok(match limit {
            Some(n) if n < set.len() => Arc::new(Take(set, n)),
            _ => set,
        })
    }

    /// The generated set's config, if this is it.
    pub fn generated(&self) -> Option<&GeneratedConfig> {
        match self {
            DataSpec::Generated(c) => Some(c),
            DataSpec::Folder(_) => None,
        }
    }

    /// A short description (for logs and run records).
    pub fn describe(&self) -> String {
        match self {
            DataSpec::Folder(p) => format!("folder {}", p.display()),
            DataSpec::Generated(c) => format!("generated (seed {}, clutter {})", c.seed, c.clutter),
        }
    }
}

/// `root/<split>` when it exists; `root` itself for the validation split of a folder of class
/// folders.
fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    let sub = root.join(split.name());
    if sub.is_dir() {
        return Ok(sub);
    }
    if split == Split::Val && root.is_dir() && !root.join(Split::Train.name()).is_dir() {
        return Ok(root.to_path_buf());
    }
    Err(DataError::Invalid(format!(
        "{}: no {}/ folder (expected an ImageNet-layout folder with train/<class>/ and val/<class>/, or `{GENERATED}`)",
        root.display(),
        split.name()
    )))
}

/// The first `n` images of a data set.
#[derive(Clone)]
pub struct Take(pub Arc<dyn Dataset>, pub usize);

impl std::fmt::Debug for Take {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Take({})", self.1)
    }
}

impl Dataset for Take {
    fn len(&self) -> usize {
        self.1.min(self.0.len())
    }
    fn get(&self, i: usize) -> Result<Sample> {
        self.0.get(i)
    }
    fn label(&self, i: usize) -> usize {
        self.0.label(i)
    }
    fn classes(&self) -> &[String] {
        self.0.classes()
    }
    fn describe(&self, i: usize) -> String {
        self.0.describe(i)
    }
    fn preprocess(&self) -> Preprocess {
        self.0.preprocess()
    }
    fn annotation(&self, i: usize) -> Result<Option<crate::generated::Annotation>> {
        self.0.annotation(i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_the_generated_set_open_by_split() {
        let g = GeneratedConfig { clutter: 2, ..Default::default() };
        assert_eq!(DataSpec::parse("generated", &g), DataSpec::Generated(g.clone()));
        assert_eq!(DataSpec::parse("data/x", &g), DataSpec::Folder("data/x".into()));
        let spec = DataSpec::Generated(g.clone());
        let (t, v) = (
            spec.open(Split::Train, Some(7), Preprocess::paper()).unwrap(),
            spec.open(Split::Val, None, Preprocess::paper()).unwrap(),
        );
        assert_eq!((t.len(), v.len()), (7, 500));
        // A written folder: train/ and val/ open; a folder of class folders is its own val split.
        let dir = tempfile::tempdir().unwrap();
        for split in Split::ALL {
            Generated::split(&g, split, 4).write_folder(&dir.path().join(split.name()), &|| ()).unwrap();
        }
        let folder = DataSpec::Folder(dir.path().to_path_buf());
        assert_eq!(folder.open(Split::Train, None, Preprocess::paper()).unwrap().len(), 4);
        assert_eq!(folder.open(Split::Val, Some(3), Preprocess::paper()).unwrap().len(), 3);
        let classes_only = DataSpec::Folder(dir.path().join("val"));
        assert_eq!(classes_only.open(Split::Val, None, Preprocess::paper()).unwrap().len(), 4);
        let Err(e) = classes_only.open(Split::Train, None, Preprocess::paper()) else {
            panic!("opened a missing train/")
        };
        let e = e.to_string();
        assert!(e.contains("no train/ folder"), "{e}");
    }
}
