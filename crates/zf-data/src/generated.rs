//! The generated data set: ten classes of objects drawn on cluttered, textured backgrounds,
//! deterministic from a seed, rendered on the fly at 256x256, every image carrying its class,
//! bounding box and named part positions.
//!
//! It is the embedded default of `cargo xtask reproduce-paper`, so it is designed for the
//! paper's effects to show on a CPU:
//! - the class is the object's *shape*: colours and textures of object and background are drawn
//!   independently of the class, and the background is cluttered with fragments of the same
//!   primitives (disks, boxes, triangles, bars);
//! - objects vary in position (anywhere the whole object fits), scale (about 80..170 px wide)
//!   and colour; seven classes stand upright with a small tilt (±[`UPRIGHT_TILT_DEG`]°), three
//!   are rotationally symmetric ([`Class::symmetric`]) and appear at any angle — so the paper's
//!   rotation claim (Fig. 5) can be tested;
//! - the `face` class has named parts (`left_eye`, `right_eye`, `nose`, `mouth`), so the
//!   correspondence analysis of Sec. 4.3 runs as in the paper. Left and right are as seen in the
//!   image: `left_eye` is the eye nearer the image's left edge on an upright face.

use std::collections::BTreeMap;
use std::f32::consts::PI;
use std::path::Path;

use image::{Rgb, RgbImage};
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

/// The ten classes, in class-index order.
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
}

impl Class {
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
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0)
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
    classes: Vec<String>,
    preprocess: Preprocess,
}

impl Generated {
    pub fn new(config: GeneratedConfig) -> Self {
        Self {
            config,
            classes: Class::ALL.iter().map(|c| c.name().to_string()).collect(),
            preprocess: Preprocess::paper(),
        }
    }

    /// Serves the images resized to `preprocess.resize` (for networks whose input is not 224;
    /// annotations stay in the 256-pixel frame of [`Generated::render`]).
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.preprocess = preprocess;
        self
    }

    /// A split of `len` images whose pixels do not overlap another split's: the split name is
    /// mixed into the seed.
    pub fn split(config: &GeneratedConfig, split: &str, len: usize) -> Self {
        let tag = split.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Self::new(GeneratedConfig { seed: config.seed ^ tag, len, ..config.clone() })
    }

    /// The class of image `index`.
    pub fn class_of(&self, index: usize) -> Class {
        Class::ALL[index % Class::ALL.len()]
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
        let (lo, hi) = self.config.scale;
        let scale = rng.random_range(lo..hi);
        let rotation = if class.symmetric() {
            rng.random_range(0.0..360.0)
        } else {
            rng.random_range(-UPRIGHT_TILT_DEG..UPRIGHT_TILT_DEG)
        };
        let (prims, parts) = object(class, &mut rng);
        // Place the object where its whole bounding box fits.
        let xf = Xform { scale, rot: rotation.to_radians(), tx: 0.0, ty: 0.0 };
        let bb = bounds(&prims, &xf);
        let margin = 2.0;
        let s = SIDE as f32;
        let tx = pick(&mut rng, margin - bb[0], s - margin - bb[2]);
        let ty = pick(&mut rng, margin - bb[1], s - margin - bb[3]);
        let xf = Xform { tx, ty, ..xf };
        canvas.draw(&Shape { prims, xf });
        let bb = [bb[0] + tx, bb[1] + ty, bb[2] + tx, bb[3] + ty].map(|v| v.clamp(0.0, s));
        let parts = parts.into_iter().map(|(name, p)| (name.to_string(), xf.apply(p))).collect();
        let ann = Annotation {
            class,
            label: class.index(),
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
}

// ---------------------------------------------------------------------------------------------
// Drawing: primitives with signed distances, painted with textures, antialiased by coverage.

/// An affine placement: object units -> pixels (scale, rotate clockwise, translate).
#[derive(Clone, Copy, Debug)]
struct Xform {
    scale: f32,
    rot: f32,
    tx: f32,
    ty: f32,
}

impl Xform {
    fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let (s, c) = self.rot.sin_cos();
        [self.tx + self.scale * (c * x - s * y), self.ty + self.scale * (s * x + c * y)]
    }

    fn invert(&self, px: f32, py: f32) -> [f32; 2] {
        let (s, c) = self.rot.sin_cos();
        let (dx, dy) = ((px - self.tx) / self.scale, (py - self.ty) / self.scale);
        [c * dx + s * dy, -s * dx + c * dy]
    }
}

