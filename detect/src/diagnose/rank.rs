//! Root-cause ranking of the services of one incident.
//!
//! Each series is measured against its own recent level
//! ([`evidence`](super::evidence)); each move is calibrated against the
//! moves of the same metric at earlier moments (placebo onsets inside the
//! baseline, pooled over the services): its surprise is `-ln` of the share
//! of those earlier moves that were at least as large. A service's score is
//! the weighted sum of its series' surprises, with weights by the metric's
//! role (the calibration sets how much a metric's move says; the role, what
//! it says about this service). Calibrating against placebo moments is the
//! permutation idea behind change-point tests; pooling over services makes
//! a null of a few hundred moves from half an hour of data.
//!
//! With a topology, two terms are available, both off by default (see
//! [`DiagnoseConfig`] and the research log): the latency a service shows is
//! explained away by its most suspicious callee (CIRCA's insight, Li et
//! al., KDD 2022: a node whose deviation its parents in the causal graph
//! account for is not the cause), and a callee whose traffic falls points
//! at its callers (a caller that fails stops calling).

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::evidence::{measure, median, Measure, MetricEvidence, Move, Null, Role, Scratch};
use super::{DiagnoseError, Series, Topology};
use crate::Direction;

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

/// Which side of its level a series' move counts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// Only the side that harms for the metric's role (CPU up, throughput
    /// down; either side for I/O).
    Harmful,
    /// Either side, whichever is rarer: a service that is throttled,
    /// delayed or failing fast often serves *less* (its throughput, bytes
    /// and latency fall) and its memory may jump either way.
    Both,
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
    /// The level a move is measured from is the median of this many
    /// samples just before the onset (0: of the whole baseline). A short
    /// level follows a series that an earlier incident left at a new level
    /// (memory after a restart), so that the return to normal is not read
    /// as a move now.
    pub level_samples: u32,
    /// Measure the baseline's spread on its step-to-step differences
    /// rather than on its values: robust to a level shift inside the
    /// baseline, which inflates the spread of the values.
    pub diff_spread: bool,
    /// Smallest baseline spread, as a fraction of the level: a move
    /// smaller than this fraction of the level is never large.
    pub rel_floor: f64,
    /// Deviation (in spreads) from which a sample counts as moved, which
    /// dates a series' onset.
    pub onset_z: f64,
    /// Score the second most extreme sample of the window (a move that
    /// lasts) rather than the most extreme one.
    pub sustained: bool,
    /// Which side of its level a move counts on.
    pub sides: Sides,
    /// Score each move by how rare it is for its metric (see the module
    /// docs) rather than by `ln(1 + z)`: a metric that wanders (a JVM's
    /// heap, a latency quantile of a few requests) then weighs less than
    /// one that never moves (a Go service's memory), without a weight per
    /// metric.
    pub calibrate: bool,
    /// Fewest earlier moves of a metric needed to calibrate it; with fewer
    /// (a short baseline, a handful of services) its moves are scored by
    /// `ln(1 + z)`: `n` earlier moves cannot tell a move rarer than
    /// `1 / (n + 1)` from a rarer one, so a small null would rank a CPU
    /// at 4 times its level like one barely beyond its noise.
    pub min_null: u32,
    /// Most series of one metric whose earlier moves form its null
    /// (evenly spread over the series given), which bounds the cost of
    /// calibration in a large system.
    pub null_series: u32,
    /// Weight of each metric role.
    pub weights: RoleWeights,
    /// With a topology, let a callee's score (beyond the median service's)
    /// explain its callers' latency. On by default since the callee's whole
    /// score explains (not what is left of it once its own callees
    /// explained it): chosen by `heal bench rca --cv` on either system of
    /// the development set, with `level_samples` 8 and `callee_traffic`
    /// 0.5 (Online Boutique AC@1 0.714 to 0.732, Avg@5 0.825 to 0.864;
    /// Train Ticket, which has no call graph, 0.200 to 0.244 from the
    /// longer level).
    pub explain_latency: bool,
    /// With `explain_latency`, a callee explains only what it has beyond
    /// the median service's score (every service of a whole system carries
    /// some surprise). Off when the services ranked are already known to be
    /// anomalous (a live incident group), where that median is one of
    /// them.
    pub explain_over_median: bool,
    /// With a topology, weight of a callee's fall in traffic (its
    /// throughput, bytes and syscalls served) as evidence against its
    /// callers, divided among them: a caller that fails or stops calling
    /// leaves its callees idle.
    pub callee_traffic: f64,
    /// Divide a host series that several services report identically (pods
    /// on one node) among those services.
    pub share_host: bool,
    /// Evidence items kept per suspect (the largest contributions).
    pub evidence_per_suspect: u32,
    /// Suspects (from the first) that carry their evidence and path; the
    /// others carry their scores only.
    pub detailed_suspects: u32,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        DiagnoseConfig {
            baseline_secs: 30 * 60,
            window_secs: 4 * 60,
            min_baseline: 2,
            level_samples: 8,
            diff_spread: true,
            rel_floor: 0.05,
            onset_z: 3.0,
            sustained: true,
            sides: Sides::Both,
            calibrate: true,
            min_null: 100,
            null_series: 16,
            weights: RoleWeights::default(),
            explain_latency: true,
            explain_over_median: true,
            callee_traffic: 0.5,
            share_host: true,
            evidence_per_suspect: 8,
            detailed_suspects: 10,
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
            level_samples: self.level_samples as usize,
            diff_spread: self.diff_spread,
            placebo: self.calibrate,
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

/// One measured series, scored on one side.
struct Scored {
    /// Index into the series given.
    series: usize,
    mv: Move,
    above: bool,
    z: f64,
    surprise: f64,
    /// Surprise of the fall (for the callee-traffic evidence).
    down_surprise: f64,
    weight: f64,
}

impl Scored {
    fn contribution(&self) -> f64 {
        self.weight * self.surprise
    }

    fn evidence(&self, s: &Series<'_>) -> MetricEvidence {
        let (value, onset) = if self.above {
            (self.mv.up_value, self.mv.up_onset)
        } else {
            (self.mv.down_value, self.mv.down_onset)
        };
        MetricEvidence {
            metric: s.metric.to_string(),
            role: s.role,
            harmful: s.role.harmful(s.metric),
            above: self.above,
            baseline: self.mv.level,
            spread: self.mv.spread,
            value,
            z: self.z,
            surprise: self.surprise,
            onset_ms: onset,
            weight: self.weight,
        }
    }
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
    let mut scratch = Scratch::default();
    // Each series' metric as an index (one hash lookup per series).
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut slot: Vec<usize> = Vec::with_capacity(series.len());
    let mut count: Vec<usize> = Vec::new();
    for s in series {
        let next = index.len();
        let i = *index.entry(s.metric).or_insert(next);
        if i == count.len() {
            count.push(0);
        }
        count[i] += 1;
        slot.push(i);
    }
    // The null of a metric comes from at most `null_series` of its series,
    // evenly spread: enough earlier moves to resolve a rare one, at a cost
    // that does not grow with the size of the system.
    let cap = (cfg.null_series as usize).max(1);
    let mut seen = vec![0usize; count.len()];
    let mut pooled: Vec<Vec<(f64, f64)>> = vec![Vec::new(); count.len()];
    let mut moves: Vec<(usize, Move)> = Vec::with_capacity(series.len());
    for (k, s) in series.iter().enumerate() {
        let i = slot[k];
        let take = cfg.calibrate && seen[i] % count[i].div_ceil(cap) == 0;
        seen[i] += 1;
        let null = if take { Some(&mut pooled[i]) } else { None };
        if let Some(mv) = measure(s, onset_ms, &m, &mut scratch, null) {
            moves.push((k, mv));
        }
    }
    let nulls: Vec<Option<Null>> = pooled
        .iter()
        .map(|v| (v.len() >= cfg.min_null as usize).then(|| Null::new(v)))
        .collect();
    let mut scored: Vec<Scored> = moves
        .into_iter()
        .map(|(k, mv)| {
            let s = &series[k];
            let (su, sd) = match &nulls[slot[k]] {
                Some(n) => (n.surprise(mv.up, true), n.surprise(mv.down, false)),
                None => (mv.up.ln_1p(), mv.down.ln_1p()),
            };
            let harmful = s.role.harmful(s.metric);
            let up_ok = cfg.sides == Sides::Both || harmful != Direction::Down;
            let down_ok = cfg.sides == Sides::Both || harmful != Direction::Up;
            let above = up_ok && (!down_ok || su >= sd);
            let (z, surprise) = if above { (mv.up, su) } else { (mv.down, sd) };
            Scored {
                series: k,
                mv,
                above,
                z,
                surprise,
                down_surprise: sd,
                weight: cfg.weights.of(s.role),
            }
        })
        .collect();
    if cfg.share_host {
        share_host(series, &mut scored);
    }

    // Per service (by index, in order of first appearance): own and latency
    // evidence, earliest onset. Every service is a candidate, even one none
    // of whose series could be measured (too little history): it ranks
    // last, with no evidence.
    #[derive(Default)]
    struct Acc {
        own: f64,
        latency: f64,
        onset: Option<i64>,
        members: Vec<usize>,
    }
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut owner: Vec<usize> = Vec::with_capacity(series.len());
    for s in series {
        let next = names.len();
        let i = *at.entry(s.service).or_insert(next);
        if i == next {
            names.push(s.service);
        }
        owner.push(i);
    }
    let mut acc: Vec<Acc> = (0..names.len()).map(|_| Acc::default()).collect();
    for (i, e) in scored.iter().enumerate() {
        let a = &mut acc[owner[e.series]];
        let c = e.contribution();
        if series[e.series].role.is_latency() {
            a.latency += c;
        } else {
            a.own += c;
        }
        let onset = if e.above {
            e.mv.up_onset
        } else {
            e.mv.down_onset
        };
        if let Some(t) = onset.filter(|_| c > 0.0) {
            a.onset = Some(a.onset.map_or(t, |o: i64| o.min(t)));
        }
        a.members.push(i);
    }

    // Topology: a callee's anomaly explains its callers' latency. A
    // caller's latency includes its callees' own, so in a chain web -> api
    // -> db the api's slowness explains web's even once db's explained the
    // api's: the callee's whole score explains, not what is left of it.
    let raw: Vec<f64> = acc.iter().map(|a| a.own + a.latency).collect();
    let mut score = raw.clone();
    let mut explained: Vec<Option<(f64, usize)>> = vec![None; names.len()];
    if let Some(t) = topology.filter(|t| cfg.explain_latency && !t.is_empty()) {
        // A callee explains only what it has beyond the typical service's
        // score: every service carries some surprise (many series, each a
        // little unusual), and that common level explains nothing.
        let mut all = raw.clone();
        let floor = if all.is_empty() || !cfg.explain_over_median {
            0.0
        } else {
            median(&mut all)
        };
        for svc in t.callees_first() {
            let Some(&i) = at.get(svc) else { continue };
            let best = t
                .callees(svc)
                .filter_map(|c| at.get(c).map(|&j| (c, j, raw[j])))
                .max_by(|x, y| x.2.total_cmp(&y.2).then(y.0.cmp(x.0)));
            if let Some((_, j, v)) = best {
                let ex = acc[i].latency.min((v - floor).max(0.0));
                if ex > 0.0 {
                    score[i] = acc[i].own + acc[i].latency - ex;
                    explained[i] = Some((ex, j));
                }
            }
        }
    }

    // Topology: a callee serving less points at its callers.
    if let Some(t) = topology.filter(|t| cfg.callee_traffic > 0.0 && !t.is_empty()) {
        let drop: Vec<f64> = acc
            .iter()
            .map(|a| {
                let (sum, n) = a
                    .members
                    .iter()
                    .map(|&i| &scored[i])
                    .filter(|e| matches!(series[e.series].role, Role::Traffic | Role::Io))
                    .fold((0.0, 0usize), |(s, n), e| (s + e.down_surprise, n + 1));
                if n == 0 {
                    0.0
                } else {
                    sum / n as f64
                }
            })
            .collect();
        for (i, svc) in names.iter().enumerate() {
            let mut add = 0.0;
            for callee in t.callees(svc) {
                if let Some(&j) = at.get(callee) {
                    add += drop[j] / t.callers(callee).count().max(1) as f64;
                }
            }
            score[i] += cfg.callee_traffic * add;
        }
    }

    // Rank indexes, then build the suspects.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        score[b]
            .total_cmp(&score[a])
            .then(
                acc[a]
                    .onset
                    .unwrap_or(i64::MAX)
                    .cmp(&acc[b].onset.unwrap_or(i64::MAX)),
            )
            .then(names[a].cmp(names[b]))
    });
    // Evidence and path for the leading suspects only: what a report shows,
    // and what keeps a ranking of a thousand services cheap.
    let keep = cfg.evidence_per_suspect as usize;
    let detailed = cfg.detailed_suspects as usize;
    let dist = topology.map(Topology::entry_distances);
    let suspects = order
        .iter()
        .enumerate()
        .map(|(r, &i)| {
            let a = &acc[i];
            let mut s = Suspect {
                service: names[i].to_string(),
                score: score[i],
                own: a.own,
                latency: a.latency,
                explained: explained[i].map_or(0.0, |e| e.0),
                explained_by: explained[i].map(|e| names[e.1].to_string()),
                onset_ms: a.onset,
                evidence: Vec::new(),
                path: Vec::new(),
            };
            if r < detailed {
                let mut ev: Vec<&Scored> = a
                    .members
                    .iter()
                    .map(|&k| &scored[k])
                    .filter(|e| e.contribution() > 0.0)
                    .collect();
                ev.sort_by(|x, y| {
                    y.contribution()
                        .total_cmp(&x.contribution())
                        .then(series[x.series].metric.cmp(series[y.series].metric))
                });
                s.evidence = ev
                    .into_iter()
                    .take(keep)
                    .map(|e| e.evidence(&series[e.series]))
                    .collect();
                s.path = match (topology, &dist) {
                    (Some(t), Some(d)) => {
                        t.path_with(&s.service, d, |x| at.get(x).map_or(0.0, |&j| score[j]))
                    }
                    _ => vec![s.service.clone()],
                };
            }
            s
        })
        .collect();
    Ok(Diagnosis { onset_ms, suspects })
}

/// Divides each host series among the services that report it identically
/// (the pods of one node see the same node metrics): evidence that cannot
/// tell those services apart counts once, shared.
fn share_host(series: &[Series<'_>], scored: &mut [Scored]) {
    type Key<'a> = (&'a str, u64, u64, u64, u64);
    let key = |e: &Scored| -> Key<'_> {
        (
            series[e.series].metric,
            e.mv.level.to_bits(),
            e.mv.spread.to_bits(),
            e.mv.up.to_bits(),
            e.mv.down.to_bits(),
        )
    };
    let is_host = |e: &Scored| series[e.series].role == Role::Host;
    let mut count: HashMap<Key<'_>, usize> = HashMap::new();
    for e in scored.iter().filter(|e| is_host(e)) {
        *count.entry(key(e)).or_default() += 1;
    }
    for e in scored.iter_mut().filter(|e| is_host(e)) {
        let n = count.get(&key(e)).copied().unwrap_or(1).max(1);
        e.weight /= n as f64;
    }
}
