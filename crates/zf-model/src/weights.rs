//! Weights on disk: safetensors with the keys `conv1.weight` ... `fc8.bias` in PyTorch layouts,
//! checked tensor by tensor against the config, written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use safetensors::{Dtype, SafeTensors};

use crate::config::ZfConfig;
use crate::hub;
use crate::net::{Point, ZfNet};

/// Metadata key under which a saved file records its network config (JSON).
pub const CONFIG_KEY: &str = "zfnet.config";

/// The tensors a network of `config` has, with their shapes, in forward order: conv weights
/// `[out, in, kh, kw]`, linear weights `[out, in]`, biases `[out]` (PyTorch layouts).
pub fn expected_shapes(config: &ZfConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let fc6_inputs = config.fc6_inputs()?;
    let (g1, g2) = config.first_layer.geometry();
    let [c1, c2, c3, c4, c5] = config.channels;
    let k345 = crate::config::CONV345.kernel;
    let layers: [(Point, Vec<usize>); 8] = [
        (Point::Conv1, vec![c1, 3, g1.kernel, g1.kernel]),
        (Point::Conv2, vec![c2, c1, g2.kernel, g2.kernel]),
        (Point::Conv3, vec![c3, c2, k345, k345]),
        (Point::Conv4, vec![c4, c3, k345, k345]),
        (Point::Conv5, vec![c5, c4, k345, k345]),
        (Point::Fc6, vec![config.fc_units, fc6_inputs]),
        (Point::Fc7, vec![config.fc_units, config.fc_units]),
        (Point::Fc8, vec![config.classes, config.fc_units]),
    ];
    let mut out = Vec::new();
    for (p, shape) in layers {
        let outputs = shape[0];
        out.push((format!("{p}.weight"), shape));
        out.push((format!("{p}.bias"), vec![outputs]));
    }
    Ok(out)
}

/// A weights file read into memory: its tensors, its metadata, and the config it records (if
/// it was written by this project).
#[derive(Debug)]
pub struct WeightsFile {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    tensors: HashMap<String, (Dtype, Vec<usize>)>,
    bytes: Vec<u8>,
}

impl WeightsFile {
    /// Reads `spec`: a local path or `hf://owner/repo[@revision]/file.safetensors` (see
    /// [`hub::resolve`]). A truncated or malformed file is an error naming the file.
    pub fn open(spec: &str) -> Result<Self> {
        let path = hub::resolve(spec)?;
        Self::read(&path)
    }

    /// Reads a local safetensors file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| candle_core::Error::Msg(format!("cannot read weights file {}: {e}", path.display())))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| candle_core::Error::Msg(format!("{} is not a valid safetensors file: {e}", path.display())))?;
        let tensors =
            st.tensors().into_iter().map(|(name, view)| (name, (view.dtype(), view.shape().to_vec()))).collect();
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| candle_core::Error::Msg(format!("{} is not a valid safetensors file: {e}", path.display())))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Self { path: path.to_path_buf(), metadata, tensors, bytes })
    }

    /// The network config the file records, if any.
    pub fn config(&self) -> Result<Option<ZfConfig>> {
        match self.metadata.get(CONFIG_KEY) {
            None => Ok(None),
            Some(json) => serde_json::from_str(json).map(Some).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "{}: metadata `{CONFIG_KEY}` is not a network config: {e}",
                    self.path.display()
                ))
            }),
        }
    }

    /// Names, dtypes and shapes of every tensor in the file, sorted by name.
    pub fn listing(&self) -> Vec<(String, Dtype, Vec<usize>)> {
        let mut v: Vec<_> = self.tensors.iter().map(|(n, (d, s))| (n.clone(), *d, s.clone())).collect();
        v.sort();
        v
    }

    /// Checks that the file holds exactly the tensors a network of `config` has, in f32 and
    /// with the right shapes. The error lists every mismatch: missing, extra, mis-shaped and
    /// wrong-dtype tensors, each with what was expected and what was found.
    pub fn check(&self, config: &ZfConfig) -> Result<()> {
        let expected = expected_shapes(config)?;
        let mut problems = Vec::new();
        for (name, shape) in &expected {
            match self.tensors.get(name) {
                None => problems.push(format!("missing tensor `{name}` (expected shape {shape:?})")),
                Some((dtype, found)) => {
                    if found != shape {
                        problems.push(format!("tensor `{name}` has shape {found:?}, expected {shape:?}"));
                    }
                    if *dtype != Dtype::F32 {
                        problems.push(format!("tensor `{name}` has dtype {dtype:?}, expected F32"));
                    }
                }
            }
        }
        let mut extra: Vec<_> = self.tensors.keys().filter(|k| !expected.iter().any(|(n, _)| n == *k)).collect();
        extra.sort();
        for name in extra {
            let (dtype, shape) = &self.tensors[name];
            problems.push(format!("unexpected tensor `{name}` ({dtype:?} {shape:?})"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 6;
        if problems.len() > SHOWN {
            let more = problems.len() - SHOWN;
            problems.truncate(SHOWN);
            problems.push(format!("and {more} more (a different network? `zfnet info --weights FILE` without config flags uses the config the file records)"));
        }
        bail!(
            "weights file {} does not match the network ({}): {}",
            self.path.display(),
            describe(config),
            problems.join("; ")
        )
    }

    /// The tensors, checked against `config` (see [`WeightsFile::check`]), on `device`.
    pub fn tensors(&self, config: &ZfConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
        self.check(config)?;
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut out = HashMap::new();
        for (name, view) in st.tensors() {
            out.insert(name, view.load(device)?);
        }
        Ok(out)
    }

    /// The network these weights make. `config` overrides the config the file records; with
    /// neither, the paper's network is assumed.
    pub fn into_net(self, config: Option<&ZfConfig>, device: &Device) -> Result<ZfNet> {
        let config = match config {
            Some(c) => c.clone(),
            None => self.config()?.unwrap_or_else(ZfConfig::paper),
        };
        let tensors = self.tensors(&config, device)?;
        ZfNet::new(&config, VarBuilder::from_tensors(tensors, DType::F32, device))
    }
}

/// A short description of a config for error messages.
fn describe(c: &ZfConfig) -> String {
    format!(
        "{:?} first layer, channels {:?}, fc {}, {} classes, input {}",
        c.first_layer, c.channels, c.fc_units, c.classes, c.input_size
    )
}

impl ZfNet {
    /// Loads a network from `spec` (a path or `hf://...`). See [`WeightsFile::into_net`].
    pub fn load(spec: &str, config: Option<&ZfConfig>, device: &Device) -> Result<Self> {
        WeightsFile::open(spec)?.into_net(config, device)
    }

    /// Writes the weights to `path` as safetensors with the config in the metadata, atomically
    /// (a temporary file renamed into place: never a half-written file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut metadata = HashMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        metadata.insert(
            CONFIG_KEY.to_string(),
            serde_json::to_string(self.config()).map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        );
        save_tensors(&self.named_tensors(), metadata, path)
    }
}

/// Writes named tensors to `path` as safetensors with `metadata`, atomically.
pub fn save_tensors(tensors: &[(String, Tensor)], metadata: HashMap<String, String>, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), t.contiguous()?))).collect::<Result<_>>()?;
    let result = safetensors::serialize_to_file(contiguous.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata), &tmp)
        .map_err(|e| candle_core::Error::Msg(format!("cannot write {}: {e}", path.display())))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .map_err(|e| candle_core::Error::Msg(format!("cannot write {}: {e}", path.display())))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dir/.name.tmp-<pid>` beside `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
