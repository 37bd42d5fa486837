//! Choosing and preparing the few images an analysis looks at: one rule for which images
//! ([`one_class_after_another`]), one way to make their centre crops a batch
//! ([`centre_crops`], [`centre_crop`]), annotations moved into the crop's frame
//! ([`Annotation::in_crop`]), and all of it at once ([`pick`]).

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::generated::{Annotation, SIDE};
use crate::{Crop, Dataset, MeanImage, Preprocess};

/// Up to `n` indices of `set`: the first image of each class in turn, then the second of each,
/// and so on (or images of class `class` only), in index order within a class.
pub fn one_class_after_another(set: &dyn Dataset, class: Option<usize>, n: usize) -> Vec<usize> {
    let k = set.classes().len().max(1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for i in 0..set.len() {
        let l = set.label(i);
        if l < k && class.is_none_or(|w| w == l) && by_class[l].len() < n {
            by_class[l].push(i);
        }
    }
    let mut out = Vec::new();
    for round in 0..n {
        for c in &by_class {
            if let Some(&i) = c.get(round) {
                if out.len() < n {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// One image's centre crop with the mean subtracted, `[3, S, S]` (S = `pre.crop`), on `device`.
pub fn centre_crop(pre: &Preprocess, image: &image::RgbImage, mean: &MeanImage, device: &Device) -> Result<Tensor> {
    let s = pre.crop;
    let mut x = vec![0f32; 3 * s * s];
    pre.crop_into(image, Some(&mean.values), Crop::CENTRE, &mut x);
    Ok(Tensor::from_vec(x, (3, s, s), device)?)
}

/// The centre crops of images `indices` of `set`, mean subtracted, `[N, 3, S, S]` on `device`,
/// with their labels.
pub fn centre_crops(
    set: &dyn Dataset,
    indices: &[usize],
    mean: &MeanImage,
    device: &Device,
) -> Result<(Tensor, Vec<u32>)> {
    let pre = set.preprocess();
    let s = pre.crop;
    let mut x = vec![0f32; indices.len() * 3 * s * s];
    let mut labels = Vec::with_capacity(indices.len());
    for (k, &i) in indices.iter().enumerate() {
        let sample = set.get(i)?;
        pre.crop_into(&sample.image, Some(&mean.values), Crop::CENTRE, &mut x[k * 3 * s * s..(k + 1) * 3 * s * s]);
        labels.push(sample.label as u32);
    }
    Ok((Tensor::from_vec(x, (indices.len(), 3, s, s), device)?, labels))
}

/// An input for the network from a file: a safetensors file holding a tensor named `input`,
/// `[3, S, S]` or `[N, 3, S, S]`, already preprocessed; or an image file, preprocessed as the
/// paper does (shorter side to `S * 256 / 224`, centre square, `mean` subtracted, centre crop),
/// which needs the training set's mean image. Returns `[N, 3, S, S]` f32 on `device`.
pub fn read_input(path: &std::path::Path, size: usize, mean: Option<&MeanImage>, device: &Device) -> Result<Tensor> {
    let invalid = |m: String| crate::DataError::Invalid(m);
    let is_tensor = path.extension().is_some_and(|e| e == "safetensors");
    if !is_tensor {
        let Some(mean) = mean else {
            return Err(invalid(format!("{}: an image input needs the training set's mean image", path.display())));
        };
        let pre = Preprocess::for_input(size);
        if mean.side != pre.resize {
            return Err(invalid(format!(
                "the mean image is {0}x{0}, a {size}-pixel input needs {1}x{1}",
                mean.side, pre.resize
            )));
        }
        let img = pre.load(path)?;
        return Ok(centre_crop(&pre, &img, mean, device)?.unsqueeze(0)?);
    }
    let mut map = candle_core::safetensors::load(path, device)
        .map_err(|e| invalid(format!("cannot read input {}: {e}", path.display())))?;
    let Some(x) = map.remove("input") else {
        let mut names: Vec<_> = map.keys().cloned().collect();
        names.sort();
        return Err(invalid(format!("{} has no tensor named `input` (found: {})", path.display(), names.join(", "))));
    };
    let shape_error = |x: &Tensor| {
        invalid(format!(
            "{}: `input` has shape {:?}, expected [3,{size},{size}] or [N,3,{size},{size}]",
            path.display(),
            x.dims()
        ))
    };
    let x = match x.rank() {
        3 => x.unsqueeze(0)?,
        4 => x,
        _ => return Err(shape_error(&x)),
    };
    let (_, c, h, w) = x.dims4()?;
    if (c, h, w) != (3, size, size) {
        return Err(shape_error(&x));
    }
    Ok(x.to_dtype(candle_core::DType::F32)?)
}

/// The picked images as one batch `[N, 3, S, S]`.
pub fn stack(images: &[Picked]) -> Result<Tensor> {
    Ok(Tensor::stack(&images.iter().map(|p| p.tensor.clone()).collect::<Vec<_>>(), 0)?)
}

/// One image an analysis looks at.
#[derive(Debug)]
pub struct Picked {
    /// `[3, S, S]`, preprocessed (centre crop, mean subtracted), on the device.
    pub tensor: Tensor,
    pub label: usize,
    /// Where it came from ([`Dataset::describe`]).
    pub name: String,
    /// The centre crop as a picture (before mean subtraction).
    pub picture: image::RgbImage,
    /// Its annotation moved into the crop's pixel frame, when the data set has one.
    pub annotation: Option<Annotation>,
}

/// Up to `n` images of `set` by [`one_class_after_another`] (of class `class` only, when
/// given), centre-cropped with `mean` subtracted, with their pictures and annotations.
pub fn pick(
    set: &dyn Dataset,
    class: Option<usize>,
    n: usize,
    mean: &MeanImage,
    device: &Device,
) -> Result<Vec<Picked>> {
    let pre = set.preprocess();
    if mean.side != pre.resize {
        return Err(crate::DataError::Invalid(format!(
            "the mean image is {0}x{0}, images squared to {1} need {1}x{1}",
            mean.side, pre.resize
        )));
    }
    let (oy, ox) = pre.crop_offsets()[Crop::CENTRE.0];
    let s = pre.crop as u32;
    one_class_after_another(set, class, n)
        .into_iter()
        .map(|i| {
            let sample = set.get(i)?;
            Ok(Picked {
                tensor: centre_crop(&pre, &sample.image, mean, device)?,
                label: sample.label,
                name: set.describe(i),
                picture: image::imageops::crop_imm(&sample.image, ox as u32, oy as u32, s, s).to_image(),
                annotation: set.annotation(i)?.map(|a| a.in_crop(&pre)),
            })
        })
        .collect()
}

impl Annotation {
    /// This annotation (in the generated set's 256-pixel frame) in the pixels of `pre`'s
    /// centre crop: scaled to `pre.resize`, shifted by the crop's offset.
    pub fn in_crop(&self, pre: &Preprocess) -> Annotation {
        let mut a = self.clone();
        let k = pre.resize as f32 / SIDE as f32;
        let (oy, ox) = pre.crop_offsets()[Crop::CENTRE.0];
        let (ox, oy) = (ox as f32, oy as f32);
        for p in a.parts.values_mut() {
            *p = [p[0] * k - ox, p[1] * k - oy];
        }
        a.bbox = [a.bbox[0] * k - ox, a.bbox[1] * k - oy, a.bbox[2] * k - ox, a.bbox[3] * k - oy];
        a.centre = [a.centre[0] * k - ox, a.centre[1] * k - oy];
        a
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Generated, GeneratedConfig, Split};

    #[test]
    fn picks_one_class_after_another() {
        // Labels cycle 0..10 in the generated set: image i has class i % 10.
        let set = Generated::split(&GeneratedConfig::default(), Split::Val, 30);
        assert_eq!(one_class_after_another(&set, None, 12), vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(one_class_after_another(&set, Some(3), 3), vec![3, 13, 23]);
        assert_eq!(one_class_after_another(&set, Some(3), 9), vec![3, 13, 23], "only three of class 3");
    }

    #[test]
    fn annotations_move_into_the_crop() {
        let set = Generated::split(&GeneratedConfig::default(), Split::Val, 1);
        let a = set.annotation(0);
        // 112-pixel input: resize 128 (scale 1/2), centre crop offset 8.
        let b = a.in_crop(&Preprocess::for_input(112));
        assert!((b.bbox[0] - (a.bbox[0] / 2.0 - 8.0)).abs() < 1e-5);
        assert!((b.centre[1] - (a.centre[1] / 2.0 - 8.0)).abs() < 1e-5);
    }
}
