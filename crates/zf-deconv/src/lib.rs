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
use zf_model::config::{ConvGeometry, CONV345, POOL12};
use zf_model::{Point, Trace, ZfConfig, ZfNet};

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

/// The conv layers the deconvnet goes through, with their geometry.
fn conv_geometry(config: &ZfConfig, layer: Point) -> Result<ConvGeometry> {
    let (g1, g2) = config.first_layer.geometry();
    Ok(match layer {
        Point::Conv1 => g1,
        Point::Conv2 => g2,
        Point::Conv3 | Point::Conv4 | Point::Conv5 => CONV345,
        other => bail!("the deconvnet projects conv1..conv5 (the paper's layers 1-5), got {other}"),
    })
}

/// The layer below conv `layer` that a projection passes through, and the pool (with its
/// switches) between them, if any: conv3 -> pool2 -> conv2 -> pool1 -> conv1.
fn below(layer: Point) -> (Option<Point>, Option<Point>) {
    match layer {
        Point::Conv5 => (Some(Point::Conv4), None),
        Point::Conv4 => (Some(Point::Conv3), None),
        Point::Conv3 => (Some(Point::Conv2), Some(Point::Pool2)),
        Point::Conv2 => (Some(Point::Conv1), Some(Point::Pool1)),
        _ => (None, None),
    }
}

/// Checks that `layer` is conv1..conv5 and returns its output shape `[C, H, W]` for `config`.
pub fn layer_shape(config: &ZfConfig, layer: Point) -> Result<[usize; 3]> {
    conv_geometry(config, layer)?;
    let table = config.table()?;
    let row =
        table.row(layer.name()).ok_or_else(|| candle_core::Error::Msg(format!("no {layer} in the layer table")))?;
    Ok([row.shape[0], row.shape[1], row.shape[2]])
}

/// Checks a unit against a layer of shape `[C, H, W]` and a batch of `n` images.
fn check_unit(layer: Point, [c, h, w]: [usize; 3], n: usize, u: &Unit) -> Result<()> {
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

/// The deconvnet attached to a network; reads its weights through getters.
#[derive(Clone, Copy, Debug)]
pub struct Deconvnet<'a> {
    net: &'a ZfNet,
}

impl<'a> Deconvnet<'a> {
    pub fn new(net: &'a ZfNet) -> Self {
        Self { net }
    }

    /// The unit with the largest activation of `channel` in image `image` (first in row-major
    /// order on ties), and its value.
    pub fn strongest(&self, trace: &Trace, layer: Point, image: usize, channel: usize) -> Result<(Unit, f32)> {
        let act = activation(trace, layer)?;
        let (n, c, _, w) = act.dims4()?;
        check_unit(layer, [c, 1, 1], n, &Unit { image, channel, y: 0, x: 0 })?;
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
        if zf_model::device::fused(checked_activation(trace, layer, units)?) {
            return units
                .iter()
                .map(|u| self.project_window(trace, layer, u))
                .collect::<Result<Vec<_>>>()
                .and_then(|v| Tensor::cat(&v, 0));
        }
        self.project_dense(trace, layer, units)
    }

    /// [`Self::project`] computed over whole maps, all units as one batch: the path for devices
    /// other than the CPU (and for dtypes other than f32), and the reference that the CPU's
    /// windowed path is tested against.
    pub fn project_dense(&self, trace: &Trace, layer: Point, units: &[Unit]) -> Result<Tensor> {
        let config = self.net.config();
        let act = checked_activation(trace, layer, units)?;
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
        let mut current = layer;
        loop {
            let weight = self.weight(current)?;
            let g = conv_geometry(config, current)?;
            let input = conv_input_side(config, current)?;
            let out = x.dim(3)?;
            let op =
                input as isize - ((out as isize - 1) * g.stride as isize - 2 * g.padding as isize + g.kernel as isize);
            if op < 0 || op as usize >= g.stride.max(1) {
                bail!("{current}: no output padding restores a {input}-pixel input from {out} (got {op})")
            }
            x = zf_model::conv::conv_transpose2d(&x.relu()?, weight, g, (input, input))?;
            let (next, pool) = below(current);
            if let Some(pool) = pool {
                let sw = switches(trace, pool)?;
                x = unpool(&x, &sw.indices.index_select(&images, 0)?, sw.input_hw)?;
            }
            match next {
                Some(p) => current = p,
                None => break,
            }
        }
        Ok(x)
    }

    /// The weight of conv `layer`, whose transpose filters the projection.
    fn weight(&self, layer: Point) -> Result<&Tensor> {
        let conv = self.net.conv(layer).ok_or_else(|| candle_core::Error::Msg(format!("no {layer} in the network")))?;
        Ok(conv.weight())
    }

