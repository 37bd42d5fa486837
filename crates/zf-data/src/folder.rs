//! Image folders in the ImageNet layout (`train/<class>/*`, `val/<class>/*`), flat folders and
//! file lists for prediction, and the class-names file.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::preprocess::Preprocess;
use crate::{Dataset, Sample};

/// File extensions taken as images (case-insensitive). Others in a class folder are ignored.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm"];

/// The name of the class-names file: one class per line, in class-index order.
pub const CLASSES_FILE: &str = "classes.txt";

/// A labelled image folder: one sub-folder per class, the class index by sorted folder name.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    files: Vec<(PathBuf, usize)>,
    preprocess: Preprocess,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

impl ImageFolder {
    /// Opens `root` (a split folder such as `DATA/train`): every sub-folder is a class, sorted
    /// by name. An empty class folder is a warning; a folder with no images at all an error.
    pub fn open(root: &Path, preprocess: Preprocess) -> Result<Self> {
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let label = classes.len();
            let before = files.len();
            files.extend(sorted_entries(&dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).map(|p| (p, label)));
            if files.len() == before {
                tracing::warn!("class folder {} has no images", dir.display());
            }
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(DataError::Empty {
                what: root.display().to_string(),
                detail: "expected one sub-folder per class (train/<class>/*.JPEG)".into(),
            });
        }
        if files.is_empty() {
            return Err(DataError::Empty {
                what: root.display().to_string(),
                detail: format!(
                    "{} class folders, none holding an image file ({})",
                    classes.len(),
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        Ok(Self { root: root.to_path_buf(), classes, files, preprocess })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image files with their class indices, in order.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (path, label) = &self.files[index];
        Ok(Sample { image: self.preprocess.load(path)?, label: *label })
    }

    fn label(&self, index: usize) -> usize {
        self.files[index].1
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn describe(&self, index: usize) -> String {
        self.files[index].0.display().to_string()
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess
    }

    fn annotation(&self, index: usize) -> Result<Option<crate::generated::Annotation>> {
        crate::generated::read_annotation(&self.files[index].0)
    }
}

/// Unlabelled images for prediction: the given files, and the image files of the given
/// folders (not recursive), in order.
pub fn list_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(sorted_entries(p)?.into_iter().filter(|f| f.is_file() && is_image(f)));
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(DataError::io(p, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
        }
    }
    if out.is_empty() {
        return Err(DataError::Empty { what: format!("{paths:?}"), detail: "no image files".into() });
    }
    Ok(out)
}

/// ImageNet's 1000 ILSVRC-2012 class names, one per line in class-index order, as torchvision,
/// Keras and imgclsmob number them (source: `crates/zf-data/data/SOURCES.md`).
pub const IMAGENET_CLASSES: &str = include_str!("../data/imagenet_classes.txt");

/// [`IMAGENET_CLASSES`] as a list (index = class).
pub fn imagenet_classes() -> Vec<String> {
    IMAGENET_CLASSES.lines().map(String::from).collect()
}

/// Writes the class names, one per line, atomically.
pub fn write_classes(path: &Path, classes: &[String]) -> Result<()> {
    let mut text = classes.join("\n");
    text.push('\n');
    crate::write_atomic(path, text.as_bytes())
}

/// Reads class names written by [`write_classes`] (blank lines and `#` comments ignored).
pub fn read_classes(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let classes: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    if classes.is_empty() {
        return Err(DataError::Format { path: path.into(), reason: "no class names (expected one per line)".into() });
    }
    Ok(classes)
}
