//! The explorer's analyses, synchronous and free of HTTP: what the server runs on its work
//! queue. One [`Explorer`] holds the network, the mean image inputs are taken with, class
//! names, the data set to choose images from and the Fig. 2 index, and answers with typed
//! views ([`Activations`], [`ProjectionView`], [`TopView`], [`OcclusionView`]) whose pictures
//! are PNG data URLs.

use std::collections::VecDeque;
use std::io::Cursor;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use candle_core::{DType, Device, IndexOp, Tensor};
use image::{GrayImage, ImageFormat, RgbImage};
use serde::Serialize;
use zf_data::{Crop, Dataset, MeanImage, Preprocess};
use zf_deconv::{receptive_field_of, Deconvnet};
use zf_model::{Dropout, Keep, LayerKind, Net, NetTrace};
use zf_probe::fig2_index::Fig2Index;
use zf_probe::OcclusionConfig;

use crate::limits::{FORWARDS_BYTES, MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, THUMB, UPLOADS_KEPT};
use crate::ExploreError;

/// What an [`Explorer`] is built from.
pub struct ExplorerParts {
    /// The network.
    pub net: Net,
    /// Where its weights came from (shown on the page).
    pub weights: String,
    /// The per-pixel mean image inputs are taken with (side: the network's resize side).
    pub mean: MeanImage,
    /// Class names by index (empty: classes are shown by number).
    pub classes: Vec<String>,
    /// The data set whose images the page offers, if any, and how it was named.
    pub data: Option<(Arc<dyn Dataset>, String)>,
    /// The Fig. 2 index (`zfnet visualize`'s output folder), if any.
    pub index: Option<Fig2Index>,
}

impl std::fmt::Debug for ExplorerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExplorerParts")
            .field("arch", &self.net.spec().arch)
            .field("weights", &self.weights)
            .field("classes", &self.classes.len())
            .field("data", &self.data.as_ref().map(|(set, name)| (name, set.len())))
            .field("index", &self.index)
            .finish()
    }
}

/// An image ready for the network: its preprocessed centre crop and the crop as shown.
#[derive(Debug)]
pub struct Prepared {
    /// `d17` (image 17 of the data set) or `u` and 16 hex digits (an upload, by content).
    pub id: String,
    /// Where it came from.
    pub name: String,
    /// `[3, S, S]`, mean subtracted, on the network's device.
    pub tensor: Tensor,
    /// The centre crop's pixels, `S x S`.
    pub picture: RgbImage,
}

/// The explorer: the network and what the page can look at.
#[derive(Debug)]
pub struct Explorer {
    parts: ExplorerParts,
    pre: Preprocess,
    /// Recently used images (uploads and data set images), newest last, at most
    /// [`UPLOADS_KEPT`].
    images: Mutex<VecDeque<Arc<Prepared>>>,
    /// Recent forward passes with switches, newest last, at most [`FORWARDS_BYTES`] in all: a
    /// second channel of the same image and layer costs only the deconvnet's walk down.
    forwards: Mutex<VecDeque<Forward>>,
}

/// One image's forward pass to one layer, as a projection needs it.
#[derive(Debug)]
struct Forward {
    image: String,
    layer: usize,
    trace: Arc<NetTrace>,
    bytes: usize,
}

/// Keeps `f` as the newest of `kept`, in place of an older pass of the same image and layer,
/// then drops the oldest until all fit in `limit` bytes; `f` larger than `limit` is not kept
/// (and drops nothing).
fn keep(kept: &mut VecDeque<Forward>, f: Forward, limit: usize) {
    if f.bytes > limit {
        return;
    }
    kept.retain(|k| !(k.image == f.image && k.layer == f.layer));
    kept.push_back(f);
    while kept.iter().map(|f| f.bytes).sum::<usize>() > limit {
        kept.pop_front();
    }
}

/// The bytes a trace's tensors hold.
fn trace_bytes(trace: &NetTrace) -> usize {
    let tensors = trace.activations.iter().flatten().chain(trace.switches.iter().flatten().map(|s| &s.indices));
    tensors.map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
}

/// One conv layer as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// Torchvision's key or ZFNet's name (`features.28`, `conv5`).
    pub name: String,
    /// The readable name (`conv5_3`; ZFNet's are their names).
    pub label: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The maps the Fig. 2 index holds for this layer.
    pub indexed: Vec<usize>,
}

