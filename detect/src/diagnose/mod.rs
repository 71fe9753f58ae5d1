//! Cross-service diagnosis: which anomalies form one incident, when it
//! began, and which service is its root cause (issue 13).
//!
//! Pure like the rest of the crate: no I/O, no clock; every time is a
//! parameter, so `heal watch`, `heal replay` and `heal diagnose` run the
//! same code.
//!
//! # Entry points
//! - [`diagnose`]: one incident, onset given or found ([`OnsetChoice`]),
//!   then ranked: what `heal diagnose` and `heal bench rca` call per case.
//! - [`rank`]: rank the services of one incident given their series, an
//!   optional [`Topology`] and the incident's onset. This is what
//!   `heal diagnose` / `heal bench rca` call per case and what the engine
//!   calls when an incident group opens or grows.
//! - [`find_onsets`]: the changes in a stretch of series, each with its
//!   onset, dated against the system's own history of surprise (what an
//!   incident timeline shows; [`diagnose`] finds a single incident's onset
//!   differently, see there).
//! - [`group`]: which anomalies (excursion spans of services) belong to
//!   one incident; its [`IncidentGroup::onset_ms`] is the onset to rank at.
//!
//! # How the ranking works
//! See [`rank`](rank::rank)'s module: per series, a robust z-score of the
//! move at the onset from the level just before it, on either side (BARO's
//! statistic, sustained, with a spread robust to earlier incidents in the
//! baseline); each move calibrated against the same metric's moves at
//! earlier moments of the baseline (how rare it is, not how many spreads);
//! per service, a sum of those surprises weighted by what the metric says
//! about the service itself ([`Role`]): its own saturation counts fully,
//! its callers' latency little. With a topology, optionally, a caller's
//! latency is explained away by an anomalous callee and a callee that
//! serves less points at its callers (both off by default: they did not
//! help on the development set). Every suspect carries its evidence: which
//! metrics moved, in which direction, by how much against which level, how
//! rare that is, when each began, and the call path.
//!
//! # Cost
//! `rank` measures each series once at the onset and, for at most 16
//! series per metric, at every earlier moment of its baseline (the
//! calibration): for 1,000 series of 30 baseline samples under a
//! millisecond (see `benches/diagnose.rs`).

mod evidence;
mod group;
mod onset;
mod rank;
mod topology;

pub use evidence::{MetricEvidence, Role};
pub use group::{group, Anomaly, GroupConfig, IncidentGroup};
pub use onset::{find_onsets, surprise, Onset, OnsetConfig};
pub use rank::{rank, DiagnoseConfig, Diagnosis, RoleWeights, Sides, Suspect};
pub use topology::Topology;

/// Where the onset to rank at comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnsetChoice {
    /// Known (a case's fault start, an incident group's onset).
    Given(i64),
    /// Found in `[from_ms, to_ms - min_after_ms]`: the moment at which the
    /// system moved most (see [`diagnose`]). Samples before `from_ms` are
    /// the baselines; an incident is diagnosed while it is young, so the
    /// stretch searched is short (`heal diagnose` searches the last ten
    /// minutes of a case).
    Detect {
        /// Start of the stretch searched.
        from_ms: i64,
        /// End of the data (exclusive).
        to_ms: i64,
        /// Data needed after an onset for it to be ranked.
        min_after_ms: i64,
    },
}

/// Diagnoses one incident: the onset (given or found), then [`rank`].
/// `slis` are the entry point's request SLIs (latency, success rate): they
/// help find the onset and are never evidence against a service. This is
/// the one call of `heal diagnose` and `heal bench rca`.
///
/// A detected onset is the candidate moment (every `onset_cfg.step_secs`,
/// or the series' median spacing, from `from_ms` to `to_ms -
/// min_after_ms`) at which the ranking's total score over every service
/// and the SLIs is largest, the latest on ties: the moment the system
/// departed most from its normal, measured with the statistic that ranks
/// the services (each move calibrated against the same metric's earlier
/// moves) but on the harmful side only and from a longer level
/// ([`OnsetConfig::sides`], [`OnsetConfig::level_samples`]): a system
/// recovering from an earlier incident returns *to* its normal, which is
/// not an onset. heal's per-series detectors calibrate on 100 samples of
/// their own before they score and cannot fire on a case of half an hour;
/// the changes of [`find_onsets`] date a change only once the system-wide
/// surprise stands out from its own history, which a fault that moves a
/// few series does not do (see the research log for both on the
/// development set).
pub fn diagnose(
    series: &[Series<'_>],
    slis: &[Series<'_>],
    topology: Option<&Topology>,
    onset: OnsetChoice,
    cfg: &DiagnoseConfig,
    onset_cfg: &OnsetConfig,
) -> Result<Diagnosis, DiagnoseError> {
    let at = match onset {
        OnsetChoice::Given(t) => t,
        OnsetChoice::Detect {
            from_ms,
            to_ms,
            min_after_ms,
        } => {
            let latest = to_ms.saturating_sub(min_after_ms);
            let mut all = series.to_vec();
            all.extend_from_slice(slis);
            let step = onset::step_ms(&all, onset_cfg);
            let quick = DiagnoseConfig {
                detailed_suspects: 0,
                sides: onset_cfg.sides,
                level_samples: onset_cfg.level_samples,
                ..cfg.clone()
            };
            let mut best: Option<(f64, i64)> = None;
            let mut t = from_ms;
            while t <= latest {
                let total: f64 = rank(&all, topology, t, &quick)?
                    .suspects
                    .iter()
                    .map(|s| s.score)
                    .sum();
                if best.is_none_or(|b| total >= b.0) {
                    best = Some((total, t));
                }
                t = t.saturating_add(step);
            }
            best.map_or(latest, |b| b.1)
        }
    };
    rank(series, topology, at, cfg)
}

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
