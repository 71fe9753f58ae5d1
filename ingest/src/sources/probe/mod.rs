//! heal's own blackbox-style HTTP probe as a live source: `target` turns a target series'
//! labels into a checked URL, `source` probes every target once per aligned slot and sends the
//! result as an [`crate::Evaluation`], 1 for success and 0 for failure, like blackbox_exporter's
//! `probe_success`.
//!
//! Why heal probes itself: a hang seen through Prometheus waits for a scrape, then for heal's
//! next evaluation, so its detection time depends on the phase between the two. A probe heal
//! runs on its own grid sees a hang at most one interval plus the probe timeout after it
//! starts, whatever the scrape phase.

mod source;
mod target;
#[cfg(test)]
mod tests;

pub use source::{
    run_probe_source, run_probe_source_with_clock, ProbeObserver, ProbeOptions, ProbeResult,
    ProbeSignal,
};
pub use target::{is_safe_target_value, UrlPart, UrlTemplate};
