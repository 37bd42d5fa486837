//! The explorer on networks other than ZFNet: torchvision's AlexNet and VGG-11 with batch norm
//! from the PyTorch fixtures of zf-model (`crates/zf-model/tests/torchvision/make_fixture.py`:
//! torchvision's own definitions, reduced widths, seeded random weights), loaded from the
//! `.pth` files as `zfnet serve --weights` loads them. Layers are listed and named as
//! torchvision names them; activations, projections and the occlusion map equal the library's,
//! computed here by an independent path (the crop by `Preprocess::crop_into`, the network's
//! own forward pass, the deconvnet, the dense occlusion map).
#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use zf_data::{Crop, DataSpec, Dataset, GeneratedConfig, MeanImage, Preprocess, Split};
use zf_deconv::Deconvnet;
use zf_model::{LayerKind, Net, NetTrace};
use zf_serve::{ExploreError, Explorer, ExplorerParts};

/// The fixture's network at its input size (AlexNet 96 px, VGG-11 64 px), a generated data set
/// of 6 images at that size, and ImageNet's channel means (the network divides by the stds).
fn fixture(arch: &str, size: usize) -> (Explorer, Net, MeanImage, std::sync::Arc<dyn Dataset>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../zf-model/tests/torchvision/{arch}.pth"));
    let net = Net::load(path.to_str().unwrap(), Some(size), &Device::Cpu).unwrap();
    let data = DataSpec::parse("generated", &GeneratedConfig::default())
        .open(Split::Val, Some(6), Preprocess::for_input(size))
        .unwrap();
    let side = Preprocess::for_input(size).resize;
    let values = zf_model::config::IMAGENET_MEAN
        .iter()
        .flat_map(|&m| std::iter::repeat_n((255.0 * m) as f32, side * side))
        .collect();
    let mean = MeanImage { side, values, count: 0 };
    let classes = (0..net.spec().classes()).map(|c| format!("class {c}")).collect();
    let parts = ExplorerParts {
        net: net.clone(),
        weights: path.display().to_string(),
        mean: mean.clone(),
        classes,
        data: Some((data.clone(), "generated".into())),
        index: None,
    };
    (Explorer::new(parts).unwrap(), net, mean, data)
}

/// Data set image `i` as the network takes it: the centre crop minus the mean, `[1, 3, S, S]`.
fn input(net: &Net, mean: &MeanImage, data: &dyn Dataset, i: usize) -> Tensor {
    let s = net.spec().input_size;
    let mut x = vec![0f32; 3 * s * s];
    Preprocess::for_input(s).crop_into(&data.get(i).unwrap().image, Some(&mean.values), Crop::CENTRE, &mut x);
    Tensor::from_vec(x, (1, 3, s, s), &Device::Cpu).unwrap()
}

/// The library's projection of `channel`'s strongest unit of conv layer `li`, as pixels.
fn library_projection(net: &Net, x: &Tensor, li: usize, channel: usize) -> image::RgbImage {
    let mut trace = NetTrace::default();
    net.forward_until(x, li, &mut trace).unwrap();
    let deconv = Deconvnet::new(net);
    let (unit, _) = deconv.strongest_layer(&trace, li, 0, channel).unwrap();
    let p = deconv.project_layer(&trace, li, &[unit]).unwrap();
    let p: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
    let s = net.spec().input_size;
    zf_viz::projection_image(&p, 3, s, s)
}

fn decode(url: &str) -> image::RgbImage {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("data:image/png;base64,").unwrap());
    image::load_from_memory(&bytes.unwrap()).unwrap().to_rgb8()
}

fn check(arch: &str, size: usize, labels: &[&str], widths: &[usize]) {
    let (ex, net, mean, data) = fixture(arch, size);
    // The conv layers, input first, under torchvision's keys and the readable names.
    let info = ex.model_info();
    assert_eq!(info.arch, arch);
    let got: Vec<(&str, usize)> = info.layers.iter().map(|l| (l.label.as_str(), l.channels)).collect();
    let want: Vec<(&str, usize)> = labels.iter().copied().zip(widths.iter().copied()).collect();
    assert_eq!(got, want, "{arch}");
    for l in &info.layers {
        assert!(l.name.starts_with("features."), "{arch}: {}", l.name);
        assert_eq!(ex.conv_layer(&l.name).unwrap(), ex.conv_layer(&l.label).unwrap(), "{arch} {}", l.name);
    }
    // A linear layer is named but not a conv layer.
    match ex.conv_layer("fc7") {
        Err(ExploreError::BadRequest(m)) => assert!(m.contains("not a conv layer"), "{m}"),
        other => panic!("{arch}: fc7 gave {other:?}"),
    }
    let x = input(&net, &mean, data.as_ref(), 2);
    // The top-5 are the network's own softmax, largest first.
    let last = info.layers.last().unwrap();
    let act = ex.activations("d2", &last.label).unwrap();
    let probs: Vec<f32> =
        zf_model::network::softmax(&net.forward(&x).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let top: Vec<usize> = act.top5.iter().map(|c| c.class).collect();
    assert_eq!(top, order[..5], "{arch}");
    for c in &act.top5 {
        assert!((c.prob - probs[c.class]).abs() <= 1e-6, "{arch} class {}", c.class);
    }
    assert_eq!(act.channels, last.channels);
    // Every conv layer's projections: a first channel (a new forward pass) and a second (the
    // kept one) equal the library's pixels.
    for l in &info.layers {
        let li = ex.conv_layer(&l.label).unwrap();
        assert!(matches!(net.spec().layers[li].kind, LayerKind::Conv { .. }));
        for channel in [0, l.channels / 2] {
            let (view, pic) = ex.projection("d2", &l.name, channel).unwrap();
            let want = library_projection(&net, &x, li, channel);
            assert_eq!(pic, want, "{arch} {} channel {channel}", l.label);
            assert_eq!(decode(&view.projection), want, "{arch} {} channel {channel} (PNG)", l.label);
        }
    }
    // The occlusion map of the predicted class: the same as running every occluded image.
    let mut go = |_, _| ControlFlow::Continue(());
    let occ = ex.occlusion("d2", None, &mut go).unwrap().unwrap();
    assert_eq!(occ.class, order[0], "{arch}");
    let dense = zf_probe::occlusion::occlusion_dense(
        &net,
        &x.squeeze(0).unwrap(),
        occ.class,
        ex.occlusion_config(),
        &mut |_, _| (),
    )
    .unwrap();
    assert!((occ.clean_prob - dense.clean_prob).abs() <= 1e-5, "{arch}: {} vs {}", occ.clean_prob, dense.clean_prob);
    assert!((occ.min_prob - dense.min_true_prob()).abs() <= 1e-5, "{arch}");
    let (wy, wx) = dense.weakest();
    assert_eq!(occ.weakest, [wy, wx], "{arch}");
}

#[test]
fn the_explorer_on_torchvision_s_alexnet_equals_the_library() {
    check("alexnet", 96, &["conv1", "conv2", "conv3", "conv4", "conv5"], &[8, 16, 24, 16, 16]);
}

#[test]
fn the_explorer_on_torchvision_s_vgg11_bn_equals_the_library() {
    let labels = ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"];
    check("vgg11_bn", 64, &labels, &[8, 16, 16, 16, 24, 24, 24, 24]);
}
