//! Heat maps and class maps over a grid of positions (the occlusion maps of Fig. 7).

use image::{imageops::FilterType, Rgb, RgbImage};

/// Viridis (matplotlib's perceptually uniform map: dark blue -> teal -> yellow), `t` in 0..=1;
/// NaN is the low end. The colour is entry `floor(256 t)` of the 256-colour table, as
/// matplotlib's colormap lookup picks it (the table from the `colorous` crate).
pub fn colormap(t: f32) -> [u8; 3] {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let i = ((t * 256.0) as usize).min(255);
    let c = colorous::VIRIDIS.eval_rational(i, 256);
    [c.r, c.g, c.b]
}

/// The value range a heat map uses: `(min, max)` of the finite values, or `(0, 1)` when none.
pub fn range(values: &[f32]) -> (f32, f32) {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// `values` (row-major `[rows, cols]`) coloured with [`colormap`] between `lo` and `hi`, each
/// cell `cell` pixels square.
///
/// # Panics
/// When `values` is not `rows * cols` long.
pub fn heatmap(values: &[f32], rows: usize, cols: usize, (lo, hi): (f32, f32), cell: u32) -> RgbImage {
    assert_eq!(values.len(), rows * cols, "heat map of {} values is not {rows}x{cols}", values.len());
    let span = if hi > lo { hi - lo } else { 1.0 };
    RgbImage::from_fn(cols as u32 * cell, rows as u32 * cell, |x, y| {
        let v = values[(y / cell) as usize * cols + (x / cell) as usize];
        Rgb(colormap((v - lo) / span))
    })
}

/// `heat` resized smoothly to `base`'s size and blended over it with opacity `alpha`.
pub fn overlay(base: &RgbImage, heat: &RgbImage, alpha: f32) -> RgbImage {
    let heat = image::imageops::resize(heat, base.width(), base.height(), FilterType::Triangle);
    RgbImage::from_fn(base.width(), base.height(), |x, y| {
        let (a, b) = (base.get_pixel(x, y).0, heat.get_pixel(x, y).0);
        Rgb([0, 1, 2].map(|k| (a[k] as f32 * (1.0 - alpha) + b[k] as f32 * alpha).round() as u8))
    })
}

/// `heat` blended over `base` with opacity `alpha`, its top-left corner at `(x, y)` (clipped to
/// `base`), unscaled: for maps whose cells sit at known pixel positions (an occluder's centres).
pub fn overlay_at(base: &RgbImage, heat: &RgbImage, x: i64, y: i64, alpha: f32) -> RgbImage {
    let mut out = base.clone();
    for (hx, hy, p) in heat.enumerate_pixels() {
        let (bx, by) = (x + hx as i64, y + hy as i64);
        if bx < 0 || by < 0 || bx >= base.width() as i64 || by >= base.height() as i64 {
            continue;
        }
        let a = out.get_pixel(bx as u32, by as u32).0;
        let blended = [0, 1, 2].map(|k| (a[k] as f32 * (1.0 - alpha) + p.0[k] as f32 * alpha).round() as u8);
        out.put_pixel(bx as u32, by as u32, Rgb(blended));
    }
    out
}

/// A distinct colour per class index (a fixed palette of 20, then repeating).
pub fn class_colour(class: usize) -> [u8; 3] {
    const P: [[u8; 3]; 20] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
        [174, 199, 232],
        [255, 187, 120],
        [152, 223, 138],
        [255, 152, 150],
        [197, 176, 213],
        [196, 156, 148],
        [247, 182, 210],
        [199, 199, 199],
        [219, 219, 141],
        [158, 218, 229],
    ];
    P[class % P.len()]
}

/// Class indices (row-major `[rows, cols]`) as coloured cells, each `cell` pixels square.
pub fn class_map(labels: &[u32], rows: usize, cols: usize, cell: u32) -> RgbImage {
    assert_eq!(labels.len(), rows * cols, "class map of {} values is not {rows}x{cols}", labels.len());
    RgbImage::from_fn(cols as u32 * cell, rows as u32 * cell, |x, y| {
        Rgb(class_colour(labels[(y / cell) as usize * cols + (x / cell) as usize] as usize))
    })
}

/// A legend for [`class_map`]: a colour swatch and the class name for each of `present`
/// (names from `classes` by index, the index itself when there is none).
pub fn class_legend(present: &[u32], classes: &[String]) -> RgbImage {
    let name = |c: u32| classes.get(c as usize).cloned().unwrap_or_else(|| c.to_string());
    let line = crate::font::text_height(1) + 6;
    let w = 12 + present.iter().map(|&c| crate::font::text_width(&name(c), 1)).max().unwrap_or(0) + 8;
    let mut img = RgbImage::from_pixel(w, 16 + line * present.len() as u32, Rgb(crate::BACKGROUND));
    for (i, &c) in present.iter().enumerate() {
        let y = 16 + i as u32 * line;
        for dy in 0..8 {
            for dx in 0..8 {
                img.put_pixel(dx, y + dy, Rgb(class_colour(c as usize)));
            }
        }
        crate::font::draw_text(&mut img, 12, y as i64, &name(c), 1, crate::INK);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_ends_and_heatmap_cells() {
        assert_eq!(colormap(0.0), [68, 1, 84]);
        assert_eq!(colormap(1.0), [253, 231, 37]);
        assert_eq!(colormap(f32::NAN), colormap(0.0));
        // Between the ends, matplotlib's `viridis(t)` (independent: printed by matplotlib 3.10,
        // its float table times 255, rounded; colorous' hex table rounds some of the same floats
        // down, hence one unit): the exact map, not a few interpolated stops.
        for (t, want) in [(0.1f32, [72, 36, 117]), (0.5, [33, 145, 140]), (0.75, [94, 201, 98])] {
            let got = colormap(t);
            assert!(got.iter().zip(want).all(|(&g, w)| (i32::from(g) - w).abs() <= 1), "{t}: {got:?} vs {want:?}");
        }
        let h = heatmap(&[0.0, 1.0, 2.0, 3.0], 2, 2, range(&[0.0, 3.0]), 4);
        assert_eq!((h.width(), h.height()), (8, 8));
        assert_eq!(h.get_pixel(0, 0).0, colormap(0.0));
        assert_eq!(h.get_pixel(7, 7).0, colormap(1.0));
        let m = class_map(&[0, 1, 1, 0], 2, 2, 1);
        assert_eq!(m.get_pixel(1, 0).0, class_colour(1));
    }

    #[test]
    fn overlay_blends() {
        let base = RgbImage::from_pixel(4, 4, Rgb([0, 0, 0]));
        let heat = RgbImage::from_pixel(2, 2, Rgb([200, 100, 0]));
        assert_eq!(overlay(&base, &heat, 0.5).get_pixel(1, 1).0, [100, 50, 0]);
        let at = overlay_at(&base, &heat, 3, 3, 0.5);
        assert_eq!((at.get_pixel(3, 3).0, at.get_pixel(2, 2).0), ([100, 50, 0], [0, 0, 0]));
    }

    #[test]
    fn a_legend_has_one_swatch_per_class_in_its_colour() {
        let img = class_legend(&[2, 7], &["a".into(), "b".into(), "car".into()]);
        let line = crate::font::text_height(1) + 6;
        assert_eq!(img.height(), 16 + 2 * line);
        assert_eq!(img.get_pixel(3, 16 + 3).0, class_colour(2));
        // Class 7 has no name: its index is written; its swatch still has its colour.
        assert_eq!(img.get_pixel(3, 16 + line + 3).0, class_colour(7));
    }
}