/// The network and sources, for the page's header and menus.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub arch: String,
    pub weights: String,
    pub input_size: usize,
    pub classes: Vec<String>,
    /// The conv layers, input first.
    pub layers: Vec<LayerInfo>,
    /// The data set's name and size, when one is given.
    pub data: Option<(String, usize)>,
    /// The index's folder, when one is given.
    pub index: Option<String>,
    pub limits: Limits,
}

/// One image of the data set, as `GET /api/images` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ImageEntry {
    /// `d<index>`.
    pub id: String,
    /// The data set's description of it (its file name).
    pub name: String,
    /// Its label's class name.
    pub class: String,
}

/// A page of the data set's images.
#[derive(Clone, Debug, Serialize)]
pub struct ImageList {
    /// How many images the data set has.
    pub total: usize,
    /// The first image's index.
    pub offset: usize,
    /// The page.
    pub images: Vec<ImageEntry>,
}

/// What the server accepts, as the page states it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limits {
    /// The largest upload, in bytes.
    pub upload_bytes: usize,
    /// The largest upload, in pixels (width times height).
    pub upload_pixels: u64,
}

/// A class and its probability.
#[derive(Clone, Debug, Serialize)]
pub struct ClassProb {
    pub class: usize,
    pub name: String,
    pub prob: f32,
}

/// One image seen by the network: its top-5 and one layer's channels.
#[derive(Clone, Debug, Serialize)]
pub struct Activations {
    pub image: String,
    pub layer: String,
    pub top5: Vec<ClassProb>,
    pub channels: usize,
    /// Each channel's largest activation.
    pub peaks: Vec<f32>,
    /// The channel with the largest peak.
    pub strongest: usize,
    /// Every channel's map as a `THUMB`-pixel gray square, in rows of `columns`, scaled by the
    /// layer's largest activation (a PNG data URL).
    pub sprite: String,
    pub thumb: u32,
    pub columns: u32,
}

/// One channel's strongest unit on an image, projected to the pixels.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectionView {
    pub image: String,
    pub layer: String,
    pub channel: usize,
    /// `(row, column)` of the unit in the layer's map.
    pub position: [usize; 2],
    pub value: f32,
    /// `[x0, y0, x1, y1)` in input pixels.
    pub receptive_field: [usize; 4],
    /// The projection, `S x S` (`zf_viz::projection_image`), a PNG data URL.
    pub projection: String,
}

/// One of a channel's top-k hits over the data set.
#[derive(Clone, Debug, Serialize)]
pub struct TopHit {
    pub rank: usize,
    pub source: String,
    pub value: f32,
    pub receptive_field: [usize; 4],
    /// The image under the receptive field (PNG data URL; empty without the data set).
    pub patch: String,
    /// The projection under the receptive field (PNG data URL).
    pub projection: String,
}

/// A channel's top-k from the index (the paper's Fig. 2).
#[derive(Clone, Debug, Serialize)]
pub struct TopView {
    pub layer: String,
    pub channel: usize,
    pub hits: Vec<TopHit>,
}

/// Fig. 7 (d) for one image and class.
#[derive(Clone, Debug, Serialize)]
pub struct OcclusionView {
    pub image: String,
    pub class: usize,
    pub name: String,
    pub clean_prob: f32,
    pub min_prob: f32,
    /// `(row, column)` of the square position that lowered the probability most.
    pub weakest: [usize; 2],
    pub size: usize,
    pub stride: usize,
    /// The probability of `class` per square position over the image (PNG data URL).
    pub map: String,
}

/// A PNG data URL of `img`.
pub fn png_url(img: &image::DynamicImage) -> Result<String, ExploreError> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).map_err(|e| ExploreError::Internal(e.to_string()))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn internal(e: impl std::fmt::Display) -> ExploreError {
    ExploreError::Internal(e.to_string())
}

