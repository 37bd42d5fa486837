//! Fig. 4's claim — lower layers settle within a few epochs, upper layers only much later — as
//! a measurement: per layer, how similar its features at each training snapshot are to the
//! final network's on a fixed image set ([`settling`], linear CKA), and, as a secondary
//! number, how far each layer's weights move between snapshots ([`weight_change`]; that
//! measures step size rather than whether the features have settled).

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use zf_model::{Point, ZfNet};

use crate::bail;
use crate::stats::{resampled_weights, Effect};

/// Side of the grid conv features are averaged on before their similarity is taken (so that
/// the paper's network at 224 px fits in memory: conv1 has 110x110 positions).
pub const SETTLING_GRID: usize = 7;
/// Bootstrap resamples of the settling effect (each one recomputes every similarity).
pub const SETTLING_RESAMPLES: usize = 1000;
/// Resamples computed together (a few `N x SETTLING_BATCH` matrices per snapshot).
const SETTLING_BATCH: usize = 250;

/// One layer's similarity to the final network at each snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSettling {
    pub layer: String,
    /// Linear CKA between this layer's features at snapshot `i` and at the final snapshot, on
    /// the same images (1 = the same features up to rotation and scale).
    pub cka: Vec<f32>,
    /// The mean of `cka` over every snapshot but the final one: high when the layer reached its
    /// final features early.
    pub mean_cka: f32,
}

/// Fig. 4 as settling (see [`settling`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settling {
    /// The snapshots' epochs; the last is the final network every similarity is taken against.
    pub epochs: Vec<usize>,
    pub images: usize,
    pub grid: usize,
    pub layers: Vec<LayerSettling>,
    /// The lowest layer's mean CKA minus the highest layer's, with its bootstrap interval over
    /// the images (positive: the lower layer settled earlier).
    pub lower_minus_upper: Option<Effect>,
}

/// For each of `layers` (lowest first) and each snapshot (in training order, the last one the
/// final network), the linear CKA (Kornblith et al., 2019) between the layer's features on
/// `images` `[N, 3, S, S]` at that snapshot and at the final one. Conv features are averaged on
/// a [`SETTLING_GRID`]² grid. The effect compares the first and the last of `layers`, resampling
/// the images ([`SETTLING_RESAMPLES`] times). `progress` is called after each snapshot.
pub fn settling(
    snapshots: &[(usize, &ZfNet)],
    images: &Tensor,
    layers: &[Point],
    progress: crate::Progress<'_>,
) -> Result<Settling> {
    if snapshots.len() < 2 || layers.is_empty() {
        bail!("settling needs at least two snapshots and one layer, got {} and {}", snapshots.len(), layers.len())
    }
    let n = images.dim(0)?;
    // grams[layer][snapshot]: the N x N Gram matrix of that layer's features, in f64 on the CPU.
    let mut grams: Vec<Vec<Tensor>> = vec![Vec::new(); layers.len()];
    for (k, (_, net)) in snapshots.iter().enumerate() {
        let index = |layer: &Point| {
            net.layer_index(*layer).ok_or_else(|| candle_core::Error::Msg(format!("no {layer} in the network")))
        };
        let indices: Vec<usize> = layers.iter().map(index).collect::<Result<_>>()?;
        let features = crate::linear_probe::pooled_features_of(*net, images, &indices, SETTLING_GRID)?;
        for (g, f) in grams.iter_mut().zip(features) {
            g.push(f.matmul(&f.t()?)?.to_dtype(DType::F64)?);
        }
        progress(k + 1, snapshots.len());
    }
    let last = snapshots.len() - 1;
    let out_layers = layers
        .iter()
        .zip(&grams)
        .map(|(p, g)| {
            let cka: Vec<f32> = ckas_to_last(g, &[vec![1.0; n]])?[0].iter().map(|&v| v as f32).collect();
            let mean = cka[..last].iter().sum::<f32>() / last as f32;
            Ok(LayerSettling { layer: p.name().to_string(), cka, mean_cka: mean })
        })
        .collect::<Result<_>>()?;
    // Each layer's mean CKA over the snapshots before the last, one per resample.
    let mean_ckas = |g: &[Tensor], ws: &[Vec<f64>]| -> Result<Vec<f64>> {
        Ok(ckas_to_last(g, ws)?.iter().map(|c| c[..last].iter().sum::<f64>() / last as f64).collect())
    };
    let (lo, hi) = (&grams[0], &grams[layers.len() - 1]);
    let effect = if layers.len() > 1 {
        resampled_weights(
            n,
            SETTLING_RESAMPLES,
            SETTLING_BATCH,
            "bootstrap over images (CKA recomputed on each resample)",
            |ws| {
                Ok::<_, candle_core::Error>(
                    mean_ckas(lo, ws)?.iter().zip(mean_ckas(hi, ws)?).map(|(a, b)| a - b).collect(),
                )
            },
        )?
    } else {
        None
    };
    Ok(Settling {
        epochs: snapshots.iter().map(|(e, _)| *e).collect(),
        images: n,
        grid: SETTLING_GRID,
        layers: out_layers,
        lower_minus_upper: effect,
    })
}

