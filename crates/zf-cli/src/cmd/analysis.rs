//! What the analysis commands share: the network, the images they look at (picked from a data
//! set's validation split, one class after another, or given one by one), and output helpers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use zf_data::pick::Picked;
use zf_data::{DataSpec, GeneratedConfig, Preprocess, Split};
use zf_model::Device;
use zf_model::Net;

use crate::args::{mean_for, NetArgs};

/// The network and the images an analysis looks at.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    #[command(flatten)]
    pub net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    pub weights: String,
    /// Images from a data set: an image folder (its --split sub-folder when it has one) or
    /// `generated`.
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    pub data: Option<String>,
    /// Which split of --data: val, train, transfer-train, transfer-val or faces.
    #[arg(long, default_value = "val", value_name = "SPLIT")]
    pub split: String,
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

/// The loaded network, picked images and class names.
#[derive(Debug)]
pub struct Loaded {
    pub net: Net,
    pub images: Vec<Picked>,
    pub classes: Vec<String>,
}

impl Source {
    pub fn load(&self, device: &Device) -> Result<Loaded> {
        let net = self.net.load_any(&self.weights, device)?;
        let size = net.spec().input_size;
        let classes_n = net.spec().classes();
        if let Some(input) = &self.input {
            let label = self.label.context("--input needs --label N, the image's true class")?;
            if label >= classes_n {
                bail!("--label {label}: the network has {classes_n} classes (0..{})", classes_n - 1)
            }
            let x = crate::args::net_input(&net, &self.weights, self.mean.as_deref(), input, device)?;
            let mut images = Vec::new();
            for i in 0..x.dim(0)? {
                let tensor = x.get(i)?;
                let v = tensor.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                images.push(Picked {
                    tensor,
                    label,
                    name: format!("{}[{i}]", input.display()),
                    picture: zf_viz::minmax_image(&v, 3, size, size),
                    annotation: None,
                });
            }
            return Ok(Loaded { net, images, classes: (0..classes_n).map(|c| c.to_string()).collect() });
        }
        let data = self.data.as_deref().context("give --data DIR|generated or --input FILE --label N")?;
        let split = Split::parse(&self.split)?;
        let pre = Preprocess::for_input(size);
        let set = DataSpec::parse(data, &GeneratedConfig::default()).open(split, None, pre)?;
        let classes = set.classes().to_vec();
        let mean = mean_for_net(&net, &self.weights, self.mean.as_deref())?;
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
        let images = zf_data::pick::pick(set.as_ref(), want, self.images, &mean, device)?;
        if images.is_empty() {
            bail!(
                "no images to pick from {data} ({split}){}",
                want.map(|w| format!(" of class {}", classes[w])).unwrap_or_default()
            )
        }
        Ok(Loaded { net, images, classes })
    }
}

/// The mean image for `net`: --mean, else mean.safetensors beside the weights, else — for a
/// network that normalizes its input as torchvision's do — ImageNet's channel means.
pub fn mean_for_net(net: &Net, weights: &str, mean: Option<&str>) -> Result<zf_data::MeanImage> {
    match crate::args::net_mean(net, weights, mean)? {
        Some(m) => Ok(m),
        None => mean_for(weights, None),
    }
}

/// Creates `dir` with a clear message.
pub fn out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes pretty JSON atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    Ok(zf_data::write_atomic(path, &serde_json::to_vec_pretty(value)?)?)
}

/// The name of class `c`, or its number when the network has no names.
pub fn class_name(classes: &[String], c: usize) -> String {
    classes.get(c).cloned().unwrap_or_else(|| c.to_string())
}
