//! The paper's analyses as studies: each one call that composes the library's pieces over its
//! inputs and returns what the `zfnet` commands draw and write, so that the commands only parse
//! arguments, draw and save. [`occlusion_study`] (Fig. 7 for every image, its records and maps)
//! and [`invariance_study`] (Fig. 5's sweeps for every image), with their safetensors files
//! ([`OcclusionStudy::save`], [`save_invariance`]); [`correspondence_study`] (Table 1: the
//! parts' boxes, the random baseline, Δ at layers 5 and 7); [`filter_bank_study`] (Fig. 6, one
//! first layer); [`evolution_study`] (Fig. 4 over a run's snapshots); [`fig2_study`] (Fig. 2's
//! top-k over a data set, with its index, [`Fig2Study::save_index`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{bail, Device, Result, Tensor};
use zf_data::pick::Picked;
use zf_model::{Net, Point, ZfNet};

use crate::correspondence::{CorrespondenceRow, PartBox, RandomBoxes};
use crate::evolution::{LayerChange, Settling};
use crate::filters::FilterStats;
use crate::invariance::Sweep;
use crate::occlusion::{Occlusion, OcclusionConfig};
use crate::records::{EvolutionLayer, ImageCurve, OcclusionRecord, StrongestRecord, SweepRecord};

/// Fig. 7 over several images.
#[derive(Clone, Debug)]
pub struct OcclusionStudy {
    /// Per image, its maps (b), (d), (e).
    pub maps: Vec<Occlusion>,
    /// Per image, panel (c): the chosen conv5 map's projection, `[3, S, S]` row-major.
    pub projections: Vec<Vec<f32>>,
    /// `S`, the network's input side.
    pub input_size: usize,
    /// Per image, its summary (what `occlusion.json` lists).
    pub records: Vec<OcclusionRecord>,
}

/// Fig. 7 for every image of `images` (class names from `classes`, by label): the occlusion
/// maps, the strongest conv5 map's projection and the summary, including the mean probability
/// of the true class with the square on the object's box and off it when the image is
/// annotated. `progress(done, total)` counts square positions over all images.
pub fn occlusion_study(
    net: &impl AsRef<Net>,
    images: &[Picked],
    classes: &[String],
    config: OcclusionConfig,
    progress: crate::Progress<'_>,
) -> Result<OcclusionStudy> {
    let net = net.as_ref();
    let per = config.offsets(net.spec().input_size)?.len().pow(2);
    let total = per * images.len();
    let mut study = OcclusionStudy {
        maps: Vec::new(),
        projections: Vec::new(),
        input_size: net.spec().input_size,
        records: Vec::new(),
    };
    for (k, img) in images.iter().enumerate() {
        let occ = crate::occlusion(net, &img.tensor, img.label, config, &mut |d, _| progress(k * per + d, total))?;
        let proj = crate::occlusion::projection(net, &img.tensor, occ.map)?;
        study.projections.push(proj.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
        let split = img.annotation.as_ref().map(|a| occ.split_by_box(a.bbox));
        let finite = |v: f32| v.is_finite().then_some(v);
        study.records.push(OcclusionRecord {
            image: img.name.clone(),
            label: img.label,
            class: classes.get(img.label).cloned().unwrap_or_else(|| img.label.to_string()),
            map: occ.map,
            clean_prob: occ.clean_prob,
            clean_top: occ.clean_top,
            clean_feature_map: occ.clean_feature_map,
            min_true_prob: occ.min_true_prob(),
            weakest_position: occ.weakest(),
            top_is_true_fraction: occ.top_is_true_fraction(),
            mean_prob_square_on_object: split.and_then(|s| finite(s.on)),
            mean_prob_square_off_object: split.and_then(|s| finite(s.off)),
            offsets: occ.offsets.clone(),
            config: occ.config,
        });
        study.maps.push(occ);
    }
    Ok(study)
}

impl OcclusionStudy {
    /// Writes the maps as safetensors: `feature_map`, `true_prob`, `top_label` (i64), each
    /// `[N, R, R]`, and `projection` `[N, 3, S, S]`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let cpu = Device::Cpu;
        let n = self.maps.len();
        let r = self.maps.first().map_or(0, Occlusion::side);
        let s = self.input_size;
        let flat = |f: &dyn Fn(&Occlusion) -> Vec<f32>| self.maps.iter().flat_map(f).collect::<Vec<f32>>();
        let labels: Vec<i64> = self.maps.iter().flat_map(|o| o.top_label.iter().map(|&v| i64::from(v))).collect();
        let tensors = vec![
            ("feature_map".to_string(), Tensor::from_vec(flat(&|o| o.feature_map.clone()), (n, r, r), &cpu)?),
            ("true_prob".to_string(), Tensor::from_vec(flat(&|o| o.true_prob.clone()), (n, r, r), &cpu)?),
            ("top_label".to_string(), Tensor::from_vec(labels, (n, r, r), &cpu)?),
            ("projection".to_string(), Tensor::from_vec(self.projections.concat(), (n, 3, s, s), &cpu)?),
        ];
        zf_model::weights::save_tensors(&tensors, Default::default(), path)
    }
}

