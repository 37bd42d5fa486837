//! The deconvnet against PyTorch (golden/make_golden.py), its receptive-field property, its
//! errors, and the top-k search against a brute-force search.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use zf_deconv::{receptive_field, Deconvnet, TopK, Unit};
use zf_model::init::{init_net, Init};
use zf_model::{Point, Trace, WeightsFile, ZfConfig, ZfNet};

const CONVS: [Point; 5] = [Point::Conv1, Point::Conv2, Point::Conv3, Point::Conv4, Point::Conv5];

fn golden(case: &str) -> (ZfNet, std::collections::HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let net = WeightsFile::read(&dir.join(format!("{case}.weights.safetensors")))
        .unwrap()
        .into_net(None, &zf_model::test_device().unwrap())
        .unwrap();
    let g = candle_core::safetensors::load(
        dir.join(format!("{case}.golden.safetensors")),
        &zf_model::test_device().unwrap(),
    )
    .unwrap();
    (net, g)
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn projections_from_every_layer_match_pytorch() {
    for case in ["zf", "alexnet"] {
        let (net, g) = golden(case);
        let trace = net.trace(&g["input"]).unwrap();
        let deconv = Deconvnet::new(&net);
        for layer in CONVS {
            let units: Vec<Unit> = g[&format!("units.{layer}")]
                .to_vec2::<i64>()
                .unwrap()
                .into_iter()
                .map(|u| Unit { image: u[0] as usize, channel: u[1] as usize, y: u[2] as usize, x: u[3] as usize })
                .collect();
            let ours = deconv.project(&trace, layer, &units).unwrap();
            let theirs = &g[&format!("proj.{layer}")];
            assert_eq!(ours.dims(), theirs.dims());
            let scale = max_abs(theirs);
            assert!(scale > 0.0, "{case}/{layer}: the golden projection is not all zero");
            let err = max_abs(&(&ours - theirs).unwrap()) / scale;
            assert!(err < 1e-4, "{case}/{layer}: relative error {err}");
            // One at a time gives the same as the batched call.
            let single = deconv.project(&trace, layer, &units[1..2]).unwrap();
            let err = max_abs(&(single - ours.narrow(0, 1, 1).unwrap()).unwrap()) / scale;
            assert!(err < 1e-5, "{case}/{layer}: batched vs single {err}");
        }
    }
}

#[test]
fn the_windowed_projection_equals_the_dense_one() {
    // The CPU projects each unit over its receptive field only; every unit of these maps (the
    // corners and edges included, where blocks are clipped) must give the whole-map result.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for config in [
        ZfConfig::tiny().with_input_size(96),
        ZfConfig::tiny().with_first_layer(zf_model::FirstLayer::AlexNet).with_input_size(96),
    ] {
        let net = init_net(&config, Init::He, 2, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 50., (2, 3, 96, 96), &Device::Cpu).unwrap();
        let trace = net.trace(&x).unwrap();
        let deconv = Deconvnet::new(&net);
        for layer in CONVS {
            let (_, c, h, w) = trace.get(layer).unwrap().dims4().unwrap();
            let mut units = Vec::new();
            for (y, x) in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h / 2, 0), (0, w / 2), (h - 1, w / 2)] {
                units.push(Unit { image: 1, channel: rng.random_range(0..c), y, x });
            }
            for _ in 0..8 {
                let (image, channel) = (rng.random_range(0..2), rng.random_range(0..c));
                units.push(deconv.strongest(&trace, layer, image, channel).unwrap().0);
                units.push(Unit { image, channel, y: rng.random_range(0..h), x: rng.random_range(0..w) });
            }
            let windowed = deconv.project(&trace, layer, &units).unwrap();
            let dense = deconv.project_dense(&trace, layer, &units).unwrap();
            let scale = max_abs(&dense).max(1e-6);
            let d = max_abs(&(&windowed - &dense).unwrap());
            assert!(d <= 1e-5 * scale, "{layer}: windowed and dense projections differ by {d} (scale {scale})");
            assert!(scale > 1e-3, "{layer}: the projections are not all zero");
        }
    }
}

