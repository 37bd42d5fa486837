//! The generated data set: ten classes of objects drawn on cluttered, textured backgrounds,
//! deterministic from a seed, rendered on the fly at 256x256, every image carrying its class,
//! bounding box and named parts; plus five held-out classes and aligned faces for the analyses.
//!
//! It is the embedded default of `cargo xtask reproduce-paper`, so it is designed for the
//! paper's effects to show on a CPU:
//! - the class is the object's *shape*: colours and textures of object and background are drawn
//!   independently of the class, and the background is cluttered with fragments of the same
//!   primitives (disks, boxes, triangles, bars) at every orientation;
//! - backgrounds have a natural image's 1/f amplitude spectrum (fractal noise over three
//!   colours), objects are shaded by a light gradient, the whole picture is lit with a random
//!   gain and gradient, and 30% of objects are partly hidden behind a fragment — so that the
//!   first layer has reason to learn edges and colour blobs rather than flat colour;
//! - objects vary in position (anywhere the whole object fits), scale (about 80..170 px wide)
//!   and colour; seven classes stand upright with a small tilt (±[`UPRIGHT_TILT_DEG`]°), three
//!   are rotationally symmetric ([`Class::symmetric`]) and appear at any angle — so the paper's
//!   rotation claim (Fig. 5) can be tested;
//! - the `face` class has named parts (`left_eye`, `right_eye`, `nose`, `mouth`), so the
//!   correspondence analysis of Sec. 4.3 runs as in the paper; the faces split
//!   ([`Split::Faces`]) draws them frontal, centred, at one scale with the parts at fixed
//!   positions, as the paper's aligned dog faces. Left and right are as seen in the image:
//!   `left_eye` is the eye nearer the image's left edge on an upright face;
//! - the transfer splits ([`Split::TransferTrain`], [`Split::TransferVal`]) draw five classes
//!   the network never trains on ([`Class::HELD_OUT`]), for Table 7's probes of frozen features.

use std::collections::BTreeMap;
use std::path::Path;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::preprocess::Preprocess;
use crate::{Dataset, Sample};

/// Side of every generated image (the paper's resize size, so its pipeline applies unchanged).
pub const SIDE: usize = 256;
/// Largest tilt of the upright classes, degrees either way.
pub const UPRIGHT_TILT_DEG: f32 = 10.0;

/// The ten classes the network trains on (in class-index order), and five held-out classes
/// ([`Class::HELD_OUT`]) that only the transfer splits draw, for Table 7's question: how well
/// do a frozen layer's features separate classes the network never saw?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Face,
    House,
    Tree,
    Car,
    Mushroom,
    Arrow,
    Bottle,
    Ring,
    Flower,
    Star,
    Fish,
    Cup,
    Umbrella,
    Heart,
    Lamp,
}

impl Class {
    /// The trained classes, in class-index order.
    pub const ALL: [Class; 10] = [
        Class::Face,
        Class::House,
        Class::Tree,
        Class::Car,
        Class::Mushroom,
        Class::Arrow,
        Class::Bottle,
        Class::Ring,
        Class::Flower,
        Class::Star,
    ];
    /// The held-out classes of the transfer splits, in their class-index order.
    pub const HELD_OUT: [Class; 5] = [Class::Fish, Class::Cup, Class::Umbrella, Class::Heart, Class::Lamp];

    pub fn name(self) -> &'static str {
        match self {
            Class::Face => "face",
            Class::House => "house",
            Class::Tree => "tree",
            Class::Car => "car",
            Class::Mushroom => "mushroom",
            Class::Arrow => "arrow",
            Class::Bottle => "bottle",
            Class::Ring => "ring",
            Class::Flower => "flower",
            Class::Star => "star",
            Class::Fish => "fish",
            Class::Cup => "cup",
            Class::Umbrella => "umbrella",
            Class::Heart => "heart",
            Class::Lamp => "lamp",
        }
    }

    /// The class index within its group ([`Class::ALL`] or [`Class::HELD_OUT`]).
    pub fn index(self) -> usize {
        Self::ALL.iter().chain(&Self::HELD_OUT).position(|&c| c == self).map_or(0, |i| i % Self::ALL.len())
    }

    /// Rotationally symmetric classes (a ring fully, a six-petal flower and a five-point star
    /// nearly): drawn at any angle.
    pub fn symmetric(self) -> bool {
        matches!(self, Class::Ring | Class::Flower | Class::Star)
    }
}