/// Fig. 5 for every image of `images` and every sweep of `sweeps`, the amounts scaled to the
/// network's input size ([`Sweep::amounts_for`]). `progress(done, total)` counts (sweep, image)
/// pairs.
pub fn invariance_study(
    net: &impl AsRef<Net>,
    images: &[Picked],
    sweeps: &[Sweep],
    progress: crate::Progress<'_>,
) -> Result<Vec<SweepRecord>> {
    let net = net.as_ref();
    let total = sweeps.len() * images.len();
    let mut out = Vec::with_capacity(sweeps.len());
    for (si, &sweep) in sweeps.iter().enumerate() {
        let amounts = sweep.amounts_for(net.spec().input_size);
        let mut curves = Vec::with_capacity(images.len());
        for (k, img) in images.iter().enumerate() {
            let curve = crate::invariance(net, &img.tensor, img.label, sweep, &amounts)?;
            curves.push(ImageCurve { image: img.name.clone(), curve });
            progress(si * images.len() + k + 1, total);
        }
        out.push(SweepRecord { sweep: sweep.name().to_string(), images: curves });
    }
    Ok(out)
}

/// Writes Fig. 5's curves as safetensors: per sweep `<sweep>.layer1`, `<sweep>.layer7`,
/// `<sweep>.prob` (each `[N, steps]`) and `<sweep>.amounts` (`[steps]`).
pub fn save_invariance(sweeps: &[SweepRecord], path: &Path) -> Result<()> {
    let cpu = Device::Cpu;
    let mut tensors = Vec::new();
    for s in sweeps {
        let Some(first) = s.images.first() else { continue };
        let (n, steps) = (s.images.len(), first.curve.amounts.len());
        let flat = |f: &dyn Fn(&ImageCurve) -> Vec<f32>| -> Result<Tensor> {
            Tensor::from_vec(s.images.iter().flat_map(f).collect::<Vec<f32>>(), (n, steps), &cpu)
        };
        tensors.push((format!("{}.layer1", s.sweep), flat(&|c| c.curve.layer1_distance.clone())?));
        tensors.push((format!("{}.layer7", s.sweep), flat(&|c| c.curve.layer7_distance.clone())?));
        tensors.push((format!("{}.prob", s.sweep), flat(&|c| c.curve.true_prob.clone())?));
        tensors.push((format!("{}.amounts", s.sweep), Tensor::from_vec(first.curve.amounts.clone(), steps, &cpu)?));
    }
    zf_model::weights::save_tensors(&tensors, Default::default(), path)
}

/// Table 1 over several images.
#[derive(Clone, Debug)]
pub struct CorrespondenceStudy {
    /// Per image, each part's box in input pixels.
    pub boxes: Vec<BTreeMap<String, PartBox>>,
    /// The parts occluded.
    pub parts: Vec<String>,
    /// The random baseline (inside each object's box, off its parts, when every image has one).
    pub random: RandomBoxes,
    /// The paper's layers 5 and 7: the network's last conv and last hidden linear layer.
    pub layers: [usize; 2],
    /// Δ per part (and the random boxes) at both layers.
    pub rows: Vec<CorrespondenceRow>,
}

