//! Importing other projects' ZFNet weights: osmr/imgclsmob's (pytorchcv) ImageNet-trained
//! `zfnet` (`zfnet-1727-d010ddca.pth`, 62,357,608 parameters).
//!
//! [`from_imgclsmob`] maps pytorchcv's key names to ours, infers the widths from the shapes,
//! checks every shape against [`ZfConfig::imgclsmob`]'s layer table, and returns the config
//! (conv → ReLU → LRN → pool, ImageNet normalization; see [`crate::config::Order`]) with the
//! renamed tensors. [`read_checkpoint`] reads a PyTorch `.pth` (either `torch.save` format, a
//! wrapped state dict too) or a safetensors file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Result, Tensor};

use crate::config::{FirstLayer, ZfConfig};
use crate::weights::expected_shapes;

/// pytorchcv's key -> ours.
pub const IMGCLSMOB_KEYS: [(&str, &str); 16] = [
    ("features.stage1.unit1.conv.weight", "conv1.weight"),
    ("features.stage1.unit1.conv.bias", "conv1.bias"),
    ("features.stage2.unit1.conv.weight", "conv2.weight"),
    ("features.stage2.unit1.conv.bias", "conv2.bias"),
    ("features.stage3.unit1.conv.weight", "conv3.weight"),
    ("features.stage3.unit1.conv.bias", "conv3.bias"),
    ("features.stage3.unit2.conv.weight", "conv4.weight"),
    ("features.stage3.unit2.conv.bias", "conv4.bias"),
    ("features.stage3.unit3.conv.weight", "conv5.weight"),
    ("features.stage3.unit3.conv.bias", "conv5.bias"),
    ("output.fc1.fc.weight", "fc6.weight"),
    ("output.fc1.fc.bias", "fc6.bias"),
    ("output.fc2.fc.weight", "fc7.weight"),
    ("output.fc2.fc.bias", "fc7.bias"),
    ("output.fc3.weight", "fc8.weight"),
    ("output.fc3.bias", "fc8.bias"),
];

/// The tensors of a PyTorch checkpoint (`.pth`, `.pt`, `.tar`: `torch.save`'s zip or legacy
/// format, a state dict possibly inside a wrapper dict; see [`crate::pth`]) or a safetensors
/// file. A `module.` prefix on every key (DataParallel) is removed.
pub fn read_checkpoint(path: &Path) -> Result<HashMap<String, Tensor>> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let tensors = if is_safetensors {
        let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
            candle_core::Error::Msg(format!("{}: not a readable safetensors file: {e}", path.display()))
        })?;
        crate::pth::unwrap_state_dict(t.into_iter().collect())
    } else {
        crate::pth::read_state_dict(path)?
    };
    Ok(tensors.into_iter().collect())
}

/// Renames imgclsmob's tensors to ours and checks them; see the module docs. The input size
/// stays 224 (the size the network was trained at).
pub fn from_imgclsmob(mut tensors: HashMap<String, Tensor>) -> Result<(ZfConfig, Vec<(String, Tensor)>)> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (theirs, ours) in IMGCLSMOB_KEYS {
        match tensors.remove(theirs) {
            Some(t) => out.push((ours.to_string(), t)),
            None => problems.push(format!("missing `{theirs}` (our {ours})")),
        }
    }
    let mut extra: Vec<String> = tensors.into_keys().collect();
    extra.sort();
    problems.extend(extra.iter().map(|k| format!("unexpected `{k}`")));
    if !problems.is_empty() {
        bail!("not imgclsmob's ZFNet (pytorchcv `zfnet`): {}", problems.join("; "))
    }
    let dim = |name: &str, i: usize| -> usize {
        out.iter().find(|(k, _)| k == name).and_then(|(_, t)| t.dims().get(i).copied()).unwrap_or(0)
    };
    let mut config = ZfConfig::imgclsmob();
    config.channels = ["conv1", "conv2", "conv3", "conv4", "conv5"].map(|c| dim(&format!("{c}.weight"), 0));
    config.fc_units = dim("fc6.weight", 0);
    config.classes = dim("fc8.weight", 0);
    if dim("conv1.weight", 2) != 7 {
        bail!(
            "conv1 has {}x{} filters: imgclsmob's ZFNet has 7x7 (FirstLayer::Zf)",
            dim("conv1.weight", 2),
            dim("conv1.weight", 3)
        )
    }
    config.first_layer = FirstLayer::Zf;
    let want = expected_shapes(&config)?;
    let mut bad = Vec::new();
    for (key, shape) in &want {
        if let Some((_, t)) = out.iter().find(|(k, _)| k == key) {
            if t.dims() != shape.as_slice() {
                bad.push(format!("`{key}` is {:?}, expected {shape:?}", t.dims()));
            }
        }
    }
    if !bad.is_empty() {
        bail!("the shapes do not fit a ZFNet at 224 pixels: {}", bad.join("; "))
    }
    let out = out.into_iter().map(|(k, t)| Ok((k, t.to_dtype(candle_core::DType::F32)?))).collect::<Result<_>>()?;
    Ok((config, out))
}