/// What an image shows: its class, the object's bounding box and its named parts, in pixels of
/// the 256x256 image. Written beside each image as JSON when the set is saved as a folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub class: Class,
    pub label: usize,
    /// `[x0, y0, x1, y1]`, clipped to the image.
    pub bbox: [f32; 4],
    /// Part name -> `[x, y]`.
    pub parts: BTreeMap<String, [f32; 2]>,
    /// The object's rotation in degrees (clockwise in the image) and scale (pixels per object
    /// unit; the object spans about two units).
    pub rotation_deg: f32,
    pub scale: f32,
    pub centre: [f32; 2],
}

/// How the set is drawn. [`GeneratedConfig::default`] is the embedded default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratedConfig {
    pub seed: u64,
    /// Images in the set (labels cycle through the classes, so every class has the same count
    /// up to one).
    pub len: usize,
    /// Clutter shapes behind the object.
    pub clutter: usize,
    /// Object size range, pixels per object unit (the object spans about two units).
    pub scale: (f32, f32),
}

impl Default for GeneratedConfig {
    fn default() -> Self {
        Self { seed: 0, len: 1000, clutter: 14, scale: (40.0, 85.0) }
    }
}

/// The generated data set (see the module docs).
#[derive(Clone, Debug)]
pub struct Generated {
    pub config: GeneratedConfig,
    /// The classes drawn, in label order.
    kinds: Vec<Class>,
    /// Frontal, centred faces at one scale with parts at fixed positions ([`Split::Faces`]).
    aligned: bool,
    classes: Vec<String>,
    preprocess: Preprocess,
}

/// The aligned faces' scale, pixels per object unit at 256 px: the face fills most of the
/// centre crop, each eye about 28 px across (a conv5 cell or more at any input size).
pub const ALIGNED_FACE_SCALE: f32 = 100.0;

/// How often a clutter fragment is drawn over the object (partial occlusion).
pub const OCCLUDED_FRACTION: f64 = 0.3;

impl Generated {
    /// The trained classes ([`Class::ALL`]).
    pub fn new(config: GeneratedConfig) -> Self {
        Self::of(config, Class::ALL.to_vec(), false)
    }

    fn of(config: GeneratedConfig, kinds: Vec<Class>, aligned: bool) -> Self {
        Self {
            config,
            classes: kinds.iter().map(|c| c.name().to_string()).collect(),
            kinds,
            aligned,
            preprocess: Preprocess::paper(),
        }
    }

