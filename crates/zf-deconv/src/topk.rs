//! Top-k search: the k strongest activations of chosen feature maps over a stream of batches,
//! in memory that does not grow with the data set (Fig. 2's "top 9").

use std::collections::BTreeMap;

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};
use zf_model::{LayerKind, Net, Point};

use crate::bail;

/// One of the strongest activations of a feature map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub value: f32,
    /// The image's index in the data set (as given to [`TopK::update`]).
    pub image: usize,
    pub y: usize,
    pub x: usize,
}

/// Keeps, for each chosen (layer, feature map), the `k` strongest activations seen so far;
/// with `one_per_image`, at most one per image (the paper's Fig. 2 shows nine different
/// images per map). Ties keep the earlier image.
///
/// Layers are named by `L`: ZFNet's [`Point`] (the default), or a layer's key or alias as a
/// string (`"features.28"`, `"conv5_3"`) for any network; a name is looked up in the network's
/// spec ([`Net::layer`]) when the search runs.
#[derive(Clone, Debug)]
pub struct TopK<L = Point> {
    k: usize,
    one_per_image: bool,
    selection: Vec<(L, Vec<usize>)>,
    /// Keyed by (index into `selection`, map).
    hits: BTreeMap<(usize, usize), Vec<Hit>>,
}

/// The conv layer `name` names in `net`, or an error saying what it is instead.
pub(crate) fn conv_layer(net: &Net, name: &str) -> Result<usize> {
    let i = net.layer(name)?;
    match net.spec().layers[i].kind {
        LayerKind::Conv { .. } => Ok(i),
        _ => bail!("top-k searches conv layers (the paper's layers 1-5 in ZFNet), got {name}"),
    }
}

impl<L: Clone + std::fmt::Display> TopK<L> {
    /// `selection`: conv layers with the feature maps to search in each.
    pub fn new(selection: Vec<(L, Vec<usize>)>, k: usize, one_per_image: bool) -> Result<Self> {
        if k == 0 {
            bail!("top-k needs k of at least 1")
        }
        Ok(Self { k, one_per_image, selection, hits: BTreeMap::new() })
    }

