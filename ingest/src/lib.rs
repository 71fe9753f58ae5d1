//! `ingest`: heal's data model, sample policy, rolling windows and dataset files.
//!
//! Everything downstream (detectors, scoring, the CLI) speaks the types defined here: a series is
//! a [`Labels`] set (the metric name is the label `__name__`), identified compactly by a
//! [`SeriesId`], carrying [`Sample`]s with millisecond UTC timestamps.
//!
//! ```
//! use ingest::{Admit, Labels, Sanitizer, Window, Sample};
//!
//! let labels: Labels = r#"http_request_rate{service="checkout"}"#.parse()?;
//! assert_eq!(labels.name(), Some("http_request_rate"));
//!
//! // Raw samples go through the series' sanitizer, accepted ones into its window.
//! let mut sanitizer = Sanitizer::with_step(60_000);
//! let mut window = Window::new(60, 3_600_000);
//! for (ts_ms, value) in [(0, 1.0), (60_000, f64::NAN), (60_000, 2.0), (0, 3.0)] {
//!     if let Admit::Accept { sample, .. } = sanitizer.admit(ts_ms, value) {
//!         window.push(sample);
//!     }
//! }
//! assert_eq!(window.newest(), Some(Sample::new(60_000, 2.0)));
//! assert_eq!(sanitizer.drop_counts().total(), 2); // the NaN and the late sample
//!
//! // A deterministic synthetic dataset with ground truth, as heal's test bed.
//! let dataset = ingest::synth(42);
//! assert_eq!(dataset.series.len(), 16);
//! assert_eq!(dataset.truth.len(), 4);
//! # Ok::<(), ingest::Error>(())
//! ```
//!
//! # Layout
//!
//! - `series`: [`Labels`], [`SeriesId`], [`Sample`]: the data model.
//! - `policy`: [`Sanitizer`], the written-down policy for NaN, ±Inf, stale markers, duplicates,
//!   out-of-order samples and gaps.
//! - `window`: [`Window`], a ring buffer bounded by count and by age.
//! - `dataset/`: [`Dataset`] files (Parquet in long form plus a ground-truth sidecar), CSV import,
//!   [`DatasetInfo`] summaries.
//! - `nab`: a fast reader for the Numenta Anomaly Benchmark corpus ([`NabCorpus`]).
//! - `synth`: [`synth`], the synthetic scenario with four injected faults.
//! - `sources/prometheus/`: the live source: [`PrometheusConfig`], [`PrometheusClient`]
//!   (instant and chunked range queries with retries), [`run_source`] (aligned evaluations
//!   with back-fill, sent as [`SourceEvent`]s), [`record`] (range queries into a [`Dataset`]).
//! - `sources/probe/`: heal's own HTTP probe, blackbox-style: [`run_probe_source`] requests
//!   each target of a [`ProbeSignal`] once per slot of the same grid and sends 1 (a 2xx in
//!   time) or 0 as an evaluation, so a hang is seen without waiting for a scrape.
//! - `time`: timestamp parsing shared by the readers (crate-private).
//! - `error`: [`Error`], the crate's error type, and [`PromError`], why a Prometheus request
//!   failed (carried inside events, so it stands on its own).

mod dataset;
mod error;
mod nab;
mod policy;
#[cfg(test)]
mod properties;
mod series;
pub mod sinks;
mod sources;
mod synth;
mod time;
mod window;

pub use dataset::{
    import_long_csv, import_nab_csv, nab_key, truth_path, Dataset, DatasetInfo, LogDataset,
    LogLine, LogStream, NabTruth, SeriesData, SeriesInfo, TruthWindow,
};
pub use error::{Error, PromError, Result};
pub use nab::{
    read_nab_csv, read_nab_windows, NabCorpus, NabEntry, NabFile, NabRow, NabWindows, NAB_HEADER,
};
pub use policy::{
    is_stale_marker, Admit, DropCounts, DropReason, Sanitizer, SanitizerConfig, STALE_MARKER_BITS,
};
pub use series::{Labels, Sample, SeriesId, METRIC_NAME_LABEL};
/// Docker Engine as a source (discovery, events as per-target signals).
pub use sources::alerts;
pub use sources::docker;
pub use sources::file;
pub use sources::kafka;
pub use sources::log_source;
pub use sources::probe::{
    is_safe_target_value, run_probe_source, run_probe_source_with_clock, ProbeObserver,
    ProbeOptions, ProbeResult, ProbeSignal, UrlPart, UrlTemplate,
};
pub use sources::prometheus::{
    record, run_source, run_source_with_clock, Attempted, Auth, Clock, Evaluation,
    PrometheusClient, PrometheusConfig, RecordQuery, RetryConfig, SignalQuery, SourceEvent,
    SourceStats, SystemClock, Timer, MAX_POINTS_PER_SERIES,
};
pub use sources::remote_write;
pub use synth::{synth, SYNTH_SERVICES, SYNTH_SIGNALS, SYNTH_START_MS, SYNTH_STEPS, SYNTH_STEP_MS};
pub use window::Window;