    /// Serves the images resized to `preprocess.resize` (for networks whose input is not 224;
    /// annotations stay in the 256-pixel frame of [`Generated::render`]).
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.preprocess = preprocess;
        self
    }

    /// A split of `len` images whose pixels do not overlap another split's: the split's name is
    /// mixed into the seed. The transfer splits draw the held-out classes; the faces split
    /// aligned frontal faces.
    pub fn split(config: &GeneratedConfig, split: Split, len: usize) -> Self {
        let tag =
            split.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let config = GeneratedConfig { seed: config.seed ^ tag, len, ..config.clone() };
        match split {
            Split::Train | Split::Val => Self::new(config),
            Split::TransferTrain | Split::TransferVal => Self::of(config, Class::HELD_OUT.to_vec(), false),
            Split::Faces => Self::of(config, vec![Class::Face], true),
        }
    }

    /// The class of image `index`.
    pub fn class_of(&self, index: usize) -> Class {
        self.kinds[index % self.kinds.len()]
    }

    /// Renders image `index` with its annotation.
    pub fn render(&self, index: usize) -> (RgbImage, Annotation) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64);
        let class = self.class_of(index);
        let mut canvas = Canvas::background(&mut rng);
        for _ in 0..self.config.clutter {
            let shape = clutter(&mut rng);
            canvas.draw(&shape);
        }
        let s = SIDE as f32;
        let (scale, rotation) = if self.aligned {
            (ALIGNED_FACE_SCALE, 0.0)
        } else {
            let (lo, hi) = self.config.scale;
            let rotation = if class.symmetric() {
                rng.random_range(0.0..360.0)
            } else {
                rng.random_range(-UPRIGHT_TILT_DEG..UPRIGHT_TILT_DEG)
            };
            (rng.random_range(lo..hi), rotation)
        };
        let (prims, parts) = object(class, &mut rng, !self.aligned);
        // Place the object where its whole bounding box fits (aligned: centred).
        let xf = Xform { scale, rot: rotation.to_radians(), tx: 0.0, ty: 0.0 };
        let bb = bounds(&prims, &xf);
        let margin = 2.0;
        let (tx, ty) = if self.aligned {
            (s / 2.0, s / 2.0)
        } else {
            (pick(&mut rng, margin - bb[0], s - margin - bb[2]), pick(&mut rng, margin - bb[1], s - margin - bb[3]))
        };
        let xf = Xform { tx, ty, ..xf };
        // Light falls on the object from one side: a gradient across it, in object units.
        let light = [rng.random_range(-0.3..0.3f32), rng.random_range(-0.3..0.3f32)];
        canvas.draw(&Shape { prims, xf, light });
        let bb = [bb[0] + tx, bb[1] + ty, bb[2] + tx, bb[3] + ty].map(|v| v.clamp(0.0, s));
        // Partial occlusion: a fragment in front of the object, overlapping its box (never on
        // the aligned faces, whose parts must stay visible).
        if !self.aligned && rng.random_bool(OCCLUDED_FRACTION) {
            let mut front = clutter(&mut rng);
            front.xf.scale = rng.random_range(0.25..0.5) * (bb[2] - bb[0]).max(bb[3] - bb[1]);
            let side = if rng.random::<bool>() { 0 } else { 2 };
            front.xf.tx = bb[side] + rng.random_range(-0.2..0.2) * (bb[2] - bb[0]);
            front.xf.ty = rng.random_range(bb[1]..bb[3].max(bb[1] + 1.0));
            canvas.draw(&front);
        }
        canvas.illuminate(&mut rng);
        let parts = parts.into_iter().map(|(name, p)| (name.to_string(), xf.apply(p))).collect();
        let ann = Annotation {
            class,
            label: self.kinds.iter().position(|&k| k == class).unwrap_or(0),
            bbox: bb,
            parts,
            rotation_deg: rotation,
            scale,
            centre: [tx, ty],
        };
        (canvas.into_image(), ann)
    }

    /// The annotation of image `index` (renders the image).
    pub fn annotation(&self, index: usize) -> Annotation {
        self.render(index).1
    }

    /// Writes the set as an image folder: `dir/<class>/<index>.png` with `<index>.json` (the
    /// [`Annotation`]) beside each, in parallel. `done` is called after each image.
    pub fn write_folder(&self, dir: &Path, done: &(dyn Fn() + Sync)) -> Result<()> {
        use rayon::prelude::*;
        for c in &self.classes {
            let d = dir.join(c);
            std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        }
        (0..self.len()).into_par_iter().try_for_each(|i| {
            let (img, ann) = self.render(i);
            let stem = dir.join(ann.class.name()).join(format!("{i:06}"));
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| DataError::Invalid(format!("cannot encode image {i}: {e}")))?;
            crate::write_atomic(&stem.with_extension("png"), &png)?;
            let json = serde_json::to_vec_pretty(&ann).map_err(|e| DataError::Invalid(e.to_string()))?;
            crate::write_atomic(&stem.with_extension("json"), &json)?;
            done();
            Ok(())
        })
    }
}