/// Table 1 on `images`: each part occluded by a `box_size` square (at 224 pixels, the boxes
/// `given` per image name instead when set), the parts `parts` (default: every part the boxes
/// name), against `random` boxes of the same size drawn `draws` times from `seed`.
pub fn correspondence_study(
    net: &impl AsRef<Net>,
    images: &[Picked],
    given: Option<&BTreeMap<String, BTreeMap<String, PartBox>>>,
    box_size: usize,
    parts: Option<Vec<String>>,
    (seed, draws): (u64, usize),
) -> Result<CorrespondenceStudy> {
    let net = net.as_ref();
    let spec = net.spec();
    let s = spec.input_size;
    let boxes: Vec<BTreeMap<String, PartBox>> = images
        .iter()
        .map(|img| match (given, &img.annotation) {
            (Some(g), _) => g.get(&img.name).cloned().unwrap_or_default(),
            (None, Some(a)) => crate::correspondence::part_boxes(a, box_size, s),
            (None, None) => BTreeMap::new(),
        })
        .collect();
    let parts = parts.unwrap_or_else(|| {
        let mut all: Vec<String> = boxes.iter().flat_map(|b| b.keys().cloned()).collect();
        all.sort();
        all.dedup();
        all
    });
    if parts.is_empty() {
        bail!("no parts to occlude: the images have no part annotations (use --split faces or --class face on the generated data, or --boxes FILE)")
    }
    let regions: Option<Vec<PartBox>> =
        images.iter().map(|i| i.annotation.as_ref().map(|a| crate::correspondence::object_box(a, s))).collect();
    let random = RandomBoxes { seed, draws, regions, ..Default::default() };
    let (Some(l5), Some(l7)) = (spec.last_conv(), spec.last_hidden()) else {
        bail!("{} has no conv or no hidden linear layer to compare", spec.arch)
    };
    let stacked = zf_data::pick::stack(images).map_err(candle_core::Error::wrap)?;
    let rows = crate::correspondence(net, &stacked, &boxes, &parts, &[l5, l7], &random)?;
    Ok(CorrespondenceStudy { boxes, parts, random, layers: [l5, l7], rows })
}

/// Fig. 6 for one first layer: the statistics of `net`'s conv1 filters, their change from
/// `init` (the bank's own initial conv1 weights, when known) and, on `images` (preprocessed,
/// `[N, 3, S, S]`), which filters are dead on data.
pub fn filter_bank_study(net: &ZfNet, init: Option<&Tensor>, images: Option<&Tensor>) -> Result<FilterStats> {
    let w = net.conv1.weight().to_device(&Device::Cpu)?;
    let mut stats = crate::filter_stats(&w)?;
    if let Some(w0) = init {
        stats.against_init(&crate::filter_stats(&w0.to_device(&Device::Cpu)?)?);
    }
    if let Some(x) = images {
        stats.dead_on_data = crate::filters::dead_on_data(net, x)?;
    }
    Ok(stats)
}

/// One cell of Fig. 4: a map's strongest activation at one snapshot, projected.
#[derive(Clone, Debug)]
pub struct EvolutionCell {
    pub epoch: usize,
    /// The projection, `[3, S, S]` row-major, and the receptive field it lies in,
    /// `[x0, y0, x1, y1]` in input pixels.
    pub projection: Vec<f32>,
    pub receptive_field: [usize; 4],
}

/// Fig. 4 over a run's snapshots.
#[derive(Clone, Debug)]
pub struct EvolutionStudy {
    /// Per conv layer, its maps and their strongest activation per snapshot.
    pub layers: Vec<EvolutionLayer>,
    /// Per conv layer and map, its cells over the snapshots (`cells[layer][map]`).
    pub cells: Vec<Vec<Vec<EvolutionCell>>>,
    /// Each layer's feature similarity to the final network, per snapshot.
    pub settling: Settling,
    /// Relative weight movement between consecutive snapshots, per weighted layer.
    pub movement: Vec<Vec<LayerChange>>,
    /// Images searched for the strongest activations.
    pub images_searched: usize,
}

