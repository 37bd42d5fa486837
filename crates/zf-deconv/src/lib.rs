//! The deconvnet of Zeiler & Fergus (2014, Sec. 2.1): what one activation responds to, seen in
//! pixel space.
//!
//! Keep one activation of a chosen layer (conv1..conv5, the paper's layers 1-5), set all others
//! to zero, and go down to the pixels layer by layer:
//! - **unpool**: put each value back where the forward max-pool found its maximum (the
//!   switch), zeros elsewhere, restoring the exact pre-pool size (ceil mode included). Where
//!   two windows share a switch, the later window (row-major) wins, as in PyTorch's
//!   `max_unpool2d` on the CPU;
//! - **rectify**: ReLU;
//! - **filter**: the transposed convolution with the layer's own weights, stride and padding,
//!   restoring the layer's exact input size (`zf_model::conv::conv_transpose2d`: one matrix
//!   product and a col2im on the CPU, candle's `conv_transpose2d` elsewhere); no biases. LRN is
//!   passed through unchanged — so in imgclsmob's order (conv → ReLU → LRN → pool,
//!   `zf_model::Order::Imgclsmob`) the projection is the same path: unpool with the switches the
//!   forward pool recorded (taken on the normalized maps), then rectify and filter.
//!
//! The walk is the network's own layer list ([`zf_model::NetSpec`]), so the same code projects
//! ZFNet's units and those of torchvision's AlexNet and VGG (a batch norm is folded into its
//! conv's filters, so its scale is in the transposed filters too; linear layers are not
//! projected, as in the paper). [`Deconvnet::project_layer`] takes a layer index
//! ([`zf_model::Net::layer`] finds it by key or alias); [`Deconvnet::project`] takes ZFNet's
//! [`Point`].
//!
//! [`Deconvnet::project`] projects many units of one layer — of one image or of many — in one
//! batched call from one recorded forward pass ([`zf_model::Trace`]). [`receptive_field`] gives
//! the input box a unit sees; [`TopK`] keeps the strongest activations per feature map over a
//! stream of batches (memory independent of the data set's size).
//!
//! Depends on zf-model only. Used by zf-probe and the `zfnet` binary. Errors are
//! `candle_core::Result` with messages that name the layer, channel or position.

pub mod fig2;
pub mod topk;

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use zf_model::{LayerKind, Net, NetSpec, NetTrace, Point, Trace, ZfConfig};

pub use fig2::{energy_on_box, top_projections, top_projections_of, Fig2Config, MapHits, Phase, Projected};
pub use topk::{Hit, TopK};
/// Switch unpooling, the deconvnet's (zf-model's; see there).
pub use zf_model::pool::unpool;

pub(crate) use zf_model::bail;

/// One activation: image `image` of a batch, feature map `channel`, position `(y, x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unit {
    pub image: usize,
    pub channel: usize,
    pub y: usize,
    pub x: usize,
}

/// The index of ZFNet point `layer` in `net`'s spec (its layers are named as the points).
fn index_of(net: &Net, layer: Point) -> Result<usize> {
    if !layer.is_conv() {
        bail!("the deconvnet projects conv1..conv5 (the paper's layers 1-5), got {layer}")
    }
    net.spec().find(layer.name())
}

/// A [`Trace`] of ZFNet's points as the [`NetTrace`] of its layer list.
fn net_trace(net: &Net, trace: &Trace) -> NetTrace {
    let mut out = NetTrace::default();
    for (p, t) in &trace.activations {
        if let Ok(i) = net.spec().find(p.name()) {
            let _ = zf_model::LayerTap::activation(&mut out, i, t);
        }
    }
    for (p, s) in &trace.switches {
        if let Ok(i) = net.spec().find(p.name()) {
            let _ = zf_model::LayerTap::switches(&mut out, i, s);
        }
    }
    out
}

/// Checks that `layer` is ZFNet's conv1..conv5 and returns its output shape `[C, H, W]` for
/// `config`.
pub fn layer_shape(config: &ZfConfig, layer: Point) -> Result<[usize; 3]> {
    if !layer.is_conv() {
        bail!("the deconvnet projects conv1..conv5 (the paper's layers 1-5), got {layer}")
    }
    let table = config.table()?;
    let row =
        table.row(layer.name()).ok_or_else(|| candle_core::Error::Msg(format!("no {layer} in the layer table")))?;
    Ok([row.shape[0], row.shape[1], row.shape[2]])
}