/// For each resample (its multiplicities `w`, one per image, summing to the image count `m`),
/// the linear CKA of every Gram matrix of `grams` (`n x n`, f64) against the last one, on the
/// resampled images: `ckas[resample][snapshot]`. The resampled Gram matrix `K'` repeats rows
/// and columns; it is never built: with `H = I - 11ᵀ/m` the centring matrix, expanding
/// `tr(K' H L' H)` gives the centred inner product
/// `<HK'H, HL'H> = wᵀ(K∘L)w - (2/m) Σᵢ wᵢ (Kw)ᵢ (Lw)ᵢ + (wᵀKw)(wᵀLw)/m²`,
/// so a batch of resamples is a few matrix products. CKA is `<K, L> / (|K| |L|)` of the centred
/// matrices, 0 when either is zero (a dead layer has no features to compare).
fn ckas_to_last(grams: &[Tensor], ws: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let (Some(fin), Some(first)) = (grams.last(), ws.first()) else { return Ok(vec![Vec::new(); ws.len()]) };
    let (n, r) = (first.len(), ws.len());
    let m = first.iter().sum::<f64>();
    // W: n x r, one column per resample.
    let w = Tensor::from_vec((0..n * r).map(|k| ws[k % r][k / r]).collect::<Vec<f64>>(), (n, r), &Device::Cpu)?;
    let inner = |k: &Tensor, kw: &Tensor, l: &Tensor, lw: &Tensor| -> Result<Vec<f64>> {
        let a = (&w * (k * l)?.matmul(&w)?)?.sum(0)?;
        let cross = ((&w * kw)? * lw)?.sum(0)?;
        let (wk, wl) = ((&w * kw)?.sum(0)?, (&w * lw)?.sum(0)?);
        ((a - (cross * (2.0 / m))?)? + ((wk * wl)? / (m * m))?)?.to_vec1::<f64>()
    };
    let fin_w = fin.matmul(&w)?;
    let fin_fin = inner(fin, &fin_w, fin, &fin_w)?;
    let mut out = vec![Vec::with_capacity(grams.len()); r];
    for k in grams {
        let kw = k.matmul(&w)?;
        let (kl, kk) = (inner(k, &kw, fin, &fin_w)?, inner(k, &kw, k, &kw)?);
        for (i, o) in out.iter_mut().enumerate() {
            let d = (kk[i] * fin_fin[i]).sqrt();
            o.push(if d > 0.0 { kl[i] / d } else { 0.0 });
        }
    }
    Ok(out)
}

/// How far one layer's weights moved between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    pub layer: String,
    /// `‖W_b − W_a‖ / ‖W_b‖` (Frobenius norms of the weights, biases left out).
    pub relative: f32,
}

