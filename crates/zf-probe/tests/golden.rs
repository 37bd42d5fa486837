//! Golden tests: occlusion maps and the correspondence measure Δ against an independent PyTorch
//! implementation (`golden/make_golden.py`), on random weights.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::Tensor;
use zf_model::{Point, ZfNet};
use zf_probe::{correspondence, occlusion, OcclusionConfig};

fn fixtures() -> (ZfNet, HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let net =
        ZfNet::load(dir.join("probe.weights.safetensors").to_str().unwrap(), None, &zf_model::test_device().unwrap())
            .unwrap();
    let golden =
        candle_core::safetensors::load(dir.join("probe.golden.safetensors"), &zf_model::test_device().unwrap())
            .unwrap();
    (net, golden)
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(name: &str, ours: &[f32], theirs: &[f32], rel: f32) {
    assert_eq!(ours.len(), theirs.len(), "{name}: length");
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= rel * scale, "{name}[{i}]: ours {a}, PyTorch {b} (scale {scale})");
    }
}

#[test]
fn occlusion_maps_match_pytorch() {
    let (net, g) = fixtures();
    let cfg = OcclusionConfig { size: 32, stride: 16, batch: 7 };
    let occ = occlusion(&net, &g["input"], 3, cfg, &mut |_, _| ()).unwrap();
    assert_eq!(occ.map as i64, g["occ.map"].to_vec1::<i64>().unwrap()[0]);
    assert_close("feature_map", &occ.feature_map, &vec_f32(&g["occ.feature_map"]), 1e-4);
    assert_close("true_prob", &occ.true_prob, &vec_f32(&g["occ.true_prob"]), 1e-4);
    let top: Vec<u32> = g["occ.top_label"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect();
    assert_eq!(occ.top_label, top);
}

#[test]
fn correspondence_delta_matches_pytorch() {
    let (net, g) = fixtures();
    let boxes: Vec<BTreeMap<String, [usize; 4]>> = g["boxes"]
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|b| BTreeMap::from([("part".to_string(), [b[0] as usize, b[1] as usize, b[2] as usize, b[3] as usize])]))
        .collect();
    let rows = correspondence(
        &net,
        &g["images"],
        &boxes,
        &["part".into()],
        &[net.layer_index(Point::Conv5).unwrap(), net.layer_index(Point::Fc7).unwrap()],
        &zf_probe::RandomBoxes::default(),
    )
    .unwrap();
    for (layer, key) in [("conv5", "delta.conv5"), ("fc7", "delta.fc7")] {
        let r = rows.iter().find(|r| r.part == "part" && r.layer == layer).unwrap();
        assert_close(key, &[r.mean, r.std], &vec_f32(&g[key]), 1e-4);
    }
}