#[test]
fn a_projection_is_zero_outside_its_receptive_field() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for config in [
        ZfConfig::tiny().with_input_size(96),
        ZfConfig::tiny().with_first_layer(zf_model::FirstLayer::AlexNet).with_input_size(96),
    ] {
        let net = init_net(&config, Init::He, 1, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 50., (2, 3, 96, 96), &Device::Cpu).unwrap();
        let trace = net.trace(&x).unwrap();
        let deconv = Deconvnet::new(&net);
        for layer in CONVS {
            let act = trace.get(layer).unwrap();
            let (_, c, h, w) = act.dims4().unwrap();
            for _ in 0..4 {
                let image = rng.random_range(0..2);
                let channel = rng.random_range(0..c);
                // The strongest unit of a random map, so that the projection is not zero.
                let (u, v) = deconv.strongest(&trace, layer, image, channel).unwrap();
                assert!(u.y < h && u.x < w);
                let p = deconv.project(&trace, layer, &[u]).unwrap().get(0).unwrap();
                let [x0, y0, x1, y1] = receptive_field(&config, layer, u.y, u.x).unwrap();
                let abs = p.abs().unwrap().sum(0).unwrap().to_vec2::<f32>().unwrap();
                let (mut inside, mut outside) = (0f32, 0f32);
                for (yy, row) in abs.iter().enumerate() {
                    for (xx, a) in row.iter().enumerate() {
                        if (x0..x1).contains(&xx) && (y0..y1).contains(&yy) {
                            inside += a;
                        } else {
                            outside += a;
                        }
                    }
                }
                assert_eq!(outside, 0.0, "{layer} {u:?}: box {:?}", [x0, y0, x1, y1]);
                if v > 0.0 {
                    assert!(inside > 0.0, "{layer} {u:?}: a positive activation projects to something");
                }
            }
        }
    }
}

#[test]
fn receptive_fields_of_the_paper_network() {
    let cfg = ZfConfig::paper();
    // conv1 7x7 stride 2 pad 1: unit 0 sees rows -1..5, clipped to 0..5; unit 5 sees 9..15.
    assert_eq!(receptive_field(&cfg, Point::Conv1, 0, 0).unwrap(), [0, 0, 6, 6]);
    assert_eq!(receptive_field(&cfg, Point::Conv1, 5, 5).unwrap(), [9, 9, 16, 16]);
    // conv2 (5x5 stride 2 on pool1, 3x3 stride 2 on conv1): unit (1, 1) of conv2 covers pool1
    // 2..6, conv1 4..14, pixels 4 * 2 - 1 = 7 ..= 14 * 2 - 1 + 6 = 33.
    assert_eq!(receptive_field(&cfg, Point::Conv2, 1, 1).unwrap(), [7, 7, 34, 34]);
    // The last unit of conv5 reaches the bottom-right corner.
    let [_, _, x1, y1] = receptive_field(&cfg, Point::Conv5, 12, 12).unwrap();
    assert_eq!((x1, y1), (224, 224));
}

#[test]
fn bad_layers_channels_and_positions_are_clear_errors() {
    let net = init_net(&ZfConfig::tiny().with_input_size(96), Init::He, 0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 96, 96), DType::F32, &Device::Cpu).unwrap();
    let trace: Trace = net.trace(&x).unwrap();
    let d = Deconvnet::new(&net);
    let u = Unit { image: 0, channel: 0, y: 0, x: 0 };
    let e = d.project(&trace, Point::Fc6, &[u]).unwrap_err().to_string();
    assert!(e.contains("projects conv1..conv5 (the paper's layers 1-5), got fc6"), "{e}");
    let e = d.project(&trace, Point::Conv3, &[Unit { channel: 48, ..u }]).unwrap_err().to_string();
    assert!(e.contains("channel 48 does not exist: conv3 has 48 feature maps (0..47)"), "{e}");
    let e = d.project(&trace, Point::Conv1, &[Unit { y: 46, ..u }]).unwrap_err().to_string();
    assert!(e.contains("position (46, 0) is outside conv1's 46x46 map"), "{e}");
    let e = d.project(&trace, Point::Conv1, &[Unit { image: 1, ..u }]).unwrap_err().to_string();
    assert!(e.contains("image 1 does not exist: the forward pass had 1 image(s)"), "{e}");
    let e = receptive_field(net.config(), Point::Conv5, 9, 0).unwrap_err().to_string();
    assert!(e.contains("outside conv5's 5x5 map"), "{e}");
}

