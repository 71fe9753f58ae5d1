//! Recording a dataset from Prometheus (`heal record`): range queries turned into a
//! [`Dataset`] in the offline format.

use std::collections::BTreeMap;

use super::client::PrometheusClient;
use super::source::shape;
use crate::dataset::{Dataset, SeriesData};
use crate::error::PromError;
use crate::series::{Labels, METRIC_NAME_LABEL};

/// One query to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    /// The `__name__` its series get in the dataset (the runbook signal that will watch them).
    /// Without one, a series keeps the metric name Prometheus gives it (a plain selector such
    /// as `up` keeps `up`), and a series without one (the result of `rate`, `sum`...) is
    /// named `query_<n>`, `n` the 1-based position of the query.
    pub name: Option<String>,
    /// The PromQL expression.
    pub query: String,
}

/// Records `queries` from `start_ms` to `end_ms` at `step_ms` (ms, the grid of `start_ms`) as a
/// dataset, queries one after the other.
///
/// Raw values are kept as Prometheus computed them, NaN and ±Inf included (a dataset is
/// evidence; the [`crate::Sanitizer`] decides at replay). Unlike the live source, a recording
/// refuses to drop data: a query over the client's series cap fails with
/// [`PromError::TooManySeries`], and two series that end up with the same labels fail with
/// [`PromError::InvalidRequest`] naming both queries.
pub async fn record(
    client: &PrometheusClient,
    queries: &[RecordQuery],
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<Dataset, PromError> {
    let mut all: BTreeMap<Labels, (usize, SeriesData)> = BTreeMap::new();
    for (i, q) in queries.iter().enumerate() {
        let series = client
            .query_range(&q.query, start_ms, end_ms, step_ms)
            .await?;
        if series.len() > client.max_series() {
            return Err(PromError::TooManySeries {
                query: q.query.clone(),
                got: series.len(),
                cap: client.max_series(),
            });
        }
        let fallback = format!("query_{}", i + 1);
        let named = match &q.name {
            Some(name) => {
                let got = series.len();
                let shaped = shape(series, name, usize::MAX);
                if shaped.duplicates > 0 {
                    return Err(PromError::InvalidRequest {
                        reason: format!(
                            "query {:?}: {} of its {got} series differ only in their metric name, which {name:?} replaces",
                            q.query, shaped.duplicates
                        ),
                    });
                }
                shaped.series
            }
            None => series
                .into_iter()
                .map(|(labels, samples)| match labels.name() {
                    Some(_) => (labels, samples),
                    None => (labels.with(METRIC_NAME_LABEL, fallback.clone()), samples),
                })
                .collect(),
        };
        for (labels, samples) in named {
            if let Some((other, _)) = all.get(&labels) {
                return Err(PromError::InvalidRequest {
                    reason: format!(
                        "queries {:?} and {:?} both yield series {labels}; name them apart with NAME=PROMQL",
                        queries[*other].query, q.query
                    ),
                });
            }
            all.insert(labels.clone(), (i, SeriesData { labels, samples }));
        }
    }
    Ok(Dataset {
        series: all.into_values().map(|(_, s)| s).collect(),
        truth: Vec::new(),
    })
}
