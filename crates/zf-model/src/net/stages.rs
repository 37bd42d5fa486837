//! The network's spatial part as a list of stages, each applicable on its own to any window of
//! its input ([`ZfNet::stages`], [`ZfNet::apply_stage`]), and the rest of the network from
//! conv5 ([`ZfNet::logits_from_conv5`]): what computing only the changed windows of an
//! occluded image needs (`zf_probe`'s incremental occlusion). Each stage runs the same ops as
//! the forward pass (the fused kernels on the CPU in f32, candle's elsewhere), so a window
//! computed alone equals the same window of the whole map.

use candle_core::{Result, Tensor};

use super::ZfNet;
use crate::config::{ConvGeometry, Order, CONV345, POOL12};
use crate::Point;

/// One spatial stage of the forward pass, in the order the network runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A conv layer with its ReLU (its tap point, geometry).
    Conv(Point, ConvGeometry),
    /// Max pooling, 3x3 stride 2 (pool1, pool2).
    Pool(Point),
    /// Local response normalization across maps (norm1, norm2): pointwise in space.
    Lrn(Point),
}

impl Stage {
    /// The tap point whose activation this stage produces.
    pub fn point(self) -> Point {
        match self {
            Stage::Conv(p, _) | Stage::Pool(p) | Stage::Lrn(p) => p,
        }
    }

    /// `(kernel, stride, padding)` along one axis (LRN: `(1, 1, 0)`).
    pub fn window(self) -> (usize, usize, usize) {
        match self {
            Stage::Conv(_, g) => (g.kernel, g.stride, g.padding),
            Stage::Pool(_) => (POOL12.kernel, POOL12.stride, 0),
            Stage::Lrn(_) => (1, 1, 0),
        }
    }
}

impl ZfNet {
    /// conv1 .. conv5 as stages, in the order of the forward pass (which depends on the
    /// config's [`Order`] and whether it has LRN).
    pub fn stages(&self) -> Vec<Stage> {
        let (g1, g2) = self.config.first_layer.geometry();
        let lrn = self.config.lrn.is_some();
        let mut out = Vec::new();
        for (conv, g, pool, norm) in
            [(Point::Conv1, g1, Point::Pool1, Point::Norm1), (Point::Conv2, g2, Point::Pool2, Point::Norm2)]
        {
            out.push(Stage::Conv(conv, g));
            match (self.config.order, lrn) {
                (Order::Paper, true) => out.extend([Stage::Pool(pool), Stage::Lrn(norm)]),
                (Order::Imgclsmob, true) => out.extend([Stage::Lrn(norm), Stage::Pool(pool)]),
                (_, false) => out.push(Stage::Pool(pool)),
            }
        }
        out.extend([Point::Conv3, Point::Conv4, Point::Conv5].map(|p| Stage::Conv(p, CONV345)));
        out
    }

    /// The input as conv1 sees it: `xs` times the config's input scale.
    pub fn scale_input(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.input_multiplier {
            None => Ok(xs.clone()),
            Some(k) => xs.broadcast_mul(&k.to_dtype(xs.dtype())?),
        }
    }

    /// `stage` on `xs` `[N, C, h, w]`; with `pad: false` a conv reads no padding (the caller
    /// has put the zeros of the padding, or the neighbouring values, into `xs`), so that a
    /// window of the input gives exactly the matching window of the output.
    pub fn apply_stage(&self, stage: Stage, xs: &Tensor, pad: bool) -> Result<Tensor> {
        let fused = crate::device::fused(xs);
        match stage {
            Stage::Conv(p, g) => {
                let Some(c) = self.conv(p) else { bail!("{p} is not a conv layer") };
                let g = if pad { g } else { ConvGeometry::new(g.kernel, g.stride, 0) };
                super::conv_relu(c, xs, g, fused)
            }
            Stage::Pool(_) => POOL12.forward_values(xs),
            Stage::Lrn(p) => {
                let Some(lrn) = &self.config.lrn else { bail!("the network has no {p}: LRN is off") };
                super::lrn_layer(lrn, xs, fused)
            }
        }
    }

    /// The logits from conv5's activations `[N, C5, H, W]` (after its ReLU): pool5, fc6, fc7,
    /// fc8 in evaluation mode — the forward pass from conv5 on.
    pub fn logits_from_conv5(&self, conv5: &Tensor) -> Result<Tensor> {
        let fused = crate::device::fused(conv5);
        let linear = |l: &candle_nn::Linear, x: &Tensor, relu: bool| super::linear_layer(l, x, relu, fused);
        let x = self.config.pool5().forward_values(conv5)?;
        let x = linear(&self.fc6, &x.flatten_from(1)?, true)?;
        let x = linear(&self.fc7, &x, true)?;
        linear(&self.fc8, &x, false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use crate::init::{init_net, Init};
    use crate::{NoTap, Point, Trace, ZfConfig};

    #[test]
    fn the_stages_one_after_another_are_the_forward_pass() {
        for cfg in [ZfConfig::tiny().with_input_size(64), ZfConfig::imgclsmob().with_width(0.125).with_input_size(64)] {
            let net = init_net(&cfg, Init::He, 3, &Device::Cpu).unwrap();
            let x = Tensor::randn(0f32, 60.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
            let trace: Trace = net.trace(&x).unwrap();
            let mut a = net.scale_input(&x).unwrap();
            for stage in net.stages() {
                a = net.apply_stage(stage, &a, true).unwrap();
                let want = trace.get(stage.point()).unwrap();
                let d = (&a - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-5, "{stage:?}: {d}");
            }
            let logits = net.logits_from_conv5(&a).unwrap();
            let want = net.forward_with(&x, false, &mut NoTap).unwrap();
            let d = (logits - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "{d}");
            assert_eq!(net.stages().last().unwrap().point(), Point::Conv5);
        }
    }
}
