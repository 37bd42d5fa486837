//! What the analysis commands share: the network, the images they look at (picked from a data
//! set's validation split, one class after another, or given one by one), and output helpers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use zf_data::{Annotation, Crop, Dataset, Generated, GeneratedConfig, ImageFolder, Preprocess};
use zf_model::ZfNet;

use crate::args::{mean_beside, mean_for, read_input, NetArgs};

/// The network and the images an analysis looks at.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    #[command(flatten)]
    pub net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    pub weights: String,
    /// Images from a data set: an image folder (its val/ split when it has one) or `generated`
    /// (the default generated set's validation split).
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    pub data: Option<String>,
    /// Or one input: an image file or a preprocessed safetensors tensor `input` (needs --label).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The true class of --input (index).
    #[arg(long, value_name = "N", requires = "input")]
    pub label: Option<usize>,
    /// The training set's per-pixel mean image, a path or hf://... (default: mean.safetensors
    /// beside the weights).
    #[arg(long, value_name = "FILE")]
    pub mean: Option<String>,
    /// How many images to pick from --data (one class after another).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub images: usize,
    /// Pick only images of this class (name or index).
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
}

/// One picked image.
#[derive(Debug)]
pub struct Picked {
    /// `[3, S, S]`, preprocessed (centre crop, mean subtracted), on the device.
    pub tensor: Tensor,
    pub label: usize,
    /// Where it came from.
    pub name: String,
    /// The centre crop as a picture (before mean subtraction).
    pub picture: image::RgbImage,
    /// The generated data set's annotation, moved into the crop's pixel frame, if it has one.
    pub annotation: Option<Annotation>,
}

/// The loaded network, picked images and class names.
#[derive(Debug)]
pub struct Loaded {
    pub net: ZfNet,
    pub images: Vec<Picked>,
    pub classes: Vec<String>,
}

impl Source {
    pub fn load(&self, device: &Device) -> Result<Loaded> {
        let net = self.net.load(&self.weights, device)?;
        let size = net.config().input_size;
        let classes_n = net.config().classes;
        if let Some(input) = &self.input {
            let label = self.label.context("--input needs --label N, the image's true class")?;
            if label >= classes_n {
                bail!("--label {label}: the network has {classes_n} classes (0..{})", classes_n - 1)
            }
            let mean = match &self.mean {
                Some(m) => Some(crate::args::file_arg(m)?),
                None => mean_beside(&self.weights),
            };
            let x = read_input(input, size, mean.as_deref(), device)?;
            let mut images = Vec::new();
            for i in 0..x.dim(0)? {
                let t = x.get(i)?;
                let v = t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                images.push(Picked {
                    tensor: t,
                    label,
                    name: format!("{}[{i}]", input.display()),
                    picture: zf_viz::minmax_image(&v, 3, size, size),
                    annotation: None,
                });
            }
            return Ok(Loaded { net, images, classes: (0..classes_n).map(|c| c.to_string()).collect() });
        }
        let data = self.data.as_deref().context("give --data DIR|generated or --input FILE --label N")?;
        let pre = Preprocess::for_input(size);
        let (set, files): (Box<dyn Dataset>, Option<Vec<PathBuf>>) = if data == "generated" {
            (
                Box::new(Generated::split(&GeneratedConfig::default(), zf_data::Split::Val, 500).with_preprocess(pre)),
                None,
            )
        } else {
            let root = Path::new(data);
            let dir = crate::args::val_dir(root);
            let f = ImageFolder::open(&dir, pre)?;
            let files = f.files().iter().map(|(p, _)| p.clone()).collect();
            (Box::new(f), Some(files))
        };
        let classes = set.classes().to_vec();
        let mean = mean_for(&self.weights, self.mean.as_deref())?;
        if mean.side != pre.resize {
            bail!("the mean image is {0}x{0}, a {size}-pixel network needs {1}x{1}", mean.side, pre.resize)
        }
        let want = match &self.class {
            None => None,
            Some(c) => Some(match c.parse::<usize>() {
                Ok(i) if i < classes.len() => i,
                _ => classes
                    .iter()
                    .position(|n| n == c)
                    .with_context(|| format!("unknown class `{c}`: the data set has {}", classes.join(", ")))?,
            }),
        };
        let order = pick_order(set.as_ref(), want, self.images);
        if order.is_empty() {
            bail!(
                "no images to pick from {data}{}",
                want.map(|w| format!(" of class {}", classes[w])).unwrap_or_default()
            )
        }
        let (oy, ox) = pre.crop_offsets()[Crop::CENTRE.0];
        let mut images = Vec::new();
        for i in order {
            let sample = set.get(i)?;
            let mut v = vec![0f32; 3 * size * size];
            pre.crop_into(&sample.image, Some(&mean.values), Crop::CENTRE, &mut v);
            let picture =
                image::imageops::crop_imm(&sample.image, ox as u32, oy as u32, size as u32, size as u32).to_image();
            let annotation = match (&files, data) {
                (Some(f), _) => zf_data::generated::read_annotation(&f[i])?,
                (None, _) => {
                    Some(Generated::split(&GeneratedConfig::default(), zf_data::Split::Val, 500).annotation(i))
                }
            }
            .map(|a| to_crop_frame(a, &pre));
            images.push(Picked {
                tensor: Tensor::from_vec(v, (3, size, size), device)?,
                label: sample.label,
                name: set.describe(i),
                picture,
                annotation,
            });
        }
        Ok(Loaded { net, images, classes })
    }
}

/// Up to `n` indices: the first image of each class in turn (or of class `want` only).
fn pick_order(set: &dyn Dataset, want: Option<usize>, n: usize) -> Vec<usize> {
    let k = set.classes().len().max(1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for i in 0..set.len() {
        let l = set.label(i);
        if l < k && want.is_none_or(|w| w == l) && by_class[l].len() < n {
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

/// An annotation of the 256-pixel generated frame moved into the centre crop's pixels.
fn to_crop_frame(mut a: Annotation, pre: &Preprocess) -> Annotation {
    let k = pre.resize as f32 / zf_data::generated::SIDE as f32;
    let (oy, ox) = pre.crop_offsets()[Crop::CENTRE.0];
    let (ox, oy) = (ox as f32, oy as f32);
    for p in a.parts.values_mut() {
        *p = [p[0] * k - ox, p[1] * k - oy];
    }
    a.bbox = [a.bbox[0] * k - ox, a.bbox[1] * k - oy, a.bbox[2] * k - ox, a.bbox[3] * k - oy];
    a.centre = [a.centre[0] * k - ox, a.centre[1] * k - oy];
    a
}

/// Creates `dir` with a clear message.
pub fn out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes pretty JSON atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    Ok(zf_data::write_atomic(path, &serde_json::to_vec_pretty(value)?)?)
}

/// Writes host f32 tensors to a safetensors file atomically.
pub fn write_tensors(path: &Path, tensors: Vec<(&str, Tensor)>) -> Result<()> {
    let named: Vec<(String, Tensor)> = tensors.into_iter().map(|(k, t)| (k.to_string(), t)).collect();
    Ok(zf_model::weights::save_tensors(&named, Default::default(), path)?)
}

/// The centre crops of images `indices` of `set`, mean subtracted, as `[N, 3, S, S]` on
/// `device`, with their labels.
pub fn centre_crops(
    set: &dyn Dataset,
    indices: &[usize],
    mean: &zf_data::MeanImage,
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