impl Explorer {
    /// An explorer over `parts`; the mean image must fit the network's input.
    pub fn new(parts: ExplorerParts) -> Result<Self, ExploreError> {
        let s = parts.net.spec().input_size;
        let pre = Preprocess::for_input(s);
        if parts.mean.side != pre.resize {
            return Err(ExploreError::BadRequest(format!(
                "the mean image is {0}x{0}, a {s}-pixel input needs {1}x{1}",
                parts.mean.side, pre.resize
            )));
        }
        if let Some((set, name)) = &parts.data {
            if set.preprocess().crop != s {
                return Err(ExploreError::BadRequest(format!(
                    "{name} gives {0}x{0} crops, the network takes {s}x{s}",
                    set.preprocess().crop
                )));
            }
        }
        Ok(Self { parts, pre, images: Mutex::new(VecDeque::new()), forwards: Mutex::new(VecDeque::new()) })
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.parts.net
    }

    fn class_name(&self, c: usize) -> String {
        self.parts.classes.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// The network, its conv layers and the sources.
    pub fn model_info(&self) -> ModelInfo {
        let net = &self.parts.net;
        let layers = (0..net.spec().layers.len())
            .filter(|&i| matches!(net.spec().layers[i].kind, LayerKind::Conv { .. }))
            .filter_map(|i| {
                let l = &net.spec().layers[i];
                let shape = net.shape(i)?;
                let indexed = self.parts.index.as_ref().map(|x| x.maps_of(l.label())).unwrap_or_default();
                Some(LayerInfo {
                    name: l.name.clone(),
                    label: l.label().to_string(),
                    channels: shape[0],
                    height: shape[1],
                    width: shape[2],
                    indexed,
                })
            })
            .collect();
        let classes = (0..net.spec().classes()).map(|c| self.class_name(c)).collect();
        ModelInfo {
            arch: net.spec().arch.clone(),
            weights: self.parts.weights.clone(),
            input_size: net.spec().input_size,
            classes,
            layers,
            data: self.parts.data.as_ref().map(|(set, name)| (name.clone(), set.len())),
            index: self.parts.index.as_ref().map(|x| x.dir().display().to_string()),
            limits: Limits { upload_bytes: MAX_UPLOAD_BYTES, upload_pixels: MAX_UPLOAD_PIXELS },
        }
    }

    /// Images `offset..offset + limit` of the data set, and how many there are.
    pub fn list_images(&self, offset: usize, limit: usize) -> Result<ImageList, ExploreError> {
        let Some((set, _)) = &self.parts.data else {
            return Err(ExploreError::NotFound("no data set: start the server with --data DIR".into()));
        };
        let end = offset.saturating_add(limit).min(set.len());
        let images = (offset.min(end)..end)
            .map(|i| ImageEntry { id: format!("d{i}"), name: set.describe(i), class: self.class_name(set.label(i)) })
            .collect();
        Ok(ImageList { total: set.len(), offset, images })
    }

    fn remember(&self, p: Prepared) -> Arc<Prepared> {
        let p = Arc::new(p);
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        images.retain(|q| q.id != p.id);
        images.push_back(p.clone());
        while images.len() > UPLOADS_KEPT {
            images.pop_front();
        }
        p
    }

    fn prepare(&self, id: String, name: String, squared: &RgbImage) -> Result<Prepared, ExploreError> {
        let s = self.pre.crop;
        let tensor = zf_data::pick::centre_crop(&self.pre, squared, &self.parts.mean, &self.parts.net.device())
            .map_err(internal)?;
        let (oy, ox) = self.pre.crop_offsets()[Crop::CENTRE.0];
        let picture = image::imageops::crop_imm(squared, ox as u32, oy as u32, s as u32, s as u32).to_image();
        Ok(Prepared { id, name, tensor, picture })
    }

    /// Takes an uploaded image (any format the `image` crate reads, within the
    /// [limits](crate::limits)) and returns its id.
    pub fn upload(&self, bytes: &[u8]) -> Result<Arc<Prepared>, ExploreError> {
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(ExploreError::TooLarge(format!(
                "the upload is {} bytes, the limit is {MAX_UPLOAD_BYTES} ({} MiB)",
                bytes.len(),
                MAX_UPLOAD_BYTES >> 20
            )));
        }
        if bytes.is_empty() {
            return Err(ExploreError::BadRequest("the upload is empty".into()));
        }
        let reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ExploreError::BadRequest(format!("not an image: {e}")))?;
        if reader.format().is_none() {
            return Err(ExploreError::BadRequest("not an image (unknown format)".into()));
        }
        let (w, h) =
            reader.into_dimensions().map_err(|e| ExploreError::BadRequest(format!("not a readable image: {e}")))?;
        if u64::from(w) * u64::from(h) > MAX_UPLOAD_PIXELS {
            return Err(ExploreError::TooLarge(format!(
                "the image is {w}x{h} = {} pixels, the limit is {MAX_UPLOAD_PIXELS}",
                u64::from(w) * u64::from(h)
            )));
        }
        let name = std::path::Path::new("upload");
        let squared = self.pre.load_bytes(bytes, name).map_err(|e| ExploreError::BadRequest(e.to_string()))?;
        let id = format!("u{:016x}", fnv1a(bytes));
        let p = self.prepare(id, format!("upload ({w}x{h})"), &squared)?;
        Ok(self.remember(p))
    }

    /// The image `id` names: `d<N>` from the data set, `u<hex>` a recent upload.
    pub fn image(&self, id: &str) -> Result<Arc<Prepared>, ExploreError> {
        if let Some(p) = self.images.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|p| p.id == id) {
            return Ok(p.clone());
        }
        if let Some(n) = id.strip_prefix('d') {
            let i: usize = n.parse().map_err(|_| ExploreError::BadRequest(format!("bad image id `{id}`")))?;
            let Some((set, _)) = &self.parts.data else {
                return Err(ExploreError::NotFound(format!("image `{id}`: no data set (start with --data DIR)")));
            };
            if i >= set.len() {
                return Err(ExploreError::NotFound(format!("image `{id}`: the data set has {} images", set.len())));
            }
            let sample = set.get(i).map_err(|e| ExploreError::Internal(e.to_string()))?;
            let p = self.prepare(id.to_string(), set.describe(i), &sample.image)?;
            return Ok(self.remember(p));
        }
        if id.len() == 17 && id.starts_with('u') && id[1..].chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ExploreError::NotFound(format!(
                "upload `{id}` is no longer kept (the last {UPLOADS_KEPT} images are): upload it again"
            )));
        }
        Err(ExploreError::BadRequest(format!("bad image id `{id}` (d<N> for the data set, u<hex> for an upload)")))
    }

    /// The conv layer `name` names (a key, an alias, or ZFNet's paper number).
    pub fn conv_layer(&self, name: &str) -> Result<usize, ExploreError> {
        let net = &self.parts.net;
        let found = net
            .layer(name)
            .ok()
            .or_else(|| name.parse::<zf_model::Point>().ok().and_then(|p| net.layer(p.name()).ok()));
        let convs: Vec<&str> =
            net.spec().layers.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).map(|l| l.label()).collect();
        match found {
            Some(i) if matches!(net.spec().layers[i].kind, LayerKind::Conv { .. }) => Ok(i),
            Some(_) => Err(ExploreError::BadRequest(format!(
                "`{name}` is not a conv layer (conv layers: {})",
                convs.join(", ")
            ))),
            None => Err(ExploreError::BadRequest(format!("no layer `{name}` (conv layers: {})", convs.join(", ")))),
        }
    }

    fn channel(&self, layer: usize, channel: usize) -> Result<(), ExploreError> {
        let c = self.parts.net.shape(layer).map_or(0, |s| s[0]);
        if channel >= c {
            let name = self.parts.net.spec().layers[layer].label();
            return Err(ExploreError::BadRequest(format!(
                "channel {channel} is out of range: {name} has {c} (0..{})",
                c.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// The top-5 classes of image `id` and every channel of conv layer `layer`.
    pub fn activations(&self, id: &str, layer: &str) -> Result<Activations, ExploreError> {
        let img = self.image(id)?;
        let li = self.conv_layer(layer)?;
        let net = &self.parts.net;
        let mut keep = Keep::new(&[li]);
        let logits =
            net.forward_with(&img.tensor.unsqueeze(0).map_err(internal)?, Dropout::Off, &mut keep).map_err(internal)?;
        let prob: Vec<f32> = zf_model::network::softmax(&logits)
            .and_then(|p| p.i(0)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec1())
            .map_err(internal)?;
        let mut order: Vec<usize> = (0..prob.len()).collect();
        order.sort_by(|&a, &b| prob[b].total_cmp(&prob[a]));
        let top5 =
            order.iter().take(5).map(|&c| ClassProb { class: c, name: self.class_name(c), prob: prob[c] }).collect();
        let act = keep.get(li).and_then(|t| t.i(0)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)).map_err(internal)?;
        let (c, h, w) = act.dims3().map_err(internal)?;
        let values: Vec<f32> = act.flatten_all().and_then(|t| t.to_vec1()).map_err(internal)?;
        let peaks: Vec<f32> = values.chunks(h * w).map(|m| m.iter().copied().fold(f32::MIN, f32::max)).collect();
        let strongest = (0..c).max_by(|&a, &b| peaks[a].total_cmp(&peaks[b])).unwrap_or(0);
        let top = peaks.iter().copied().fold(0f32, f32::max).max(f32::MIN_POSITIVE);
        let columns = (c as f64).sqrt().ceil() as u32;
        let rows = (c as u32).div_ceil(columns);
        let mut sprite = GrayImage::new(columns * THUMB, rows * THUMB);
        for (k, m) in values.chunks(h * w).enumerate() {
            let gray = GrayImage::from_fn(w as u32, h as u32, |x, y| {
                image::Luma([(m[y as usize * w + x as usize].max(0.0) / top * 255.0).round().min(255.0) as u8])
            });
            let filter = if h as u32 <= THUMB {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            };
            let thumb = image::imageops::resize(&gray, THUMB, THUMB, filter);
            let (x, y) = ((k as u32 % columns) * THUMB, (k as u32 / columns) * THUMB);
            image::imageops::replace(&mut sprite, &thumb, i64::from(x), i64::from(y));
        }
        Ok(Activations {
            image: img.id.clone(),
            layer: net.spec().layers[li].label().to_string(),
            top5,
            channels: c,
            peaks,
            strongest,
            sprite: png_url(&image::DynamicImage::ImageLuma8(sprite))?,
            thumb: THUMB,
            columns,
        })
    }

    /// The deconvnet projection of channel `channel`'s strongest unit of `layer` on image `id`,
    /// as pixels (`zf_viz::projection_image`), with the unit, its value and its receptive field.
    pub fn projection(
        &self,
        id: &str,
        layer: &str,
        channel: usize,
    ) -> Result<(ProjectionView, RgbImage), ExploreError> {
        let img = self.image(id)?;
        let li = self.conv_layer(layer)?;
        self.channel(li, channel)?;
        let net = &self.parts.net;
        let trace = self.forward_to(&img, li)?;
        let deconv = Deconvnet::new(net);
        let (unit, value) = deconv.strongest_layer(&trace, li, 0, channel).map_err(internal)?;
        let proj = deconv.project_layer(&trace, li, &[unit]).map_err(internal)?;
        let s = net.spec().input_size;
        let p: Vec<f32> = zf_deconv::to_host(&proj).and_then(|t| t.flatten_all()?.to_vec1()).map_err(internal)?;
        let pic = zf_viz::projection_image(&p, 3, s, s);
        let rf = receptive_field_of(net.spec(), li, unit.y, unit.x).map_err(internal)?;
        let view = ProjectionView {
            image: img.id.clone(),
            layer: net.spec().layers[li].label().to_string(),
            channel,
            position: [unit.y, unit.x],
            value,
            receptive_field: rf,
            projection: png_url(&image::DynamicImage::ImageRgb8(pic.clone()))?,
        };
        Ok((view, pic))
    }

    /// Image `img`'s forward pass to layer `li` with every tap and switch: a kept one, or a new
    /// one, then kept (the oldest dropped beyond [`FORWARDS_BYTES`]; one larger than that is
    /// not kept).
    fn forward_to(&self, img: &Prepared, li: usize) -> Result<Arc<NetTrace>, ExploreError> {
        let lock = || self.forwards.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut kept = lock();
            if let Some(k) = kept.iter().position(|f| f.image == img.id && f.layer == li) {
                let f = kept.remove(k).ok_or_else(|| internal("the kept forward pass vanished"))?;
                let trace = f.trace.clone();
                kept.push_back(f);
                return Ok(trace);
            }
        }
        let mut trace = NetTrace::default();
        self.parts.net.forward_until(&img.tensor.unsqueeze(0).map_err(internal)?, li, &mut trace).map_err(internal)?;
        let trace = Arc::new(trace);
        let bytes = trace_bytes(&trace);
        keep(&mut lock(), Forward { image: img.id.clone(), layer: li, trace: trace.clone(), bytes }, FORWARDS_BYTES);
        Ok(trace)
    }

    /// Channel `channel` of `layer`'s top-k over the data set, from the index.
    pub fn top(&self, layer: &str, channel: usize) -> Result<TopView, ExploreError> {
        let li = self.conv_layer(layer)?;
        self.channel(li, channel)?;
        let label = self.parts.net.spec().layers[li].label().to_string();
        let Some(index) = &self.parts.index else {
            return Err(ExploreError::NotFound(
                "no index: start with --index DIR (`zfnet visualize --out DIR` writes one)".into(),
            ));
        };
        let Some(map) = index.get(&label, channel) else {
            let have = index.maps_of(&label);
            return Err(ExploreError::NotFound(format!(
                "the index has no top-k for {label} channel {channel} (it holds {}; `zfnet visualize --maps N` indexes more)",
                if have.is_empty() { "none of this layer".to_string() } else { format!("maps {have:?}") }
            )));
        };
        let s = self.parts.net.spec().input_size;
        let (oy, ox) = self.pre.crop_offsets()[Crop::CENTRE.0];
        let mut hits = Vec::with_capacity(map.hits.len());
        for h in &map.hits {
            let [x0, y0, x1, y1] = h.receptive_field.map(|v| v as u32);
            let p = index.projection(&label, channel, h.rank).map_err(internal)?;
            let pic = zf_viz::projection_image(&p, 3, s, s);
            let crop = image::imageops::crop_imm(&pic, x0, y0, x1 - x0, y1 - y0).to_image();
            let patch = match &self.parts.data {
                Some((set, _)) if h.image < set.len() => {
                    let img = set.get(h.image).map_err(internal)?.image;
                    let c =
                        image::imageops::crop_imm(&img, x0 + ox as u32, y0 + oy as u32, x1 - x0, y1 - y0).to_image();
                    png_url(&image::DynamicImage::ImageRgb8(c))?
                }
                _ => String::new(),
            };
            hits.push(TopHit {
                rank: h.rank,
                source: h.source.clone(),
                value: h.value,
                receptive_field: h.receptive_field,
                patch,
                projection: png_url(&image::DynamicImage::ImageRgb8(crop))?,
            });
        }
        Ok(TopView { layer: label, channel, hits })
    }

    /// The occlusion square's side and stride for this network: the paper-scale 48 and 8
    /// pixels at 224, in proportion elsewhere.
    pub fn occlusion_config(&self) -> OcclusionConfig {
        let s = self.parts.net.spec().input_size;
        let scale = |v: usize| (v * s / 224).max(2);
        OcclusionConfig {
            size: scale(zf_probe::occlusion::OCCLUDER),
            stride: scale(zf_probe::occlusion::STRIDE),
            ..Default::default()
        }
    }

    /// Fig. 7 (d) for image `id`: the probability of `class` (default: the predicted one) with
    /// the gray square at each position. `steer(done, total)` follows the positions and may stop
    /// the work (`Ok(None)`).
    pub fn occlusion(
        &self,
        id: &str,
        class: Option<usize>,
        steer: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Option<OcclusionView>, ExploreError> {
        let img = self.image(id)?;
        let net = &self.parts.net;
        let n = net.spec().classes();
        let class = match class {
            Some(c) if c >= n => {
                return Err(ExploreError::BadRequest(format!(
                    "class {c} is out of range: the network has {n} (0..{})",
                    n - 1
                )))
            }
            Some(c) => c,
            None => {
                let logits = net.forward(&img.tensor.unsqueeze(0).map_err(internal)?).map_err(internal)?;
                logits.argmax(1).and_then(|t| t.to_vec1::<u32>()).map_err(internal)?[0] as usize
            }
        };
        let cfg = self.occlusion_config();
        let Some(occ) = zf_probe::occlusion_steered(net, &img.tensor, class, cfg, steer).map_err(internal)? else {
            return Ok(None);
        };
        let r = occ.side();
        let cell = cfg.stride as u32;
        let at = cfg.size as i64 / 2 - cfg.stride as i64 / 2;
        let heat = zf_viz::heat::heatmap(&occ.true_prob, r, r, (0.0, 1.0), cell);
        let map = zf_viz::heat::overlay_at(&img.picture, &heat, at, at, 0.6);
        let (wy, wx) = occ.weakest();
        Ok(Some(OcclusionView {
            image: img.id.clone(),
            class,
            name: self.class_name(class),
            clean_prob: occ.clean_prob,
            min_prob: occ.min_true_prob(),
            weakest: [wy, wx],
            size: cfg.size,
            stride: cfg.stride,
            map: png_url(&image::DynamicImage::ImageRgb8(map))?,
        }))
    }
}

/// FNV-1a, 64 bits: an upload's id from its bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zf_data::{DataSpec, GeneratedConfig, Split};
    use zf_model::init::{init_net, Init};
    use zf_model::ZfConfig;

    /// A tiny random ZFNet at 64 px over 4 generated images.
    fn explorer() -> Explorer {
        let net = init_net(&ZfConfig::tiny().with_input_size(64), Init::He, 5, &Device::Cpu).unwrap().as_net().clone();
        let data = DataSpec::parse("generated", &GeneratedConfig::default())
            .open(Split::Val, Some(4), Preprocess::for_input(64))
            .unwrap();
        let mean = MeanImage::compute(data.as_ref()).unwrap();
        let parts = ExplorerParts {
            net,
            weights: "random".into(),
            mean,
            classes: data.classes().to_vec(),
            data: Some((data, "generated".into())),
            index: None,
        };
        Explorer::new(parts).unwrap()
    }

    #[test]
    fn a_kept_forward_pass_gives_the_projection_a_new_one_gives() {
        let (a, b) = (explorer(), explorer());
        // a: channel 0 runs the forward pass and keeps it; channel 1 reuses it.
        a.projection("d1", "conv5", 0).unwrap();
        let kept = a.forward_to(&a.image("d1").unwrap(), a.conv_layer("conv5").unwrap()).unwrap();
        let again = a.forward_to(&a.image("d1").unwrap(), a.conv_layer("conv5").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&kept, &again));
        let (view_a, pic_a) = a.projection("d1", "conv5", 1).unwrap();
        // b: channel 1 on a new forward pass.
        let (view_b, pic_b) = b.projection("d1", "conv5", 1).unwrap();
        assert_eq!(pic_a, pic_b);
        assert_eq!((view_a.position, view_a.value), (view_b.position, view_b.value));
        // Another layer and another image are passes of their own.
        a.projection("d1", "conv2", 0).unwrap();
        a.projection("d2", "conv5", 0).unwrap();
        let kept = a.forwards.lock().unwrap();
        let keys: Vec<(&str, usize)> = kept.iter().map(|f| (f.image.as_str(), f.layer)).collect();
        let (c5, c2) = (a.conv_layer("conv5").unwrap(), a.conv_layer("conv2").unwrap());
        assert_eq!(keys, [("d1", c5), ("d1", c2), ("d2", c5)]);
        assert!(kept.iter().all(|f| f.bytes == trace_bytes(&f.trace) && f.bytes > 0));
    }

    #[test]
    fn the_kept_passes_stay_within_their_bytes_oldest_dropped_first() {
        let pass = |image: &str, layer, bytes| Forward { image: image.into(), layer, trace: Arc::default(), bytes };
        let mut kept = VecDeque::new();
        let names = |k: &VecDeque<Forward>| k.iter().map(|f| format!("{}/{}", f.image, f.layer)).collect::<Vec<_>>();
        keep(&mut kept, pass("a", 1, 40), 100);
        keep(&mut kept, pass("b", 1, 40), 100);
        assert_eq!(names(&kept), ["a/1", "b/1"]);
        // 120 bytes > 100: the oldest goes.
        keep(&mut kept, pass("c", 1, 40), 100);
        assert_eq!(names(&kept), ["b/1", "c/1"]);
        // The same image and layer again replaces its older pass and becomes the newest.
        keep(&mut kept, pass("b", 1, 40), 100);
        assert_eq!(names(&kept), ["c/1", "b/1"]);
        // A pass larger than the limit is not kept and drops nothing.
        keep(&mut kept, pass("d", 1, 101), 100);
        assert_eq!(names(&kept), ["c/1", "b/1"]);
        // One that fits alone drops all the others.
        keep(&mut kept, pass("e", 2, 100), 100);
        assert_eq!(names(&kept), ["e/2"]);
    }
}
