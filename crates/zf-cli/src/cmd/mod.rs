//! One module per `zfnet` command (`analysis.rs`: what the analysis commands share).

pub mod analysis;
pub mod bench;
pub mod convert;
pub mod correspondence;
pub mod data;
pub mod evolution;
pub mod filters;
pub mod forward;
pub mod info;
pub mod init;
pub mod invariance;
pub mod occlusion;
pub mod probe_layers;
pub mod project;
pub mod report;
pub mod serve;
pub mod train;
pub mod visualize;