/// For every weighted layer conv1..fc8, the relative change of its weights from `a` to `b`.
pub fn weight_change(a: &ZfNet, b: &ZfNet) -> Result<Vec<LayerChange>> {
    if a.config() != b.config() {
        bail!("the two snapshots are different networks: {:?} and {:?}", a.config(), b.config())
    }
    let weight = |n: &ZfNet, p: Point| -> Result<Tensor> {
        match (n.conv(p), n.linear(p)) {
            (Some(c), _) => Ok(c.weight().clone()),
            (_, Some(l)) => Ok(l.weight().clone()),
            _ => bail!("{p} has no weights"),
        }
    };
    Point::WEIGHTED
        .iter()
        .map(|&p| {
            let (wa, wb) = (weight(a, p)?.to_dtype(DType::F32)?, weight(b, p)?.to_dtype(DType::F32)?);
            let diff = (&wb - &wa)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
            let norm = wb.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
            Ok(LayerChange { layer: p.name().to_string(), relative: if norm > 0.0 { diff / norm } else { 0.0 } })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;
    use zf_model::init::{init_net, Init};
    use zf_model::ZfConfig;

    /// Linear CKA from features directly: |Yc^T Xc|^2 / (|Xc^T Xc| |Yc^T Yc|), columns centred.
    fn cka_of_features(x: &[Vec<f64>], y: &[Vec<f64>]) -> f64 {
        let centre = |a: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let p = a[0].len();
            let mean: Vec<f64> = (0..p).map(|j| a.iter().map(|r| r[j]).sum::<f64>() / a.len() as f64).collect();
            a.iter().map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect()
        };
        let cross = |a: &[Vec<f64>], b: &[Vec<f64>]| -> f64 {
            let (p, q) = (a[0].len(), b[0].len());
            let mut s = 0.0;
            for i in 0..p {
                for j in 0..q {
                    let v: f64 = a.iter().zip(b).map(|(ra, rb)| ra[i] * rb[j]).sum();
                    s += v * v;
                }
            }
            s
        };
        let (xc, yc) = (centre(x), centre(y));
        cross(&yc, &xc) / (cross(&xc, &xc) * cross(&yc, &yc)).sqrt()
    }

    /// The Gram matrix `g` (`n x n`) restricted to rows and columns `idx` (repeats allowed),
    /// built and double-centred: `H K H` with `H = I - 1/m`; and CKA of two such matrices.
    fn centred(g: &[f64], n: usize, idx: &[usize]) -> Vec<f64> {
        let m = idx.len();
        let k: Vec<f64> = idx.iter().flat_map(|&i| idx.iter().map(move |&j| g[i * n + j])).collect();
        let rows: Vec<f64> = k.chunks(m).map(|r| r.iter().sum::<f64>() / m as f64).collect();
        let total = rows.iter().sum::<f64>() / m as f64;
        (0..m * m).map(|t| k[t] - rows[t / m] - rows[t % m] + total).collect()
    }

    fn cka(k: &[f64], l: &[f64]) -> f64 {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        dot(k, l) / (dot(k, k) * dot(l, l)).sqrt()
    }

    fn gram(a: &[Vec<f64>]) -> Vec<f64> {
        let n = a.len();
        (0..n * n).map(|k| a[k / n].iter().zip(&a[k % n]).map(|(u, v)| u * v).sum()).collect()
    }

    /// `ckas_to_last` on multiplicities `w`, for two feature sets.
    fn weighted(x: &[Vec<f64>], y: &[Vec<f64>], ws: &[Vec<f64>]) -> Vec<f64> {
        let n = x.len();
        let t = |g: Vec<f64>| Tensor::from_vec(g, (n, n), &Device::Cpu).unwrap();
        ckas_to_last(&[t(gram(x)), t(gram(y))], ws).unwrap().iter().map(|c| c[0]).collect()
    }

    #[test]
    fn cka_of_centred_grams_is_the_feature_formula_and_invariant_to_rotation_and_scale() {
        let x: Vec<Vec<f64>> = (0..9).map(|i| (0..4).map(|j| ((i * 7 + j * 3) as f64).sin()).collect()).collect();
        let y: Vec<Vec<f64>> = (0..9).map(|i| (0..3).map(|j| ((i * 5 + j * 11) as f64).cos()).collect()).collect();
        let all: Vec<usize> = (0..9).collect();
        let got = cka(&centred(&gram(&x), 9, &all), &centred(&gram(&y), 9, &all));
        assert!((got - cka_of_features(&x, &y)).abs() < 1e-12, "{got}");
        assert!((weighted(&x, &y, &[vec![1.0; 9]])[0] - got).abs() < 1e-12);
        // A rotation (swap and negate two columns) and a scale leave it at 1 against the original.
        let r: Vec<Vec<f64>> = x.iter().map(|v| vec![-3.0 * v[1], 3.0 * v[0], 3.0 * v[2], 3.0 * v[3]]).collect();
        let same = cka(&centred(&gram(&x), 9, &all), &centred(&gram(&r), 9, &all));
        assert!((same - 1.0).abs() < 1e-12, "{same}");
        assert!((weighted(&x, &r, &[vec![1.0; 9]])[0] - 1.0).abs() < 1e-12);
        // Resampled rows are the features of the resampled images; multiplicities (how often
        // each image was drawn) give the same CKA without building the resampled matrices.
        for idx in [vec![3, 3, 0, 8, 5, 1, 1, 7, 7], vec![2, 2, 2, 2, 6, 6, 0, 4, 5]] {
            let sub = |a: &[Vec<f64>]| -> Vec<Vec<f64>> { idx.iter().map(|&i| a[i].clone()).collect() };
            let got = cka(&centred(&gram(&x), 9, &idx), &centred(&gram(&y), 9, &idx));
            assert!((got - cka_of_features(&sub(&x), &sub(&y))).abs() < 1e-12, "{got}");
            let mut w = vec![0.0; 9];
            idx.iter().for_each(|&i| w[i] += 1.0);
            let both = weighted(&x, &y, &[vec![1.0; 9], w]);
            assert!((both[1] - got).abs() < 1e-12 && (both[0] - weighted(&x, &y, &[vec![1.0; 9]])[0]).abs() < 1e-15);
        }
        // A dead layer (all features 0) has CKA 0, not NaN.
        let zero = vec![vec![0.0; 4]; 9];
        assert_eq!(weighted(&zero, &y, &[vec![1.0; 9]]), [0.0]);
    }

    #[test]
    fn the_final_snapshot_is_fully_similar_to_itself_and_a_fresh_net_less() {
        let cfg = ZfConfig::tiny().with_input_size(64);
        let (a, b) =
            (init_net(&cfg, Init::He, 1, &Device::Cpu).unwrap(), init_net(&cfg, Init::He, 2, &Device::Cpu).unwrap());
        let x = Tensor::randn(0f32, 1.0, (12, 3, 64, 64), &Device::Cpu).unwrap();
        let s = settling(&[(1, &a), (2, &b)], &x, &[Point::Conv1, Point::Conv5], &mut |_, _| {}).unwrap();
        assert_eq!(s.epochs, [1, 2]);
        for l in &s.layers {
            assert!((l.cka[1] - 1.0).abs() < 1e-5, "{l:?}");
            assert!(l.cka[0] < 0.999 && l.cka[0] >= 0.0, "{l:?}");
            assert_eq!(l.mean_cka, l.cka[0]);
        }
        let e = s.lower_minus_upper.unwrap();
        assert!((e.effect - f64::from(s.layers[0].mean_cka - s.layers[1].mean_cka)).abs() < 1e-5 && e.lo <= e.hi);
        assert!(settling(&[(1, &a)], &x, &[Point::Conv1], &mut |_, _| {}).is_err());
    }

    #[test]
    fn identical_nets_do_not_move_and_scaled_weights_move_by_the_scale() {
        let cfg = ZfConfig::tiny().with_input_size(64);
        let a = init_net(&cfg, Init::Paper, 1, &Device::Cpu).unwrap();
        assert!(weight_change(&a, &a).unwrap().iter().all(|c| c.relative == 0.0));
        // Every weight doubled: |2W - W| / |2W| = 1/2 for each layer.
        let doubled: std::collections::HashMap<String, Tensor> =
            a.named_tensors().into_iter().map(|(k, t)| (k, (t * 2.0).unwrap())).collect();
        let vb = candle_nn::VarBuilder::from_tensors(doubled, DType::F32, &Device::Cpu);
        let b = ZfNet::new(&cfg, vb).unwrap();
        for c in weight_change(&a, &b).unwrap() {
            assert!((c.relative - 0.5).abs() < 1e-5, "{c:?}");
        }
    }
}
