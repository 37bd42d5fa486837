//! Occlusion (Fig. 7) on torchvision's AlexNet and VGG-11 with batch norm: the class's
//! probability at every square position equals PyTorch's (`zf-model/tests/torchvision/
//! make_fixture.py`) to 1e-5, by the windowed recomputation and the dense path alike, and the
//! per-pixel attribution it implies — the mean drop `p_clean - p_occluded` over the squares
//! covering a pixel — equals captum's `Occlusion` on the same model and image to 1e-4.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use zf_model::Net;
use zf_probe::occlusion::{occlusion_dense, Occlusion, OcclusionConfig};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../zf-model/tests/torchvision")
}

/// Captum's attribution from an occlusion map: each pixel's mean of `clean - occluded` over
/// the squares that cover it.
fn attribution(occ: &Occlusion, s: usize) -> Vec<f32> {
    let (mut sum, mut count) = (vec![0f32; s * s], vec![0f32; s * s]);
    let n = occ.side();
    for (i, p) in occ.true_prob.iter().enumerate() {
        let (y0, x0) = (occ.offsets[i / n], occ.offsets[i % n]);
        for y in y0..y0 + occ.config.size {
            for x in x0..x0 + occ.config.size {
                sum[y * s + x] += occ.clean_prob - p;
                count[y * s + x] += 1.0;
            }
        }
    }
    sum.iter().zip(&count).map(|(s, c)| s / c).collect()
}

#[test]
fn occlusion_equals_pytorch_and_captum() {
    for arch in ["alexnet", "vgg11_bn"] {
        let g = candle_core::safetensors::load(
            dir().join(format!("{arch}.golden.safetensors")),
            &zf_model::test_device().unwrap(),
        )
        .unwrap();
        let s = g["input"].dim(3).unwrap();
        let net = Net::load(
            dir().join(format!("{arch}.safetensors")).to_str().unwrap(),
            Some(s),
            &zf_model::test_device().unwrap(),
        )
        .unwrap();
        let mean = zf_model::config::IMAGENET_MEAN.map(|m| (255.0 * m) as f32);
        let x = g["input"]
            .broadcast_sub(&Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &zf_model::test_device().unwrap()).unwrap())
            .unwrap();
        let image = x.get(0).unwrap();
        let [size, stride] = g["occ.size"].to_vec1::<i64>().unwrap()[..] else { panic!() };
        let label = g["occ.label"].to_vec1::<i64>().unwrap()[0] as usize;
        let config = OcclusionConfig { size: size as usize, stride: stride as usize, batch: 7 };
        let want = g["occ.prob"].to_vec1::<f32>().unwrap();
        let captum = g["occ.attr"].to_dtype(DType::F32).unwrap();
        for (how, occ) in [
            ("windowed", zf_probe::occlusion(&net, &image, label, config, &mut |_, _| ()).unwrap()),
            ("dense", occlusion_dense(&net, &image, label, config, &mut |_, _| ()).unwrap()),
        ] {
            assert_eq!(occ.true_prob.len(), want.len(), "{arch} {how}");
            let worst = occ.true_prob.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{arch} {how}: probabilities differ by {worst}");
            // Captum's attribution is the same on every channel.
            let ours = attribution(&occ, s);
            for c in 0..3 {
                let theirs = captum.get(c).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-4, "{arch} {how}: captum's attribution differs by {worst} on channel {c}");
            }
            // The map is not flat: the test could see a wrong square.
            let spread = want.iter().fold(0f32, |m, v| m.max(*v)) - want.iter().fold(1f32, |m, v| m.min(*v));
            assert!(spread > 0.05, "{arch}: {spread}");
        }
    }
}
