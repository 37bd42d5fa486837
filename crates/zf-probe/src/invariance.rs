//! Invariance curves (Fig. 5): how features and the output change as an image is translated,
//! scaled and rotated.
//!
//! The transformation is applied to the preprocessed image (mean subtracted), keeping its
//! size, by bilinear sampling about its centre; pixels that come from outside the image are 0,
//! the data set's mean colour — the same gray as the occluder's.

use candle_core::{DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use zf_model::Net;

use crate::{bail, check_image};

/// One transformation of Fig. 5.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// Vertical translation by this many pixels (positive moves the content down).
    Translate(f32),
    /// Zoom about the centre by this factor (above 1 enlarges).
    Scale(f32),
    /// Rotation about the centre by this many degrees, clockwise in the image.
    Rotate(f32),
}

/// The three sweeps, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sweep {
    Translate,
    Scale,
    Rotate,
}

impl Sweep {
    pub const ALL: [Sweep; 3] = [Sweep::Translate, Sweep::Scale, Sweep::Rotate];

    pub fn name(self) -> &'static str {
        match self {
            Sweep::Translate => "translate",
            Sweep::Scale => "scale",
            Sweep::Rotate => "rotate",
        }
    }

    /// The axis label of the sweep's amounts.
    pub fn unit(self) -> &'static str {
        match self {
            Sweep::Translate => "vertical translation (px)",
            Sweep::Scale => "scale factor",
            Sweep::Rotate => "rotation (degrees)",
        }
    }

    /// Our ranges (the paper gives only its axes): translation -60..+60 px in
    /// steps of 10, scale 1.0..1.8 in steps of 0.1, rotation 0..350 degrees in steps of 10.
    /// The sweep's amounts for an `input`-pixel network: the paper's, with translations scaled
    /// from 224 pixels to `input` (as the occluder is), so that a shift covers the same fraction
    /// of the image.
    pub fn amounts_for(self, input: usize) -> Vec<f32> {
        let k = input as f32 / 224.0;
        match self {
            Sweep::Translate => self.paper_amounts().into_iter().map(|a| a * k).collect(),
            _ => self.paper_amounts(),
        }
    }

    pub fn paper_amounts(self) -> Vec<f32> {
        match self {
            Sweep::Translate => (-6..=6).map(|i| i as f32 * 10.0).collect(),
            Sweep::Scale => (0..=8).map(|i| 1.0 + i as f32 * 0.1).collect(),
            Sweep::Rotate => (0..36).map(|i| i as f32 * 10.0).collect(),
        }
    }

    pub fn at(self, amount: f32) -> Transform {
        match self {
            Sweep::Translate => Transform::Translate(amount),
            Sweep::Scale => Transform::Scale(amount),
            Sweep::Rotate => Transform::Rotate(amount),
        }
    }
}

/// Applies `t` to a `[3, S, S]` image (see the module docs).
pub fn transform(image: &Tensor, t: Transform) -> Result<Tensor> {
    let dims = image.dims3()?;
    if dims.0 != 3 || dims.1 != dims.2 {
        bail!("expected an image of shape [3, S, S], got {:?}", image.dims())
    }
    let s = dims.1;
    let src = image.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let c = (s as f32 - 1.0) / 2.0;
    // Output pixel (y, x) samples the input at `inverse(y, x)`.
    let inverse = |y: f32, x: f32| -> (f32, f32) {
        match t {
            Transform::Translate(d) => (y - d, x),
            Transform::Scale(k) => (c + (y - c) / k, c + (x - c) / k),
            Transform::Rotate(deg) => {
                let (sin, cos) = (-deg.to_radians()).sin_cos();
                let (dy, dx) = (y - c, x - c);
                (c + dx * sin + dy * cos, c + dx * cos - dy * sin)
            }
        }
    };
    let mut out = vec![0f32; src.len()];
    for y in 0..s {
        for x in 0..s {
            let (sy, sx) = inverse(y as f32, x as f32);
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            for ch in 0..3 {
                let plane = &src[ch * s * s..(ch + 1) * s * s];
                let at = |yy: isize, xx: isize| -> f32 {
                    if yy < 0 || xx < 0 || yy >= s as isize || xx >= s as isize {
                        0.0
                    } else {
                        plane[yy as usize * s + xx as usize]
                    }
                };
                out[ch * s * s + y * s + x] = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                    + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
            }
        }
    }
    Tensor::from_vec(out, (3, s, s), image.device())
}

/// One image's curves along one sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvarianceCurve {
    pub sweep: Sweep,
    pub amounts: Vec<f32>,
    pub label: usize,
    /// Euclidean distance between the transformed and the original image's conv1 features
    /// (after ReLU), and the same for fc7 (after ReLU).
    pub layer1_distance: Vec<f32>,
    pub layer7_distance: Vec<f32>,
    /// The Euclidean norms of the original image's conv1 and fc7 features (to make the
    /// distances relative).
    pub layer1_norm: f32,
    pub layer7_norm: f32,
    /// The probability of the true class.
    pub true_prob: Vec<f32>,
    /// The most probable class.
    pub top_label: Vec<u32>,
}

