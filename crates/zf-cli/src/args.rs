//! Arguments shared by several commands: the network config, weights and inputs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use zf_data::MeanImage;
use zf_model::weights::Source;
use zf_model::{Device, Tensor};
use zf_model::{FirstLayer, LayerKind, Net, WeightsFile, ZfConfig, ZfNet};

/// Which network: a preset, adjusted by the other flags. When weights are given and none of
/// these flags is, the config recorded in the weights file is used.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NetArgs {
    /// Network preset: paper (ZFNet, Fig. 3), alexnet (11x11 stride 4 first layer), small
    /// (quarter width, 10 classes), tiny (eighth width, 10 classes).
    #[arg(long, value_name = "NAME")]
    pub config: Option<String>,
    /// Width multiplier of every conv and fc layer (1 = the paper's 96..256 maps, 4096 units).
    #[arg(long, value_name = "W")]
    pub width: Option<f64>,
    /// Number of classes of fc8.
    #[arg(long, value_name = "N")]
    pub classes: Option<usize>,
    /// Side of the square input image.
    #[arg(long, value_name = "PX")]
    pub input_size: Option<usize>,
    /// First layers: zf (7x7 stride 2) or alexnet (11x11 stride 4).
    #[arg(long, value_name = "KIND", value_parser = ["zf", "alexnet"])]
    pub first_layer: Option<String>,
    /// Switch off the local response normalization after pool1 and pool2.
    #[arg(long)]
    pub no_lrn: bool,
}

impl NetArgs {
    fn any(&self) -> bool {
        self.config.is_some()
            || self.width.is_some()
            || self.classes.is_some()
            || self.input_size.is_some()
            || self.first_layer.is_some()
            || self.no_lrn
    }

    /// The config these flags describe, starting from `base` (the preset, else the weights'
    /// recorded config, else the paper's network).
    pub fn resolve(&self, recorded: Option<ZfConfig>) -> Result<ZfConfig> {
        let mut c = match (&self.config, recorded) {
            (Some(name), _) => ZfConfig::preset(name)?,
            (None, Some(r)) => r,
            (None, None) => ZfConfig::paper(),
        };
        if let Some(w) = self.width {
            if !(w > 0.0 && w.is_finite()) {
                bail!("--width must be positive, got {w}")
            }
            c = c.with_width(w);
        }
        if let Some(n) = self.classes {
            c = c.with_classes(n);
        }
        if let Some(s) = self.input_size {
            c = c.with_input_size(s);
        }
        match self.first_layer.as_deref() {
            Some("alexnet") => c = c.with_first_layer(FirstLayer::AlexNet),
            Some(_) => c = c.with_first_layer(FirstLayer::Zf),
            None => {}
        }
        if self.no_lrn {
            c = c.with_lrn(false);
        }
        c.table()?;
        Ok(c)
    }

    /// Loads the network from `weights`, with the config from these flags if any is given,
    /// else the one the file records.
    pub fn load(&self, weights: &str, device: &Device) -> Result<ZfNet> {
        let file = WeightsFile::open(weights)?;
        let config = if self.any() {
            // Flags adjust the recorded config, else the one the shapes imply (unless a preset
            // is named, which replaces both).
            let base = match &self.config {
                Some(_) => None,
                None => Some(file.config_or_inferred(self.input_size)?),
            };
            Some(self.resolve(base)?)
        } else {
            None
        };
        Ok(file.into_net(config.as_ref(), device)?)
    }
}