/// Fig. 4 on `snapshots` (epoch and network, the final one last): for `maps` maps spread over
/// each conv layer, the strongest activation over the first `searched` of `images` and its
/// projection, per snapshot (Fig. 2's search with one hit per map); each layer's similarity to
/// the final network on the first `similarity` images (linear CKA, [`crate::evolution::settling`]);
/// and the weights' movement. `progress(done, total)` counts (layer, snapshot) searches, then
/// snapshots compared.
pub fn evolution_study(
    snapshots: &[(usize, ZfNet)],
    images: &Tensor,
    (searched, similarity): (usize, usize),
    maps: usize,
    progress: crate::Progress<'_>,
) -> Result<EvolutionStudy> {
    let Some((_, first)) = snapshots.first() else { bail!("evolution_study: no snapshots") };
    let config = first.config().clone();
    let n = images.dim(0)?;
    let layers = [Point::Conv1, Point::Conv2, Point::Conv3, Point::Conv4, Point::Conv5];
    let total = layers.len() * snapshots.len() + snapshots.len();
    let searched = images.narrow(0, 0, n.min(searched))?;
    let chosen: Vec<Vec<usize>> = layers
        .iter()
        .map(|&layer| {
            let [c, _, _] = zf_deconv::layer_shape(&config, layer)?;
            let m = maps.clamp(1, c);
            Ok((0..m).map(|i| i * c / m).collect())
        })
        .collect::<Result<_>>()?;
    let mut all_cells: Vec<Vec<Vec<EvolutionCell>>> = chosen.iter().map(|c| vec![Vec::new(); c.len()]).collect();
    let mut strongest: Vec<Vec<StrongestRecord>> = vec![Vec::new(); layers.len()];
    let mut done = 0;
    // One search per snapshot for every layer's maps (one forward pass over the images).
    for (epoch, net) in snapshots {
        let one = zf_deconv::Fig2Config { top: 1, one_per_image: true, batch: 32 };
        let selection = layers.iter().copied().zip(chosen.iter().cloned()).collect();
        let found = zf_deconv::top_projections_of(net, selection, one, &searched, &mut |_, _, _| {})?;
        for m in &found {
            let Some(li) = layers.iter().position(|&l| l == m.layer) else { continue };
            let (Some(mi), Some(p)) = (chosen[li].iter().position(|&c| c == m.map), m.hits.first()) else { continue };
            all_cells[li][mi].push(EvolutionCell {
                epoch: *epoch,
                projection: p.projection.clone(),
                receptive_field: p.receptive_field,
            });
            let h = p.hit;
            strongest[li].push(StrongestRecord {
                epoch: *epoch,
                map: m.map,
                image: h.image,
                position: (h.y, h.x),
                value: h.value,
            });
        }
        done += layers.len();
        progress(done, total);
    }
    let records = layers
        .iter()
        .zip(chosen)
        .zip(strongest)
        .map(|((layer, maps), strongest)| EvolutionLayer { layer: layer.name().to_string(), maps, strongest })
        .collect();
    let similar = images.narrow(0, 0, n.min(similarity))?;
    let pairs: Vec<(usize, &ZfNet)> = snapshots.iter().map(|(e, net)| (*e, net)).collect();
    let settling = crate::evolution::settling(&pairs, &similar, &layers, &mut |d, _| progress(done + d, total))?;
    let movement = snapshots.windows(2).map(|w| crate::weight_change(&w[0].1, &w[1].1)).collect::<Result<Vec<_>>>()?;
    Ok(EvolutionStudy { layers: records, cells: all_cells, settling, movement, images_searched: searched.dim(0)? })
}

/// Fig. 2 over a data set: the hits, their projections and the document `topk.json` holds.
#[derive(Clone, Debug)]
pub struct Fig2Study {
    /// What `topk.json` lists (every hit's image, position, value and receptive field).
    pub doc: crate::records::Fig2Doc,
    /// The hits with their projections, in the document's order.
    pub maps: Vec<zf_deconv::MapHits<String>>,
    /// `S`, the network's input side.
    pub input_size: usize,
}

