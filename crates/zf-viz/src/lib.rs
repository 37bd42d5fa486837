//! Pictures for zfnet: arrays in, images out. It knows no network: callers hand it plain
//! `[C, H, W]` float arrays (projections, filters, inputs) and RGB images.
//!
//! - [`projection_image`]: a deconvnet projection as a picture, contrast-normalized
//!   symmetrically (zero is mid-grey, the largest magnitude reaches 0 or 255), so that the sign
//!   of every pixel is kept and pictures of one projection are always the same;
//! - [`minmax_image`]: any array stretched to 0..255 (inputs after mean subtraction);
//! - [`filters_image`]: a bank of first-layer filters as one image;
//! - [`Grid`]: tiles with labels in rows and columns, and [`stack`] to put grids side by side
//!   or one under another (the paper's Fig. 2: projections beside their image patches);
//! - [`heat`]: heat maps, overlays and class maps over a grid of positions (Fig. 7);
//! - [`plot`]: line and bar charts as standalone SVG (Figs. 4-6, Table 7);
//! - [`save_png`] and [`save_text`]: written atomically.
//!
//! Depends on zf-io (atomic writes), `image` and `colorous` (colour maps); no network or tensor
//! crate. Used by the `zfnet` binary (and the report). Labels use a built-in
//! 5x7 bitmap font ([`font`]).

pub mod font;
pub mod heat;
pub mod plot;

use std::path::Path;

use image::{imageops::FilterType, Rgb, RgbImage};

/// Background of grids and sheets.
pub const BACKGROUND: [u8; 3] = [255, 255, 255];
/// Label colour.
pub const INK: [u8; 3] = [20, 20, 20];

fn check(data: &[f32], c: usize, h: usize, w: usize) {
    assert!(c == 1 || c == 3, "pictures have 1 or 3 channels, got {c}");
    assert_eq!(data.len(), c * h * w, "array of {} values is not [{c}, {h}, {w}]", data.len());
}

fn from_fn(c: usize, h: usize, w: usize, data: &[f32], f: impl Fn(f32) -> u8) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = |ch: usize| data[(ch * h + y as usize) * w + x as usize];
        if c == 1 {
            let v = f(at(0));
            Rgb([v, v, v])
        } else {
            Rgb([f(at(0)), f(at(1)), f(at(2))])
        }
    })
}

/// The quantile of `|v|` (over a projection's nonzero values) that [`projection_image`] maps to
/// full contrast; larger values are clipped. A deconvnet projection concentrates much of its
/// range in a handful of pixels: scaled by its maximum, the rest is flat grey (measured on
/// the default run's conv5 projections, the object's outline only appears when the top 1% is
/// clipped).
pub const PROJECTION_CLIP: f32 = 0.99;

/// A projection `[C, H, W]` (C = 1 or 3) as a picture: `128 + 127 * v / q`, clipped, with `q`
/// the [`PROJECTION_CLIP`] quantile of `|v|` over the nonzero values of all channels together
/// (colours keep their balance; zero stays mid-grey). An all-zero projection is flat grey.
///
/// # Panics
/// When `data` is not `c * h * w` long or `c` is not 1 or 3.
pub fn projection_image(data: &[f32], c: usize, h: usize, w: usize) -> RgbImage {
    signed_image(data, c, h, w, PROJECTION_CLIP)
}

/// `128 + 127 * v / q`, clipped, `q` the `quantile` of `|v|` over the nonzero values (nearest
/// rank; 1 is the maximum).
fn signed_image(data: &[f32], c: usize, h: usize, w: usize, quantile: f32) -> RgbImage {
    check(data, c, h, w);
    let mut mags: Vec<f32> = data.iter().map(|v| v.abs()).filter(|&v| v > 0.0 && v.is_finite()).collect();
    let q = if mags.is_empty() {
        0.0
    } else {
        let at = ((quantile.clamp(0.0, 1.0) * (mags.len() - 1) as f32).round() as usize).min(mags.len() - 1);
        *mags.select_nth_unstable_by(at, f32::total_cmp).1
    };
    let scale = if q > 0.0 { 127.0 / q } else { 0.0 };
    from_fn(c, h, w, data, |v| (128.0 + v * scale).round().clamp(0.0, 255.0) as u8)
}

/// Any array `[C, H, W]` stretched to 0..255 between its minimum and maximum (a constant array
/// is mid-grey).
pub fn minmax_image(data: &[f32], c: usize, h: usize, w: usize) -> RgbImage {
    check(data, c, h, w);
    let (lo, hi) = data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = hi - lo;
    from_fn(c, h, w, data, |v| if span > 0.0 { ((v - lo) / span * 255.0).round() as u8 } else { 128 })
}

