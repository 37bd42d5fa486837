//! The paper's Fig. 2 as one call: search a set of images for each chosen feature map's
//! strongest activations, run each hit's image forward again, and project the hit alone down to
//! the pixels ([`top_projections`]).
//!
//! The images come through a callback that returns a batch for a list of indices, so that any
//! data set (zf-data's, or the caller's own) can feed it.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use zf_model::{Net, NetTrace, Point};

use crate::topk::conv_layer;
use crate::{receptive_field_of, Deconvnet, Hit, TopK, Unit};

/// How the search runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fig2Config {
    /// Hits kept per map (the paper shows 9).
    pub top: usize,
    /// At most one hit per image and map (the paper's figure), else any positions.
    pub one_per_image: bool,
    /// Images per forward pass.
    pub batch: usize,
}

impl Default for Fig2Config {
    fn default() -> Self {
        Self { top: 9, one_per_image: true, batch: 32 }
    }
}

/// One hit with its projection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Projected {
    pub hit: Hit,
    /// The input pixels the unit sees, `[x0, y0, x1, y1)`.
    pub receptive_field: [usize; 4],
    /// The projection, `[3, S, S]` row-major (not serialized: it is an image).
    #[serde(skip)]
    pub projection: Vec<f32>,
}

/// One feature map's hits, strongest first. `L` names the layer as the selection did (ZFNet's
/// [`Point`], or a key or alias).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapHits<L = Point> {
    pub layer: L,
    pub map: usize,
    pub hits: Vec<Projected>,
}

/// Which phase [`top_projections`] reports progress for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Images searched so far, of all.
    Search,
    /// Maps projected so far, of all.
    Project,
}

/// Fig. 2: for each `(layer, maps)` of `selection` (conv layers), the `config.top` strongest
/// activations over the images `search` yields, each projected alone to the pixels.
///
/// `search` yields batches `(indices, images)` — the images preprocessed, `[len, 3, S, S]` on
/// the network's device, the indices naming them (a data loader's batches, say); `load(indices)`
/// returns the same images again for the hits (called once per chunk of `config.batch`).
/// `progress(phase, done, total)` follows both phases (`total` is `images` in the search).
pub fn top_projections<L: Clone + std::fmt::Display + PartialEq>(
    net: &impl AsRef<Net>,
    selection: Vec<(L, Vec<usize>)>,
    config: Fig2Config,
    search: &mut dyn Iterator<Item = Result<(Vec<usize>, Tensor)>>,
    images: usize,
    load: &mut dyn FnMut(&[usize]) -> Result<Tensor>,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<Vec<MapHits<L>>> {
    let net = net.as_ref();
    let batch = config.batch.max(1);
    let mut top = TopK::new(selection.clone(), config.top, config.one_per_image)?;
    let mut seen = 0;
    for b in search {
        let (indices, x) = b?;
        top.update(net, &x, &indices)?;
        seen += indices.len();
        progress(Phase::Search, seen, images);
    }
    let results = top.results();
    let total = results.len();
    let mut out: Vec<MapHits<L>> = Vec::with_capacity(total);
    let deconv = Deconvnet::new(net);
    for (layer, _) in &selection {
        let li = conv_layer(net, &layer.to_string())?;
        let maps: Vec<&(L, usize, Vec<Hit>)> = results.iter().filter(|(l, _, _)| l == layer).collect();
        let mut projected: Vec<MapHits<L>> = maps
            .iter()
            .map(|(l, m, hits)| {
                let hits = hits
                    .iter()
                    .map(|h| {
                        let receptive_field = receptive_field_of(net.spec(), li, h.y, h.x)?;
                        Ok(Projected { hit: *h, receptive_field, projection: Vec::new() })
                    })
                    .collect::<Result<_>>()?;
                Ok(MapHits { layer: l.clone(), map: *m, hits })
            })
            .collect::<Result<_>>()?;
        // The hits' images, each run forward once per chunk, every hit of the chunk projected
        // in one call.
        let mut needed: Vec<usize> = maps.iter().flat_map(|(_, _, h)| h.iter().map(|h| h.image)).collect();
        needed.sort_unstable();
        needed.dedup();
        for chunk in needed.chunks(batch) {
            let mut trace = NetTrace::default();
            net.forward_until(&load(chunk)?, li, &mut trace)?;
            let mut units = Vec::new();
            let mut slots = Vec::new();
            for (mi, m) in projected.iter().enumerate() {
                for (hi, p) in m.hits.iter().enumerate() {
                    if let Some(pos) = chunk.iter().position(|&i| i == p.hit.image) {
                        units.push(Unit { image: pos, channel: m.map, y: p.hit.y, x: p.hit.x });
                        slots.push((mi, hi));
                    }
                }
            }
            if units.is_empty() {
                continue;
            }
            let p = crate::to_host(&deconv.project_layer(&trace, li, &units)?)?;
            for (k, (mi, hi)) in slots.into_iter().enumerate() {
                projected[mi].hits[hi].projection = p.get(k)?.flatten_all()?.to_vec1()?;
            }
        }
        out.extend(projected);
        progress(Phase::Project, out.len(), total);
    }
    Ok(out)
}

/// How much of a projection's energy (squared values summed over channels) inside its
/// receptive field `rf` (`[x0, y0, x1, y1)`) falls on the object's box `bbox` (`[x0, y0, x1,
/// y1]` in the same `s x s` pixels), and the fraction of the field's area the box covers — the
/// energy share a projection spread evenly over the field would have. `None` for a projection
/// without energy.
///
/// # Shapes
/// `projection`: `[3, s, s]` row-major.
pub fn energy_on_box(projection: &[f32], s: usize, rf: [usize; 4], bbox: [f32; 4]) -> Option<(f32, f32)> {
    let (mut total, mut inside, mut area_in) = (0f64, 0f64, 0usize);
    let plane = s * s;
    for y in rf[1]..rf[3].min(s) {
        for x in rf[0]..rf[2].min(s) {
            let e: f64 = (0..3).map(|c| f64::from(projection[c * plane + y * s + x]).powi(2)).sum();
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let on = bbox[0] <= cx && cx < bbox[2] && bbox[1] <= cy && cy < bbox[3];
            total += e;
            if on {
                inside += e;
                area_in += 1;
            }
        }
    }
    let area = (rf[2].min(s).saturating_sub(rf[0])) * (rf[3].min(s).saturating_sub(rf[1]));
    (total > 0.0 && area > 0).then(|| ((inside / total) as f32, area_in as f32 / area as f32))
}

/// [`top_projections`] over images already in memory, `[N, 3, S, S]` on the network's device
/// (searched in chunks of `config.batch`; hits name images by their row).
pub fn top_projections_of<L: Clone + std::fmt::Display + PartialEq>(
    net: &impl AsRef<Net>,
    selection: Vec<(L, Vec<usize>)>,
    config: Fig2Config,
    images: &Tensor,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<Vec<MapHits<L>>> {
    let n = images.dim(0)?;
    let batch = config.batch.max(1);
    let mut search = (0..n).step_by(batch).map(|start| {
        let len = batch.min(n - start);
        Ok(((start..start + len).collect::<Vec<_>>(), images.narrow(0, start, len)?))
    });
    let mut load = |idx: &[usize]| {
        let ids = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), images.device())?;
        images.index_select(&ids, 0)
    };
    top_projections(net, selection, config, &mut search, n, &mut load, progress)
}
