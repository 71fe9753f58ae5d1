//! Live sources of samples. Each one reads the outside world on its own schedule and sends what
//! it read, or why it could not, down a channel; it stops when told to.

pub mod alerts;
pub mod docker;
pub mod file;
pub mod kafka;
pub mod log_source;
pub(crate) mod probe;
pub(crate) mod prometheus;
pub mod remote_write;
