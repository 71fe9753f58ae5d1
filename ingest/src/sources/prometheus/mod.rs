//! Prometheus as a live source: `config` is what a user writes, `client` the HTTP API client
//! (instant and chunked range queries, retries), `source` the aligned evaluation loop with its
//! back-fill, `record` range queries into a dataset.

mod client;
mod config;
mod record;
pub(crate) mod source;

pub use client::{Attempted, PrometheusClient, MAX_POINTS_PER_SERIES};
pub use config::{Auth, PrometheusConfig, RetryConfig};
pub use record::{record, RecordQuery};
pub use source::{
    run_source, run_source_with_clock, Clock, Evaluation, SignalQuery, SourceEvent, SourceStats,
    SystemClock, Timer,
};
