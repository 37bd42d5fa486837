//! The analyses on a real (random, tiny) network, checked against forward passes done by hand
//! and against properties that follow from their definitions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use candle_core::{Device, IndexOp, Tensor};
use zf_model::init::{init_net, Init};
use zf_model::{Point, ZfConfig, ZfNet};
use zf_probe::invariance::Sweep;
use zf_probe::occlusion::occlude;
use zf_probe::{correspondence, invariance, occlusion, occlusion_steered, OcclusionConfig};

fn net() -> ZfNet {
    let mut cfg = ZfConfig::tiny().with_input_size(64);
    cfg.input_scale = 1.0 / 64.0;
    init_net(&cfg, Init::He, 5, &Device::Cpu).unwrap()
}

fn image(seed: u64) -> Tensor {
    Tensor::rand(-100f32, 100.0, (3, 64, 64), &Device::Cpu).unwrap().affine(1.0, seed as f64).unwrap()
}

fn scalar(t: Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

#[test]
fn occlusion_maps_equal_forward_passes_of_the_occluded_images() {
    let net = net();
    let img = image(0);
    let cfg = OcclusionConfig { size: 16, stride: 12, batch: 5 };
    let mut calls = 0;
    let occ = occlusion(&net, &img, 3, cfg, &mut |_, _| calls += 1).unwrap();
    // Offsets 0, 12, 24, 36, 48 (= 64 - 16): 25 positions in 5 batches of 5.
    assert_eq!(occ.offsets, vec![0, 12, 24, 36, 48]);
    assert_eq!((occ.true_prob.len(), calls), (25, 5));
    for (k, (y, x)) in [(0usize, (0usize, 0usize)), (7, (12, 24)), (24, (48, 48))] {
        let mut v = img.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        occlude(&mut v, 64, [x, y, x + 16, y + 16]);
        let xs = Tensor::from_vec(v, (1, 3, 64, 64), &Device::Cpu).unwrap();
        let trace = net.trace(&xs).unwrap();
        let total = scalar(trace.get(Point::Conv5).unwrap().i((0, occ.map)).unwrap().sum_all().unwrap());
        let prob = scalar(trace.get(Point::Prob).unwrap().i((0, 3)).unwrap());
        assert!((occ.feature_map[k] - total).abs() <= 1e-4 * total.abs().max(1.0), "{k}");
        assert!((occ.true_prob[k] - prob).abs() < 1e-5, "{k}");
    }
    // The chosen map is the one with the largest activation on the clean image.
    let trace = net.trace(&img.unsqueeze(0).unwrap()).unwrap();
    let conv5 = trace.get(Point::Conv5).unwrap().i(0).unwrap();
    let peaks = conv5.flatten_from(1).unwrap().max(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(peaks.iter().all(|&p| p <= peaks[occ.map]));
    assert!(occlusion(&net, &img, 10, cfg, &mut |_, _| ()).is_err(), "class 10 of 10");
    assert!(occlusion(&net, &img.i((.., ..32, ..32)).unwrap(), 0, cfg, &mut |_, _| ()).is_err());
}

#[test]
fn a_steered_occlusion_stops_when_asked_and_otherwise_equals_the_plain_one() {
    use std::ops::ControlFlow;
    let net = net();
    let img = image(1);
    let cfg = OcclusionConfig { size: 16, stride: 12, batch: 5 };
    let plain = occlusion(&net, &img, 2, cfg, &mut |_, _| ()).unwrap();
    // Both paths: the windowed one (what the CPU in f32 runs) and the dense one.
    type Steered = fn(
        &ZfNet,
        &Tensor,
        usize,
        OcclusionConfig,
        zf_probe::Steer<'_>,
    ) -> candle_core::Result<Option<zf_probe::Occlusion>>;
    let paths: [Steered; 2] = [
        |n, i, l, c, s| occlusion_steered(n, i, l, c, s),
        |n, i, l, c, s| zf_probe::occlusion::occlusion_dense_steered(n, i, l, c, s),
    ];
    for run in paths {
        let mut calls = 0;
        let stopped = run(&net, &img, 2, cfg, &mut |_, _| {
            calls += 1;
            if calls == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert!(stopped.is_none(), "a break stops it");
        assert_eq!(calls, 2, "stopped after the batch that broke");
        let full = run(&net, &img, 2, cfg, &mut |_, _| ControlFlow::Continue(())).unwrap().unwrap();
        assert_eq!(full.true_prob.len(), plain.true_prob.len());
        for (a, b) in full.true_prob.iter().zip(&plain.true_prob) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn invariance_starts_at_zero_distance_and_matches_a_forward_pass() {
    let net = net();
    let img = image(1);
    let curve = invariance(&net, &img, 2, Sweep::Rotate, &[0.0, 90.0]).unwrap();
    // Rotation by 0 is the image itself: both distances vanish.
    assert!(curve.layer1_distance[0] < 1e-3 && curve.layer7_distance[0] < 1e-3, "{curve:?}");
    let rotated = zf_probe::transform(&img, zf_probe::Transform::Rotate(90.0)).unwrap();
    let a = net.trace(&img.unsqueeze(0).unwrap()).unwrap();
    let b = net.trace(&rotated.unsqueeze(0).unwrap()).unwrap();
    let d =
        |p: Point| scalar((a.get(p).unwrap() - b.get(p).unwrap()).unwrap().sqr().unwrap().sum_all().unwrap()).sqrt();
    assert!((curve.layer1_distance[1] - d(Point::Conv1)).abs() <= 1e-3 * d(Point::Conv1));
    assert!((curve.layer7_distance[1] - d(Point::Fc7)).abs() <= 1e-3 * d(Point::Fc7).max(1e-3));
    let p = scalar(b.get(Point::Prob).unwrap().i((0, 2)).unwrap());
    assert!((curve.true_prob[1] - p).abs() < 1e-5);
}

#[test]
fn identical_images_with_identical_boxes_correspond_perfectly() {
    // The same image four times, the same box: every ε is the same, so Δ = 0 with std 0 for the
    // part; random boxes differ between images, so their Δ is positive.
    let net = net();
    let img = image(2);
    let images = Tensor::stack(&[&img, &img, &img, &img], 0).unwrap();
    let boxes: Vec<BTreeMap<String, [usize; 4]>> =
        (0..4).map(|_| BTreeMap::from([("eye".to_string(), [10, 12, 26, 28])])).collect();
    let rows = correspondence(
        &net,
        &images,
        &boxes,
        &["eye".into()],
        &[net.layer_index(Point::Conv5).unwrap(), net.layer_index(Point::Fc7).unwrap()],
        &zf_probe::RandomBoxes::default(),
    )
    .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows[..2] {
        assert_eq!((r.part.as_str(), r.mean, r.std, r.images), ("eye", 0.0, 0.0, 4));
    }
    // Their image-by-image distances are all 0; the occlusion changed some units.
    assert!(rows[0].pairs.len() == 4 && rows[0].pairs.iter().flatten().all(|&d| d == 0.0));
    assert!(rows[0].changed > 0.0 && rows[0].changed <= 1.0, "{:?}", rows[0].changed);
    assert_eq!(rows[2].part, "random");
    assert!(rows[2].mean > 0.0, "{:?}", rows[2]);
    // The random row is the mean over its draws: one draw alone differs from ten.
    let one = zf_probe::RandomBoxes { draws: 1, ..Default::default() };
    let single =
        correspondence(&net, &images, &boxes, &["eye".into()], &[net.layer_index(Point::Conv5).unwrap()], &one)
            .unwrap();
    assert_eq!(single[1].part, "random");
    assert_ne!(single[1].mean, rows[2].mean);
    assert!(correspondence(
        &net,
        &images,
        &boxes[..2],
        &["eye".into()],
        &[net.layer_index(Point::Conv5).unwrap()],
        &zf_probe::RandomBoxes::default()
    )
    .is_err());
}

#[test]
fn occluding_the_only_bright_patch_removes_exactly_its_activation() {
    // A constructed network: every weight positive, every bias zero, so each activation is a
    // positive combination of input pixels (ReLU and max-pooling keep zeros zero, LRN only
    // rescales). The image is zero but for one 8x8 patch at (20, 20). So the conv5 map's total
    // is exactly 0 when the square covers the whole patch, exactly the clean value when the
    // square misses it, and in between otherwise.
    let cfg = ZfConfig::tiny().with_input_size(64);
    let tensors: std::collections::HashMap<String, Tensor> = zf_model::weights::expected_shapes(&cfg)
        .unwrap()
        .into_iter()
        .map(|(k, shape)| {
            let t = if k.ends_with(".bias") {
                Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap()
            } else {
                Tensor::rand(0.001f32, 0.01, shape, &Device::Cpu).unwrap()
            };
            (k, t)
        })
        .collect();
    let net =
        ZfNet::new(&cfg, candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu)).unwrap();
    let mut v = vec![0f32; 3 * 64 * 64];
    for c in 0..3 {
        for y in 20..28 {
            for x in 20..28 {
                v[c * 64 * 64 + y * 64 + x] = 50.0;
            }
        }
    }
    let img = Tensor::from_vec(v, (3, 64, 64), &Device::Cpu).unwrap();
    let occ = occlusion(&net, &img, 0, OcclusionConfig { size: 16, stride: 4, batch: 8 }, &mut |_, _| ()).unwrap();
    assert!(occ.clean_feature_map > 0.0);
    let side = occ.side();
    let (mut covered, mut missed) = (0, 0);
    for (i, &f) in occ.feature_map.iter().enumerate() {
        let (y0, x0) = (occ.offsets[i / side], occ.offsets[i % side]);
        let covers = |a: usize| a <= 20 && a + 16 >= 28;
        let misses = |a: usize| a + 16 <= 20 || a >= 28;
        if covers(y0) && covers(x0) {
            assert_eq!(f, 0.0, "square at ({y0}, {x0}) covers the patch");
            covered += 1;
        } else if misses(y0) || misses(x0) {
            assert!(
                (f - occ.clean_feature_map).abs() <= 1e-5 * occ.clean_feature_map,
                "square at ({y0}, {x0}) misses it"
            );
            missed += 1;
        } else {
            assert!(f > 0.0 && f < occ.clean_feature_map, "square at ({y0}, {x0}) covers part of it: {f}");
        }
    }
    // Covering offsets 12, 16, 20 on each axis: 9 positions; most others miss.
    assert_eq!(covered, 9);
    assert!(missed > 100);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let net = net();
    let img = image(3);
    let images = Tensor::stack(&[&img, &img], 0).unwrap();
    let good: Vec<BTreeMap<String, [usize; 4]>> = vec![BTreeMap::from([("eye".to_string(), [0, 0, 8, 8])]); 2];
    let e = correspondence(
        &net,
        &images,
        &good,
        &[],
        &[net.layer_index(Point::Conv5).unwrap()],
        &zf_probe::RandomBoxes::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no parts"), "{e}");
    let outside: Vec<BTreeMap<String, [usize; 4]>> = vec![BTreeMap::from([("eye".to_string(), [60, 60, 70, 70])]); 2];
    let e = correspondence(
        &net,
        &images,
        &outside,
        &["eye".into()],
        &[net.layer_index(Point::Conv5).unwrap()],
        &zf_probe::RandomBoxes::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("outside the 64x64 image"), "{e}");
    let e = correspondence(
        &net,
        &images,
        &good,
        &["eye".into()],
        &[net.layer_index(Point::Pool2).unwrap()],
        &zf_probe::RandomBoxes::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("got pool2"), "{e}");
    let e = occlusion(&net, &img, 0, OcclusionConfig { size: 65, stride: 8, batch: 4 }, &mut |_, _| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("occluder size must be 1..=64"), "{e}");
    let pool5 = net.layer_index(Point::Pool5).unwrap();
    let e = zf_probe::pooled_features(&net, &images, pool5, 2).unwrap_err().to_string();
    assert!(
        e.contains("layer probes use conv and hidden linear layers (the paper's layers 1..7 in ZFNet), got pool5"),
        "{e}"
    );
}

#[test]
fn occlusion_by_windows_equals_running_every_occluded_image_whole() {
    // Both layer orders (LRN after or before the pool), sizes where ceil-mode pools hang over
    // the edge, squares that touch every border, batches that split the positions unevenly.
    let mut paper = ZfConfig::tiny().with_input_size(96);
    paper.input_scale = 1.0 / 64.0;
    let imgclsmob = ZfConfig::imgclsmob().with_width(0.125).with_classes(10).with_input_size(67);
    for (cfg, size, stride, batch) in [(paper, 24, 8, 7), (imgclsmob, 20, 6, 5)] {
        let net = init_net(&cfg, Init::He, 9, &Device::Cpu).unwrap();
        let s = cfg.input_size;
        let img = Tensor::rand(-100f32, 100.0, (3, s, s), &Device::Cpu).unwrap();
        let c = OcclusionConfig { size, stride, batch };
        let fast = zf_probe::incremental::occlusion_by_windows(&net, &img, 3, c, &mut |_, _| {}).unwrap();
        let dense = zf_probe::occlusion::occlusion_dense(&net, &img, 3, c, &mut |_, _| {}).unwrap();
        assert_eq!(
            (fast.map, fast.offsets.clone(), fast.clean_top),
            (dense.map, dense.offsets.clone(), dense.clean_top)
        );
        let close = |a: &[f32], b: &[f32], what: &str| {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
            }
        };
        close(&fast.feature_map, &dense.feature_map, "feature_map");
        close(&fast.true_prob, &dense.true_prob, "true_prob");
        close(&[fast.clean_feature_map, fast.clean_prob], &[dense.clean_feature_map, dense.clean_prob], "clean");
        // The top class may differ only where two classes tie to rounding.
        let differ = fast.top_label.iter().zip(&dense.top_label).filter(|(a, b)| a != b).count();
        assert!(differ == 0, "{differ} positions with another top class");
    }
}
