//! The detectors. Each one updates with one sample at a time and returns a
//! [`Scored`](crate::Scored); none looks ahead.

pub mod adaptive;