#[derive(Clone, Debug)]
enum Geom {
    Ellipse {
        c: [f32; 2],
        r: [f32; 2],
    },
    Rect {
        c: [f32; 2],
        h: [f32; 2],
    },
    /// Convex, counter-clockwise or clockwise.
    Poly(Vec<[f32; 2]>),
    Ring {
        c: [f32; 2],
        outer: f32,
        inner: f32,
    },
    /// An ellipse rotated by `a` radians about its centre.
    RotEllipse {
        c: [f32; 2],
        r: [f32; 2],
        a: f32,
    },
}

impl Geom {
    /// Approximate signed distance in object units (negative inside).
    fn sdf(&self, [x, y]: [f32; 2]) -> f32 {
        match self {
            Geom::Ellipse { c, r } => ellipse_sdf(x - c[0], y - c[1], r),
            Geom::RotEllipse { c, r, a } => {
                let (s, co) = a.sin_cos();
                let (dx, dy) = (x - c[0], y - c[1]);
                ellipse_sdf(co * dx + s * dy, -s * dx + co * dy, r)
            }
            Geom::Rect { c, h } => {
                let (qx, qy) = ((x - c[0]).abs() - h[0], (y - c[1]).abs() - h[1]);
                let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
                outside + qx.max(qy).min(0.0)
            }
            Geom::Poly(pts) => {
                // Max over edges of the signed distance to the edge line: exact inside, a
                // lower bound outside (good enough for a one-pixel antialiasing band).
                let area: f32 = (0..pts.len()).map(|i| cross(pts[i], pts[(i + 1) % pts.len()])).sum();
                let sign = if area >= 0.0 { 1.0 } else { -1.0 };
                (0..pts.len())
                    .map(|i| {
                        let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
                        let len = (ex * ex + ey * ey).sqrt().max(1e-6);
                        -sign * (ex * (y - a[1]) - ey * (x - a[0])) / len
                    })
                    .fold(f32::NEG_INFINITY, f32::max)
            }
            Geom::Ring { c, outer, inner } => {
                let d = ((x - c[0]).powi(2) + (y - c[1]).powi(2)).sqrt();
                (d - outer).max(inner - d)
            }
        }
    }

    /// Corners of a box holding the primitive, object units.
    fn corners(&self) -> Vec<[f32; 2]> {
        let bx = |c: [f32; 2], h: [f32; 2]| {
            vec![
                [c[0] - h[0], c[1] - h[1]],
                [c[0] + h[0], c[1] - h[1]],
                [c[0] - h[0], c[1] + h[1]],
                [c[0] + h[0], c[1] + h[1]],
            ]
        };
        match self {
            Geom::Ellipse { c, r } => bx(*c, *r),
            Geom::RotEllipse { c, r, .. } => bx(*c, [r[0].max(r[1]); 2]),
            Geom::Rect { c, h } => bx(*c, *h),
            Geom::Poly(p) => p.clone(),
            Geom::Ring { c, outer, .. } => bx(*c, [*outer; 2]),
        }
    }
}

fn cross(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[1] - a[1] * b[0]
}

fn ellipse_sdf(dx: f32, dy: f32, r: &[f32; 2]) -> f32 {
    let k = ((dx / r[0]).powi(2) + (dy / r[1]).powi(2)).sqrt();
    (k - 1.0) * r[0].min(r[1])
}

/// A colour with a texture, evaluated in object coordinates so it moves with the object.
#[derive(Clone, Copy, Debug)]
enum Paint {
    Solid([f32; 3]),
    Stripes { a: [f32; 3], b: [f32; 3], freq: f32, angle: f32 },
    Checker { a: [f32; 3], b: [f32; 3], freq: f32 },
    Dots { a: [f32; 3], b: [f32; 3], freq: f32 },
}