/// Which part of a data set: its images differ between splits (the name seeds them). Train
/// and val hold the trained classes; the transfer splits hold the held-out classes
/// ([`Class::HELD_OUT`]), for probes of frozen features (Table 7); faces holds aligned frontal
/// faces for the correspondence analysis (Table 1). An image folder keeps each in a sub-folder
/// of this name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Val,
    TransferTrain,
    TransferVal,
    Faces,
}

impl Split {
    pub const ALL: [Split; 5] = [Split::Train, Split::Val, Split::TransferTrain, Split::TransferVal, Split::Faces];

    /// The folder name an image folder uses, and the seed's tag.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::TransferTrain => "transfer-train",
            Split::TransferVal => "transfer-val",
            Split::Faces => "faces",
        }
    }

    /// A split by its [`Split::name`].
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            DataError::Invalid(format!(
                "unknown split `{name}`: expected one of {}",
                Self::ALL.map(|s| s.name()).join(", ")
            ))
        })
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the annotation side file of a written image (`<image>.json`), if there is one.
pub fn read_annotation(image: &Path) -> Result<Option<Annotation>> {
    let p = image.with_extension("json");
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataError::Format { path: p, reason: format!("not an annotation: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DataError::io(p, e)),
    }
}

/// A value in `lo..hi`, or the middle of the range when it is empty.
fn pick(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        (lo + hi) / 2.0
    }
}

impl Dataset for Generated {
    fn len(&self) -> usize {
        self.config.len
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (image, ann) = self.render(index);
        let image = if self.preprocess.resize == SIDE { image } else { self.preprocess.square(&image) };
        Ok(Sample { image, label: ann.label })
    }

    fn label(&self, index: usize) -> usize {
        self.class_of(index).index()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn describe(&self, index: usize) -> String {
        format!("generated image {index} (seed {})", self.config.seed)
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess
    }

    fn annotation(&self, index: usize) -> Result<Option<Annotation>> {
        Ok(Some(self.render(index).1))
    }
}

mod draw;
mod objects;

use draw::{bounds, Canvas, Shape, Xform};
use objects::{clutter, object};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pixels_other_seed_other_pixels() {
        let a = Generated::new(GeneratedConfig { seed: 5, ..Default::default() });
        let b = Generated::new(GeneratedConfig { seed: 5, ..Default::default() });
        let c = Generated::new(GeneratedConfig { seed: 6, ..Default::default() });
        for i in [0, 7, 123] {
            let (ia, aa) = a.render(i);
            let (ib, ab) = b.render(i);
            assert_eq!(ia.as_raw(), ib.as_raw());
            assert_eq!(aa, ab);
            assert_ne!(ia.as_raw(), c.render(i).0.as_raw());
        }
        // Splits differ from each other.
        let cfg = GeneratedConfig::default();
        let (t, v) = (Generated::split(&cfg, Split::Train, 10), Generated::split(&cfg, Split::Val, 10));
        assert_ne!(t.render(0).0.as_raw(), v.render(0).0.as_raw());
    }

    #[test]
    fn labels_cycle_and_annotations_are_consistent() {
        let g = Generated::new(GeneratedConfig { seed: 1, len: 60, ..Default::default() });
        for i in 0..60 {
            let (img, ann) = g.render(i);
            assert_eq!(img.dimensions(), (256, 256));
            assert_eq!(ann.label, i % 10);
            assert_eq!(g.label(i), ann.label);
            let [x0, y0, x1, y1] = ann.bbox;
            assert!(0.0 <= x0 && x0 < x1 && x1 <= 256.0 && 0.0 <= y0 && y0 < y1 && y1 <= 256.0, "{ann:?}");
            // The object fits: its box is at least 60 px wide or high and not clipped.
            assert!((x1 - x0).max(y1 - y0) > 60.0, "{ann:?}");
            assert!(x0 >= 1.0 && y0 >= 1.0 && x1 <= 255.0 && y1 <= 255.0, "{ann:?}");
            assert!(!ann.parts.is_empty());
            for (name, [x, y]) in &ann.parts {
                assert!(x0 <= *x && *x <= x1 && y0 <= *y && *y <= y1, "{name} at ({x}, {y}) outside {:?}", ann.bbox);
            }
            if ann.class.symmetric() {
                assert!((0.0..360.0).contains(&ann.rotation_deg));
            } else {
                assert!(ann.rotation_deg.abs() <= UPRIGHT_TILT_DEG);
            }
        }
    }

