//! One module per `zfnet` command.

pub mod forward;
pub mod info;
pub mod init;