/// Checks a unit against a layer of shape `[C, H, W]` and a batch of `n` images.
fn check_unit(layer: &str, [c, h, w]: [usize; 3], n: usize, u: &Unit) -> Result<()> {
    if u.image >= n {
        bail!("image {} does not exist: the forward pass had {n} image(s)", u.image)
    }
    if u.channel >= c {
        bail!("channel {} does not exist: {layer} has {c} feature maps (0..{})", u.channel, c - 1)
    }
    if u.y >= h || u.x >= w {
        bail!("position ({}, {}) is outside {layer}'s {h}x{w} map", u.y, u.x)
    }
    Ok(())
}

/// The deconvnet attached to a network — ZFNet or any conv stack ([`Net`]); reads its weights
/// through getters. The [`Point`] methods are ZFNet's names for the `_layer` methods, which
/// take a layer index into the network's spec ([`Net::layer`] finds it by name).
#[derive(Clone, Copy, Debug)]
pub struct Deconvnet<'a> {
    net: &'a Net,
}

impl<'a> Deconvnet<'a> {
    pub fn new(net: &'a impl AsRef<Net>) -> Self {
        Self { net: net.as_ref() }
    }

    /// The unit with the largest activation of `channel` in image `image` (first in row-major
    /// order on ties), and its value.
    pub fn strongest(&self, trace: &Trace, layer: Point, image: usize, channel: usize) -> Result<(Unit, f32)> {
        self.strongest_layer(&net_trace(self.net, trace), index_of(self.net, layer)?, image, channel)
    }

    /// [`Self::strongest`] of conv layer `layer` (an index into the spec).
    pub fn strongest_layer(&self, trace: &NetTrace, layer: usize, image: usize, channel: usize) -> Result<(Unit, f32)> {
        let act = self.activation(trace, layer)?;
        let (n, c, _, w) = act.dims4()?;
        check_unit(self.name(layer), [c, 1, 1], n, &Unit { image, channel, y: 0, x: 0 })?;
        let plane = act.get(image)?.get(channel)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let (best, value) =
            plane
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
        Ok((Unit { image, channel, y: best / w, x: best % w }, value))
    }

    /// Projects each unit of conv `layer` alone down to the pixels, from the forward pass
    /// recorded in `trace` (which must hold `layer`'s activation and the pool switches below it).
    ///
    /// # Shapes
    /// - `trace`: a forward pass of `[N, 3, S, S]`
    /// - returns: `[K, 3, S, S]` for `K = units.len()`, in the order of `units`
    pub fn project(&self, trace: &Trace, layer: Point, units: &[Unit]) -> Result<Tensor> {
        self.project_layer(&net_trace(self.net, trace), index_of(self.net, layer)?, units)
    }

    /// [`Self::project`] of conv layer `layer` (an index into the spec) from a [`NetTrace`].
    /// On the CPU in f32 each unit goes down through its receptive field only; elsewhere
    /// [`Self::project_dense_layer`].
    pub fn project_layer(&self, trace: &NetTrace, layer: usize, units: &[Unit]) -> Result<Tensor> {
        if zf_model::device::fused(self.checked_activation(trace, layer, units)?) {
            return units
                .iter()
                .map(|u| self.project_window(trace, layer, u))
                .collect::<Result<Vec<_>>>()
                .and_then(|v| Tensor::cat(&v, 0));
        }
        self.project_dense_layer(trace, layer, units)
    }

    /// [`Self::project`] computed over whole maps, all units as one batch: the path for devices
    /// other than the CPU (and for dtypes other than f32), and the reference that the CPU's
    /// windowed path is tested against.
    pub fn project_dense(&self, trace: &Trace, layer: Point, units: &[Unit]) -> Result<Tensor> {
        self.project_dense_layer(&net_trace(self.net, trace), index_of(self.net, layer)?, units)
    }

