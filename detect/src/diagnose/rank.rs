//! Root-cause ranking of the services of one incident.
//!
//! Each series is measured against its own recent baseline
//! ([`evidence`](super::evidence)); a service's score is the weighted sum of
//! `ln(1 + z)` over its series, with weights by the metric's role. With a
//! topology, the latency a service shows is explained away by its most
//! suspicious callee (CIRCA's insight, Li et al., KDD 2022: a node whose
//! deviation its parents in the causal graph account for is not the cause;
//! here a caller's latency is accounted for by a callee that is itself
//! anomalous), so that the callers of a slow database do not outrank it.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::evidence::{measure, Measure, MetricEvidence, Role};
use super::{DiagnoseError, Series, Topology};

/// Weight of each metric role in a service's score: how much a move of a
/// metric of that role says that the service itself is the cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RoleWeights {
    /// CPU and memory of the service.
    pub saturation: f64,
    /// Errors the service returns.
    pub errors: f64,
    /// Latency of the requests the service serves.
    pub server_latency: f64,
    /// Latency of the calls the service makes (its callees' symptom).
    pub client_latency: f64,
    /// Requests served per second.
    pub traffic: f64,
    /// Disk and network I/O.
    pub io: f64,
    /// The host's metrics (divided among the services sharing the host).
    pub host: f64,
    /// Any other metric.
    pub other: f64,
}

impl Default for RoleWeights {
    fn default() -> Self {
        RoleWeights {
            saturation: 1.0,
            errors: 1.0,
            server_latency: 0.5,
            client_latency: 0.25,
            traffic: 0.5,
            io: 0.25,
            host: 0.25,
            other: 0.25,
        }
    }
}

impl RoleWeights {
    /// The weight of `role`.
    pub fn of(&self, role: Role) -> f64 {
        match role {
            Role::Saturation => self.saturation,
            Role::Errors => self.errors,
            Role::ServerLatency => self.server_latency,
            Role::ClientLatency => self.client_latency,
            Role::Traffic => self.traffic,
            Role::Io => self.io,
            Role::Host => self.host,
            Role::Other => self.other,
        }
    }
}

/// Settings of root-cause ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnoseConfig {
    /// Seconds before the onset whose samples form each series' baseline.
    pub baseline_secs: u64,
    /// Seconds from the onset whose samples are scored.
    pub window_secs: u64,
    /// Fewest baseline samples a series needs to be scored.
    pub min_baseline: u32,
    /// Smallest baseline spread, as a fraction of the baseline level: a
    /// move smaller than this fraction of the level is never large.
    pub rel_floor: f64,
    /// Deviation (in spreads) from which a sample counts as moved, which
    /// dates a series' onset.
    pub onset_z: f64,
    /// Score the second most extreme sample of the window (a move that
    /// lasts) rather than the most extreme one.
    pub sustained: bool,
    /// Weight of each metric role.
    pub weights: RoleWeights,
    /// With a topology, let a callee's score explain its callers' latency.
    pub explain_latency: bool,
    /// Divide a host series that several services report identically (pods
    /// on one node) among those services.
    pub share_host: bool,
    /// Evidence items kept per suspect (the largest contributions).
    pub evidence_per_suspect: u32,
    /// Suspects (from the first) that carry their evidence and path; the
    /// others carry their scores only.
    pub detailed_suspects: u32,
    /// Subtract from each service's score its usual score: the median of
    /// its scores at earlier moments of the baseline (every `window_secs`
    /// back from the onset), so that a service that always looks
    /// anomalous (a noisy JVM, a bursty batch job) does not outrank the
    /// one that changed now. The detectors calibrate each series against
    /// its own history for the same reason.
    pub calibrate: bool,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        DiagnoseConfig {
            baseline_secs: 30 * 60,
            window_secs: 4 * 60,
            min_baseline: 2,
            rel_floor: 0.05,
            onset_z: 3.0,
            sustained: true,
            weights: RoleWeights::default(),
            explain_latency: true,
            share_host: true,
            evidence_per_suspect: 8,
            detailed_suspects: 10,
            calibrate: false,
        }
    }
}

impl DiagnoseConfig {
    pub(crate) fn measure(&self) -> Measure {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        Measure {
            baseline_ms: ms(self.baseline_secs),
            window_ms: ms(self.window_secs),
            min_baseline: self.min_baseline as usize,
            rel_floor: self.rel_floor,
            onset_z: self.onset_z,
            sustained: self.sustained,
        }
    }
}