/// Sweeps `image` through `amounts` of `sweep` (see the module docs).
///
/// # Shapes
/// `image`: `[3, S, S]`, preprocessed.
pub fn invariance(
    net: &impl AsRef<Net>,
    image: &Tensor,
    label: usize,
    sweep: Sweep,
    amounts: &[f32],
) -> Result<InvarianceCurve> {
    let net = net.as_ref();
    check_image(image, net.spec().input_size)?;
    let classes = net.spec().classes();
    if label >= classes {
        bail!("class {label} does not exist: the network has {classes} classes")
    }
    let (ref1, ref7, _, _) = features(net, &image.unsqueeze(0)?)?;
    let mut curve = InvarianceCurve {
        sweep,
        amounts: amounts.to_vec(),
        label,
        layer1_distance: vec![],
        layer7_distance: vec![],
        layer1_norm: ref1.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt(),
        layer7_norm: ref7.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt(),
        true_prob: vec![],
        top_label: vec![],
    };
    for chunk in amounts.chunks(16) {
        let xs: Vec<Tensor> = chunk.iter().map(|&a| transform(image, sweep.at(a))).collect::<Result<_>>()?;
        let (f1, f7, prob, top) = features(net, &Tensor::stack(&xs, 0)?)?;
        curve.layer1_distance.extend(distance(&f1, &ref1)?);
        curve.layer7_distance.extend(distance(&f7, &ref7)?);
        curve.true_prob.extend(prob.narrow(1, label, 1)?.flatten_all()?.to_vec1::<f32>()?);
        curve.top_label.extend(top);
    }
    Ok(curve)
}

/// Row-wise Euclidean distance of `[N, F]` to `[1, F]`.
fn distance(a: &Tensor, reference: &Tensor) -> Result<Vec<f32>> {
    a.broadcast_sub(reference)?.sqr()?.sum(1)?.sqrt()?.to_vec1::<f32>()
}

/// Layer 1 and layer 7 — the first conv and the last hidden linear layer (ZFNet's and
/// torchvision's conv1/conv1_1 and fc7) — flattened `[N, F]`, the softmax and the arg-max, on
/// the host.
fn features(net: &Net, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor, Vec<u32>)> {
    let (Some(l1), Some(l7)) = (net.spec().first_conv(), net.spec().last_hidden()) else {
        bail!("{} needs a conv layer and a hidden linear layer (layers 1 and 7)", net.spec().arch)
    };
    let mut keep = zf_model::Keep::new(&[l1, l7]);
    let logits = net.forward_with(xs, zf_model::Dropout::Off, &mut keep)?;
    let host = |t: &Tensor| -> Result<Tensor> { t.flatten_from(1)?.to_dtype(DType::F32)?.to_device(&Device::Cpu) };
    let prob = candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let top = prob.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok((host(keep.get(l1)?)?, host(keep.get(l7)?)?, prob, top))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ramp(s: usize) -> Tensor {
        let v: Vec<f32> = (0..3 * s * s).map(|i| ((i % (s * s)) as f32) + 1.0).collect();
        Tensor::from_vec(v, (3, s, s), &Device::Cpu).unwrap()
    }

    #[test]
    fn identity_transforms_keep_the_image() {
        let img = ramp(9);
        for t in [Transform::Translate(0.0), Transform::Scale(1.0), Transform::Rotate(0.0), Transform::Rotate(360.0)] {
            let out = transform(&img, t).unwrap();
            let d = (out - &img).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-3, "{t:?}: {d}");
        }
    }

    #[test]
    fn translation_moves_rows_down_and_fills_with_zero() {
        let s = 5;
        let out = transform(&ramp(s), Transform::Translate(2.0)).unwrap().to_vec3::<f32>().unwrap();
        let inp = ramp(s).to_vec3::<f32>().unwrap();
        assert_eq!(out[0][0], vec![0.0; s]);
        assert_eq!(out[1][1], vec![0.0; s]);
        assert_eq!(out[2][4], inp[2][2]);
    }

    #[test]
    fn rotation_by_90_degrees_is_clockwise() {
        // A single bright pixel at the top-middle goes to the right-middle when rotated 90
        // degrees clockwise.
        let s = 5;
        let mut v = vec![0f32; 3 * s * s];
        v[2] = 1.0; // (y 0, x 2) of channel 0
        let img = Tensor::from_vec(v, (3, s, s), &Device::Cpu).unwrap();
        let out = transform(&img, Transform::Rotate(90.0)).unwrap().to_vec3::<f32>().unwrap();
        assert!((out[0][2][4] - 1.0).abs() < 1e-5, "{:?}", out[0]);
        // Scale 2 about the centre: pixel (y 1, x 2) samples (1.5, 2.0) between rows 1 and 2.
        let out = transform(&ramp(s), Transform::Scale(2.0)).unwrap().to_vec3::<f32>().unwrap();
        let inp = ramp(s).to_vec3::<f32>().unwrap();
        assert!((out[0][1][2] - (inp[0][1][2] + inp[0][2][2]) / 2.0).abs() < 1e-4);
    }

    #[test]
    fn paper_ranges() {
        assert_eq!(Sweep::Translate.paper_amounts().first(), Some(&-60.0));
        assert_eq!(Sweep::Translate.amounts_for(112)[..3], [-30.0, -25.0, -20.0]);
        assert_eq!(Sweep::Rotate.amounts_for(112), Sweep::Rotate.paper_amounts());
        assert_eq!(Sweep::Translate.paper_amounts().len(), 13);
        assert!((Sweep::Scale.paper_amounts()[8] - 1.8).abs() < 1e-6);
        assert_eq!(Sweep::Rotate.paper_amounts().last(), Some(&350.0));
    }
}
