//! ZFNet (Zeiler & Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014)
//! on candle: the network of the paper's Fig. 3 and its variants — as one spec of a general
//! conv stack that also runs torchvision's AlexNet and VGG.
//!
//! - [`NetSpec`]: a network as an ordered list of named layers (the one place its layer order
//!   is written): [`ZfConfig::spec`] for ZFNet, [`NetSpec::torchvision`] for `alexnet`,
//!   `vgg11`..`vgg19` and their `_bn` variants (names = torchvision's module keys, aliases
//!   `conv5_3`, `fc7`). [`Net`]: a spec with its weights (batch norms folded), loaded from
//!   zfnet's files or torchvision's `.pth`/safetensors as PyTorch wrote them ([`Net::load`]),
//!   and the forward walk with [`LayerTap`]s ([`NetTrace`]: every output and switch).
//! - [`ZfConfig`]: the paper's network ([`ZfConfig::paper`]), the AlexNet-style first layer of
//!   its comparison, any width, class count and input size, LRN on or off; its
//!   [`LayerTable`] gives every layer's shape, parameters and multiply-adds.
//! - [`ZfNet`]: named layers `conv1`..`fc8` (field names = safetensors keys);
//!   [`ZfNet::forward_with`] hands every activation and every pool's [`Switches`] to a [`Tap`];
//!   [`ZfNet::trace`] records them all.
//! - [`PoolGeometry::forward_with_switches`]: 3x3 stride 2 max pooling in ceil mode that
//!   returns its switches, with PyTorch's tie rule and a correct backward pass.
//! - [`Backprop`]: one training pass (forward with dropout, softmax cross-entropy, backward to
//!   every parameter's gradient) on the CPU without an autograd graph, through the fused
//!   kernels into buffers kept between steps; equal to candle's autograd to float rounding.
//! - [`init`]: the paper's initialization, seeded; [`weights`]: safetensors load/save with
//!   checked shapes; [`hub`]: `hf://owner/repo[@rev]/file` through the hub cache;
//!   [`parse_device`]: `cpu`, `cuda`, `metal`.
//!
//! Depends on candle and zf-io (atomic writes). Used by zf-deconv, zf-train, zf-probe
//! and the `zfnet` binary. Tensor code returns `candle_core::Result`; messages say what was
//! expected and what was found.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use zf_model::{init::{init_net, Init}, Point, ZfConfig};
//!
//! let cfg = ZfConfig::tiny().with_input_size(128);
//! let net = init_net(&cfg, Init::He, 0, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 3, 128, 128), candle_core::DType::F32, &Device::Cpu)?;
//! let trace = net.trace(&x)?;
//! assert_eq!(trace.get(Point::Conv1).unwrap().dims(), &[2, 12, 62, 62]);
//! assert_eq!(trace.get(Point::Prob).unwrap().dims(), &[2, 10]);
//! # Ok::<(), candle_core::Error>(())
//! ```

/// `return Err(Msg(..))` without the backtrace that candle's own `bail!` captures when
/// `RUST_BACKTRACE` is set: our messages are for people and say everything themselves. The one
/// `bail!` of the tensor crates (zf-deconv and zf-probe use it too).
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(candle_core::Error::Msg(format!($($arg)*)))
    };
}

pub mod config;
pub mod conv;
pub mod convert;
pub mod device;
pub mod hub;
pub mod init;
mod kernels;
pub mod lrn;
pub mod net;
pub mod network;
pub mod pool;
pub mod pth;
pub mod spec;
pub mod weights;

/// The tensor types of the API (candle's), so that a caller — the `zfnet` binary, say — needs
/// no direct dependency on the tensor library to hold a device, a tensor or an error.
pub use candle_core::{DType, Device, Error, Result, Tensor};
pub use config::{FirstLayer, LayerRow, LayerTable, LrnConfig, Order, PoolGeometry, ZfConfig};
pub use device::{parse_device, test_device};
pub use net::{Backprop, Dropout, NoTap, Point, Tap, Trace, ZfNet};
pub use network::{Keep, LayerTap, Net, NetTrace, NoLayerTap, Stage};
pub use pool::Switches;
pub use spec::{LayerKind, LayerSpec, NetSpec};
pub use weights::WeightsFile;
