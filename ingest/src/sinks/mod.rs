//! Where heal sends what it computed: sinks, the other way from sources.

pub mod remote_write;