#[test]
fn top_k_streams_like_a_brute_force_search() {
    let net = init_net(&ZfConfig::tiny().with_input_size(96), Init::He, 3, &Device::Cpu).unwrap();
    let images = Tensor::randn(0f32, 50., (10, 3, 96, 96), &Device::Cpu).unwrap();
    let selection = vec![(Point::Conv2, vec![0, 5]), (Point::Conv5, vec![3])];
    // Streamed in batches of 3, 3, 4.
    let mut topk = TopK::new(selection.clone(), 4, true).unwrap();
    for (start, len) in [(0, 3), (3, 3), (6, 4)] {
        let idx: Vec<usize> = (start..start + len).map(|i| 100 + i).collect();
        topk.update(&net, &images.narrow(0, start, len).unwrap(), &idx).unwrap();
    }
    // Brute force: each image's maximum per map, sorted.
    let trace = net.trace(&images).unwrap();
    for (layer, map, hits) in topk.results() {
        let maxima: Vec<f32> = trace
            .get(layer)
            .unwrap()
            .narrow(1, map, 1)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .max(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| maxima[b].total_cmp(&maxima[a]));
        assert_eq!(hits.len(), 4);
        for (h, &i) in hits.iter().zip(&order) {
            assert_eq!(h.image, 100 + i, "{layer}/{map}");
            let rel = (h.value - maxima[i]).abs() / maxima[i].abs().max(1e-6);
            assert!(rel < 1e-5, "{layer}/{map}: batch size changed the value by {rel}");
        }
    }
    // Without the one-per-image rule the top 4 of conv5 map 3 may share images, and are the
    // 4 largest values of the map over all positions and images.
    let mut any = TopK::new(vec![(Point::Conv5, vec![3])], 4, false).unwrap();
    any.update(&net, &images, &(0..10).collect::<Vec<_>>()).unwrap();
    let mut all: Vec<f32> =
        trace.get(Point::Conv5).unwrap().narrow(1, 3, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    all.sort_by(|a, b| b.total_cmp(a));
    let got: Vec<f32> = any.results()[0].2.iter().map(|h| h.value).collect();
    assert_eq!(got, all[..4].to_vec());
    let mut fc = TopK::new(vec![(Point::Fc7, vec![0])], 9, true).unwrap();
    let e = fc.update(&net, &images, &(0..10).collect::<Vec<_>>()).unwrap_err().to_string();
    assert!(e.contains("top-k searches conv layers (the paper's layers 1-5 in ZFNet), got fc7"), "{e}");
}

#[test]
fn fig2_pipeline_equals_search_then_projecting_each_hit_alone() {
    let cfg = ZfConfig::tiny().with_input_size(96);
    let net = init_net(&cfg, Init::He, 4, &Device::Cpu).unwrap();
    let images = Tensor::randn(0f32, 40.0, (10, 3, 96, 96), &Device::Cpu).unwrap();
    let selection = selection_again();
    let config = zf_deconv::Fig2Config { top: 4, one_per_image: true, batch: 3 };
    // Batches of 3 (the last of 1), as a loader yields them.
    let mut search = (0..10).step_by(3).map(|s| {
        let idx: Vec<usize> = (s..(s + 3).min(10)).collect();
        Ok((idx.clone(), images.narrow(0, s, idx.len())?))
    });
    let mut load = |idx: &[usize]| {
        let ids = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
        images.index_select(&ids, 0)
    };
    let mut phases = Vec::new();
    let got =
        zf_deconv::top_projections(&net, selection.clone(), config, &mut search, 10, &mut load, &mut |p, d, t| {
            phases.push((p, d, t))
        })
        .unwrap();
    assert_eq!(phases.first(), Some(&(zf_deconv::Phase::Search, 3, 10)));
    assert_eq!(phases.last(), Some(&(zf_deconv::Phase::Project, 5, 5)));
    // The same hits as the search on its own over the same batches, in the same order (a
    // conv's last bits may depend on the batch: 3x3 layers go through Winograd's algorithm
    // for batches of at least one image per thread, through im2col for the last image alone).
    let mut top = TopK::new(selection, 4, true).unwrap();
    for s in (0..10).step_by(3) {
        let idx: Vec<usize> = (s..(s + 3).min(10)).collect();
        top.update(&net, &images.narrow(0, s, idx.len()).unwrap(), &idx).unwrap();
    }
    let want = top.results();
    assert_eq!(got.len(), want.len());
    for (m, (layer, map, hits)) in got.iter().zip(&want) {
        assert_eq!((m.layer, m.map), (*layer, *map));
        assert_eq!(m.hits.iter().map(|p| p.hit).collect::<Vec<_>>(), *hits);
        // Each projection is that unit's alone, from its own image.
        for p in &m.hits {
            let mut trace = Trace::default();
            net.forward_until(&images.narrow(0, p.hit.image, 1).unwrap(), false, *layer, &mut trace).unwrap();
            let unit = Unit { image: 0, channel: *map, y: p.hit.y, x: p.hit.x };
            let alone = Deconvnet::new(&net).project_dense(&trace, *layer, &[unit]).unwrap();
            let got = Tensor::from_slice(&p.projection, (1, 3, 96, 96), &Device::Cpu).unwrap();
            let scale = max_abs(&alone).max(1e-6);
            assert!(max_abs(&(got - &alone).unwrap()) <= 1e-5 * scale, "{layer} map {map}");
            assert_eq!(p.receptive_field, receptive_field(&cfg, *layer, p.hit.y, p.hit.x).unwrap());
        }
    }
    // The in-memory form finds the same hits and projections.
    let mem = zf_deconv::top_projections_of(&net, selection_again(), config, &images, &mut |_, _, _| {}).unwrap();
    assert_eq!(mem.len(), got.len());
    for (a, b) in mem.iter().zip(&got) {
        assert_eq!((a.layer, a.map), (b.layer, b.map));
        for (x, y) in a.hits.iter().zip(&b.hits) {
            assert_eq!((x.hit, x.receptive_field), (y.hit, y.receptive_field));
            assert_eq!(x.projection, y.projection);
        }
    }
}

fn selection_again() -> Vec<(Point, Vec<usize>)> {
    vec![(Point::Conv2, vec![0, 5]), (Point::Conv5, vec![1, 3, 7])]
}

#[test]
fn projection_energy_is_split_by_the_object_box() {
    // A 4x4 image, energy 1 per pixel in channel 0 over the receptive field [0, 0, 4, 2)
    // (8 pixels), 3 of them under the box [1, 0, 4, 1] (x 1..4, y 0..1): 3/8 of energy and area.
    let s = 4;
    let mut p = vec![0f32; 3 * s * s];
    for y in 0..2 {
        for x in 0..4 {
            p[y * s + x] = 1.0;
        }
    }
    let (e, a) = zf_deconv::energy_on_box(&p, s, [0, 0, 4, 2], [1.0, 0.0, 4.0, 1.0]).unwrap();
    assert_eq!((e, a), (3.0 / 8.0, 3.0 / 8.0));
    // All the energy on the box's pixels: 1 against an area share of 3/8.
    let mut q = vec![0f32; 3 * s * s];
    for x in 1..4 {
        q[2 * s * s + x] = -2.0;
    }
    assert_eq!(zf_deconv::energy_on_box(&q, s, [0, 0, 4, 2], [1.0, 0.0, 4.0, 1.0]), Some((1.0, 3.0 / 8.0)));
    assert_eq!(zf_deconv::energy_on_box(&vec![0.0; 3 * s * s], s, [0, 0, 4, 2], [0.0, 0.0, 4.0, 4.0]), None);
}