/// One ranked service and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// Service name.
    pub service: String,
    /// Score (higher is more likely the cause): `own + latency - explained`.
    pub score: f64,
    /// Evidence from the service's non-latency metrics.
    pub own: f64,
    /// Evidence from the service's latency metrics.
    pub latency: f64,
    /// Part of `latency` accounted for by an anomalous callee (0 without a
    /// topology).
    pub explained: f64,
    /// The callee that explains the latency, if any.
    pub explained_by: Option<String>,
    /// The service's usual score before the onset (0 unless `calibrate`),
    /// already subtracted from `score`.
    pub usual: f64,
    /// The first moment one of the service's metrics moved (`onset_z`).
    pub onset_ms: Option<i64>,
    /// The metrics that moved, largest contribution first (empty beyond
    /// the first `detailed_suspects`).
    pub evidence: Vec<MetricEvidence>,
    /// Call path from an entry point down to the service (just the service
    /// without a topology; empty beyond the first `detailed_suspects`).
    pub path: Vec<String>,
}

/// The ranking of one incident's services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The onset the ranking was measured at.
    pub onset_ms: i64,
    /// Services, most likely cause first.
    pub suspects: Vec<Suspect>,
}

impl Diagnosis {
    /// Service names, most likely cause first.
    pub fn ranking(&self) -> Vec<&str> {
        self.suspects.iter().map(|s| s.service.as_str()).collect()
    }

    /// The most likely cause, if any service was scored.
    pub fn root_cause(&self) -> Option<&Suspect> {
        self.suspects.first()
    }

    /// Every moved metric of every suspect with its onset, earliest first:
    /// the order in which the incident unfolded.
    pub fn timeline(&self) -> Vec<(i64, &str, &MetricEvidence)> {
        let mut out: Vec<(i64, &str, &MetricEvidence)> = self
            .suspects
            .iter()
            .flat_map(|s| {
                s.evidence
                    .iter()
                    .filter_map(move |e| e.onset_ms.map(|t| (t, s.service.as_str(), e)))
            })
            .collect();
        out.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.2.z.total_cmp(&a.2.z))
                .then(a.1.cmp(b.1))
        });
        out
    }
}

