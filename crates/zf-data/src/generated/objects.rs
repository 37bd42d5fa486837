//! The generated set's catalogue: what each class's object is made of (in object units, with
//! its named parts), the background clutter, and the random colours and textures.

use std::f32::consts::PI;

use rand::Rng;

use super::draw::{colour, Geom, Paint, Prim, Shape, Xform};
use super::{Class, SIDE};

/// A colour far enough from `other` to be seen against it.
pub(super) fn contrasting(rng: &mut impl Rng, other: [f32; 3]) -> [f32; 3] {
    loop {
        let c = colour(rng);
        let d: f32 = (0..3).map(|i| (c[i] - other[i]).powi(2)).sum::<f32>().sqrt();
        if d > 120.0 {
            return c;
        }
    }
}

pub(super) fn paint(rng: &mut impl Rng) -> Paint {
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
pub(super) fn clutter(rng: &mut impl Rng) -> Shape {
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
    Shape { prims: vec![Prim { geom, paint: paint(rng) }], xf, light: [0.0, 0.0] }
}

pub(super) type Parts = Vec<(&'static str, [f32; 2])>;

/// The class's primitives in object units (y down, about -1..1) and its named parts;
/// `jitter`: proportions vary a little per instance (off for the aligned faces, whose parts
/// stay at fixed positions).
pub(super) fn object(class: Class, rng: &mut impl Rng, jitter: bool) -> (Vec<Prim>, Parts) {
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
    let j = |rng: &mut dyn rand::RngCore, v: f32| {
        let u = rng.random::<f32>();
        if jitter {
            v * (1.0 + 0.12 * (u - 0.5))
        } else {
            v
        }
    };
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
        Class::Fish => {
            let dir = if rng.random::<bool>() { 1.0 } else { -1.0 };
            (
                vec![
                    p(poly(&[[-0.45 * dir, 0.0], [-dir, -0.45], [-dir, 0.45]]), detail),
                    p(e([0.1 * dir, 0.0], [0.65, 0.38]), body),
                    p(e([0.45 * dir, -0.1], [0.07, 0.07]), detail),
                ],
                vec![("eye", [0.45 * dir, -0.1]), ("tail", [-0.85 * dir, 0.0])],
            )
        }
        Class::Cup => {
            let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
            (
                vec![
                    p(Geom::Ring { c: [0.55 * side, 0.0], outer: 0.35, inner: 0.2 }, detail),
                    p(poly(&[[-0.55, -0.55], [0.55, -0.55], [0.4, 0.6], [-0.4, 0.6]]), body),
                    p(r([0.0, 0.7], [0.55, 0.08]), detail),
                ],
                vec![("handle", [0.8 * side, 0.0])],
            )
        }
        Class::Umbrella => {
            let canopy: Vec<[f32; 2]> = (0..=12)
                .map(|k| {
                    let t = PI * k as f32 / 12.0;
                    [t.cos(), -0.1 - 0.75 * t.sin()]
                })
                .collect();
            (
                vec![
                    p(r([0.0, 0.4], [0.05, 0.5]), detail),
                    p(Geom::Poly(canopy), body),
                    p(r([0.12, 0.88], [0.15, 0.05]), detail),
                ],
                vec![("canopy", [0.0, -0.5]), ("handle", [0.12, 0.88])],
            )
        }
        Class::Heart => (
            vec![
                p(e([-0.4, -0.3], [0.45, 0.45]), body),
                p(e([0.4, -0.3], [0.45, 0.45]), body),
                p(poly(&[[-0.83, -0.15], [0.83, -0.15], [0.0, 0.9]]), body),
            ],
            vec![("tip", [0.0, 0.85])],
        ),
        Class::Lamp => (
            vec![
                p(poly(&[[-0.3, -0.9], [0.3, -0.9], [0.65, -0.25], [-0.65, -0.25]]), body),
                p(r([0.0, 0.3], [0.06, 0.55]), detail),
                p(e([0.0, 0.85], [0.45, 0.12]), detail),
            ],
            vec![("shade", [0.0, -0.6]), ("base", [0.0, 0.85])],
        ),
    }
}
