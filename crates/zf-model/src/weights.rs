//! Weights on disk: safetensors with the keys `conv1.weight` ... `fc8.bias` in PyTorch layouts,
//! checked tensor by tensor against the config, written atomically; and any [`Net`] — a
//! zfnet file recording its spec, or torchvision's AlexNet/VGG as PyTorch wrote them
//! ([`Net::load`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use safetensors::{Dtype, SafeTensors};

use crate::config::ZfConfig;
use crate::hub;
use crate::net::ZfNet;
use crate::network::Net;
use crate::spec::NetSpec;

/// Metadata key under which a saved file records its network config (JSON).
pub const CONFIG_KEY: &str = "zfnet.config";

/// The tensors a network of `config` has, with their shapes, in forward order: conv weights
/// `[out, in, kh, kw]`, linear weights `[out, in]`, biases `[out]` (PyTorch layouts); read off
/// [`ZfConfig::spec`]. An error when the config does not fit its input size.
pub fn expected_shapes(config: &ZfConfig) -> Result<Vec<(String, Vec<usize>)>> {
    config.table()?;
    Ok(config.spec().expected_tensors())
}

/// A weights file, memory-mapped: its tensors (dtype, shape and where their bytes are), its
/// metadata, and the config it records (if it was written by this project). The header is
/// parsed once; a tensor's bytes are read from the mapping only when it is loaded.
#[derive(Debug)]
pub struct WeightsFile {
    pub path: PathBuf,
    pub metadata: HashMap<String, String>,
    /// Name -> (dtype, shape, byte range in the file).
    tensors: HashMap<String, (Dtype, Vec<usize>, std::ops::Range<usize>)>,
    map: memmap2::Mmap,
}

impl WeightsFile {
    /// Reads `spec`: a local path or `hf://owner/repo[@revision]/file.safetensors` (see
    /// [`hub::resolve`]). A truncated or malformed file is an error naming the file.
    pub fn open(spec: &str) -> Result<Self> {
        let path = hub::resolve(spec)?;
        Self::read(&path)
    }

    /// Maps a local safetensors file and parses its header (checked against the file's size).
    pub fn read(path: &Path) -> Result<Self> {
        let cannot =
            |e: std::io::Error| candle_core::Error::Msg(format!("cannot read weights file {}: {e}", path.display()));
        let invalid = |e: safetensors::SafeTensorError| {
            candle_core::Error::Msg(format!("{} is not a valid safetensors file: {e}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(cannot)?;
        // SAFETY: the mapping is read-only and private to this value. Another process truncating
        // or rewriting the file while it is mapped could change or fault the bytes read; zfnet
        // itself replaces weights files by renaming a new file into place (`save_tensors`),
        // which leaves this mapping on the old file intact.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(cannot)?;
        let st = SafeTensors::deserialize(&map).map_err(invalid)?;
        let base = map.as_ptr() as usize;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let start = view.data().as_ptr() as usize - base;
                (name, (view.dtype(), view.shape().to_vec(), start..start + view.data().len()))
            })
            .collect();
        let (_, meta) = SafeTensors::read_metadata(&map).map_err(invalid)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Self { path: path.to_path_buf(), metadata, tensors, map })
    }

    /// The network config the file records, if any.
    pub fn config(&self) -> Result<Option<ZfConfig>> {
        self.metadata_json(CONFIG_KEY, "a network config")
    }

    /// The JSON metadata under `key` as a `T`, if the file has it; `what` names `T` in the error.
    fn metadata_json<T: serde::de::DeserializeOwned>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(json) => serde_json::from_str(json).map(Some).map_err(|e| {
                candle_core::Error::Msg(format!("{}: metadata `{key}` is not {what}: {e}", self.path.display()))
            }),
        }
    }

    /// The config the file records, else the one its tensor shapes imply
    /// ([`config_from_shapes`], with `input_size` if given; logged, since LRN, layer order and
    /// input scale are assumed).
    pub fn config_or_inferred(&self, input_size: Option<usize>) -> Result<ZfConfig> {
        if let Some(c) = self.config()? {
            return Ok(c);
        }
        let shapes: HashMap<String, Vec<usize>> =
            self.tensors.iter().map(|(k, (_, s, _))| (k.clone(), s.clone())).collect();
        let c = config_from_shapes(&shapes, input_size).map_err(|e| {
            candle_core::Error::Msg(format!("{} records no `{CONFIG_KEY}` metadata and {e}", self.path.display()))
        })?;
        tracing::info!(
            "{} records no network config: inferred from its shapes ({}); assumed the paper's LRN, layer order and input scale",
            self.path.display(),
            describe(&c)
        );
        Ok(c)
    }

    /// Names, dtypes and shapes of every tensor in the file, sorted by name.
    pub fn listing(&self) -> Vec<(String, Dtype, Vec<usize>)> {
        let mut v: Vec<_> = self.tensors.iter().map(|(n, (d, s, _))| (n.clone(), *d, s.clone())).collect();
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
                Some((dtype, found, _)) => {
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
            let (dtype, shape, _) = &self.tensors[name];
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
        let mut out = HashMap::new();
        for (name, (dtype, shape, range)) in &self.tensors {
            let dtype = DType::try_from(*dtype)?;
            out.insert(name.clone(), Tensor::from_raw_buffer(&self.map[range.clone()], dtype, shape, device)?);
        }
        Ok(out)
    }

    /// The network these weights make. `config` overrides the config the file records; with
    /// neither, the config is inferred from the tensor shapes ([`config_from_shapes`]).
    pub fn into_net(self, config: Option<&ZfConfig>, device: &Device) -> Result<ZfNet> {
        let config = match config {
            Some(c) => c.clone(),
            None => self.config_or_inferred(None)?,
        };
        let tensors = self.tensors(&config, device)?;
        ZfNet::new(&config, VarBuilder::from_tensors(tensors, DType::F32, device))
    }
}

