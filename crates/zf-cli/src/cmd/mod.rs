//! One module per `zfnet` command.

pub mod analysis;
pub mod bench;
pub mod convert;
pub mod data;
pub mod forward;
pub mod info;
pub mod init;
pub mod probes;
pub mod project;
pub mod report;
pub mod train;
pub mod visualize;