/// The keys a torchvision state dict may hold besides those a spec expects: batch norm's step
/// counter, which inference does not use.
fn ignored(key: &str) -> bool {
    key.ends_with(".num_batches_tracked")
}

/// Infers which torchvision network (`alexnet`, `vgg11`..`vgg19`, with or without `_bn`) a state
/// dict holds — from which `features.<i>` / `classifier.<i>` modules have weights (convs, batch
/// norms, linear layers at torchvision's module indices) and their shapes (widths, kernels) —
/// and returns its spec (at 224 pixels, ImageNet normalization) with the tensors in f32, batch
/// norms still separate (folded when a [`crate::Net`] is built).
///
/// Errors name the key: one outside `features.*`/`classifier.*` (a residual net's `layer1.0...`,
/// say), a set of modules that fits no preset, a shape that does not fit (grouped convs have
/// fewer input channels than the layer before gives).
pub fn from_torchvision(tensors: HashMap<String, Tensor>) -> Result<(crate::spec::NetSpec, HashMap<String, Tensor>)> {
    use crate::spec::{NetSpec, Widths, TORCHVISION};
    let mut keys: Vec<&String> = tensors.keys().filter(|k| !ignored(k)).collect();
    keys.sort();
    let module = |k: &str| -> Option<(String, usize)> {
        let mut parts = k.splitn(3, '.');
        let (c, i) = (parts.next()?, parts.next()?.parse::<usize>().ok()?);
        matches!(c, "features" | "classifier").then(|| (c.to_string(), i))
    };
    if let Some(k) = keys.iter().find(|k| module(k).is_none()) {
        let hint = if k.starts_with("layer") || k.starts_with("bn1") || k.contains("downsample") {
            " (a residual net's blocks: only plain conv stacks — AlexNet, VGG — are supported)"
        } else {
            ""
        };
        bail!("unexpected key `{k}`: torchvision's AlexNet and VGG hold only features.<i> and classifier.<i>{hint}")
    }
    // The widths the file implies: conv outputs in order, the linear layers' outputs.
    let mut convs: Vec<(usize, usize)> = Vec::new();
    let mut linears: Vec<(usize, usize)> = Vec::new();
    for k in &keys {
        let t = &tensors[k.as_str()];
        if let (Some((c, i)), true) = (module(k), k.ends_with(".weight")) {
            match (c.as_str(), t.rank()) {
                ("features", 4) => convs.push((i, t.dim(0)?)),
                ("classifier", 2) => linears.push((i, t.dim(0)?)),
                _ => {}
            }
        }
    }
    convs.sort();
    linears.sort();
    let widths = match linears.as_slice() {
        [(_, f6), (_, f7), (_, classes)] => {
            Widths { convs: convs.iter().map(|&(_, w)| w).collect(), fc: [*f6, *f7], classes: *classes }
        }
        other => bail!("classifier has {} linear layers, expected 3 (torchvision's AlexNet and VGG)", other.len()),
    };
    let want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut tried = Vec::new();
    for arch in TORCHVISION {
        let Ok(spec) = NetSpec::torchvision_with(arch, &widths) else { continue };
        let expected = spec.expected_tensors();
        let mut names: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        if names != want {
            tried.push(*arch);
            continue;
        }
        let mut bad = Vec::new();
        for (key, shape) in &expected {
            let got = tensors[key].dims();
            if got != shape.as_slice() {
                let grouped = shape.len() == 4 && got.len() == 4 && got[1] < shape[1] && shape[1] % got[1].max(1) == 0;
                let why = if grouped { " (grouped convolutions are not supported)" } else { "" };
                bad.push(format!("`{key}` is {got:?}, expected {shape:?} for {arch}{why}"));
            }
        }
        if !bad.is_empty() {
            bail!("the shapes do not fit torchvision's {arch}: {}", bad.join("; "))
        }
        let out = tensors
            .into_iter()
            .filter(|(k, _)| !ignored(k))
            .map(|(k, t)| Ok((k, t.to_dtype(candle_core::DType::F32)?)))
            .collect::<Result<_>>()?;
        return Ok((spec, out));
    }
    let conv_at: Vec<String> = convs.iter().map(|(i, _)| format!("features.{i}")).collect();
    bail!(
        "the modules fit no torchvision preset ({}): convs at {}, linear layers at {}",
        TORCHVISION.join(", "),
        conv_at.join(", "),
        linears.iter().map(|(i, _)| format!("classifier.{i}")).collect::<Vec<_>>().join(", ")
    )
}