    #[test]
    fn faces_have_named_parts_in_image_order() {
        let g = Generated::new(GeneratedConfig { seed: 2, len: 100, ..Default::default() });
        for i in (0..100).step_by(10) {
            let ann = g.annotation(i);
            assert_eq!(ann.class, Class::Face);
            let p = &ann.parts;
            let (l, r, n) = (p["left_eye"], p["right_eye"], p["nose"]);
            // Upright within the tilt: the left eye is left of the right eye, the nose below both.
            assert!(l[0] < r[0] && n[1] > l[1] && n[1] > r[1], "{p:?}");
        }
    }

    #[test]
    fn transfer_splits_hold_the_held_out_classes_and_faces_are_aligned() {
        let cfg = GeneratedConfig::default();
        let t = Generated::split(&cfg, Split::TransferTrain, 10);
        assert_eq!(t.classes(), Class::HELD_OUT.map(|c| c.name()).as_slice());
        for i in 0..10 {
            let ann = t.annotation(i);
            assert!(Class::HELD_OUT.contains(&ann.class) && !Class::ALL.contains(&ann.class));
            assert_eq!((ann.label, t.label(i)), (i % 5, i % 5));
        }
        // Every aligned face is upright, centred, at one scale, its parts at the same pixels;
        // the pictures differ.
        let f = Generated::split(&cfg, Split::Faces, 6);
        let first = f.render(0);
        for i in 1..6 {
            let (img, ann) = f.render(i);
            assert_eq!((ann.class, ann.rotation_deg, ann.scale), (Class::Face, 0.0, ALIGNED_FACE_SCALE));
            assert_eq!(ann.parts, first.1.parts);
            assert_ne!(img.as_raw(), first.0.as_raw());
        }
        assert_eq!(Split::parse("transfer-val").unwrap(), Split::TransferVal);
        assert!(Split::parse("test").is_err());
    }

    #[test]
    fn the_background_has_a_falling_spectrum() {
        // Fractal noise: the mean squared difference of two pixels grows with their distance
        // (white noise would be the same at every distance, a flat colour zero everywhere).
        let g = Generated::new(GeneratedConfig { seed: 4, len: 6, clutter: 0, ..Default::default() });
        let mut d = [0.0f64; 4];
        for i in 0..6 {
            let (img, _) = g.render(i);
            let v = |x: u32, y: u32| f64::from(img.get_pixel(x, y).0[1]);
            for y in (0..256).step_by(4) {
                for x in (0..180).step_by(3) {
                    for (k, r) in [1, 4, 16, 64].into_iter().enumerate() {
                        d[k] += (v(x, y) - v(x + r, y)).powi(2);
                    }
                }
            }
        }
        assert!(d[0] < d[1] && d[1] < d[2] && d[2] < d[3] && d[3] > 2.0 * d[0], "{d:?}");
    }

    #[test]
    fn objects_are_painted_over_the_background() {
        // Without clutter, the pixel at an object's part usually differs from the background
        // sampled at the image corner (colours are random, so allow a few near-matches).
        let g = Generated::new(GeneratedConfig { seed: 3, len: 20, clutter: 0, ..Default::default() });
        let mut differs = 0;
        for i in 0..20 {
            let (img, ann) = g.render(i);
            let [cx, cy] = ann.parts.values().next().copied().unwrap();
            let inside = img.get_pixel(cx as u32, cy as u32).0;
            let corner = img.get_pixel(0, 0).0;
            if inside.iter().zip(corner).map(|(a, b)| (*a as i32 - b as i32).abs()).sum::<i32>() > 30 {
                differs += 1;
            }
        }
        assert!(differs >= 15, "{differs}");
    }
}