/// Checks that every series' samples are in time order.
pub(crate) fn check_sorted(series: &[Series<'_>]) -> Result<(), DiagnoseError> {
    for s in series {
        if let Some(i) = s.samples.windows(2).position(|w| w[1].0 < w[0].0) {
            return Err(DiagnoseError::Unsorted {
                service: s.service.to_string(),
                metric: s.metric.to_string(),
                index: i + 1,
            });
        }
    }
    Ok(())
}

/// Ranks the services of `series` as causes of an incident that began at
/// `onset_ms` (see the [module docs](super)).
pub fn rank(
    series: &[Series<'_>],
    topology: Option<&Topology>,
    onset_ms: i64,
    cfg: &DiagnoseConfig,
) -> Result<Diagnosis, DiagnoseError> {
    check_sorted(series)?;
    let m = cfg.measure();
    let mut buf = Vec::new();
    let mut measured: Vec<(&str, MetricEvidence)> = Vec::with_capacity(series.len());
    for s in series {
        if let Some(mut e) = measure(s, onset_ms, &m, &mut buf) {
            e.weight = cfg.weights.of(e.role);
            measured.push((s.service, e));
        }
    }
    if cfg.share_host {
        share_host(&mut measured);
    }

    // Per service: own and latency evidence, earliest onset.
    #[derive(Default)]
    struct Acc<'e> {
        own: f64,
        latency: f64,
        onset: Option<i64>,
        evidence: Vec<&'e MetricEvidence>,
    }
    let mut acc: BTreeMap<&str, Acc<'_>> = BTreeMap::new();
    // Every service is a candidate, even one none of whose series could be
    // measured (too little history): it ranks last, with no evidence.
    for s in series {
        acc.entry(s.service).or_default();
    }
    for (svc, e) in &measured {
        let a = acc.entry(svc).or_default();
        let c = e.contribution();
        if e.role.is_latency() {
            a.latency += c;
        } else {
            a.own += c;
        }
        if let Some(t) = e.onset_ms {
            a.onset = Some(a.onset.map_or(t, |o: i64| o.min(t)));
        }
        a.evidence.push(e);
    }

    // Topology: a callee's score explains its callers' latency. Callees are
    // scored first, so a chain web -> api -> db passes db's score up.
    let mut score: HashMap<&str, f64> = acc.iter().map(|(k, a)| (*k, a.own + a.latency)).collect();
    let mut explained: HashMap<&str, (f64, String)> = HashMap::new();
    if let Some(t) = topology.filter(|t| cfg.explain_latency && !t.is_empty()) {
        for svc in t.callees_first() {
            let Some(a) = acc.get(svc) else { continue };
            let best = t
                .callees(svc)
                .filter_map(|c| score.get(c).map(|&v| (c, v)))
                .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(x.0)));
            if let Some((callee, v)) = best {
                let ex = a.latency.min(v.max(0.0));
                if ex > 0.0 {
                    score.insert(svc, a.own + a.latency - ex);
                    explained.insert(svc, (ex, callee.to_string()));
                }
            }
        }
    }

    // The service's usual score at earlier moments (see `calibrate`).
    let mut usual: HashMap<&str, f64> = HashMap::new();
    if cfg.calibrate && m.window_ms > 0 {
        let mut past: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut at = onset_ms - m.window_ms;
        while at > onset_ms - m.baseline_ms {
            let mut sc: HashMap<&str, f64> = HashMap::new();
            let mm = Measure {
                window_ms: m.window_ms,
                ..m
            };
            for s in series {
                if let Some(e) = measure(s, at, &mm, &mut buf) {
                    *sc.entry(s.service).or_default() += cfg.weights.of(e.role) * e.z.ln_1p();
                }
            }
            for (k, v) in sc {
                past.entry(k).or_default().push(v);
            }
            at -= m.window_ms;
        }
        for (k, mut v) in past {
            if v.len() >= 2 {
                usual.insert(k, super::evidence::median(&mut v));
            }
        }
        for (k, v) in score.iter_mut() {
            *v -= usual.get(k).copied().unwrap_or(0.0);
        }
    }

    let mut suspects: Vec<Suspect> = acc
        .iter()
        .map(|(svc, a)| {
            let (ex, by) = explained
                .get(svc)
                .map_or((0.0, None), |(v, c)| (*v, Some(c.clone())));
            Suspect {
                service: svc.to_string(),
                score: score[svc],
                own: a.own,
                latency: a.latency,
                explained: ex,
                explained_by: by,
                usual: usual.get(svc).copied().unwrap_or(0.0),
                onset_ms: a.onset,
                evidence: Vec::new(),
                path: Vec::new(),
            }
        })
        .collect();
    suspects.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(
                a.onset_ms
                    .unwrap_or(i64::MAX)
                    .cmp(&b.onset_ms.unwrap_or(i64::MAX)),
            )
            .then(a.service.cmp(&b.service))
    });
    // Evidence and path for the leading suspects only: what a report shows,
    // and what keeps a ranking of a thousand services cheap.
    let keep = cfg.evidence_per_suspect as usize;
    let dist = topology.map(Topology::entry_distances);
    for s in suspects.iter_mut().take(cfg.detailed_suspects as usize) {
        let a = &acc[s.service.as_str()];
        let mut ev: Vec<&MetricEvidence> = a
            .evidence
            .iter()
            .copied()
            .filter(|e| e.z > 0.0 && e.weight > 0.0)
            .collect();
        ev.sort_by(|x, y| {
            y.contribution()
                .total_cmp(&x.contribution())
                .then(x.metric.cmp(&y.metric))
        });
        s.evidence = ev.into_iter().take(keep).cloned().collect();
        s.path = match (topology, &dist) {
            (Some(t), Some(d)) => {
                t.path_with(&s.service, d, |x| score.get(x).copied().unwrap_or(0.0))
            }
            _ => vec![s.service.clone()],
        };
    }
    Ok(Diagnosis { onset_ms, suspects })
}

/// Divides each host series among the services that report it identically
/// (the pods of one node see the same node metrics): evidence that cannot
/// tell those services apart counts once, shared.
fn share_host(measured: &mut [(&str, MetricEvidence)]) {
    let key = |e: &MetricEvidence| {
        (
            e.metric.clone(),
            e.baseline.to_bits(),
            e.spread.to_bits(),
            e.value.to_bits(),
        )
    };
    let mut count: HashMap<(String, u64, u64, u64), usize> = HashMap::new();
    for (_, e) in measured.iter().filter(|(_, e)| e.role == Role::Host) {
        *count.entry(key(e)).or_default() += 1;
    }
    for (_, e) in measured.iter_mut().filter(|(_, e)| e.role == Role::Host) {
        let n = count.get(&key(e)).copied().unwrap_or(1).max(1);
        e.weight /= n as f64;
    }
}
