//! The files the analysis commands write (`occlusion.json`, `invariance.json`, ...), as types:
//! `zfnet` serializes them and the report (zf-report) reads them back with the same types, so
//! a renamed field is a compile error or a loud parse error, never a silently missing number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CorrespondenceRow, FilterStats, InvarianceCurve, OcclusionConfig, ProbeConfig, ProbeResult};

/// Fig. 7, one image: what its occlusion maps say, summed up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OcclusionRecord {
    pub image: String,
    pub label: usize,
    pub class: String,
    /// The conv5 map of panel (b).
    pub map: usize,
    pub clean_prob: f32,
    pub clean_top: u32,
    pub clean_feature_map: f32,
    pub min_true_prob: f32,
    /// Top-left `(y, x)` of the square where the true class's probability is lowest.
    pub weakest_position: (usize, usize),
    pub top_is_true_fraction: f32,
    /// Mean p(true class) with the square's centre on the object's box / elsewhere (NaN — null
    /// in JSON — without a box).
    pub mean_prob_square_on_object: Option<f32>,
    pub mean_prob_square_off_object: Option<f32>,
    pub offsets: Vec<usize>,
    pub config: OcclusionConfig,
}

/// `occlusion.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OcclusionDoc {
    pub weights: String,
    pub images: Vec<OcclusionRecord>,
}

/// One image's curve in one sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageCurve {
    pub image: String,
    pub curve: InvarianceCurve,
}

/// One sweep (translate, scale, rotate) over the images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepRecord {
    pub sweep: String,
    pub images: Vec<ImageCurve>,
}

/// `invariance.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvarianceDoc {
    pub weights: String,
    pub sweeps: Vec<SweepRecord>,
}

/// `correspondence.json`: Table 1's rows, and the boxes that were occluded (per image, part
/// name -> `[x0, y0, x1, y1]` in input pixels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrespondenceDoc {
    pub weights: String,
    pub images: Vec<String>,
    pub boxes: Vec<BTreeMap<String, [usize; 4]>>,
    #[serde(rename = "box")]
    pub box_size: usize,
    /// How the random baseline's boxes were placed.
    #[serde(default)]
    pub random: Option<crate::RandomBoxes>,
    pub rows: Vec<CorrespondenceRow>,
}

/// One filter bank of Fig. 6.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BankRecord {
    pub name: String,
    pub weights: String,
    pub stats: FilterStats,
}

/// `filters.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiltersDoc {
    pub dead_fraction_of_median: f32,
    pub band_edges_cycles_per_pixel: Vec<f32>,
    pub banks: Vec<BankRecord>,
}

/// Fig. 4: one map's strongest activation at one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrongestRecord {
    pub epoch: usize,
    pub map: usize,
    pub image: usize,
    pub position: (usize, usize),
    pub value: f32,
}

/// Fig. 4, one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvolutionLayer {
    pub layer: String,
    pub maps: Vec<usize>,
    pub strongest: Vec<StrongestRecord>,
}

/// `evolution.json`: per layer the strongest activations per snapshot, each layer's relative
/// weight movement between consecutive snapshots (`movement[i]`: snapshot i to i+1, one entry
/// per weighted layer), and each layer's feature similarity to the final network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvolutionDoc {
    pub run: String,
    pub snapshots: Vec<usize>,
    pub images_searched: usize,
    pub layers: Vec<EvolutionLayer>,
    pub movement: Vec<Vec<crate::evolution::LayerChange>>,
    /// Each layer's feature similarity to the final network per snapshot (Fig. 4's claim).
    #[serde(default)]
    pub settling: Option<crate::evolution::Settling>,
}

/// One of a map's strongest activations in Fig. 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fig2Hit {
    pub rank: usize,
    pub image: usize,
    /// Where the image came from.
    pub source: String,
    /// `(y, x)` in the layer's map.
    pub position: (usize, usize),
    pub value: f32,
    /// `[x0, y0, x1, y1)` in input pixels.
    pub receptive_field: [usize; 4],
    /// The share of the projection's energy on the object's box and the share of the
    /// receptive field the box covers (`zf_deconv::energy_on_box`), when the image is annotated.
    #[serde(default)]
    pub object_energy: Option<f32>,
    #[serde(default)]
    pub object_area: Option<f32>,
}

/// One feature map's hits in Fig. 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fig2Map {
    pub layer: String,
    pub map: usize,
    pub hits: Vec<Fig2Hit>,
}

/// `topk.json` (Fig. 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fig2Doc {
    pub weights: String,
    pub data: String,
    pub images_searched: usize,
    pub skipped: usize,
    pub top: usize,
    pub one_per_image: bool,
    pub maps: Vec<Fig2Map>,
}

/// `probes.json` (Table 7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbesDoc {
    pub weights: String,
    /// The splits the probes were fitted and measured on: transfer-train/transfer-val (classes
    /// the network never trained on, as the paper's Table 7) or train/val.
    #[serde(default)]
    pub train_split: String,
    #[serde(default)]
    pub test_split: String,
    pub train_images: usize,
    pub test_images: usize,
    pub config: ProbeConfig,
    pub layers: Vec<ProbeResult>,
}