/// A filter bank `[N, 3, K, K]` (flattened) as a grid of `cols` columns, each filter normalized
/// on its own by its largest weight (`128 + 127 * v / max|v|`) and magnified `zoom` times.
pub fn filters_image(weights: &[f32], n: usize, k: usize, cols: usize, zoom: u32) -> RgbImage {
    let per = 3 * k * k;
    assert_eq!(weights.len(), n * per, "filter bank of {} values is not [{n}, 3, {k}, {k}]", weights.len());
    let mut grid = Grid::new(k as u32 * zoom, k as u32 * zoom, cols.max(1));
    grid.gap = zoom.max(2);
    for f in weights.chunks(per) {
        grid.push(magnify(&signed_image(f, 3, k, k, 1.0), zoom), None);
    }
    grid.render(None)
}

/// Nearest-neighbour magnification (pixels stay sharp).
pub fn magnify(img: &RgbImage, zoom: u32) -> RgbImage {
    image::imageops::resize(img, img.width() * zoom, img.height() * zoom, FilterType::Nearest)
}

/// Fits `img` into a `w x h` tile, keeping its aspect ratio (nearest when enlarging, so small
/// patches stay crisp; triangle when shrinking), centred on the background.
pub fn fit(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let s = (w as f64 / img.width() as f64).min(h as f64 / img.height() as f64);
    let (nw, nh) =
        (((img.width() as f64 * s).round() as u32).max(1), ((img.height() as f64 * s).round() as u32).max(1));
    let filter = if s >= 1.0 { FilterType::Nearest } else { FilterType::Triangle };
    let resized = image::imageops::resize(img, nw, nh, filter);
    let mut tile = RgbImage::from_pixel(w, h, Rgb(BACKGROUND));
    image::imageops::replace(&mut tile, &resized, ((w - nw) / 2) as i64, ((h - nh) / 2) as i64);
    tile
}

/// Draws a one-pixel rectangle `[x0, y0, x1, y1)` (clipped to the image).
pub fn draw_box(img: &mut RgbImage, [x0, y0, x1, y1]: [u32; 4], colour: [u8; 3]) {
    let (w, h) = img.dimensions();
    if x0 >= w || y0 >= h || x1 <= x0 || y1 <= y0 {
        return;
    }
    let (x1, y1) = ((x1 - 1).min(w - 1), (y1 - 1).min(h - 1));
    for x in x0..=x1 {
        img.put_pixel(x, y0, Rgb(colour));
        img.put_pixel(x, y1, Rgb(colour));
    }
    for y in y0..=y1 {
        img.put_pixel(x0, y, Rgb(colour));
        img.put_pixel(x1, y, Rgb(colour));
    }
}

/// Tiles of one size in rows of `cols`, each with an optional label under it.
#[derive(Debug, Clone)]
pub struct Grid {
    pub tile_w: u32,
    pub tile_h: u32,
    pub cols: usize,
    /// Space between tiles, pixels.
    pub gap: u32,
    tiles: Vec<(RgbImage, Option<String>)>,
}

impl Grid {
    pub fn new(tile_w: u32, tile_h: u32, cols: usize) -> Self {
        Self { tile_w, tile_h, cols: cols.max(1), gap: 2, tiles: Vec::new() }
    }

    /// Adds a tile (fitted to the tile size) with an optional label.
    pub fn push(&mut self, img: RgbImage, label: Option<String>) {
        let img =
            if img.dimensions() == (self.tile_w, self.tile_h) { img } else { fit(&img, self.tile_w, self.tile_h) };
        self.tiles.push((img, label));
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// The grid as one image, with an optional title above it.
    pub fn render(&self, title: Option<&str>) -> RgbImage {
        let labelled = self.tiles.iter().any(|(_, l)| l.is_some());
        let label_h = if labelled { font::text_height(1) + 3 } else { 0 };
        let title_h = if title.is_some() { font::text_height(1) + 4 } else { 0 };
        let rows = self.tiles.len().div_ceil(self.cols).max(1) as u32;
        let cols = self.cols.min(self.tiles.len().max(1)) as u32;
        let cell_h = self.tile_h + label_h;
        let w = cols * self.tile_w + (cols + 1) * self.gap;
        let h = title_h + rows * cell_h + (rows + 1) * self.gap;
        let mut out =
            RgbImage::from_pixel(w.max(font::text_width(title.unwrap_or(""), 1) + 2 * self.gap), h, Rgb(BACKGROUND));
        if let Some(t) = title {
            font::draw_text(&mut out, self.gap as i64, 2, t, 1, INK);
        }
        for (i, (img, label)) in self.tiles.iter().enumerate() {
            let (r, c) = ((i / self.cols) as u32, (i % self.cols) as u32);
            let x = self.gap + c * (self.tile_w + self.gap);
            let y = title_h + self.gap + r * (cell_h + self.gap);
            image::imageops::replace(&mut out, img, x as i64, y as i64);
            if let Some(l) = label {
                font::draw_text(&mut out, x as i64, (y + self.tile_h + 2) as i64, l, 1, INK);
            }
        }
        out
    }
}

/// Direction for [`stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Across,
    Down,
}

