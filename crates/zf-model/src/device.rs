//! Device choice: `cpu`, `cuda[:N]` or `metal[:N]`, whichever candle was built with.

use candle_core::{DType, Device, Result, Tensor};

/// Whether `t` runs through zfnet's fused CPU kernels (an f32 tensor on the CPU): one op per
/// layer with its own backward. Anything else (CUDA, Metal, other dtypes) takes candle's ops.
pub fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Parses a device name. `cuda` and `metal` need the crate's `cuda` / `metal` feature; without
/// it the error says so.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, n)) => {
            (k, n.parse::<usize>().map_err(|_| candle_core::Error::Msg(format!("bad device ordinal in `{name}`")))?)
        }
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Device::new_cuda(ordinal),
        "cuda" => bail!("device `{name}`: this build has no CUDA support (rebuild with `--features cuda`)"),
        "metal" if candle_core::utils::metal_is_available() => Device::new_metal(ordinal),
        "metal" => bail!("device `{name}`: this build has no Metal support (rebuild with `--features metal`)"),
        other => bail!("unknown device `{other}`: expected cpu, cuda[:N] or metal[:N]"),
    }
}

/// The device the workspace's golden tests run on: `ZF_TEST_DEVICE` (`cpu` when unset), so a GPU
/// build checks its own ops against the same PyTorch fixtures:
/// `ZF_TEST_DEVICE=cuda cargo test --features zf-cli/cuda`.
pub fn test_device() -> Result<Device> {
    parse_device(&std::env::var("ZF_TEST_DEVICE").unwrap_or_else(|_| "cpu".into()))
}

/// The threads the CPU kernels use (candle's count: `RAYON_NUM_THREADS`, else every core).
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("unknown device `tpu`"));
        if !candle_core::utils::cuda_is_available() {
            assert!(parse_device("cuda").unwrap_err().to_string().contains("--features cuda"));
        }
    }
}
