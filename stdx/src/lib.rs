//! Small std-only helpers that every heal crate shares, each the one
//! implementation of its rule:
//!
//! - [`Clock`]: wall time. Event time (a sample's timestamp) is what
//!   detection and the engine use; wall time enters only through a
//!   [`Clock`], for what happens now: commands from the API, executions,
//!   telemetry, a source's schedule.
//! - [`write_atomically`]: a file written through a temporary sibling,
//!   flushed and renamed, so a crash never leaves half a file.
//! - [`Backoff`]: exponential backoff with an optional jitter, for every
//!   retry and restart.
//! - [`text`]: the escape of each output format (terminal, Markdown) for
//!   text from outside, and table padding that takes any width.
//! - [`fnv1a64`]: a stable hash, for ids that are stored or shared.
//! - [`fuzz`]: the seeded generator and mutators of the property tests.
//! - [`url_shape`]: the check that a value substituted into a URL template
//!   stays inside the component (host, port, path segment...) it stands in.
//!
//! (rust-analyzer's `stdx` crate is the model: extensions of std that any
//! crate may take, with no dependency of their own.)

mod backoff;
mod clock;
mod fs;
pub mod fuzz;
mod hash;
pub mod text;
pub mod url_shape;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock};
pub use fs::{write_atomically, write_atomically_with, AtomicWriteError, Staged};
pub use hash::fnv1a64;