/// The network config a set of tensor shapes implies, for weights that record none (e.g.
/// written from PyTorch with our keys): the first layer from conv1's kernel (7: ZFNet's, 11: the
/// AlexNet-style one), the widths of conv1..conv5 and fc6/fc7 and the class count from the
/// weights' output sizes, and the input size from fc6's inputs (224 when it fits, else the
/// only size that does). LRN, the layer order and the input scale cannot be seen in shapes:
/// they are the paper's. Every other tensor must then have exactly the shape this config
/// gives it; a missing conv/fc weight, an impossible size or an input size the shapes do not
/// decide is an error that says which.
///
/// `input_size`, when given, is taken instead of inferred (and must fit).
pub fn config_from_shapes(shapes: &HashMap<String, Vec<usize>>, input_size: Option<usize>) -> Result<ZfConfig> {
    let dims = |key: &str, rank: usize| -> Result<&[usize]> {
        match shapes.get(key) {
            Some(s) if s.len() == rank => Ok(s.as_slice()),
            Some(s) => bail!("`{key}` has shape {s:?}, which is not a rank-{rank} tensor"),
            None => bail!("has no tensor `{key}`, so it is not a ZFNet weights file"),
        }
    };
    let conv1 = dims("conv1.weight", 4)?;
    let first_layer = match (conv1[2], conv1[3]) {
        (7, 7) => crate::FirstLayer::Zf,
        (11, 11) => crate::FirstLayer::AlexNet,
        (h, w) => bail!("conv1 has {h}x{w} filters: neither ZFNet's 7x7 nor the AlexNet-style 11x11"),
    };
    let mut channels = [0; 5];
    for (i, c) in channels.iter_mut().enumerate() {
        *c = dims(&format!("conv{}.weight", i + 1), 4)?[0];
    }
    let fc6 = dims("fc6.weight", 2)?;
    let classes = dims("fc8.weight", 2)?[0];
    let mut config = ZfConfig { first_layer, channels, fc_units: fc6[0], classes, ..ZfConfig::paper() };
    // fc6 takes pool5 flattened: channels[4] x side x side.
    let side = (1..=64).find(|s| channels[4] * s * s == fc6[1]);
    let Some(side) = side else {
        bail!("fc6 takes {} inputs, which is not conv5's {} maps times a square pool5", fc6[1], channels[4])
    };
    let fits = |size: usize| {
        let c = config.clone().with_input_size(size);
        c.table().ok().and_then(|t| t.row("pool5").map(|r| r.shape[1] == side)).unwrap_or(false)
    };
    let sizes: Vec<usize> = (16..=2048).filter(|&s| fits(s)).collect();
    config.input_size = if let Some(size) = input_size {
        if !fits(size) {
            bail!("a {size}-pixel input does not give the {side}x{side} pool5 that fc6's {} inputs imply", fc6[1])
        }
        size
    } else if fits(crate::config::PAPER_INPUT) {
        crate::config::PAPER_INPUT
    } else {
        match sizes.as_slice() {
            [] => bail!("no input size gives the {side}x{side} pool5 that fc6's {} inputs imply", fc6[1]),
            [one] => *one,
            [a, .., b] => bail!(
                "the input size is ambiguous: every size from {a} to {b} pixels gives the {side}x{side} pool5 fc6 expects; give the size (--input-size)"
            ),
        }
    };
    let mut bad = Vec::new();
    for (key, want) in expected_shapes(&config)? {
        match shapes.get(&key) {
            Some(got) if *got == want => {}
            Some(got) => bad.push(format!("`{key}` is {got:?} where the other shapes imply {want:?}")),
            None => bad.push(format!("`{key}` is missing")),
        }
    }
    if !bad.is_empty() {
        bail!("its shapes do not fit one ZFNet: {}", bad.join("; "))
    }
    Ok(config)
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

/// Writes named tensors to `path` as safetensors with `metadata`, atomically (zf-io: a synced
/// temporary file renamed into place): a reader or a crash never sees a half-written file.
pub fn save_tensors(tensors: &[(String, Tensor)], metadata: HashMap<String, String>, path: &Path) -> Result<()> {
    let cannot = |e: String| candle_core::Error::Msg(format!("cannot write {}: {e}", path.display()));
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), t.contiguous()?))).collect::<Result<_>>()?;
    let bytes = safetensors::serialize(contiguous.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| cannot(e.to_string()))?;
    zf_io::write_atomic(path, &bytes).map_err(|e| cannot(e.to_string()))
}

