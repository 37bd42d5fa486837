//! The generated set's rasterizer: primitives given by signed distances (ellipses, rectangles,
//! polygons), placed by an affine transform, painted with solid colours or textures and shaded
//! by a light gradient, on a background with a natural image's 1/f amplitude spectrum,
//! antialiased by coverage, and lit as a whole (a brightness gradient and gain).

use image::{Rgb, RgbImage};
use rand::Rng;

use super::SIDE;

/// An affine placement: object units -> pixels (scale, rotate clockwise, translate).
#[derive(Clone, Copy, Debug)]
pub(super) struct Xform {
    pub(super) scale: f32,
    pub(super) rot: f32,
    pub(super) tx: f32,
    pub(super) ty: f32,
}

impl Xform {
    pub(super) fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let (s, c) = self.rot.sin_cos();
        [self.tx + self.scale * (c * x - s * y), self.ty + self.scale * (s * x + c * y)]
    }

    pub(super) fn invert(&self, px: f32, py: f32) -> [f32; 2] {
        let (s, c) = self.rot.sin_cos();
        let (dx, dy) = ((px - self.tx) / self.scale, (py - self.ty) / self.scale);
        [c * dx + s * dy, -s * dx + c * dy]
    }
}

#[derive(Clone, Debug)]
pub(super) enum Geom {
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
    pub(super) fn sdf(&self, [x, y]: [f32; 2]) -> f32 {
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
    pub(super) fn corners(&self) -> Vec<[f32; 2]> {
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

pub(super) fn cross(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[1] - a[1] * b[0]
}

pub(super) fn ellipse_sdf(dx: f32, dy: f32, r: &[f32; 2]) -> f32 {
    let k = ((dx / r[0]).powi(2) + (dy / r[1]).powi(2)).sqrt();
    (k - 1.0) * r[0].min(r[1])
}

/// A colour with a texture, evaluated in object coordinates so it moves with the object.
#[derive(Clone, Copy, Debug)]
pub(super) enum Paint {
    Solid([f32; 3]),
    Stripes { a: [f32; 3], b: [f32; 3], freq: f32, angle: f32 },
    Checker { a: [f32; 3], b: [f32; 3], freq: f32 },
    Dots { a: [f32; 3], b: [f32; 3], freq: f32 },
}

impl Paint {
    pub(super) fn at(&self, [x, y]: [f32; 2]) -> [f32; 3] {
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
pub(super) struct Prim {
    pub(super) geom: Geom,
    pub(super) paint: Paint,
}

#[derive(Clone, Debug)]
pub(super) struct Shape {
    pub(super) prims: Vec<Prim>,
    pub(super) xf: Xform,
    /// Shading: colours are multiplied by `1 + light · (x, y)` in object units.
    pub(super) light: [f32; 2],
}

pub(super) fn bounds(prims: &[Prim], xf: &Xform) -> [f32; 4] {
    let mut bb = [f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
    for p in prims.iter().flat_map(|p| p.geom.corners()) {
        let [x, y] = xf.apply(p);
        bb = [bb[0].min(x), bb[1].min(y), bb[2].max(x), bb[3].max(y)];
    }
    bb
}

pub(super) struct Canvas {
    pub(super) px: Vec<[f32; 3]>,
}

impl Canvas {
    /// A natural-looking texture: three random colours mixed by two fields of fractal value
    /// noise whose octave amplitudes fall as 1/frequency (the 1/f amplitude spectrum of natural
    /// images, so edges and texture appear at every scale), under a random linear shading.
    pub(super) fn background(rng: &mut impl Rng) -> Self {
        let (a, b, c) = (colour(rng), colour(rng), colour(rng));
        let field = |rng: &mut dyn rand::RngCore| -> Vec<f32> {
            let mut f = vec![0f32; SIDE * SIDE];
            let mut total = 0.0;
            // Octaves of 2..128 cells, amplitude 1 / cells.
            for octave in 1..=7 {
                let cells = 1usize << octave;
                let amp = 2.0 / cells as f32;
                total += amp;
                let grid: Vec<f32> = (0..(cells + 1) * (cells + 1)).map(|_| rng.random::<f32>() - 0.5).collect();
                add_value_noise(&mut f, &grid, cells, amp);
            }
            // Roughly -0.5..0.5 before, 0..1 after.
            f.iter_mut().for_each(|v| *v = (*v / total * 2.0 + 0.5).clamp(0.0, 1.0));
            f
        };
        let (t, q) = (field(rng), field(rng));
        let (gx, gy) = (rng.random_range(-0.25..0.25f32), rng.random_range(-0.25..0.25f32));
        let mut px = vec![[0f32; 3]; SIDE * SIDE];
        for (i, p) in px.iter_mut().enumerate() {
            let (u, v) = ((i % SIDE) as f32 / SIDE as f32, (i / SIDE) as f32 / SIDE as f32);
            let shade = 1.0 + gx * (u - 0.5) + gy * (v - 0.5);
            let (t, q) = (t[i], 0.6 * q[i]);
            *p = std::array::from_fn(|k| {
                (((a[k] * (1.0 - t) + b[k] * t) * (1.0 - q) + c[k] * q) * shade).clamp(0.0, 255.0)
            });
        }
        Self { px }
    }

    /// Lights the whole picture: a gain (0.6..1.3) and a brightness gradient across it.
    pub(super) fn illuminate(&mut self, rng: &mut impl Rng) {
        let gain = rng.random_range(0.6..1.3f32);
        let (gx, gy) = (rng.random_range(-0.4..0.4f32), rng.random_range(-0.4..0.4f32));
        for (i, p) in self.px.iter_mut().enumerate() {
            let (u, v) = ((i % SIDE) as f32 / SIDE as f32 - 0.5, (i / SIDE) as f32 / SIDE as f32 - 0.5);
            let k = gain * (1.0 + gx * u + gy * v);
            p.iter_mut().for_each(|c| *c = (*c * k).clamp(0.0, 255.0));
        }
    }

    /// Draws the shape's primitives in order, each antialiased by its coverage of the pixel.
    pub(super) fn draw(&mut self, shape: &Shape) {
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
                        let lit = 1.0 + shape.light[0] * q[0] + shape.light[1] * q[1];
                        let c = p.paint.at(q).map(|v| (v * lit).clamp(0.0, 255.0));
                        for ch in 0..3 {
                            dst[ch] += (c[ch] - dst[ch]) * cover;
                        }
                    }
                }
            }
        }
    }

    pub(super) fn into_image(self) -> RgbImage {
        let mut img = RgbImage::new(SIDE as u32, SIDE as u32);
        for (i, p) in self.px.into_iter().enumerate() {
            img.put_pixel((i % SIDE) as u32, (i / SIDE) as u32, Rgb(p.map(|v| v.round() as u8)));
        }
        img
    }
}

/// `f[y][x] += amp * value_noise(grid, cells, x / SIDE, y / SIDE)` over the `SIDE x SIDE`
/// picture, with the same arithmetic in the same order (so the same bits), but each grid row is
/// interpolated along x once and each pixel only blends two of them.
pub(super) fn add_value_noise(f: &mut [f32], grid: &[f32], cells: usize, amp: f32) {
    // Per column (or row): the cell and the smoothed offset in it.
    let at: Vec<(usize, f32)> = (0..SIDE)
        .map(|x| {
            let fx = x as f32 / SIDE as f32 * cells as f32;
            let ix = (fx as usize).min(cells - 1);
            (ix, smooth(fx - ix as f32))
        })
        .collect();
    let rows: Vec<Vec<f32>> = (0..=cells)
        .map(|j| {
            let g = &grid[j * (cells + 1)..(j + 1) * (cells + 1)];
            at.iter().map(|&(ix, tx)| g[ix] * (1.0 - tx) + g[ix + 1] * tx).collect()
        })
        .collect();
    for (line, &(iy, ty)) in f.chunks_exact_mut(SIDE).zip(&at) {
        let (top, bottom) = (&rows[iy], &rows[iy + 1]);
        for ((v, t), b) in line.iter_mut().zip(top).zip(bottom) {
            *v += amp * (t * (1.0 - ty) + b * ty);
        }
    }
}

/// Bilinear interpolation of `grid` (`(cells + 1)²` values) at `(u, v)` in `[0, 1)²`, with
/// smoothstep weights: the definition [`add_value_noise`] computes faster.
#[cfg(test)]
fn value_noise(grid: &[f32], cells: usize, u: f32, v: f32) -> f32 {
    let (fx, fy) = (u * cells as f32, v * cells as f32);
    let (ix, iy) = ((fx as usize).min(cells - 1), (fy as usize).min(cells - 1));
    let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
    let g = |x: usize, y: usize| grid[y * (cells + 1) + x];
    let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
    let bottom = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
    top * (1.0 - ty) + bottom * ty
}

pub(super) fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// A random colour, each channel uniform in 0..255.
pub(super) fn colour(rng: &mut impl Rng) -> [f32; 3] {
    std::array::from_fn(|_| rng.random_range(0.0..255.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_by_rows_is_value_noise_per_pixel_to_the_bit() {
        for cells in [2usize, 8, 128] {
            let grid: Vec<f32> =
                (0..(cells + 1) * (cells + 1)).map(|k| ((k * 37 % 101) as f32 / 101.0) - 0.5).collect();
            let mut f: Vec<f32> = (0..SIDE * SIDE).map(|i| (i % 7) as f32 * 0.01).collect();
            let before = f.clone();
            add_value_noise(&mut f, &grid, cells, 0.3);
            for (i, (got, b)) in f.iter().zip(&before).enumerate() {
                let (u, v) = ((i % SIDE) as f32 / SIDE as f32, (i / SIDE) as f32 / SIDE as f32);
                let want = b + 0.3 * value_noise(&grid, cells, u, v);
                assert_eq!(got.to_bits(), want.to_bits(), "cells {cells}, pixel {i}");
            }
        }
    }
}
