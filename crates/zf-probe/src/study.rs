//! The analyses over a set of picked images (`zf_data::pick::Picked`, each with its label,
//! name and annotation), each one call that returns what the `zfnet` commands write:
//! [`occlusion_study`] (Fig. 7 for every image, its records and maps) and [`invariance_study`]
//! (Fig. 5's sweeps for every image), with their safetensors files ([`OcclusionStudy::save`],
//! [`save_invariance`]).

use std::path::Path;

use candle_core::{Device, Result, Tensor};
use zf_data::pick::Picked;
use zf_model::Net;

use crate::invariance::Sweep;
use crate::occlusion::{Occlusion, OcclusionConfig};
use crate::records::{ImageCurve, OcclusionRecord, SweepRecord};

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