impl NetArgs {
    /// The ZFNet-only flag among these that is given, if any.
    fn zfnet_only(&self) -> Option<&'static str> {
        [
            (self.config.is_some(), "--config"),
            (self.width.is_some(), "--width"),
            (self.classes.is_some(), "--classes"),
            (self.first_layer.is_some(), "--first-layer"),
            (self.no_lrn, "--no-lrn"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// Any network the project loads from `weights`: ZFNet (a zfnet file of it, these flags
    /// applied), a zfnet file that records its spec, or torchvision's AlexNet/VGG as PyTorch
    /// wrote them (.pth or safetensors; see `zf_model::Net::load`). The ZFNet flags other than
    /// --input-size are an error for another network (never silently ignored).
    pub fn load_any(&self, weights: &str, device: &Device) -> Result<Net> {
        let safetensors = weights.starts_with("hf://") || weights.ends_with(".safetensors");
        if safetensors && matches!(WeightsFile::open(weights)?.source()?, Source::ZfNet(_)) {
            return Ok(self.load(weights, device)?.as_net().clone());
        }
        if let Some(flag) = self.zfnet_only() {
            bail!("{flag} describes a ZFNet, but {weights} holds another network (only --input-size applies to it)")
        }
        Ok(Net::load(weights, self.input_size, device)?)
    }
}

/// The layer `--layer` names in `net`: a key (`features.28`), an alias (`conv5_3`, `fc7`) or,
/// for ZFNet, the paper's layer number (`1`..`7`).
pub fn layer_arg(net: &Net, name: &str) -> Result<usize> {
    net.layer(name)
        .or_else(|e| name.parse::<zf_model::Point>().ok().and_then(|p| net.layer(p.name()).ok()).ok_or(e))
        .map_err(Into::into)
}

/// The layers that play the paper's layers 1..7: ZFNet's conv1..conv5, fc6, fc7; in another
/// network the conv before each max pool (the end of each VGG block) and the hidden linear
/// layers.
pub fn paper_layers(net: &Net) -> Vec<usize> {
    let layers = &net.spec().layers;
    let zfnet = net.spec().arch.starts_with("zfnet");
    let before_pool = |i: usize| {
        layers[i + 1..]
            .iter()
            .find(|l| !matches!(l.kind, LayerKind::Lrn(_)))
            .is_some_and(|l| matches!(l.kind, LayerKind::MaxPool(_)))
    };
    (0..layers.len())
        .filter(|&i| match layers[i].kind {
            LayerKind::Conv { .. } => zfnet || before_pool(i),
            LayerKind::Linear { relu, .. } => relu,
            _ => false,
        })
        .collect()
}

/// A network and an input for it: `--weights`, `--input`, `--mean`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelInput {
    #[command(flatten)]
    pub net: NetArgs,
    /// Weights: a path or hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "W")]
    pub weights: String,
    /// Input: an image file (JPEG, PNG, ...; needs --mean), or a safetensors file with a tensor
    /// `input`, [3,S,S] or [N,3,S,S], already preprocessed (per-pixel mean subtracted).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The training set's per-pixel mean image (`zfnet data mean`), for image inputs: a path or
    /// hf://owner/repo[@revision]/file.
    #[arg(long, value_name = "FILE")]
    pub mean: Option<String>,
}

impl ModelInput {
    /// Any network (see [`NetArgs::load_any`]) and the input `[N, 3, S, S]`. An image input
    /// uses --mean, else mean.safetensors beside the weights, else — for a network that
    /// normalizes its input as torchvision's do — ImageNet's channel means.
    pub fn load_any(&self, device: &Device) -> Result<(Net, Tensor)> {
        let net = self.net.load_any(&self.weights, device)?;
        let x = net_input(&net, &self.weights, self.mean.as_deref(), &self.input, device)?;
        Ok((net, x))
    }
}

/// The mean image `net`'s image inputs are taken with: `mean` when given, else
/// mean.safetensors beside the weights, else — for a network that normalizes its input as
/// torchvision's do — ImageNet's channel means; `None` when there is none.
pub fn net_mean(net: &Net, weights: &str, mean: Option<&str>) -> Result<Option<MeanImage>> {
    if let Some(m) = mean {
        return Ok(Some(MeanImage::load(&file_arg(m)?)?));
    }
    if let Some(beside) = mean_beside(weights) {
        tracing::info!("no --mean: {} beside the weights", beside.display());
        return Ok(Some(MeanImage::load(&beside)?));
    }
    if net.spec().input_channel_scale.is_some() {
        tracing::info!("no --mean: ImageNet's channel means, as {} was trained with", net.spec().arch);
        return Ok(Some(imagenet_mean(net.spec().input_size)));
    }
    Ok(None)
}

/// `--input` for `net` (see [`read_input`]): a preprocessed tensor as it is; an image with
/// [`net_mean`]'s mean image, an error asking for --mean when there is none.
pub fn net_input(net: &Net, weights: &str, mean: Option<&str>, input: &Path, device: &Device) -> Result<Tensor> {
    let size = net.spec().input_size;
    let is_tensor = input.extension().is_some_and(|e| e == "safetensors");
    match if is_tensor { None } else { net_mean(net, weights, mean)? } {
        Some(m) => Ok(zf_data::pick::read_input(input, size, Some(&m), device)?),
        None => read_input(input, size, None, device),
    }
}

/// Reads `--input` (see [`zf_data::pick::read_input`]); an image file needs the training set's
/// mean image.
pub fn read_input(path: &Path, size: usize, mean: Option<&Path>, device: &Device) -> Result<Tensor> {
    let is_tensor = path.extension().is_some_and(|e| e == "safetensors");
    let mean = match (is_tensor, mean) {
        (true, _) => None,
        (false, Some(m)) => Some(MeanImage::load(m)?),
        (false, None) => bail!(
            "{}: an image input needs --mean FILE, the training set's per-pixel mean image (`zfnet data mean`); or give a preprocessed safetensors tensor `input`",
            path.display()
        ),
    };
    Ok(zf_data::pick::read_input(path, size, mean.as_ref(), device)?)
}

/// ImageNet's per-channel means (pixels 0..255) as a mean image for an input of side `size`.
pub fn imagenet_mean(size: usize) -> MeanImage {
    let side = zf_data::Preprocess::for_input(size).resize;
    let values = zf_model::config::IMAGENET_MEAN
        .iter()
        .flat_map(|&m| std::iter::repeat_n((255.0 * m) as f32, side * side))
        .collect();
    MeanImage { side, values, count: 0 }
}

/// A file argument that may also be a hub address (`--mean`, `--classes`): a local path, or
/// `hf://owner/repo[@revision]/file` through the hub cache.
pub fn file_arg(spec: &str) -> Result<PathBuf> {
    if spec.starts_with("hf://") {
        return Ok(zf_model::hub::HubEnv::from_env().fetch(&zf_model::hub::HubFile::parse(spec)?)?);
    }
    let p = PathBuf::from(spec);
    if !p.is_file() {
        bail!("{spec} does not exist (give a path or hf://owner/repo[@revision]/file)")
    }
    Ok(p)
}

/// `mean.safetensors` beside the weights (a training run's folder, or the same hub repository
/// and revision), if it is there.
pub fn mean_beside(weights: &str) -> Option<PathBuf> {
    zf_model::hub::resolve_beside(weights, "mean.safetensors").ok()
}

/// The mean image for `weights`: `mean` when given (a path or hf://), else `mean.safetensors`
/// beside the weights.
pub fn mean_for(weights: &str, mean: Option<&str>) -> Result<MeanImage> {
    let path = match mean {
        Some(p) => file_arg(p)?,
        None => zf_model::hub::resolve_beside(weights, "mean.safetensors")
            .context("no --mean given: pass the training set's mean image")?,
    };
    Ok(MeanImage::load(&path)?)
}

/// Class names for `weights`: `classes` when given (a path or hf://), else `classes.txt` beside
/// the weights; `None` when there is none (classes are then shown by index).
pub fn classes_for(weights: &str, classes: Option<&str>) -> Result<Option<Vec<String>>> {
    let path = match classes {
        Some(p) => file_arg(p)?,
        None => match zf_model::hub::resolve_beside(weights, "classes.txt") {
            Ok(p) => p,
            Err(e) => {
                if weights.starts_with("hf://") {
                    tracing::warn!("{e}: classes are shown by index");
                }
                return Ok(None);
            }
        },
    };
    Ok(Some(zf_data::folder::read_classes(&path)?))
}
