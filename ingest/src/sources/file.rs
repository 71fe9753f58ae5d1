//! Tailing log files (the `tail` crate, which has no other dependency on
//! heal, so its throughput bench builds without the rest): see [`tail`].

pub use tail::*;
