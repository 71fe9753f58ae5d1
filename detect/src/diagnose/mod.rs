//! Cross-service diagnosis: which anomalies form one incident, when it
//! began, and which service is its root cause (issue 13).
//!
//! Pure like the rest of the crate: no I/O, no clock; every time is a
//! parameter, so `heal watch`, `heal replay` and `heal diagnose` run the
//! same code.
//!
//! # Entry points
//! - [`rank`]: rank the services of one incident given their series, an
//!   optional [`Topology`] and the incident's onset. This is what
//!   `heal diagnose` / `heal bench rca` call per case and what the engine
//!   calls when an incident group opens or grows.
//! - [`find_onsets`]: the onsets of the changes in a stretch of series,
//!   for a case replayed without a known onset (`--onset detected`).
//! - [`group`]: which anomalies (excursion spans of services) belong to
//!   one incident; its [`IncidentGroup::onset_ms`] is the onset to rank at.
//!
//! # How the ranking works
//! See [`rank`](rank::rank)'s module: per series, a one-sided robust
//! z-score against the series' own baseline just before the onset (BARO's
//! statistic, made one-sided and sustained); per service, a sum of
//! `ln(1 + z)` weighted by what the metric says about the service itself
//! ([`Role`]): its own saturation counts fully, its callers' latency little;
//! with a topology, a caller's latency is explained away by an anomalous
//! callee (CIRCA's descendant adjustment turned around). Every suspect
//! carries its evidence: which metrics moved, in which direction, by how
//! much against which baseline, when each began, and the call path.
//!
//! # Cost
//! `rank` sorts each series' baseline once: for 1,000 series of 30
//! baseline samples about 30,000 comparisons and one allocation per moved
//! metric kept as evidence (see `benches/diagnose.rs`).

mod evidence;
mod group;
mod onset;
mod rank;
mod topology;

pub use evidence::{MetricEvidence, Role};
pub use group::{group, Anomaly, GroupConfig, IncidentGroup};
pub use onset::{find_onsets, surprise, Onset, OnsetConfig};
pub use rank::{rank, DiagnoseConfig, Diagnosis, RoleWeights, Suspect};
pub use topology::Topology;

/// Why a diagnosis could not be made from its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagnoseError {
    /// A topology edge names an empty service.
    #[error("topology edge with an empty service name: {caller:?} -> {callee:?}")]
    EmptyServiceName {
        /// The edge's caller as given.
        caller: String,
        /// The edge's callee as given.
        callee: String,
    },
    /// A series' samples are not in time order.
    #[error(
        "series {metric} of service {service}: sample {index} is earlier than the one before it"
    )]
    Unsorted {
        /// Service of the series.
        service: String,
        /// Metric of the series.
        metric: String,
        /// Index of the first sample out of order.
        index: usize,
    },
}

/// One series of one service: its samples `(ms, value)` in time order.
/// Non-finite values are skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series<'a> {
    /// Service (the candidate root cause) the series belongs to.
    pub service: &'a str,
    /// Metric name.
    pub metric: &'a str,
    /// What the metric says about the service ([`Role::of_metric`] unless
    /// set with [`Series::with_role`]).
    pub role: Role,
    /// Samples in time order.
    pub samples: &'a [(i64, f64)],
}

impl<'a> Series<'a> {
    /// A series whose role follows from its metric name.
    pub fn new(service: &'a str, metric: &'a str, samples: &'a [(i64, f64)]) -> Self {
        Series {
            service,
            metric,
            role: Role::of_metric(metric),
            samples,
        }
    }

    /// The same series with the role given (a runbook that says what its
    /// signal is).
    pub fn with_role(self, role: Role) -> Self {
        Series { role, ..self }
    }
}

#[cfg(test)]
mod tests;