    /// [`Self::project_dense`] of conv layer `layer` (an index into the spec).
    pub fn project_dense_layer(&self, trace: &NetTrace, layer: usize, units: &[Unit]) -> Result<Tensor> {
        let act = self.checked_activation(trace, layer, units)?;
        let (_, c, h, w) = act.dims4()?;
        let device = act.device().clone();
        // The kept activations, one per projection, gathered and placed on the device (one
        // upload of two index lists; nothing comes back to the host).
        let at = |image: usize, u: &Unit| (((image * c + u.channel) * h + u.y) * w + u.x) as u32;
        let from: Vec<u32> = units.iter().map(|u| at(u.image, u)).collect();
        let to: Vec<u32> = units.iter().enumerate().map(|(k, u)| at(k, u)).collect();
        let values = act.flatten_all()?.index_select(&Tensor::from_vec(from, units.len(), &device)?, 0)?;
        let mut x = Tensor::zeros(units.len() * c * h * w, act.dtype(), &device)?
            .index_add(&Tensor::from_vec(to, units.len(), &device)?, &values, 0)?
            .reshape((units.len(), c, h, w))?;
        let images = Tensor::from_vec(units.iter().map(|u| u.image as u32).collect::<Vec<_>>(), units.len(), &device)?;
        for i in (0..=layer).rev() {
            let (ih, iw) = self.input_hw(i);
            match &self.net.spec().layers[i].kind {
                LayerKind::Conv { geometry: g, .. } => {
                    let out = x.dim(3)?;
                    let op = iw as isize
                        - ((out as isize - 1) * g.stride as isize - 2 * g.padding as isize + g.kernel as isize);
                    if op < 0 || op as usize >= g.stride.max(1) {
                        bail!("{}: no output padding restores a {iw}-pixel input from {out} (got {op})", self.name(i))
                    }
                    x = zf_model::conv::conv_transpose2d(&x.relu()?, self.weight(i)?, *g, (ih, iw))?;
                }
                LayerKind::MaxPool(_) => {
                    let sw = self.switches(trace, i)?;
                    x = unpool(&x, &sw.indices.index_select(&images, 0)?, sw.input_hw)?;
                }
                LayerKind::Lrn(_) | LayerKind::Dropout { .. } => {}
                other => bail!("the deconvnet cannot go down through {} ({other:?})", self.name(i)),
            }
        }
        Ok(x)
    }

    fn name(&self, layer: usize) -> &str {
        self.net.spec().layers.get(layer).map_or("?", |l| l.label())
    }

    /// The weight of conv layer `layer`, whose transpose filters the projection.
    fn weight(&self, layer: usize) -> Result<&Tensor> {
        let conv = self
            .net
            .conv(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("{} is not a conv layer", self.name(layer))))?;
        Ok(conv.weight())
    }

    /// The size of layer `layer`'s input: the image's, or the output of the layer before.
    fn input_hw(&self, layer: usize) -> (usize, usize) {
        let s = self.net.spec().input_size;
        match layer.checked_sub(1).and_then(|i| self.net.shape(i)) {
            Some(&[_, h, w]) => (h, w),
            _ => (s, s),
        }
    }

    fn switches<'t>(&self, trace: &'t NetTrace, layer: usize) -> Result<&'t zf_model::Switches> {
        trace
            .switches_of(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("the trace has no {} switches", self.name(layer))))
    }

    fn activation<'t>(&self, trace: &'t NetTrace, layer: usize) -> Result<&'t Tensor> {
        match self.net.spec().layers.get(layer).map(|l| &l.kind) {
            Some(LayerKind::Conv { .. }) => {}
            _ => bail!("the deconvnet projects conv layers, got {}", self.name(layer)),
        }
        trace
            .activation(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("the trace has no {} activation", self.name(layer))))
    }

    /// `layer`'s activation, once every unit is checked to lie in it (and there is one).
    fn checked_activation<'t>(&self, trace: &'t NetTrace, layer: usize, units: &[Unit]) -> Result<&'t Tensor> {
        let act = self.activation(trace, layer)?;
        let (n, c, h, w) = act.dims4()?;
        for u in units {
            check_unit(self.name(layer), [c, h, w], n, u)?;
        }
        if units.is_empty() {
            bail!("no units to project")
        }
        Ok(act)
    }

    /// One unit's projection on the CPU, computed only where it can be non-zero: each layer's
    /// block is the unit's receptive field there (conv5 -> a 3x3 block of conv4, ..., a patch
    /// of the image), through [`zf_model::conv::conv_transpose2d_window`] and
    /// [`zf_model::pool::unpool_window`]; the result is the same as [`Self::project_dense`]'s.
    /// Unpooling also takes the zero-valued pooled positions next to the block, whose windows
    /// can share a switch with the block's and, coming later, overwrite it with zero as the
    /// dense unpooling does.
    fn project_window(&self, trace: &NetTrace, layer: usize, u: &Unit) -> Result<Tensor> {
        let act = self.activation(trace, layer)?;
        let c = act.dim(1)?;
        let mut start = vec![0f32; c];
        start[u.channel] = act.get(u.image)?.get(u.channel)?.get(u.y)?.get(u.x)?.to_scalar::<f32>()?;
        let mut x = Tensor::from_vec(start, (1, c, 1, 1), act.device())?;
        let mut origin = (u.y, u.x);
        for i in (0..=layer).rev() {
            let (ih, iw) = self.input_hw(i);
            match &self.net.spec().layers[i].kind {
                LayerKind::Conv { geometry: g, .. } => {
                    (x, origin) =
                        zf_model::conv::conv_transpose2d_window(&x.relu()?, self.weight(i)?, *g, origin, (ih, iw))?;
                }
                LayerKind::MaxPool(_) => {
                    let sw = self.switches(trace, i)?;
                    // Widen the block by the neighbours whose windows overlap its windows.
                    let ext = sw.geometry.kernel.div_ceil(sw.geometry.stride).saturating_sub(1);
                    let (_, _, bh, bw) = x.dims4()?;
                    let (ph, pw) = (self.net.shape(i).map_or(0, |s| s[1]), self.net.shape(i).map_or(0, |s| s[2]));
                    let (top, left) = (origin.0.min(ext), origin.1.min(ext));
                    let bottom = (ph - origin.0 - bh).min(ext);
                    let right = (pw - origin.1 - bw).min(ext);
                    x = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
                    origin = (origin.0 - top, origin.1 - left);
                    let (_, _, bh, bw) = x.dims4()?;
                    let idx = sw.indices.narrow(0, u.image, 1)?.narrow(2, origin.0, bh)?.narrow(3, origin.1, bw)?;
                    (x, origin) = zf_model::pool::unpool_window(&x, &idx, sw.geometry, origin, sw.input_hw)?;
                }
                LayerKind::Lrn(_) | LayerKind::Dropout { .. } => {}
                other => bail!("the deconvnet cannot go down through {} ({other:?})", self.name(i)),
            }
        }
        let (_, _, bh, bw) = x.dims4()?;
        let s = self.net.spec().input_size;
        x.pad_with_zeros(2, origin.0, s - origin.0 - bh)?.pad_with_zeros(3, origin.1, s - origin.1 - bw)
    }
}