/// Metadata key under which a saved [`Net`] records its spec (JSON, batch norms folded).
pub const SPEC_KEY: &str = "zfnet.spec";

/// What a weights file holds and how zfnet reads it (see [`Net::load`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A zfnet file with its spec in the metadata.
    Spec,
    /// ZFNet: a recorded [`ZfConfig`] or ZFNet's keys.
    ZfNet(ZfConfig),
    /// torchvision's state dict (safetensors or `.pth`), the architecture inferred.
    Torchvision,
}

impl WeightsFile {
    /// Every tensor in the file, as stored, on `device`.
    pub fn all_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, (dtype, shape, range)) in &self.tensors {
            let dtype = DType::try_from(*dtype)?;
            out.insert(name.clone(), Tensor::from_raw_buffer(&self.map[range.clone()], dtype, shape, device)?);
        }
        Ok(out)
    }

    /// The spec the file records under [`SPEC_KEY`], if any.
    pub fn spec(&self) -> Result<Option<NetSpec>> {
        self.metadata_json(SPEC_KEY, "a network spec")
    }

    /// What the file holds: a recorded spec, ZFNet (a recorded config, or `conv1.weight`
    /// among its keys), else torchvision's keys.
    pub fn source(&self) -> Result<Source> {
        if self.metadata.contains_key(SPEC_KEY) {
            return Ok(Source::Spec);
        }
        if self.metadata.contains_key(CONFIG_KEY) || self.tensors.contains_key("conv1.weight") {
            return Ok(Source::ZfNet(self.config_or_inferred(None)?));
        }
        Ok(Source::Torchvision)
    }
}

impl Net {
    /// Loads any network the project knows from `spec` (a path or `hf://...`):
    /// - a zfnet safetensors file that records its spec ([`Net::save`]);
    /// - a ZFNet file (its recorded config, or the config its shapes imply);
    /// - torchvision's AlexNet or VGG (batch norm or not) as PyTorch wrote it: a safetensors
    ///   file of its state dict, or a `.pth`/`.pt` checkpoint in either `torch.save` format,
    ///   the architecture inferred from keys and shapes ([`crate::convert::from_torchvision`]);
    ///   batch norms are folded into their convs.
    ///
    /// `input_size`, when given, replaces the spec's (any size the pools allow).
    pub fn load(spec: &str, input_size: Option<usize>, device: &Device) -> Result<Self> {
        let path = hub::resolve(spec)?;
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let (mut net_spec, tensors) = if !is_safetensors {
            let tensors = crate::convert::read_checkpoint(&path)?;
            crate::convert::from_torchvision(tensors)
                .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?
        } else {
            let file = WeightsFile::read(&path)?;
            match file.source()? {
                Source::Spec => {
                    let recorded =
                        file.spec()?.ok_or_else(|| candle_core::Error::Msg(format!("{}: no spec", path.display())))?;
                    (recorded, file.all_tensors(device)?)
                }
                Source::ZfNet(config) => (config.spec(), file.tensors(&config, device)?),
                Source::Torchvision => crate::convert::from_torchvision(file.all_tensors(device)?)
                    .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?,
            }
        };
        if let Some(s) = input_size {
            net_spec.input_size = s;
        }
        Net::from_tensors(&net_spec, tensors, device)
    }

    /// Writes the weights (batch norms folded) to `path` as safetensors with the spec in the
    /// metadata ([`SPEC_KEY`]), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut metadata = HashMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        metadata.insert(
            SPEC_KEY.to_string(),
            serde_json::to_string(&self.folded_spec()).map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        );
        save_tensors(&self.named_tensors(), metadata, path)
    }
}