/// Fig. 2 for the maps of `selection` (`(layer name, maps)`, conv layers) over `dataset`'s
/// images (centre crops, `mean` subtracted): one streaming pass keeps each map's `config.top`
/// strongest activations, then each is projected alone ([`zf_deconv::top_projections`]).
/// `weights` and `data` name the sources in the document. `progress(phase, done, total)`
/// follows the search and the projections.
pub fn fig2_study(
    net: &impl AsRef<Net>,
    dataset: Arc<dyn zf_data::Dataset>,
    mean: &zf_data::MeanImage,
    selection: Vec<(String, Vec<usize>)>,
    config: zf_deconv::Fig2Config,
    (weights, data): (&str, &str),
    progress: &mut dyn FnMut(zf_deconv::Phase, usize, usize),
) -> Result<Fig2Study> {
    let net = net.as_ref();
    let size = net.spec().input_size;
    let device = net.device();
    let pre = dataset.preprocess();
    if pre.crop != size {
        bail!("the data set gives {0}x{0} crops, the network takes {size}x{size}", pre.crop)
    }
    let msg = |e: zf_data::DataError| candle_core::Error::Msg(e.to_string());
    let loader = zf_data::Loader::new(
        dataset.clone(),
        Some(mean),
        zf_data::LoaderConfig::eval(config.batch, zf_data::Crops::Centre),
    )
    .map_err(msg)?;
    // The hits' images again, preprocessed as the loader does (centre crop, mean off).
    let mut load = |indices: &[usize]| -> Result<Tensor> {
        zf_data::pick::centre_crops(dataset.as_ref(), indices, mean, &device).map(|(x, _)| x).map_err(msg)
    };
    let mut search = loader.epoch(0).map(|b| {
        let b = b.map_err(msg)?;
        Ok((b.indices.clone(), b.images.to_device(&device)?))
    });
    let maps = zf_deconv::top_projections(net, selection, config, &mut search, dataset.len(), &mut load, progress)?;
    drop(search);
    let mut records = Vec::with_capacity(maps.len());
    for m in &maps {
        let mut hits = Vec::with_capacity(m.hits.len());
        for (rank, p) in m.hits.iter().enumerate() {
            let h = p.hit;
            let on_object = dataset
                .annotation(h.image)
                .map_err(msg)?
                .and_then(|a| zf_deconv::energy_on_box(&p.projection, size, p.receptive_field, a.in_crop(&pre).bbox));
            hits.push(crate::records::Fig2Hit {
                rank,
                image: h.image,
                source: dataset.describe(h.image),
                position: (h.y, h.x),
                value: h.value,
                receptive_field: p.receptive_field,
                object_energy: on_object.map(|o| o.0),
                object_area: on_object.map(|o| o.1),
            });
        }
        records.push(crate::records::Fig2Map { layer: m.layer.clone(), map: m.map, hits });
    }
    let doc = crate::records::Fig2Doc {
        weights: weights.to_string(),
        data: data.to_string(),
        images_searched: dataset.len(),
        skipped: loader.skipped(),
        top: config.top,
        one_per_image: config.one_per_image,
        maps: records,
    };
    Ok(Fig2Study { doc, maps, input_size: size })
}

impl Fig2Study {
    /// Layer `layer`'s projections, `[hits, 3, S, S]` in the document's order.
    pub fn projections(&self, layer: &str) -> Result<Tensor> {
        let s = self.input_size;
        let rows: Vec<Tensor> = self
            .maps
            .iter()
            .filter(|m| m.layer == layer)
            .flat_map(|m| &m.hits)
            .map(|p| Tensor::from_slice(&p.projection, (3, s, s), &Device::Cpu))
            .collect::<Result<_>>()?;
        if rows.is_empty() {
            return Tensor::zeros((0, 3, s, s), candle_core::DType::F32, &Device::Cpu);
        }
        Tensor::stack(&rows, 0)
    }

    /// Writes the index `zfnet serve` reads ([`crate::fig2_index`]) to `dir`: `topk.json` and
    /// one projections file per layer.
    pub fn save_index(&self, dir: &Path, arch: &str) -> Result<()> {
        let mut layers: Vec<String> = Vec::new();
        for m in &self.maps {
            if !layers.contains(&m.layer) {
                layers.push(m.layer.clone());
            }
        }
        let projections = layers.iter().map(|l| Ok((l.clone(), self.projections(l)?))).collect::<Result<Vec<_>>>()?;
        crate::fig2_index::write_index(dir, arch, &self.doc, &projections)
    }
}