impl Paint {
    fn at(&self, [x, y]: [f32; 2]) -> [f32; 3] {
        match *self {
            Paint::Solid(c) => c,
            Paint::Stripes { a, b, freq, angle } => {
                let t = (x * angle.cos() + y * angle.sin()) * freq;
                if t.rem_euclid(1.0) < 0.5 {
                    a
                } else {
                    b
                }
            }
            Paint::Checker { a, b, freq } => {
                if ((x * freq).floor() + (y * freq).floor()) as i64 % 2 == 0 {
                    a
                } else {
                    b
                }
            }
            Paint::Dots { a, b, freq } => {
                let (fx, fy) = ((x * freq).rem_euclid(1.0) - 0.5, (y * freq).rem_euclid(1.0) - 0.5);
                if fx * fx + fy * fy < 0.09 {
                    b
                } else {
                    a
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Prim {
    geom: Geom,
    paint: Paint,
}

#[derive(Clone, Debug)]
struct Shape {
    prims: Vec<Prim>,
    xf: Xform,
}

fn bounds(prims: &[Prim], xf: &Xform) -> [f32; 4] {
    let mut bb = [f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
    for p in prims.iter().flat_map(|p| p.geom.corners()) {
        let [x, y] = xf.apply(p);
        bb = [bb[0].min(x), bb[1].min(y), bb[2].max(x), bb[3].max(y)];
    }
    bb
}

struct Canvas {
    px: Vec<[f32; 3]>,
}

impl Canvas {
    /// Smooth value noise between two random colours, with a random linear shading.
    fn background(rng: &mut impl Rng) -> Self {
        let a = colour(rng);
        let b = colour(rng);
        let cells = rng.random_range(3..9);
        let grid: Vec<f32> = (0..(cells + 1) * (cells + 1)).map(|_| rng.random::<f32>()).collect();
        let fine = rng.random_range(12..28);
        let fine_grid: Vec<f32> = (0..(fine + 1) * (fine + 1)).map(|_| rng.random::<f32>()).collect();
        let (gx, gy) = (rng.random_range(-0.25..0.25f32), rng.random_range(-0.25..0.25f32));
        let mut px = vec![[0f32; 3]; SIDE * SIDE];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let (u, v) = (x as f32 / SIDE as f32, y as f32 / SIDE as f32);
                let t = 0.75 * value_noise(&grid, cells, u, v) + 0.25 * value_noise(&fine_grid, fine, u, v);
                let shade = 1.0 + gx * (u - 0.5) + gy * (v - 0.5);
                px[y * SIDE + x] = std::array::from_fn(|c| ((a[c] * (1.0 - t) + b[c] * t) * shade).clamp(0.0, 255.0));
            }
        }
        Self { px }
    }

    /// Draws the shape's primitives in order, each antialiased by its coverage of the pixel.
    fn draw(&mut self, shape: &Shape) {
        let bb = bounds(&shape.prims, &shape.xf);
        let (x0, y0) = ((bb[0].floor() - 1.0).max(0.0) as usize, (bb[1].floor() - 1.0).max(0.0) as usize);
        let (x1, y1) = (
            (bb[2].ceil() + 1.0).clamp(0.0, SIDE as f32) as usize,
            (bb[3].ceil() + 1.0).clamp(0.0, SIDE as f32) as usize,
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let q = shape.xf.invert(x as f32 + 0.5, y as f32 + 0.5);
                let dst = &mut self.px[y * SIDE + x];
                for p in &shape.prims {
                    let cover = (0.5 - p.geom.sdf(q) * shape.xf.scale).clamp(0.0, 1.0);
                    if cover > 0.0 {
                        let c = p.paint.at(q);
                        for ch in 0..3 {
                            dst[ch] += (c[ch] - dst[ch]) * cover;
                        }
                    }
                }
            }
        }
    }

    fn into_image(self) -> RgbImage {
        let mut img = RgbImage::new(SIDE as u32, SIDE as u32);
        for (i, p) in self.px.into_iter().enumerate() {
            img.put_pixel((i % SIDE) as u32, (i / SIDE) as u32, Rgb(p.map(|v| v.round() as u8)));
        }
        img
    }
}

fn value_noise(grid: &[f32], cells: usize, u: f32, v: f32) -> f32 {
    let (fx, fy) = (u * cells as f32, v * cells as f32);
    let (ix, iy) = ((fx as usize).min(cells - 1), (fy as usize).min(cells - 1));
    let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
    let g = |x: usize, y: usize| grid[y * (cells + 1) + x];
    let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
    let bottom = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
    top * (1.0 - ty) + bottom * ty
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn colour(rng: &mut impl Rng) -> [f32; 3] {
    std::array::from_fn(|_| rng.random_range(0.0..255.0))
}

/// A colour far enough from `other` to be seen against it.
fn contrasting(rng: &mut impl Rng, other: [f32; 3]) -> [f32; 3] {
    loop {
        let c = colour(rng);
        let d: f32 = (0..3).map(|i| (c[i] - other[i]).powi(2)).sum::<f32>().sqrt();
        if d > 120.0 {
            return c;
        }
    }
}

fn paint(rng: &mut impl Rng) -> Paint {
    let a = colour(rng);
    let b = contrasting(rng, a);
    match rng.random_range(0..4) {
        0 => Paint::Solid(a),
        1 => Paint::Stripes { a, b, freq: rng.random_range(2.0..6.0), angle: rng.random_range(0.0..PI) },
        2 => Paint::Checker { a, b, freq: rng.random_range(2.0..5.0) },
        _ => Paint::Dots { a, b, freq: rng.random_range(3.0..7.0) },
    }
}

/// One background fragment: a disk, box, triangle or bar, 8..50 px, anywhere.
fn clutter(rng: &mut impl Rng) -> Shape {
    let geom = match rng.random_range(0..4) {
        0 => Geom::Ellipse { c: [0.0, 0.0], r: [1.0, rng.random_range(0.4..1.0)] },
        1 => Geom::Rect { c: [0.0, 0.0], h: [1.0, rng.random_range(0.3..1.0)] },
        2 => Geom::Poly(vec![[-1.0, 0.8], [1.0, 0.8], [rng.random_range(-1.0..1.0), -1.0]]),
        _ => Geom::Rect { c: [0.0, 0.0], h: [1.0, rng.random_range(0.05..0.15)] },
    };
    let xf = Xform {
        scale: rng.random_range(8.0..50.0),
        rot: rng.random_range(0.0..2.0 * PI),
        tx: rng.random_range(0.0..SIDE as f32),
        ty: rng.random_range(0.0..SIDE as f32),
    };
    Shape { prims: vec![Prim { geom, paint: paint(rng) }], xf }
}

type Parts = Vec<(&'static str, [f32; 2])>;

/// The class's primitives in object units (y down, about -1..1) and its named parts.
fn object(class: Class, rng: &mut impl Rng) -> (Vec<Prim>, Parts) {
    let body = paint(rng);
    let base = match body {
        Paint::Solid(a) | Paint::Stripes { a, .. } | Paint::Checker { a, .. } | Paint::Dots { a, .. } => a,
    };
    let detail = Paint::Solid(contrasting(rng, base));
    let p = |geom: Geom, paint: Paint| Prim { geom, paint };
    let e = |c: [f32; 2], r: [f32; 2]| Geom::Ellipse { c, r };
    let r = |c: [f32; 2], h: [f32; 2]| Geom::Rect { c, h };
    let poly = |v: &[[f32; 2]]| Geom::Poly(v.to_vec());
    // Small per-instance variation of proportions.
    let j = |rng: &mut dyn rand::RngCore, v: f32| v * (1.0 + 0.12 * (rng.random::<f32>() - 0.5));
    match class {
        Class::Face => {
            let ex = j(rng, 0.34);
            let ey = j(rng, -0.25);
            let er = j(rng, 0.14);
            let my = j(rng, 0.5);
            (
                vec![
                    p(e([0.0, 0.0], [0.8, 1.0]), body),
                    p(Geom::Ellipse { c: [-ex, ey], r: [er, er] }, detail),
                    p(Geom::Ellipse { c: [ex, ey], r: [er, er] }, detail),
                    p(poly(&[[0.0, -0.1], [-0.13, 0.22], [0.13, 0.22]]), detail),
                    p(r([0.0, my], [0.32, 0.07]), detail),
                ],
                vec![("left_eye", [-ex, ey]), ("right_eye", [ex, ey]), ("nose", [0.0, 0.11]), ("mouth", [0.0, my])],
            )
        }
        Class::House => {
            let roof = j(rng, -1.0);
            (
                vec![
                    p(r([0.0, 0.35], [0.7, 0.6]), body),
                    p(poly(&[[-0.9, -0.25], [0.9, -0.25], [0.0, roof]]), detail),
                    p(r([0.0, 0.7], [0.15, 0.25]), detail),
                    p(r([-0.4, 0.2], [0.13, 0.13]), detail),
                    p(r([0.4, 0.2], [0.13, 0.13]), detail),
                ],
                vec![("roof", [0.0, roof]), ("door", [0.0, 0.7])],
            )
        }
        Class::Tree => (
            vec![
                p(r([0.0, 0.7], [0.13, 0.3]), detail),
                p(poly(&[[-0.75, 0.45], [0.75, 0.45], [0.0, -0.3]]), body),
                p(poly(&[[-0.55, 0.0], [0.55, 0.0], [0.0, -1.0]]), body),
            ],
            vec![("top", [0.0, -1.0]), ("trunk", [0.0, 0.75])],
        ),
        Class::Car => {
            let front = if rng.random::<bool>() { 1.0 } else { -1.0 };
            (
                vec![
                    p(r([0.0, 0.15], [1.0, 0.25]), body),
                    p(
                        poly(&[
                            [-0.5 * front, -0.1],
                            [0.45 * front, -0.1],
                            [0.25 * front, -0.5],
                            [-0.35 * front, -0.5],
                        ]),
                        body,
                    ),
                    p(e([-0.55, 0.45], [0.22, 0.22]), detail),
                    p(e([0.55, 0.45], [0.22, 0.22]), detail),
                ],
                vec![("front_wheel", [0.55 * front, 0.45]), ("back_wheel", [-0.55 * front, 0.45])],
            )
        }
        Class::Mushroom => {
            let cap: Vec<[f32; 2]> = (0..=12)
                .map(|k| {
                    let t = PI * k as f32 / 12.0;
                    [0.95 * t.cos(), 0.05 - 0.7 * t.sin()]
                })
                .collect();
            (
                vec![p(r([0.0, 0.5], [0.22, 0.45]), detail), p(Geom::Poly(cap), body)],
                vec![("cap", [0.0, -0.4]), ("stem", [0.0, 0.6])],
            )
        }
        Class::Arrow => (
            vec![p(r([0.0, 0.35], [0.16, 0.65]), body), p(poly(&[[-0.65, -0.25], [0.65, -0.25], [0.0, -1.0]]), body)],
            vec![("tip", [0.0, -1.0])],
        ),
        Class::Bottle => (
            vec![
                p(r([0.0, 0.4], [0.4, 0.6]), body),
                p(poly(&[[-0.4, -0.2], [0.4, -0.2], [0.14, -0.5], [-0.14, -0.5]]), body),
                p(r([0.0, -0.7], [0.14, 0.25]), body),
                p(r([0.0, -0.95], [0.17, 0.06]), detail),
                p(r([0.0, 0.4], [0.4, 0.2]), detail),
            ],
            vec![("neck", [0.0, -0.7])],
        ),
        Class::Ring => {
            (vec![p(Geom::Ring { c: [0.0, 0.0], outer: 0.95, inner: j(rng, 0.5) }, body)], vec![("centre", [0.0, 0.0])])
        }
        Class::Flower => {
            let mut prims: Vec<Prim> = (0..6)
                .map(|k| {
                    let a = PI / 3.0 * k as f32;
                    p(Geom::RotEllipse { c: [0.55 * a.cos(), 0.55 * a.sin()], r: [0.4, 0.2], a }, body)
                })
                .collect();
            prims.push(p(e([0.0, 0.0], [0.3, 0.3]), detail));
            (prims, vec![("centre", [0.0, 0.0])])
        }
        Class::Star => {
            let inner = j(rng, 0.42);
            let pt = |k: usize, rad: f32| {
                let a = -PI / 2.0 + PI / 5.0 * k as f32;
                [rad * a.cos(), rad * a.sin()]
            };
            let pentagon: Vec<[f32; 2]> = (0..5).map(|k| pt(2 * k + 1, inner)).collect();
            let mut prims = vec![p(Geom::Poly(pentagon), body)];
            for k in 0..5 {
                let tri = vec![pt(2 * k, 1.0), pt(2 * k + 1, inner), pt((2 * k + 9) % 10, inner)];
                prims.push(p(Geom::Poly(tri), body));
            }
            (prims, vec![("centre", [0.0, 0.0])])
        }
    }
}

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
        let (t, v) = (Generated::split(&cfg, "train", 10), Generated::split(&cfg, "val", 10));
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