/// Puts images next to each other (`Across`) or one under another (`Down`), `gap` pixels apart,
/// top- or left-aligned on the background.
pub fn stack(images: &[RgbImage], direction: Direction, gap: u32) -> RgbImage {
    let n = images.len() as u32;
    let (w, h) = match direction {
        Direction::Across => (
            images.iter().map(|i| i.width()).sum::<u32>() + gap * n.saturating_sub(1),
            images.iter().map(|i| i.height()).max().unwrap_or(1),
        ),
        Direction::Down => (
            images.iter().map(|i| i.width()).max().unwrap_or(1),
            images.iter().map(|i| i.height()).sum::<u32>() + gap * n.saturating_sub(1),
        ),
    };
    let mut out = RgbImage::from_pixel(w.max(1), h.max(1), Rgb(BACKGROUND));
    let mut at = 0u32;
    for img in images {
        let (x, y) = if direction == Direction::Across { (at, 0) } else { (0, at) };
        image::imageops::replace(&mut out, img, x as i64, y as i64);
        at += gap + if direction == Direction::Across { img.width() } else { img.height() };
    }
    out
}

/// Writes a PNG atomically: into a temporary file beside `path`, synced, then renamed into place.
pub fn save_png(img: &RgbImage, path: &Path) -> std::io::Result<()> {
    zf_io::write_atomic_with(path, |f| {
        let mut w = std::io::BufWriter::new(f);
        img.write_to(&mut w, image::ImageFormat::Png).map_err(|e| std::io::Error::other(e.to_string()))?;
        std::io::Write::flush(&mut w)
    })
}

/// Writes text (an SVG chart, a page) atomically, as [`save_png`] writes pictures.
pub fn save_text(text: &str, path: &Path) -> std::io::Result<()> {
    zf_io::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn projection_normalization_keeps_sign_and_zero() {
        // One channel: -2, 0, 1, 2 -> 1, 128, 192 (128 + 63.5), 255.
        let img = projection_image(&[-2.0, 0.0, 1.0, 2.0], 1, 1, 4);
        let v: Vec<u8> = (0..4).map(|x| img.get_pixel(x, 0)[0]).collect();
        assert_eq!(v, vec![1, 128, 192, 255]);
        // All zero: flat grey.
        let img = projection_image(&[0.0; 12], 3, 2, 2);
        assert!(img.pixels().all(|p| p.0 == [128, 128, 128]));
        // Three channels share the scale.
        let img = projection_image(&[4.0, 0.0, -4.0], 3, 1, 1);
        assert_eq!(img.get_pixel(0, 0).0, [255, 128, 1]);
        // 200 values of 1 and one spike of 100: the spike is clipped, the rest keeps its
        // contrast (scaled by max|v| they would all be 129).
        let mut v = vec![1.0f32; 200];
        v.push(100.0);
        let img = projection_image(&v, 1, 1, 201);
        assert_eq!((img.get_pixel(0, 0)[0], img.get_pixel(200, 0)[0]), (255, 255));
        let bank = filters_image(&[v[..12].to_vec(), vec![100.0; 0]].concat(), 1, 2, 1, 1);
        assert_eq!(bank.get_pixel(bank.width() / 2, bank.height() / 2)[0], 255);
    }

    #[test]
    fn minmax_and_filters() {
        let img = minmax_image(&[-10.0, 0.0, 10.0], 1, 1, 3);
        assert_eq!((0..3).map(|x| img.get_pixel(x, 0)[0]).collect::<Vec<_>>(), vec![0, 128, 255]);
        // Four 2x2 filters in two columns, zoom 3, gap 3: 2 * 6 + 3 * 3 = 21 wide.
        let bank = filters_image(&[1.0; 4 * 3 * 4], 4, 2, 2, 3);
        assert_eq!(bank.dimensions(), (21, 21));
    }

    #[test]
    fn grid_layout() {
        let mut g = Grid::new(10, 8, 3);
        for i in 0..5 {
            g.push(RgbImage::from_pixel(10, 8, Rgb([i * 40, 0, 0])), Some(format!("{i}")));
        }
        let img = g.render(Some("TITLE"));
        // 3 columns: 3 * 10 + 4 * 2 = 38 wide; 2 rows of (8 + 10 label) + 3 gaps + title 11.
        assert_eq!(img.dimensions(), (38, 11 + 2 * 18 + 3 * 2));
        // The fifth tile (row 1, col 1) starts at x = 2 + 12, y = 11 + 2 + 20.
        assert_eq!(img.get_pixel(14, 33).0, [160, 0, 0]);
        let s = stack(&[img.clone(), img.clone()], Direction::Across, 4);
        assert_eq!(s.width(), 2 * img.width() + 4);
    }

    #[test]
    fn png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let img = RgbImage::from_fn(5, 4, |x, y| Rgb([x as u8, y as u8, 7]));
        save_png(&img, &p).unwrap();
        assert_eq!(image::open(&p).unwrap().to_rgb8(), img);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
