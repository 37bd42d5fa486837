//! Weight movement between training snapshots (Fig. 4's claim: lower layers settle within a
//! few epochs, upper layers only much later).

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};
use zf_model::{Point, ZfNet};

use crate::bail;

/// How far one layer's weights moved between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    pub layer: String,
    /// `‖W_b − W_a‖ / ‖W_b‖` (Frobenius norms of the weights, biases left out).
    pub relative: f32,
}

/// For every weighted layer conv1..fc8, the relative change of its weights from `a` to `b`.
pub fn weight_change(a: &ZfNet, b: &ZfNet) -> Result<Vec<LayerChange>> {
    if a.config() != b.config() {
        bail!("the two snapshots are different networks: {:?} and {:?}", a.config(), b.config())
    }
    let weight = |n: &ZfNet, p: Point| -> Result<Tensor> {
        match (n.conv(p), n.linear(p)) {
            (Some(c), _) => Ok(c.weight().clone()),
            (_, Some(l)) => Ok(l.weight().clone()),
            _ => bail!("{p} has no weights"),
        }
    };
    Point::WEIGHTED
        .iter()
        .map(|&p| {
            let (wa, wb) = (weight(a, p)?.to_dtype(DType::F32)?, weight(b, p)?.to_dtype(DType::F32)?);
            let diff = (&wb - &wa)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
            let norm = wb.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
            Ok(LayerChange { layer: p.name().to_string(), relative: if norm > 0.0 { diff / norm } else { 0.0 } })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;
    use zf_model::init::{init_net, Init};
    use zf_model::ZfConfig;

    #[test]
    fn identical_nets_do_not_move_and_scaled_weights_move_by_the_scale() {
        let cfg = ZfConfig::tiny().with_input_size(64);
        let a = init_net(&cfg, Init::Paper, 1, &Device::Cpu).unwrap();
        assert!(weight_change(&a, &a).unwrap().iter().all(|c| c.relative == 0.0));
        // Every weight doubled: |2W - W| / |2W| = 1/2 for each layer.
        let doubled: std::collections::HashMap<String, Tensor> =
            a.named_tensors().into_iter().map(|(k, t)| (k, (t * 2.0).unwrap())).collect();
        let vb = candle_nn::VarBuilder::from_tensors(doubled, DType::F32, &Device::Cpu);
        let b = ZfNet::new(&cfg, vb).unwrap();
        for c in weight_change(&a, &b).unwrap() {
            assert!((c.relative - 0.5).abs() < 1e-5, "{c:?}");
        }
    }
}
