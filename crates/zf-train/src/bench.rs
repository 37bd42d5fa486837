//! Per-layer timings of the conv layers, forward and backward, as `zfnet bench --what layers`
//! reports them: each layer alone on its own input shape, with its multiply-adds, so that its
//! GFLOP/s can be set against the machine's attainable peak ([`matmul_gflops`], one large
//! matrix product through the same gemm).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use zf_model::{Point, ZfNet};

use crate::error::Result;

/// One conv layer's timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerTiming {
    pub layer: String,
    /// Multiply-adds of the forward pass for the whole batch.
    pub macs: u64,
    /// Median seconds of `conv + bias` forward.
    pub forward_s: f64,
    /// Median seconds of the backward pass alone (input and weight gradients; twice the
    /// forward's multiply-adds): forward-and-backward minus forward.
    pub backward_s: f64,
}

impl LayerTiming {
    /// Forward GFLOP/s (2 flops per multiply-add).
    pub fn forward_gflops(&self) -> f64 {
        2.0 * self.macs as f64 / self.forward_s / 1e9
    }

    /// Backward GFLOP/s (twice the forward's work).
    pub fn backward_gflops(&self) -> f64 {
        4.0 * self.macs as f64 / self.backward_s.max(1e-12) / 1e9
    }
}

/// conv1..conv5 of `net`, each on random inputs of its own input shape for `batch` images:
/// the median of `reps` timed runs after one warm-up.
pub fn conv_layers(net: &ZfNet, batch: usize, reps: usize, device: &Device) -> Result<Vec<LayerTiming>> {
    let table = net.config().table()?;
    let s = net.config().input_size;
    let mut out = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        let point: Point = match row.name.parse() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let Some(conv) = net.conv(point) else { continue };
        let input: Vec<usize> = if i == 0 { vec![3, s, s] } else { table.rows[i - 1].shape.clone() };
        let x = Tensor::randn(0f32, 1.0, [&[batch][..], &input[..]].concat(), device)?;
        let (w, b) = (conv.weight().clone(), conv.bias().cloned());
        let cfg = conv.config();
        let g = zf_model::config::ConvGeometry::new(w.dim(2)?, cfg.stride, cfg.padding);
        let forward = median_time::<crate::TrainError>(reps, || {
            let y = zf_model::conv::conv2d(&x, &w, b.as_ref(), g)?;
            device.synchronize()?;
            drop(y);
            Ok(())
        })?;
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let bv = b.as_ref().map(Var::from_tensor).transpose()?;
        let both = median_time::<crate::TrainError>(reps, || {
            let y = zf_model::conv::conv2d(xv.as_tensor(), wv.as_tensor(), bv.as_ref().map(Var::as_tensor), g)?;
            let grads = y.sum_all()?.backward()?;
            device.synchronize()?;
            drop(grads);
            Ok(())
        })?;
        out.push(LayerTiming {
            layer: row.name.to_string(),
            macs: row.macs * batch as u64,
            forward_s: forward,
            backward_s: (both - forward).max(0.0),
        });
    }
    Ok(out)
}

/// GFLOP/s of an `n x n` by `n x n` f32 matrix product on `device` (median of `reps`): the
/// attainable peak the conv layers' gemms are measured against.
pub fn matmul_gflops(n: usize, reps: usize, device: &Device) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(DType::F32)?;
    let t = median_time::<crate::TrainError>(reps, || {
        let c = a.matmul(&b)?;
        device.synchronize()?;
        drop(c);
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / t / 1e9)
}

/// Warm-up runs of `f` (at least one, and runs for half a second, at most 20: a fast case such
/// as one image is timed warm), then the median of `reps` (at least one) timed runs, in
/// seconds. `python/zfnet_torch.py` warms up the same way.
pub fn median_time<E>(reps: usize, mut f: impl FnMut() -> std::result::Result<(), E>) -> std::result::Result<f64, E> {
    let (t0, mut calls) = (Instant::now(), 0);
    while calls == 0 || (t0.elapsed().as_secs_f64() < 0.5 && calls < 20) {
        f()?;
        calls += 1;
    }
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zf_model::init::{init_net, Init};

    #[test]
    fn every_conv_layer_is_timed_with_its_multiply_adds() {
        let cfg = zf_model::ZfConfig::tiny().with_input_size(64);
        let net = init_net(&cfg, Init::He, 0, &Device::Cpu).unwrap();
        let t = conv_layers(&net, 2, 1, &Device::Cpu).unwrap();
        let table = cfg.table().unwrap();
        let names: Vec<&str> = t.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "conv3", "conv4", "conv5"]);
        for l in &t {
            let row = table.rows.iter().find(|r| r.name == l.layer).unwrap();
            assert_eq!(l.macs, 2 * row.macs);
            assert!(l.forward_s > 0.0 && l.forward_gflops().is_finite(), "{l:?}");
        }
        assert!(matmul_gflops(64, 1, &Device::Cpu).unwrap() > 0.0);
    }
}