/// The box of input pixels that unit `(y, x)` of ZFNet's conv `layer` sees, `[x0, y0, x1, y1)`
/// (end-exclusive), clipped to the image; see [`receptive_field_of`].
pub fn receptive_field(config: &ZfConfig, layer: Point, y: usize, x: usize) -> Result<[usize; 4]> {
    let [c, h, w] = layer_shape(config, layer)?;
    check_unit(layer.name(), [c, h, w], 1, &Unit { image: 0, channel: 0, y, x })?;
    let spec = config.spec();
    receptive_field_of(&spec, spec.find(layer.name())?, y, x)
}

/// The box of input pixels that unit `(y, x)` of layer `layer` of `spec` sees,
/// `[x0, y0, x1, y1)` (end-exclusive), clipped to the image: walking down through every conv
/// (kernel, stride, padding) and max pool (kernel, stride), clipped to each layer's input
/// size on the way.
pub fn receptive_field_of(spec: &NetSpec, layer: usize, y: usize, x: usize) -> Result<[usize; 4]> {
    let shapes = spec.shapes()?;
    let Some(shape) = shapes.get(layer).filter(|s| s.len() == 3) else {
        bail!("layer {layer} of {} is not a spatial layer", spec.arch)
    };
    let name = spec.layers[layer].label();
    check_unit(name, [shape[0], shape[1], shape[2]], 1, &Unit { image: 0, channel: 0, y, x })?;
    let (mut ylo, mut yhi, mut xlo, mut xhi) = (y as isize, y as isize, x as isize, x as isize);
    for i in (0..=layer).rev() {
        let (k, s, p) = match &spec.layers[i].kind {
            LayerKind::Conv { geometry: g, .. } => (g.kernel, g.stride, g.padding),
            LayerKind::MaxPool(g) => (g.kernel, g.stride, 0),
            LayerKind::Lrn(_) | LayerKind::Dropout { .. } => continue,
            other => bail!("no receptive field through {} ({other:?})", spec.layers[i].name),
        };
        let (ih, iw) = match i.checked_sub(1).map(|j| shapes[j].as_slice()) {
            Some(&[_, h, w]) => (h as isize, w as isize),
            _ => (spec.input_size as isize, spec.input_size as isize),
        };
        let grow = |lo: isize, hi: isize, side: isize| {
            let (lo, hi) = (lo * s as isize - p as isize, hi * s as isize - p as isize + k as isize - 1);
            (lo.clamp(0, side - 1), hi.clamp(0, side - 1))
        };
        (ylo, yhi) = grow(ylo, yhi, ih);
        (xlo, xhi) = grow(xlo, xhi, iw);
    }
    Ok([xlo as usize, ylo as usize, xhi as usize + 1, yhi as usize + 1])
}

/// A device-independent copy of a projection, for pictures and files.
pub fn to_host(t: &Tensor) -> Result<Tensor> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F32)
}