    /// Runs `net` on a batch (up to the deepest chosen layer only) and updates the hits.
    /// `indices` are the images' indices in the data set.
    ///
    /// # Shapes
    /// - `images`: `[B, 3, S, S]`, `indices.len() == B`
    pub fn update(&mut self, net: &impl AsRef<Net>, images: &Tensor, indices: &[usize]) -> Result<()> {
        let net = net.as_ref();
        let b = images.dim(0)?;
        if indices.len() != b {
            bail!("top-k: {b} images but {} indices", indices.len())
        }
        let wanted: Vec<usize> =
            self.selection.iter().map(|(l, _)| conv_layer(net, &l.to_string())).collect::<Result<_>>()?;
        let Some(&deepest) = wanted.iter().max() else { return Ok(()) };
        let mut keep = zf_model::Keep::new(&wanted);
        net.forward_until(images, deepest, &mut keep)?;
        for (si, ((layer, maps), &li)) in self.selection.iter().zip(&wanted).enumerate() {
            let act = keep.get(li)?;
            let (_, c, _, w) = act.dims4()?;
            if let Some(&bad) = maps.iter().find(|&&m| m >= c) {
                bail!("channel {bad} does not exist: {layer} has {c} feature maps (0..{})", c - 1)
            }
            // Only the chosen maps leave the device: [B, M, H*W].
            let sel = Tensor::from_vec(maps.iter().map(|&m| m as u32).collect::<Vec<_>>(), maps.len(), act.device())?;
            let chosen = act.index_select(&sel, 1)?.flatten_from(2)?.to_dtype(DType::F32)?;
            if self.one_per_image {
                // Each (image, map)'s strongest position, found on the device: two numbers per
                // plane come back instead of the plane.
                let (best, value) = strongest_positions(&chosen)?;
                for (mi, &m) in maps.iter().enumerate() {
                    let entry = self.hits.entry((si, m)).or_default();
                    for (bi, image) in indices.iter().enumerate() {
                        let (pos, value) = (best[bi][mi] as usize, value[bi][mi]);
                        push(entry, Hit { value, image: *image, y: pos / w, x: pos % w }, self.k);
                    }
                }
                continue;
            }
            let flat = chosen.to_vec3::<f32>()?;
            for (mi, &m) in maps.iter().enumerate() {
                let entry = self.hits.entry((si, m)).or_default();
                for (bi, image) in flat.iter().zip(indices) {
                    for (pos, &value) in bi[mi].iter().enumerate() {
                        if entry.len() < self.k || value > entry[entry.len() - 1].value {
                            push(entry, Hit { value, image: *image, y: pos / w, x: pos % w }, self.k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// For each chosen (layer, map), its hits, strongest first.
    pub fn results(&self) -> Vec<(L, usize, Vec<Hit>)> {
        self.selection
            .iter()
            .enumerate()
            .flat_map(|(si, (l, maps))| maps.iter().map(move |&m| (si, l, m)))
            .map(|(si, l, m)| (l.clone(), m, self.hits.get(&(si, m)).cloned().unwrap_or_default()))
            .collect()
    }
}

/// Per image and map: the strongest position and its value.
type Strongest = (Vec<Vec<u32>>, Vec<Vec<f32>>);

/// For planes `[B, M, P]`: the first position (row-major) of each plane's maximum, and the
/// maximum, as `[B][M]` arrays. NaNs never win; a plane with no number reports position 0
/// and -inf, as a scan from -inf with `>` would.
fn strongest_positions(planes: &Tensor) -> Result<Strongest> {
    let (b, m, p) = planes.dims3()?;
    if p >= 1 << 24 {
        bail!("top-k: a plane of {p} positions is too large for f32 positions")
    }
    let device = planes.device();
    let neg = Tensor::full(f32::NEG_INFINITY, (b, m, p), device)?;
    // NaN -> -inf, so that the maximum is a number or -inf.
    let clean = planes.eq(planes)?.where_cond(planes, &neg)?;
    let max = clean.max_keepdim(2)?;
    let pos =
        Tensor::arange(0u32, p as u32, device)?.to_dtype(DType::F32)?.reshape((1, 1, p))?.broadcast_as((b, m, p))?;
    let past = Tensor::full(p as f32, (b, m, p), device)?;
    let first = clean.broadcast_eq(&max)?.where_cond(&pos, &past)?.min(2)?;
    // An all -inf plane matches everywhere: position 0, as the scan gives.
    let first = first.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    Ok((first, max.squeeze(2)?.to_vec2::<f32>()?))
}

/// Inserts `hit` keeping `v` sorted by value (descending, stable) and at most `k` long.
fn push(v: &mut Vec<Hit>, hit: Hit, k: usize) {
    let at = v.iter().position(|h| hit.value > h.value).unwrap_or(v.len());
    if at < k {
        v.insert(at, hit);
        v.truncate(k);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_the_k_largest_in_order() {
        let mut v = Vec::new();
        for (i, value) in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0].into_iter().enumerate() {
            push(&mut v, Hit { value, image: i, y: 0, x: 0 }, 3);
        }
        assert_eq!(v.iter().map(|h| h.value).collect::<Vec<_>>(), vec![9.0, 6.0, 5.0]);
        // Ties keep the earlier image first.
        let mut v = Vec::new();
        for i in 0..4 {
            push(&mut v, Hit { value: 1.0, image: i, y: 0, x: 0 }, 2);
        }
        assert_eq!(v.iter().map(|h| h.image).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn strongest_positions_scan_like_a_loop() {
        // Few distinct values (ties are common), a NaN, and a plane of NaNs only.
        let (b, m, p) = (3, 4, 10);
        let mut v: Vec<f32> = (0..b * m * p).map(|i| ((i * 7919) % 5) as f32).collect();
        v[3] = f32::NAN;
        for x in &mut v[p..2 * p] {
            *x = f32::NAN;
        }
        let t = Tensor::from_vec(v.clone(), (b, m, p), &candle_core::Device::Cpu).unwrap();
        let (pos, val) = strongest_positions(&t).unwrap();
        for bi in 0..b {
            for mi in 0..m {
                let plane = &v[(bi * m + mi) * p..(bi * m + mi + 1) * p];
                let (want_p, want_v) =
                    plane
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bp, bv), (i, &x)| if x > bv { (i, x) } else { (bp, bv) });
                assert_eq!((pos[bi][mi] as usize, val[bi][mi]), (want_p, want_v), "plane {bi},{mi}: {plane:?}");
            }
        }
    }
}
