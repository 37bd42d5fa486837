//! Picture-quality numbers: how much of Fig. 2's projections falls on the objects they were
//! found on ([`picture_quality`]), beside the conv1 spectra's change from their initialization
//! that the Fig. 6 claims report.

use serde::{Deserialize, Serialize};

use crate::results::Results;

/// One layer's Fig. 2 projections against the objects' boxes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerQuality {
    pub layer: String,
    /// Hits on annotated images.
    pub hits: usize,
    /// Mean share of a projection's energy (inside its receptive field) on the object's box.
    pub energy: f64,
    /// Mean share of the receptive field the box covers.
    pub area: f64,
}

/// Each first layer's mean spectral change from its initialization (Fig. 6's banks: 0 = as
/// white as the random start, 1 = nothing in common), for the banks where it was measured.
pub fn spectral_change(r: &Results) -> Vec<(String, f64)> {
    let Some(doc) = &r.fig6 else { return Vec::new() };
    doc.banks
        .iter()
        .filter(|b| !b.stats.spectral_change.is_empty())
        .map(|b| {
            let v = &b.stats.spectral_change;
            (b.name.clone(), v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64)
        })
        .collect()
}

/// Per layer of Fig. 2 (in the order the file has them), the mean energy and area shares over
/// the hits whose images are annotated; layers without any are left out.
pub fn picture_quality(r: &Results) -> Vec<LayerQuality> {
    let Some(doc) = &r.fig2 else { return Vec::new() };
    let mut out: Vec<LayerQuality> = Vec::new();
    for m in &doc.maps {
        let i = match out.iter().position(|q| q.layer == m.layer) {
            Some(i) => i,
            None => {
                out.push(LayerQuality { layer: m.layer.clone(), hits: 0, energy: 0.0, area: 0.0 });
                out.len() - 1
            }
        };
        for h in &m.hits {
            if let (Some(e), Some(a)) = (h.object_energy, h.object_area) {
                let q = &mut out[i];
                q.hits += 1;
                q.energy += f64::from(e);
                q.area += f64::from(a);
            }
        }
    }
    out.retain(|q| q.hits > 0);
    for q in &mut out {
        q.energy /= q.hits as f64;
        q.area /= q.hits as f64;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zf_probe::records::{Fig2Doc, Fig2Hit, Fig2Map};

    #[test]
    fn shares_are_averaged_per_layer_over_annotated_hits() {
        let hit = |e: Option<f32>, a: Option<f32>| Fig2Hit {
            rank: 0,
            image: 0,
            source: "x".into(),
            position: (0, 0),
            value: 1.0,
            receptive_field: [0, 0, 4, 4],
            object_energy: e,
            object_area: a,
        };
        let map = |layer: &str, hits: Vec<Fig2Hit>| Fig2Map { layer: layer.into(), map: 0, hits };
        let r = Results {
            fig2: Some(Fig2Doc {
                weights: "w".into(),
                data: "d".into(),
                images_searched: 3,
                skipped: 0,
                top: 2,
                one_per_image: true,
                maps: vec![
                    map("conv1", vec![hit(Some(0.8), Some(0.5)), hit(None, None)]),
                    map("conv1", vec![hit(Some(0.4), Some(0.25))]),
                    map("conv5", vec![hit(None, None)]),
                ],
            }),
            ..Default::default()
        };
        let q = picture_quality(&r);
        assert_eq!(q.len(), 1, "conv5 has no annotated hit");
        assert_eq!((q[0].layer.as_str(), q[0].hits), ("conv1", 2));
        assert!((q[0].energy - 0.6).abs() < 1e-6 && (q[0].area - 0.375).abs() < 1e-6);
        assert!(picture_quality(&Results::default()).is_empty());
        assert!(spectral_change(&Results::default()).is_empty());
    }
}
