//! `cargo xtask`'s tasks, as a library so that `cargo test` runs them too.
//!
//! - [`tidy`](mod@tidy): the house rules that a machine can check (layering of the crates, module docs).
//! - [`bench`](mod@bench): zfnet against the PyTorch reference, side by side, with ratios.
//!
//! xtask imports no workspace crate and has no dependencies: it builds in seconds and drives
//! the `zfnet` binary through `$CARGO` when it needs the network.

pub mod bench;
pub mod tidy;
