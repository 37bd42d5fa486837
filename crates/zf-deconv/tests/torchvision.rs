//! The deconvnet on torchvision's AlexNet and VGG-11 with batch norm: projections of conv units
//! equal the independent PyTorch deconvnet of `zf-model/tests/torchvision/make_fixture.py`
//! (F.max_unpool2d with PyTorch's switches, F.relu, F.conv_transpose2d with the batch norm folded
//! into the filters) to 1e-4 of their scale — by the CPU's windowed path and the dense path.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use zf_deconv::{receptive_field_of, Deconvnet, Unit};
use zf_model::Net;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../zf-model/tests/torchvision")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

#[test]
fn projections_equal_an_independent_pytorch_deconvnet() {
    for (arch, layers) in [("alexnet", ["features.3", "features.10"]), ("vgg11_bn", ["features.8", "features.25"])] {
        let g = candle_core::safetensors::load(
            dir().join(format!("{arch}.golden.safetensors")),
            &zf_model::test_device().unwrap(),
        )
        .unwrap();
        let s = g["input"].dim(3).unwrap();
        let net =
            Net::load(dir().join(format!("{arch}.pth")).to_str().unwrap(), Some(s), &zf_model::test_device().unwrap())
                .unwrap();
        let mean = zf_model::config::IMAGENET_MEAN.map(|m| (255.0 * m) as f32);
        let x = g["input"]
            .broadcast_sub(&Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &zf_model::test_device().unwrap()).unwrap())
            .unwrap();
        let trace = net.trace(&x).unwrap();
        let deconv = Deconvnet::new(&net);
        for name in layers {
            let layer = net.layer(name).unwrap();
            let units: Vec<Unit> = g[&format!("units.{name}")]
                .to_vec2::<i64>()
                .unwrap()
                .iter()
                .map(|u| Unit { image: u[0] as usize, channel: u[1] as usize, y: u[2] as usize, x: u[3] as usize })
                .collect();
            let want = values(&g[&format!("proj.{name}")]);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{arch} {name}: the fixture's projections are all zero");
            for (how, got) in [
                ("windowed", deconv.project_layer(&trace, layer, &units).unwrap()),
                ("dense", deconv.project_dense_layer(&trace, layer, &units).unwrap()),
            ] {
                assert_eq!(got.dims(), &[units.len(), 3, s, s]);
                let worst = values(&got).iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-4 * scale, "{arch} {name} {how}: {worst} over {scale}");
            }
            // Each projection is zero outside its unit's receptive field.
            let got = deconv.project_layer(&trace, layer, &units).unwrap();
            for (k, u) in units.iter().enumerate() {
                let [x0, y0, x1, y1] = receptive_field_of(net.spec(), layer, u.y, u.x).unwrap();
                let p = values(&got.get(k).unwrap());
                for (i, v) in p.iter().enumerate() {
                    let (y, x) = ((i / s) % s, i % s);
                    if !(y0..y1).contains(&y) || !(x0..x1).contains(&x) {
                        assert_eq!(*v, 0.0, "{arch} {name} unit {k} at ({y}, {x}) outside {:?}", [x0, y0, x1, y1]);
                    }
                }
            }
        }
        // Units outside the layer are errors that name it.
        let l = net.layer(layers[0]).unwrap();
        let e =
            deconv.project_layer(&trace, l, &[Unit { image: 0, channel: 999, y: 0, x: 0 }]).unwrap_err().to_string();
        let label = net.spec().layers[l].label();
        assert!(e.contains(&format!("channel 999 does not exist: {label} has 16 feature maps")), "{e}");
        let fc = net.layer("fc6").unwrap();
        let e = deconv.project_layer(&trace, fc, &[Unit { image: 0, channel: 0, y: 0, x: 0 }]).unwrap_err().to_string();
        assert!(e.contains("the deconvnet projects conv layers, got fc6"), "{e}");
    }
}