    /// One unit's projection on the CPU, computed only where it can be non-zero: each layer's
    /// block is the unit's receptive field there (conv5 -> a 3x3 block of conv4, ..., a patch
    /// of the image), through [`zf_model::conv::conv_transpose2d_window`] and
    /// [`zf_model::pool::unpool_window`]; the result is the same as [`Self::project_dense`]'s.
    /// Unpooling also takes the zero-valued pooled positions next to the block, whose windows
    /// can share a switch with the block's and, coming later, overwrite it with zero as the
    /// dense unpooling does.
    fn project_window(&self, trace: &Trace, layer: Point, u: &Unit) -> Result<Tensor> {
        let config = self.net.config();
        let act = activation(trace, layer)?;
        let c = act.dim(1)?;
        let mut start = vec![0f32; c];
        start[u.channel] = act.get(u.image)?.get(u.channel)?.get(u.y)?.get(u.x)?.to_scalar::<f32>()?;
        let mut x = Tensor::from_vec(start, (1, c, 1, 1), act.device())?;
        let mut origin = (u.y, u.x);
        let mut current = layer;
        loop {
            let weight = self.weight(current)?;
            let g = conv_geometry(config, current)?;
            let input = conv_input_side(config, current)?;
            (x, origin) = zf_model::conv::conv_transpose2d_window(&x.relu()?, weight, g, origin, (input, input))?;
            let (next, pool) = below(current);
            if let Some(pool) = pool {
                let sw = switches(trace, pool)?;
                // Widen the block by the neighbours whose windows overlap its windows.
                let ext = sw.geometry.kernel.div_ceil(sw.geometry.stride).saturating_sub(1);
                let (_, _, bh, bw) = x.dims4()?;
                let (top, left) = (origin.0.min(ext), origin.1.min(ext));
                let bottom = (input - origin.0 - bh).min(ext);
                let right = (input - origin.1 - bw).min(ext);
                x = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
                origin = (origin.0 - top, origin.1 - left);
                let (_, _, bh, bw) = x.dims4()?;
                let idx = sw.indices.narrow(0, u.image, 1)?.narrow(2, origin.0, bh)?.narrow(3, origin.1, bw)?;
                (x, origin) = zf_model::pool::unpool_window(&x, &idx, sw.geometry, origin, sw.input_hw)?;
            }
            match next {
                Some(p) => current = p,
                None => break,
            }
        }
        let (_, _, bh, bw) = x.dims4()?;
        let s = config.input_size;
        x.pad_with_zeros(2, origin.0, s - origin.0 - bh)?.pad_with_zeros(3, origin.1, s - origin.1 - bw)
    }
}

fn switches(trace: &Trace, pool: Point) -> Result<&zf_model::Switches> {
    trace.switches_of(pool).ok_or_else(|| candle_core::Error::Msg(format!("the trace has no {pool} switches")))
}

/// `layer`'s activation, once every unit is checked to lie in it (and there is one).
fn checked_activation<'t>(trace: &'t Trace, layer: Point, units: &[Unit]) -> Result<&'t Tensor> {
    let act = activation(trace, layer)?;
    let (n, c, h, w) = act.dims4()?;
    for u in units {
        check_unit(layer, [c, h, w], n, u)?;
    }
    if units.is_empty() {
        bail!("no units to project")
    }
    Ok(act)
}

fn activation(trace: &Trace, layer: Point) -> Result<&Tensor> {
    if !layer.is_conv() {
        bail!("the deconvnet projects conv1..conv5 (the paper's layers 1-5), got {layer}")
    }
    trace.get(layer).ok_or_else(|| candle_core::Error::Msg(format!("the trace has no {layer} activation")))
}

/// Side of conv `layer`'s input: the image, pool1/pool2's output, or conv3/conv4's output.
fn conv_input_side(config: &ZfConfig, layer: Point) -> Result<usize> {
    let table = config.table()?;
    let row = |name: &str| {
        table.row(name).map(|r| r.shape[1]).ok_or_else(|| candle_core::Error::Msg(format!("no {name} row")))
    };
    match layer {
        Point::Conv1 => Ok(config.input_size),
        Point::Conv2 => row("pool1"),
        Point::Conv3 => row("pool2"),
        Point::Conv4 => row("conv3"),
        Point::Conv5 => row("conv4"),
        other => bail!("{other} is not a convolution"),
    }
}

/// The box of input pixels that unit `(y, x)` of conv `layer` sees, `[x0, y0, x1, y1)`
/// (end-exclusive), clipped to the image: walking down through every conv (kernel, stride,
/// padding) and pool (kernel, stride), clipped to each layer's size on the way.
pub fn receptive_field(config: &ZfConfig, layer: Point, y: usize, x: usize) -> Result<[usize; 4]> {
    let [c, h, w] = layer_shape(config, layer)?;
    check_unit(layer, [c, h, w], 1, &Unit { image: 0, channel: 0, y, x })?;
    let (mut ylo, mut yhi, mut xlo, mut xhi) = (y as isize, y as isize, x as isize, x as isize);
    let mut current = layer;
    loop {
        let g = conv_geometry(config, current)?;
        let grow = |lo: isize, hi: isize| {
            (
                lo * g.stride as isize - g.padding as isize,
                hi * g.stride as isize - g.padding as isize + g.kernel as isize - 1,
            )
        };
        (ylo, yhi) = grow(ylo, yhi);
        (xlo, xhi) = grow(xlo, xhi);
        let side = conv_input_side(config, current)? as isize;
        let clip = |v: isize| v.clamp(0, side - 1);
        (ylo, yhi, xlo, xhi) = (clip(ylo), clip(yhi), clip(xlo), clip(xhi));
        let (next, pool) = below(current);
        if let (Some(conv_below), Some(_)) = (next, pool) {
            // Through the pool into the output of the conv below it.
            let (k, s) = (POOL12.kernel as isize, POOL12.stride as isize);
            let pre = layer_shape(config, conv_below)?[1] as isize;
            (ylo, yhi) = (ylo * s, (yhi * s + k - 1).min(pre - 1));
            (xlo, xhi) = (xlo * s, (xhi * s + k - 1).min(pre - 1));
        }
        match next {
            Some(p) => current = p,
            None => break,
        }
    }
    Ok([xlo as usize, ylo as usize, xhi as usize + 1, yhi as usize + 1])
}

/// A device-independent copy of a projection, for pictures and files.
pub fn to_host(t: &Tensor) -> Result<Tensor> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F32)
}
