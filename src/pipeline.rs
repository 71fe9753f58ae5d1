//! The decision loop that replay and live watching share: one sample of one
//! series in, what the engine did out.
//!
//! Both paths feed samples in event-time order through the same three steps
//! per series: the sample policy (`ingest::Sanitizer`), the series' detector
//! (`detect`), and the rule engine (`remediate::Engine`). Nothing here reads
//! the clock: the sample's timestamp is the time.
//!
//! Signals with `peer:` also compare the series of one service with each
//! other at every timestamp they share: [`Pipeline::push_slot`] takes a
//! timestamp's samples together, runs each service's `PeerGroup` on them,
//! and hands each series' detector its peer verdict as extra evidence
//! (`Detector::update_with`). [`Pipeline::push`], one sample alone, has no
//! siblings to compare with; neither has a back-fill ([`Pipeline::warm`]),
//! which warms the series' own detectors only.

use std::collections::{BTreeMap, HashMap, VecDeque};

use detect::{Detector, DetectorConfig, PeerGroup, PeerScore, Scored};
use ingest::log_source::LogExamples;
use ingest::{Admit, DropReason, Labels, Sample, Sanitizer};
use remediate::engine::EngineEvent;
use remediate::engine::Outcome;
use remediate::report::{Evidence, EvidencePoint, EvidenceRecorder, EvidenceRing, TemplateMove};
use remediate::{Engine, EngineOptions, Incident, Observation, RunbookSet};

/// A registered series, as returned by [`Pipeline::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesHandle(usize);

#[derive(Debug)]
struct SeriesState {
    signal: String,
    labels: BTreeMap<String, String>,
    scorer: SeriesScorer,
    /// Evidence: the series' recent samples with their bands (1 KiB, see
    /// `EvidenceRing`), and the evidence of its open incidents.
    ring: EvidenceRing,
    recording: Vec<(String, EvidenceRecorder)>,
    /// For a signal with `peer:`, the series' place among its siblings.
    peer: Option<PeerSlot>,
}

/// What scoring one series needs: its sample policy, its grace after a gap
/// and its detector. The pipeline keeps one per registered series; a
/// scale-out detect worker (`crate::scale`) keeps one per series of the
/// partitions it owns, and writes it to its changelog (hence serde), so
/// that both score through this one path.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeriesScorer {
    sanitizer: Sanitizer,
    detector: Detector,
    /// Samples left in the grace period after a gap.
    grace_left: u32,
    /// The grace period after a gap: [`GAP_GRACE_SAMPLES`], or none for a
    /// signal read directly from its source (`docker:`), which has no
    /// window to straddle the gap.
    gap_grace: u32,
}

/// One accepted sample, scored.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    /// The detector's verdict.
    pub scored: Scored,
    /// The detector's band before the sample ([`EVIDENCE_BAND_SIGMAS`]).
    pub band: (f64, f64),
    /// In the grace period after a gap: scored (the detector learns) but
    /// not to be acted on.
    pub in_grace: bool,
}

impl SeriesScorer {
    /// A series scored by `detector`; `docker` signals (read directly from
    /// their source) have no grace after a gap.
    pub fn new(detector: Detector, docker: bool) -> Self {
        SeriesScorer {
            sanitizer: Sanitizer::default(),
            detector,
            grace_left: 0,
            gap_grace: if docker { 0 } else { GAP_GRACE_SAMPLES },
        }
    }

    /// A series of `signal` with the runbook's detector settings (no tuned
    /// default, no learned offset: what a detect worker runs).
    pub fn for_signal(signal: &remediate::runbook::Signal) -> Self {
        let cfg = signal.detector.clone().unwrap_or_default();
        SeriesScorer::new(Detector::new(cfg), signal.docker.is_some())
    }

    /// The sample policy of one raw sample; a gap before it starts the
    /// grace period.
    pub fn admit(&mut self, ts_ms: i64, value: f64) -> Result<Sample, DropReason> {
        match self.sanitizer.admit(ts_ms, value) {
            Admit::Accept {
                sample,
                gap_before_ms,
            } => {
                if gap_before_ms.is_some() {
                    self.grace_left = self.gap_grace;
                }
                Ok(sample)
            }
            Admit::Drop(reason) => Err(reason),
        }
    }

    /// Scores one accepted sample, with its peer verdict when it has one.
    pub fn score(&mut self, sample: Sample, peer: Option<PeerScore>) -> Judged {
        let band = self.detector.band(EVIDENCE_BAND_SIGMAS);
        let scored = self.detector.update_with(sample.ts_ms, sample.value, peer);
        let in_grace = self.grace_left > 0;
        if in_grace {
            self.grace_left -= 1;
            if self.grace_left == 0 {
                self.detector.end_excursion();
            }
        }
        Judged {
            scored,
            band,
            in_grace,
        }
    }

    /// The series' detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

/// Where a series sits in the peer comparison of its signal.
#[derive(Debug)]
struct PeerSlot {
    /// Index of its service's group in `Pipeline::peers`.
    group: usize,
    /// Its name in the group: the value of the signal's `instance_label`
    /// (the series' selector when it has none).
    instance: String,
}

/// The peer groups of a pipeline: one `PeerGroup` per (signal, value of the
/// signal's service label) among the series registered for signals with
/// `peer:`. Series without the service label form the group of the empty
/// value. Bounded by the series registered.
#[derive(Debug, Default)]
struct Peers {
    groups: Vec<PeerGroup>,
    index: HashMap<(String, String), usize>,
    /// Registered series in each group; a group left empty by evictions is
    /// dropped from the index and its place reused.
    members: Vec<usize>,
    keys: Vec<(String, String)>,
    free: Vec<usize>,
}

impl Peers {
    /// The group of (signal, service), created if new.
    fn join(&mut self, signal: &str, service: String, cfg: &detect::PeerConfig) -> usize {
        let key = (signal.to_owned(), service);
        if let Some(&g) = self.index.get(&key) {
            return g;
        }
        let g = match self.free.pop() {
            Some(g) => {
                self.groups[g] = PeerGroup::new(cfg.clone());
                self.members[g] = 0;
                self.keys[g] = key.clone();
                g
            }
            None => {
                self.groups.push(PeerGroup::new(cfg.clone()));
                self.members.push(0);
                self.keys.push(key.clone());
                self.groups.len() - 1
            }
        };
        self.index.insert(key, g);
        g
    }

    /// A member of group `g` was evicted.
    fn leave(&mut self, g: usize) {
        self.members[g] -= 1;
        if self.members[g] == 0 {
            self.index.remove(&self.keys[g]);
            self.free.push(g);
        }
    }
}

/// The registered series: a slab, so that an evicted series' place (and
/// handle) is reused rather than the vector growing with churn.
#[derive(Debug, Default)]
struct SeriesSlab {
    slots: Vec<Option<SeriesState>>,
    free: Vec<usize>,
    live: usize,
}

impl SeriesSlab {
    fn insert(&mut self, state: SeriesState) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(state);
                i
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> SeriesState {
        let state = self.slots[i].take().expect("evicting a live series");
        self.live -= 1;
        self.free.push(i);
        state
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut SeriesState> {
        self.slots.iter_mut().flatten()
    }
}

impl std::ops::Index<usize> for SeriesSlab {
    type Output = SeriesState;
    fn index(&self, i: usize) -> &SeriesState {
        self.slots[i].as_ref().expect("a live series handle")
    }
}

impl std::ops::IndexMut<usize> for SeriesSlab {
    fn index_mut(&mut self, i: usize) -> &mut SeriesState {
        self.slots[i].as_mut().expect("a live series handle")
    }
}

/// After a gap in a series (a Prometheus restart, a scrape outage), its
/// first samples are not trusted for this many samples: they update the
/// detector but reach no rule. Rates over a window that straddles the gap
/// are computed from too few points (Prometheus extrapolates them) and dip
/// or jump for about one window; acting on that would be acting on missing
/// data, which heal never does. Ten samples cover a `rate(...[5s])` at a
/// one-second interval with margin, and a `[5m]` window at 30 s. A signal
/// read from the Docker Engine (`docker:`) has none: its values are read
/// directly, and a container's memory missing for a slot while it restarts
/// (or while the engine is slow to answer) must not hide the leak that
/// follows.
pub const GAP_GRACE_SAMPLES: u32 = 10;

/// Width of the normal band kept with each sample for the reports' charts,
/// in detector sigmas: the band an excursion must come back within
/// (`Excursion::in_band` uses the same three spreads).
pub const EVIDENCE_BAND_SIGMAS: f64 = 3.0;

/// Evidence of resolved incidents held until taken
/// ([`Pipeline::take_resolved_evidence`]); past it the oldest is dropped, so
/// that a caller that never takes it (a replay without reports) cannot make
/// memory grow without bound. At most about 50 KB each.
pub const RESOLVED_EVIDENCE_HELD: usize = 256;

/// Counters over everything the pipeline saw.
#[derive(Debug, Clone, Default)]
pub struct PipelineStats {
    /// Samples pushed.
    pub samples: u64,
    /// Samples the sample policy dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Excursions that fired (anomalies), over all series.
    pub anomalies: u64,
    /// Series registered that no signal watches.
    pub unwatched_series: u64,
    /// Excursions forgotten because an action was verified to have
    /// recovered their series (see `Detector::forget_excursion`).
    pub forgotten: u64,
}

/// Sample policy, detectors and rule engine for a set of series.
#[derive(Debug)]
pub struct Pipeline {
    runbooks: RunbookSet,
    series: SeriesSlab,
    /// Registered series per signal.
    live_by_signal: HashMap<String, usize>,
    engine: Engine,
    stats: PipelineStats,
    /// Series of each incident whose evidence is being recorded.
    recording: HashMap<String, usize>,
    /// Evidence of resolved incidents, oldest first, until taken.
    resolved_evidence: VecDeque<(String, Evidence)>,
    /// Tuned settings and learned sensitivity (see [`Learning`]).
    learning: Learning,
    /// Peer groups of the signals with `peer:`.
    peers: Peers,
    /// The last [`LOG_SLOTS_HELD`] slots of each log signal's evidence, for
    /// an incident that opens on one of its series.
    recent_logs: HashMap<String, VecDeque<LogExamples>>,
    /// Cross-service diagnosis, when the runbooks have `diagnosis:`.
    diagnoser: Option<Diagnoser>,
}

/// Groups the open incidents' anomalies across services and ranks each
/// group's services as its root cause ([`detect::diagnose`]), from the
/// samples the series' evidence rings hold; the engine holds back the
/// symptoms' steps ([`remediate::Engine::set_diagnosis`]).
#[derive(Debug)]
struct Diagnoser {
    /// The runbooks' call graph.
    runbook_edges: Vec<(String, String)>,
    /// It, with the edges the queries found.
    topology: Option<detect::diagnose::Topology>,
    group: detect::diagnose::GroupConfig,
    /// What was last diagnosed: the timestamp and the open incidents.
    last: Option<(i64, Vec<remediate::engine::OpenAnomaly>)>,
    /// `diagnosis.group_wait`: a group is ranked anew at each timestamp
    /// while it is younger than this, then its ranking is kept.
    group_wait_ms: i64,
    /// Each current group (by its services) with when it formed and its
    /// latest ranking.
    ranked: HashMap<Vec<String>, (i64, remediate::engine::GroupDiagnosis)>,
    /// Groups whose root cause's incidents all resolved (the cause was
    /// fixed), with when: for `window` after, what is left of such a group
    /// stays its symptoms (they are expected to clear), rather than being
    /// ranked anew among themselves and one of them restarted.
    fixed: Vec<(i64, remediate::engine::GroupDiagnosis)>,
    /// `diagnosis.window`.
    window_ms: i64,
}

/// Suspects an incident's diagnosis keeps.
const SUSPECTS_KEPT: usize = 10;

impl Diagnoser {
    /// The call graph of `a` and `b` (`None` when empty).
    fn graph(a: &[(String, String)], b: &[(String, String)]) -> Option<detect::diagnose::Topology> {
        let mut t = detect::diagnose::Topology::new();
        for (caller, callee) in a.iter().chain(b) {
            // Names were checked (runbook validation, `edges_from`).
            let _ = t.add_edge(caller, callee);
        }
        (!t.is_empty()).then_some(t)
    }

    fn new(cfg: &remediate::runbook::DiagnosisConfig) -> Self {
        let runbook_edges = crate::topology::static_edges(cfg);
        Diagnoser {
            topology: Self::graph(&runbook_edges, &[]),
            runbook_edges,
            group: detect::diagnose::GroupConfig {
                gap_secs: (cfg.window.as_millis_i64() / 1000).max(1) as u64,
            },
            last: None,
            group_wait_ms: cfg.group_wait.as_millis_i64(),
            ranked: HashMap::new(),
            fixed: Vec::new(),
            window_ms: cfg.window.as_millis_i64(),
        }
    }
}

/// Slots of a log signal's evidence an incident's report starts with.
pub const LOG_SLOTS_HELD: usize = 3;

/// Detector settings that come from outside the runbooks: a tuned
/// parameter file (`--params`) for the signals that set no `detector:`,
/// and each signal's learned threshold offset (learning from outcomes,
/// `store::Mark`); plus the performed steps that did not help,
/// which the caller records (and then applies) as marks.
#[derive(Debug, Default)]
struct Learning {
    default_detector: Option<DetectorConfig>,
    offsets: HashMap<String, f64>,
    not_helped: Vec<NotHelped>,
}

/// Most not-helped steps held until taken ([`Pipeline::take_not_helped`]).
pub const NOT_HELPED_HELD: usize = 256;

/// A performed (not dry-run) step whose verification said it did not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotHelped {
    /// The signal of its incident.
    pub signal: String,
    /// The incident.
    pub incident: String,
    /// The 1-based step.
    pub step: usize,
}

/// What one sample led to.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The detector's verdict, when the sample was accepted.
    pub scored: Option<Scored>,
    /// The normal band (`level ± 3 sigma`) the sample was judged against,
    /// when it was accepted: what `--remote-write` sends beside the score.
    pub band: Option<(f64, f64)>,
    /// Why the sample was dropped, when it was.
    pub dropped: Option<DropReason>,
    /// What the engine did because of it.
    pub events: Vec<EngineEvent>,
}

impl Pipeline {
    /// A pipeline for the signals and rules of `runbooks`.
    pub fn new(runbooks: RunbookSet, options: EngineOptions) -> Self {
        let engine = Engine::new(&runbooks, options);
        let diagnoser = runbooks.diagnosis().map(Diagnoser::new);
        Pipeline {
            runbooks,
            series: SeriesSlab::default(),
            live_by_signal: HashMap::new(),
            engine,
            stats: PipelineStats::default(),
            recording: HashMap::new(),
            resolved_evidence: VecDeque::new(),
            learning: Learning::default(),
            peers: Peers::default(),
            recent_logs: HashMap::new(),
            diagnoser,
        }
    }

    /// The call graph's edges found by the runbooks' edge queries: the
    /// diagnosis uses them with the runbooks' own from now on.
    pub fn set_discovered_edges(&mut self, edges: &[(String, String)]) {
        if let Some(d) = self.diagnoser.as_mut() {
            d.topology = Diagnoser::graph(&d.runbook_edges, edges);
            // Groups are formed anew with it.
            d.last = None;
        }
    }

    /// Diagnoses the groups of open incidents anew when the open incidents
    /// changed or time moved on (at most once per timestamp); the engine's
    /// events (`Diagnosed`) are returned.
    fn diagnose(&mut self, ts_ms: i64) -> Vec<EngineEvent> {
        let Some(d) = self.diagnoser.as_mut() else {
            return Vec::new();
        };
        let open = self.engine.open_anomalies();
        if d.last
            .as_ref()
            .is_some_and(|(t, o)| *t >= ts_ms && *o == open)
        {
            return Vec::new();
        }
        let _span = tracing::debug_span!("diagnose", open = open.len()).entered();
        let anomalies: Vec<detect::diagnose::Anomaly<'_>> = open
            .iter()
            .map(|a| detect::diagnose::Anomaly {
                service: &a.service,
                onset_ms: a.onset_ms,
                last_ms: ts_ms.max(a.onset_ms),
            })
            .collect();
        let groups = detect::diagnose::group(&anomalies, d.topology.as_ref(), &d.group);
        let current: Vec<&Vec<String>> = groups
            .iter()
            .filter(|g| g.services.len() >= 2)
            .map(|g| &g.services)
            .collect();
        // A group gone because its root cause's incidents resolved.
        let open_services: Vec<&str> = open.iter().map(|a| a.service.as_str()).collect();
        let gone: Vec<Vec<String>> = d
            .ranked
            .keys()
            .filter(|k| !current.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((_, g)) = d.ranked.remove(&k) {
                let root = g.ranking.first().map(|s| s.service.as_str());
                if root.is_some_and(|r| !open_services.contains(&r)) {
                    d.fixed.push((ts_ms, g));
                }
            }
        }
        let window_ms = d.window_ms;
        d.fixed.retain(|(t, _)| ts_ms - t < window_ms);
        let mut diagnosed = Vec::new();
        for g in &groups {
            // What is left of a fixed group, even one service alone.
            if let Some((_, fixed)) = d
                .fixed
                .iter()
                .find(|(_, f)| g.services.iter().all(|s| f.services.contains(s)))
            {
                diagnosed.push(fixed.clone());
                continue;
            }
            if g.services.len() < 2 {
                continue;
            }
            // A group is ranked while it forms (its first `group_wait`,
            // when the steps of its incidents wait for it), then kept: later
            // the onset rolls out of the series' rings, and a ranking made
            // from less would only be worse.
            if let Some((formed, kept)) = d.ranked.get(&g.services) {
                if ts_ms - formed >= d.group_wait_ms {
                    diagnosed.push(kept.clone());
                    continue;
                }
            }
            // Every series of the group's services, from its ring.
            // (service, metric, samples)
            type Owned = (String, String, Vec<(i64, f64)>);
            let mut owned: Vec<Owned> = Vec::new();
            for state in self.series.slots.iter().flatten() {
                let Some(signal) = self.runbooks.signal(&state.signal) else {
                    continue;
                };
                let Some(service) = state.labels.get(&signal.service_label) else {
                    continue;
                };
                if !g.services.contains(service) {
                    continue;
                }
                let samples = state
                    .ring
                    .to_vec()
                    .into_iter()
                    .map(|p| (p.ts_ms, f64::from(p.value)))
                    .collect();
                owned.push((service.clone(), state.signal.clone(), samples));
            }
            let series: Vec<detect::diagnose::Series<'_>> = owned
                .iter()
                .map(|(s, m, v)| detect::diagnose::Series::new(s, m, v))
                .collect();
            // The rings hold the recent past: all of it is baseline, and
            // the move is measured from the group's onset to now.
            // With a call graph, a caller's latency is explained by a slow
            // callee: a caller's server-side latency includes its callee's.
            let cfg = detect::diagnose::DiagnoseConfig {
                baseline_secs: 24 * 3600,
                window_secs: ((ts_ms - g.onset_ms) / 1000 + 1).max(1) as u64,
                explain_latency: d.topology.is_some(),
                explain_over_median: false,
                ..detect::diagnose::DiagnoseConfig::default()
            };
            match detect::diagnose::rank(&series, d.topology.as_ref(), g.onset_ms, &cfg) {
                // No evidence against anyone: no verdict (nothing is held
                // back on a guess).
                Ok(diagnosis) if diagnosis.suspects.first().is_none_or(|s| s.score <= 0.0) => {
                    d.ranked.remove(&g.services);
                }
                Ok(mut diagnosis) => {
                    diagnosis.suspects.truncate(SUSPECTS_KEPT);
                    let group = remediate::engine::GroupDiagnosis {
                        services: g.services.clone(),
                        onset_ms: g.onset_ms,
                        ranking: diagnosis.suspects,
                    };
                    let formed = d.ranked.get(&g.services).map_or(ts_ms, |(f, _)| *f);
                    d.ranked.insert(g.services.clone(), (formed, group.clone()));
                    diagnosed.push(group);
                }
                Err(e) => tracing::warn!(stage = "diagnose", error = %e, "group not ranked"),
            }
        }
        d.last = Some((ts_ms, open));
        self.engine.set_diagnosis(&diagnosed, ts_ms)
    }

    /// A log signal's evidence for one slot (it comes just before the
    /// slot's evaluation): added to the incidents open on the signal's
    /// series, and held for one that opens in the next few slots.
    pub fn log_examples(&mut self, ex: LogExamples) {
        if self
            .runbooks
            .signal(&ex.signal)
            .is_none_or(|s| s.logs.is_none())
        {
            return;
        }
        for &s in self.recording.values() {
            let state = &mut self.series[s];
            if state.signal == ex.signal {
                for (_, recorder) in &mut state.recording {
                    push_logs(recorder, &ex);
                }
            }
        }
        let held = self.recent_logs.entry(ex.signal.clone()).or_default();
        if held.len() == LOG_SLOTS_HELD {
            held.pop_front();
        }
        held.push_back(ex);
    }

    /// Registers a series. A series is watched by the signal whose name is
    /// its metric name (`__name__`); `None` when no signal watches it.
    pub fn register(&mut self, labels: &Labels) -> Option<SeriesHandle> {
        let signal = labels.name().and_then(|n| self.runbooks.signal(n));
        let Some(signal) = signal else {
            self.stats.unwatched_series += 1;
            return None;
        };
        let peer = signal.peer.as_ref().map(|cfg| {
            let service = labels.get(&signal.service_label).unwrap_or("").to_owned();
            let group = self.peers.join(&signal.name, service, cfg);
            let instance = match labels.get(&signal.instance_label) {
                Some(v) => v.to_owned(),
                None => labels.to_string(),
            };
            PeerSlot { group, instance }
        });
        let state = SeriesState {
            signal: signal.name.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            scorer: SeriesScorer::new(self.learning.detector(signal), signal.docker.is_some()),
            ring: EvidenceRing::new(),
            recording: Vec::new(),
            peer,
        };
        *self.live_by_signal.entry(signal.name.clone()).or_default() += 1;
        if let Some(slot) = &state.peer {
            self.peers.members[slot.group] += 1;
        }
        Some(SeriesHandle(self.series.insert(state)))
    }

    /// How many series of `signal` are registered (and not evicted).
    pub fn live_series(&self, signal: &str) -> usize {
        self.live_by_signal.get(signal).copied().unwrap_or(0)
    }

    /// How many series are registered (and not evicted), all signals.
    pub fn series_count(&self) -> usize {
        self.series.live
    }

    /// Forgets a series that stopped reporting (at event time `ts_ms`): its
    /// sample policy, detector, evidence ring and place among its peers go,
    /// and its handle may be given to a series registered later (the
    /// caller forgets it). Its incidents still open resolve (returned: the
    /// engine's events, for the caller to record), and their evidence is
    /// handed out with the resolved ones ([`Self::take_resolved_evidence`]).
    ///
    /// # Panics
    ///
    /// On a handle already evicted (a broken invariant of the caller).
    pub fn evict(&mut self, series: SeriesHandle, ts_ms: i64) -> Vec<EngineEvent> {
        let state = self.series.remove(series.0);
        // Its open incidents resolve (see `Engine::series_gone`); their
        // evidence is handed out below.
        let events = self.engine.series_gone(&state.signal, &state.labels, ts_ms);
        if let Some(n) = self.live_by_signal.get_mut(&state.signal) {
            *n -= 1;
            if *n == 0 {
                self.live_by_signal.remove(&state.signal);
            }
        }
        if let Some(slot) = &state.peer {
            self.peers.leave(slot.group);
        }
        for (id, recorder) in state.recording {
            self.recording.remove(&id);
            self.keep_resolved_evidence(id, recorder.finish());
        }
        events
    }

    fn keep_resolved_evidence(&mut self, id: String, evidence: Evidence) {
        if self.resolved_evidence.len() == RESOLVED_EVIDENCE_HELD {
            self.resolved_evidence.pop_front();
        }
        self.resolved_evidence.push_back((id, evidence));
    }

    /// Feeds one raw sample of a registered series. No peer comparison: a
    /// sample alone has no siblings (see [`Self::push_slot`]). The binary's
    /// drivers push slots; this stays for callers with one sample (tests,
    /// benches).
    pub fn push(&mut self, series: SeriesHandle, ts_ms: i64, value: f64) -> Pushed {
        match self.admit(series, ts_ms, value) {
            Ok(sample) => self.decide(series, sample, None),
            Err(dropped) => dropped,
        }
    }

    /// Feeds the raw samples that series took at one timestamp, `ts_ms`
    /// (one evaluation slot), and returns what each led to, in order.
    ///
    /// For series of a signal with `peer:`, the samples the sample policy
    /// accepts are first compared with those of the same service in the
    /// batch (its `PeerGroup`), and each goes to its detector with its
    /// verdict ([`detect::Detector::update_with`]); a series alone of its
    /// service in the batch gets none. Everything else is exactly
    /// [`Self::push`] of each sample in order: signals without `peer:`
    /// behave the same whether their samples come one by one or in slots.
    ///
    /// A service's group should get all its instances' samples of a
    /// timestamp in one call: an instance missing from a call loses its
    /// streak (see `PeerGroup::update`).
    pub fn push_slot(&mut self, ts_ms: i64, samples: &[(SeriesHandle, f64)]) -> Vec<Pushed> {
        let admitted: Vec<Result<Sample, Pushed>> = samples
            .iter()
            .map(|&(h, value)| self.admit(h, ts_ms, value))
            .collect();
        let mut verdicts: Vec<Option<PeerScore>> = vec![None; samples.len()];
        let mut by_group: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, (&(h, _), a)) in samples.iter().zip(&admitted).enumerate() {
            if let (Some(slot), Ok(_)) = (&self.series[h.0].peer, a) {
                by_group.entry(slot.group).or_default().push(k);
            }
        }
        for (group, ks) in by_group {
            if ks.len() < 2 {
                // Alone at this timestamp: nothing to compare with, and
                // the group's streaks stay as they are.
                continue;
            }
            let values: Vec<(&str, f64)> = ks
                .iter()
                .filter_map(|&k| {
                    let slot = self.series[samples[k].0 .0].peer.as_ref()?;
                    let sample = admitted[k].as_ref().ok()?;
                    Some((slot.instance.as_str(), sample.value))
                })
                .collect();
            let scores = self.peers.groups[group].update(ts_ms, &values);
            for (&k, score) in ks.iter().zip(scores) {
                verdicts[k] = Some(score);
            }
        }
        let mut pushed: Vec<Pushed> = admitted
            .into_iter()
            .zip(verdicts)
            .zip(samples)
            .map(|((a, peer), &(h, _))| match a {
                Ok(sample) => self.decide(h, sample, peer),
                Err(dropped) => dropped,
            })
            .collect();
        // The slot's diagnosis, reported with its last sample.
        let diagnosed = self.diagnose(ts_ms);
        if let Some(last) = pushed.last_mut() {
            last.events.extend(diagnosed);
        }
        pushed
    }

    /// The sample policy of one sample: the accepted sample, or what its
    /// drop led to.
    fn admit(&mut self, series: SeriesHandle, ts_ms: i64, value: f64) -> Result<Sample, Pushed> {
        self.stats.samples += 1;
        let state = &mut self.series[series.0];
        let sample = match state.scorer.admit(ts_ms, value) {
            Ok(sample) => sample,
            Err(reason) => {
                *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
                return Err(Pushed {
                    dropped: Some(reason),
                    ..Pushed::default()
                });
            }
        };
        Ok(sample)
    }

    /// Detector, evidence and engine for one accepted sample, with its peer
    /// verdict when it has one.
    fn decide(&mut self, series: SeriesHandle, sample: Sample, peer: Option<PeerScore>) -> Pushed {
        let state = &mut self.series[series.0];
        let Judged {
            scored,
            band,
            in_grace,
        } = state.scorer.score(sample, peer);
        let point = EvidencePoint::new(sample.ts_ms, sample.value, band);
        state.ring.push(point);
        for (_, recorder) in &mut state.recording {
            recorder.push(point);
        }
        if in_grace {
            return Pushed {
                scored: Some(scored),
                band: Some(band),
                ..Pushed::default()
            };
        }
        if scored.excursion.is_some_and(|e| e.first) {
            self.stats.anomalies += 1;
        }
        let events = self.engine.observe(&Observation {
            signal: &state.signal,
            labels: &state.labels,
            ts_ms: sample.ts_ms,
            value: sample.value,
            scored,
        });
        // Learning from outcomes: a step verified as having recovered the
        // series proves its excursion was a fault, not a new normal. The
        // detector forgets it, so the same fault tomorrow (or in a minute)
        // scores as high as it did today, and a new fault right after the
        // recovery opens a new incident instead of joining the old one.
        if events.iter().any(|e| {
            matches!(e, EngineEvent::Verified { verification, .. }
                if verification.outcome == Outcome::Recovered)
        }) && state.scorer.detector.forget_excursion()
        {
            self.stats.forgotten += 1;
        }
        self.learning
            .note_not_helped(&self.engine, &state.signal, &events);
        self.record_evidence(series.0, &events);
        Pushed {
            scored: Some(scored),
            band: Some(band),
            dropped: None,
            events,
        }
    }

    /// Feeds one historical sample (a back-fill) to the series' sample
    /// policy and detector only: detection is warm from the first live
    /// sample, and nothing in the past opens an incident or plans an action.
    /// Peers are not compared (a back-fill comes series by series; the peer
    /// detector has no history to warm, only streaks of a few timestamps).
    pub fn warm(&mut self, series: SeriesHandle, ts_ms: i64, value: f64) -> Option<Scored> {
        let state = &mut self.series[series.0];
        match state.scorer.sanitizer.admit(ts_ms, value) {
            Admit::Accept { sample, .. } => {
                // History is context for the first incident's chart too.
                let band = state.scorer.detector.band(EVIDENCE_BAND_SIGMAS);
                let scored = state.scorer.detector.update(sample.ts_ms, sample.value);
                let point = EvidencePoint::new(sample.ts_ms, sample.value, band);
                state.ring.push(point);
                Some(scored)
            }
            Admit::Drop(_) => None,
        }
    }

    /// Starts the evidence of incidents the engine opened on series `at`
    /// (a copy of its ring: the context before the opening, this sample
    /// included) and closes that of incidents it resolved.
    fn record_evidence(&mut self, at: usize, events: &[EngineEvent]) {
        for event in events {
            match event {
                EngineEvent::Opened { incident, .. } => {
                    let state = &mut self.series[at];
                    let mut recorder = EvidenceRecorder::new(&state.ring);
                    for ex in self.recent_logs.get(&state.signal).into_iter().flatten() {
                        push_logs(&mut recorder, ex);
                    }
                    state.recording.push((incident.clone(), recorder));
                    self.recording.insert(incident.clone(), at);
                }
                EngineEvent::Resolved { incident, .. } => {
                    let Some(s) = self.recording.remove(incident) else {
                        continue;
                    };
                    let recording = &mut self.series[s].recording;
                    let Some(k) = recording.iter().position(|(id, _)| id == incident) else {
                        continue;
                    };
                    let (id, recorder) = recording.swap_remove(k);
                    self.keep_resolved_evidence(id, recorder.finish());
                }
                _ => {}
            }
        }
    }

    /// The evidence of an incident: the samples of its series from shortly
    /// before it opened (up to `remediate::report::RING_LEN` of them) to
    /// now, or to its resolution while it is held (see
    /// [`Self::take_resolved_evidence`]). `None` for an incident this
    /// pipeline did not see open, or whose evidence was taken.
    pub fn evidence(&self, incident: &str) -> Option<&Evidence> {
        if let Some(&s) = self.recording.get(incident) {
            return self.series[s]
                .recording
                .iter()
                .find(|(id, _)| id == incident)
                .map(|(_, r)| r.evidence());
        }
        self.resolved_evidence
            .iter()
            .find(|(id, _)| id == incident)
            .map(|(_, e)| e)
    }

    /// Takes the evidence of the incidents resolved since the last call
    /// (at most [`RESOLVED_EVIDENCE_HELD`]), in order of resolution, for an
    /// incident store or a report writer to keep.
    pub fn take_resolved_evidence(&mut self) -> Vec<(String, Evidence)> {
        self.resolved_evidence.drain(..).collect()
    }

    /// Ends the back-fill of a series: an excursion still open from history
    /// is forgotten (see `Detector::end_excursion`).
    pub fn end_warm(&mut self, series: SeriesHandle) {
        self.series[series.0].scorer.detector.end_excursion();
    }

    /// Uses `cfg` (a `heal tune` parameter file) for every signal whose
    /// runbook sets no `detector:`; series registered later get it.
    pub fn set_default_detector(&mut self, cfg: DetectorConfig) {
        self.learning.default_detector = Some(cfg);
    }

    /// Sets the learned threshold offset of `signal`: its detectors fire at
    /// the signal's threshold plus `offset` (the reset threshold moves in
    /// proportion), now for the series registered and later for new ones.
    /// Returns how many series changed.
    pub fn set_threshold_offset(&mut self, signal: &str, offset: f64) -> usize {
        self.learning.offsets.insert(signal.to_owned(), offset);
        let Some(sig) = self.runbooks.signal(signal) else {
            return 0;
        };
        let (t, r) = self.learning.thresholds(sig);
        let mut changed = 0;
        for state in self.series.iter_mut().filter(|s| s.signal == signal) {
            state.scorer.detector.set_threshold(t, r);
            changed += 1;
        }
        changed
    }

    /// Whether a runbook signal has this name.
    pub fn watches_signal(&self, signal: &str) -> bool {
        self.runbooks.signal(signal).is_some()
    }

    /// Takes the performed steps verified as not having helped since the
    /// last call (at most [`NOT_HELPED_HELD`]), for the caller to record as
    /// marks in its incident store and apply. Dry-run steps never appear:
    /// a step that did not run says nothing about the detection.
    pub fn take_not_helped(&mut self) -> Vec<NotHelped> {
        std::mem::take(&mut self.learning.not_helped)
    }

    /// The rule engine, for guard state, silences and approvals.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The rule engine, mutably.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Counters so far.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Every incident, open ones marked unresolved at `end_ms`.
    pub fn finish(&self, end_ms: i64) -> Vec<Incident> {
        self.engine.finish(end_ms)
    }
}

impl Learning {
    /// A new detector for a series of `signal`: the runbook's settings, or
    /// the tuned ones when the runbook sets none, with the learned offset.
    fn detector(&self, signal: &remediate::runbook::Signal) -> Detector {
        let mut detector = Detector::new(self.base(signal));
        if self.offsets.contains_key(&signal.name) {
            let (t, r) = self.thresholds(signal);
            detector.set_threshold(t, r);
        }
        detector
    }

    fn base(&self, signal: &remediate::runbook::Signal) -> DetectorConfig {
        match (&signal.detector, &self.default_detector) {
            (Some(own), _) => own.clone(),
            (None, Some(tuned)) => tuned.clone(),
            (None, None) => DetectorConfig::default(),
        }
    }

    /// Threshold and reset threshold of `signal` with its offset. The
    /// threshold stays at 0.01 or more: a zero threshold would fire on
    /// every sample.
    fn thresholds(&self, signal: &remediate::runbook::Signal) -> (f64, f64) {
        let base = self.base(signal);
        let offset = self.offsets.get(&signal.name).copied().unwrap_or(0.0);
        let t = (base.threshold + offset).clamp(0.01, 1.0);
        let r = if base.threshold > 0.0 {
            base.reset_threshold * t / base.threshold
        } else {
            base.reset_threshold
        };
        (t, r)
    }

    /// Remembers the performed steps among `events` that did not help.
    fn note_not_helped(&mut self, engine: &Engine, signal: &str, events: &[EngineEvent]) {
        for event in events {
            let EngineEvent::Verified {
                incident,
                step,
                verification,
            } = event
            else {
                continue;
            };
            if verification.outcome == Outcome::Recovered {
                continue;
            }
            let performed = engine
                .incident(incident)
                .and_then(|i| i.actions.get(step.wrapping_sub(1)))
                .is_some_and(|a| a.decision.allowed);
            if performed && self.not_helped.len() < NOT_HELPED_HELD {
                self.not_helped.push(NotHelped {
                    signal: signal.to_owned(),
                    incident: incident.clone(),
                    step: *step,
                });
            }
        }
    }
}

/// Adds one slot of a log signal's evidence to an incident's.
fn push_logs(recorder: &mut EvidenceRecorder, ex: &LogExamples) {
    let moves: Vec<TemplateMove> = ex
        .moves
        .iter()
        .map(|m| TemplateMove {
            template_id: m.template_id.clone(),
            template: m.template.clone(),
            before: m.before,
            during: m.now,
        })
        .collect();
    recorder.push_logs(ex.ts_ms, ex.matched, &ex.lines, &moves);
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab::rng::SplitMix64;

    const RUNBOOK: &str = "signals:
  - name: queue_depth
    query: queue_depth
    detector:
      direction: up
      min_spread: 1
rules:
  - name: queue-stuck
    when:
      signal: queue_depth
      direction: up
      for: 0s
    then:
      - action: restart
        target: worker/{{service}}
    guards:
      cooldown: 1s
    verify:
      wait: 3s
      recovered_when: cleared
";

    /// A deterministic wobble of +-1 around 10 (no RNG needed).
    fn normal(i: i64) -> f64 {
        10.0 + ((i * 7919) % 21 - 10) as f64 / 10.0
    }

    #[test]
    fn a_recovered_fault_is_forgotten_and_the_next_one_opens_its_own_incident() {
        let set = RunbookSet::from_sources(&[("rb.yaml".into(), RUNBOOK.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let labels: Labels = "queue_depth{service=\"jobs\",instance=\"jobs-0\"}"
            .parse()
            .unwrap();
        let h = p.register(&labels).unwrap();
        let mut opened = Vec::new();
        let mut recovered = 0;
        // One sample a second: 300 s of normal, then the same 2-second fault
        // three times (gone by the time the 3 s verification looks, as if
        // the restart had fixed it), each 17 s after the previous one
        // ended: well inside the detector's 30-sample hysteresis.
        let faults = [300, 319, 338];
        for i in 0..400i64 {
            let faulty = faults.iter().any(|&f| (f..f + 2).contains(&i));
            let v = if faulty { 60.0 } else { normal(i) };
            for e in p.push(h, i * 1000, v).events {
                match e {
                    EngineEvent::Opened { ts_ms, .. } => opened.push(ts_ms / 1000),
                    EngineEvent::Verified { verification, .. }
                        if verification.outcome == Outcome::Recovered =>
                    {
                        recovered += 1;
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(
            opened,
            vec![300, 319, 338],
            "one incident per fault, each at its onset"
        );
        assert_eq!(recovered, 3);
        assert_eq!(p.stats().forgotten, 3);
        let incidents = p.finish(400_000);
        assert!(incidents.iter().all(|i| i.resolved_ms.is_some()));
    }

    /// A limit crossed a few samples after a gap: a signal read from the
    /// Docker Engine (a container's memory, missing for the slots of a
    /// restart) acts on it at once; a query signal waits out the grace.
    #[test]
    fn a_gap_delays_query_signals_not_docker_signals() {
        let text = "signals:
  - name: mem_query
    query: mem
    detector: {direction: up, limit_above: 100}
  - name: mem_docker
    docker: {metric: memory}
    detector: {direction: up, limit_above: 100}
rules:
  - name: q
    when: {signal: mem_query, direction: up, for: 0s}
    then: [{action: restart, target: worker/x}]
  - name: d
    when: {signal: mem_docker, direction: up, for: 0s}
    then: [{action: restart, target: worker/x}]
";
        let set = RunbookSet::from_sources(&[("rb.yaml".into(), text.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let opened_at = |p: &mut Pipeline, name: &str| {
            let labels: Labels = format!("{name}{{service=\"s\",instance=\"i\"}}")
                .parse()
                .unwrap();
            let h = p.register(&labels).unwrap();
            // 60 samples, a 20-sample gap (a restart), then a leak that
            // crosses the limit on its third sample.
            let values = (0..60)
                .map(|i| (i, 10.0))
                .chain((80..90).map(|i| (i, 10.0 + 50.0 * (i - 80) as f64)));
            for (i, v) in values {
                if p.push(h, i * 1000, v)
                    .events
                    .iter()
                    .any(|e| matches!(e, EngineEvent::Opened { .. }))
                {
                    return Some(i);
                }
            }
            None
        };
        assert_eq!(opened_at(&mut p, "mem_docker"), Some(82));
        let query = opened_at(&mut p, "mem_query");
        assert!(
            query.is_none_or(|i| i >= 80 + GAP_GRACE_SAMPLES as i64),
            "{query:?}"
        );
    }

    #[test]
    fn tuned_settings_and_offsets_reach_the_signal_detectors() {
        // RUNBOOK plus a signal that sets no `detector:`.
        let text = RUNBOOK.replace(
            "signals:\n",
            "signals:\n  - name: latency\n    query: latency\n",
        );
        let set =
            RunbookSet::from_sources(&[("rb.yaml".into(), text)]).unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let tuned = DetectorConfig {
            threshold: 0.3,
            reset_threshold: 0.15,
            ..DetectorConfig::default()
        };
        p.set_default_detector(tuned);
        let lat = p
            .register(&"latency{service=\"a\"}".parse().unwrap())
            .unwrap();
        let queue = p
            .register(&"queue_depth{service=\"a\"}".parse().unwrap())
            .unwrap();
        let cfg = |p: &Pipeline, h: SeriesHandle| p.series[h.0].scorer.detector.config().clone();
        // The tuned file for the signal without `detector:`, the runbook's own otherwise.
        assert_eq!(cfg(&p, lat).threshold, 0.3);
        assert_eq!(cfg(&p, queue).threshold, 0.4);
        assert_eq!(cfg(&p, queue).min_spread, 1.0);
        // An offset moves the threshold and the reset threshold with it.
        assert_eq!(p.set_threshold_offset("latency", 0.06), 1);
        let c = cfg(&p, lat);
        assert!((c.threshold - 0.36).abs() < 1e-12, "{c:?}");
        assert!((c.reset_threshold - 0.18).abs() < 1e-12, "{c:?}");
        assert_eq!(cfg(&p, queue).threshold, 0.4, "other signals keep theirs");
        // A series registered later gets the offset too; never below 0.01.
        let lat2 = p
            .register(&"latency{service=\"b\"}".parse().unwrap())
            .unwrap();
        assert!((cfg(&p, lat2).threshold - 0.36).abs() < 1e-12);
        p.set_threshold_offset("queue_depth", -0.5);
        assert_eq!(cfg(&p, queue).threshold, 0.01);
        assert_eq!(p.set_threshold_offset("nope", 0.1), 0);
    }

    #[test]
    fn a_performed_step_that_did_not_help_is_handed_out_a_dry_run_one_is_not() {
        for dry_run in [false, true] {
            let set = RunbookSet::from_sources(&[("rb.yaml".into(), RUNBOOK.into())])
                .unwrap_or_else(|e| panic!("{e}"));
            let mut p = Pipeline::new(
                set,
                EngineOptions {
                    dry_run,
                    await_actions: false,
                },
            );
            let h = p
                .register(&"queue_depth{service=\"jobs\"}".parse().unwrap())
                .unwrap();
            // A fault that outlasts the 3 s verification wait.
            for i in 0..330i64 {
                let v = if (300..320).contains(&i) {
                    60.0
                } else {
                    normal(i)
                };
                p.push(h, i * 1000, v);
            }
            let got = p.take_not_helped();
            if dry_run {
                assert!(got.is_empty(), "{got:?}");
            } else {
                assert_eq!(
                    got.first(),
                    Some(&NotHelped {
                        signal: "queue_depth".into(),
                        incident: "inc-000001".into(),
                        step: 1,
                    }),
                    "{got:?}"
                );
                assert!(p.take_not_helped().is_empty(), "taken once");
            }
        }
    }

    #[test]
    fn per_series_state_fits_its_budget() {
        // A later issue caps detector and state at 4 KiB per series at
        // 100,000 series. Inline: the detector (about 1.1 KiB), the evidence
        // ring (1,040 bytes), the sample policy; on the heap, the labels.
        let size = std::mem::size_of::<SeriesState>();
        println!("SeriesState: {size} bytes inline");
        assert!(size <= 3 * 1024, "{size} bytes");
    }

    #[test]
    fn an_incident_keeps_the_samples_around_it_with_their_bands() {
        let set = RunbookSet::from_sources(&[("rb.yaml".into(), RUNBOOK.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let labels: Labels = "queue_depth{service=\"jobs\",instance=\"jobs-0\"}"
            .parse()
            .unwrap();
        let h = p.register(&labels).unwrap();
        // Back-filled history is context too.
        for i in 0..100i64 {
            p.warm(h, i * 1000, normal(i));
        }
        p.end_warm(h);
        let mut opened = None;
        let mut resolved_at = None;
        for i in 100..400i64 {
            let v = if (300..302).contains(&i) {
                60.0
            } else {
                normal(i)
            };
            for e in p.push(h, i * 1000, v).events {
                match e {
                    EngineEvent::Opened { incident, .. } => opened = Some(incident),
                    EngineEvent::Resolved { incident, .. } => {
                        assert_eq!(Some(&incident), opened.as_ref());
                        resolved_at = Some(i);
                    }
                    _ => {}
                }
            }
            if i == 301 {
                // While open: the ring's copy, then each further sample.
                let id = opened.as_deref().expect("the fault opened an incident");
                let e = p.evidence(id).expect("evidence of an open incident");
                assert_eq!(e.context, remediate::report::RING_LEN);
                let ts: Vec<i64> = e.points.iter().map(|p| p.ts_ms / 1000).collect();
                let first = 300 - remediate::report::RING_LEN as i64 + 1;
                assert_eq!(ts, (first..=301).collect::<Vec<_>>());
                // Normal samples sit in their band, the fault is far above it.
                let before = &e.points[..e.context - 1];
                assert!(before.iter().all(|p| p.lo <= p.value && p.value <= p.hi));
                let fault = e.points[e.context - 1];
                assert_eq!(fault.value, 60.0);
                assert!(fault.hi < 20.0 && fault.lo > 0.0, "{fault:?}");
            }
        }
        let id = opened.unwrap();
        let resolved_at = resolved_at.expect("the incident resolved");
        let taken = p.take_resolved_evidence();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, id);
        let e = &taken[0].1;
        assert_eq!(e.samples as usize, e.points.len());
        assert_eq!(
            e.points.last().unwrap().ts_ms,
            resolved_at * 1000,
            "appended until the resolution"
        );
        assert!(p.evidence(&id).is_none(), "taken evidence is gone");
        assert!(p.take_resolved_evidence().is_empty());
    }

    #[test]
    fn resolved_evidence_not_taken_is_bounded() {
        let set = RunbookSet::from_sources(&[("rb.yaml".into(), RUNBOOK.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let n = RESOLVED_EVIDENCE_HELD + 4;
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let labels: Labels =
                    format!("queue_depth{{service=\"jobs\",instance=\"jobs-{k}\"}}")
                        .parse()
                        .unwrap();
                p.register(&labels).unwrap()
            })
            .collect();
        let mut resolved = Vec::new();
        for i in 0..350i64 {
            for &h in &handles {
                let v = if (300..302).contains(&i) {
                    60.0
                } else {
                    normal(i)
                };
                for e in p.push(h, i * 1000, v).events {
                    if let EngineEvent::Resolved { incident, .. } = e {
                        resolved.push(incident);
                    }
                }
            }
        }
        assert_eq!(resolved.len(), n, "one incident per series, all resolved");
        let taken = p.take_resolved_evidence();
        assert_eq!(taken.len(), RESOLVED_EVIDENCE_HELD);
        // The oldest were dropped, the newest kept, in order of resolution.
        let ids: Vec<&String> = taken.iter().map(|(id, _)| id).collect();
        let newest: Vec<&String> = resolved[n - RESOLVED_EVIDENCE_HELD..].iter().collect();
        assert_eq!(ids, newest);
    }

    /// A latency signal of a five-instance service, with `peer:` when asked.
    fn peer_runbook(peer: bool) -> RunbookSet {
        let text = format!(
            "signals:
  - name: latency
    query: latency
    detector: {{direction: up}}
{}rules:
  - name: replica-slow
    when: {{signal: latency, direction: up, for: 0s}}
    then:
      - action: restart
        target: api/{{{{instance}}}}
    verify: {{wait: 30s}}
",
            if peer {
                "    peer: {threshold: 3.5, consecutive: 3}\n"
            } else {
                ""
            }
        );
        RunbookSet::from_sources(&[("peer.yaml".into(), text)]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Five replicas of one service whose latency moves together (a shared
    /// component with a spread of 10 per sample) plus a little of their own
    /// (spread 0.5). From sample 400 on, replica `api-2` runs 6 higher: 12
    /// of its own spreads away from its siblings, but little more than half
    /// a spread of its own history, which it has seen plenty of. Returns
    /// every engine event with the series it came from.
    fn drifting_replica(p: &mut Pipeline, batched: bool) -> Vec<(usize, EngineEvent)> {
        let handles: Vec<_> = (0..5)
            .map(|k| {
                let labels: Labels = format!("latency{{service=\"api\",instance=\"api-{k}\"}}")
                    .parse()
                    .unwrap();
                p.register(&labels).unwrap()
            })
            .collect();
        let mut noise = SplitMix64::new(42);
        let mut events = Vec::new();
        for i in 0..600i64 {
            let shared = 100.0 + 10.0 * noise.noise();
            let slot: Vec<(SeriesHandle, f64)> = handles
                .iter()
                .enumerate()
                .map(|(k, &h)| {
                    let apart = if k == 2 && i >= 400 { 6.0 } else { 0.0 };
                    (h, shared + 0.5 * noise.noise() + apart)
                })
                .collect();
            let ts = i * 15_000;
            let pushed = if batched {
                p.push_slot(ts, &slot)
            } else {
                slot.iter().map(|&(h, v)| p.push(h, ts, v)).collect()
            };
            for (k, pushed) in pushed.into_iter().enumerate() {
                events.extend(pushed.events.into_iter().map(|e| (k, e)));
            }
        }
        events
    }

    fn opened(events: &[(usize, EngineEvent)]) -> Vec<(usize, i64)> {
        events
            .iter()
            .filter_map(|(k, e)| match e {
                EngineEvent::Opened { ts_ms, .. } => Some((*k, ts_ms / 15_000)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_replica_apart_from_its_siblings_opens_an_incident_with_peer() {
        let mut p = Pipeline::new(peer_runbook(true), EngineOptions::default());
        let events = drifting_replica(&mut p, true);
        // The third timestamp apart (consecutive: 3), on api-2 only, once.
        assert_eq!(opened(&events), vec![(2, 402)]);
        let incidents = p.finish(600 * 15_000);
        assert_eq!(incidents.len(), 1);
        let inc = &incidents[0];
        assert_eq!(
            inc.series.get("instance").map(String::as_str),
            Some("api-2")
        );
        assert!(inc.above);
        let z = inc.peer_z.expect("the peers fired it");
        assert!(z > 3.5, "{z}");
        // Still apart at the end: the incident stays open, and the replica
        // is not "back" (a `cleared` verification would not call it
        // recovered).
        assert!(inc.resolved_ms.is_none(), "{inc:?}");
        let cause = remediate::report::peer_cause(inc).unwrap();
        assert!(
            cause.starts_with("differs from its siblings (robust z "),
            "{cause}"
        );
    }

    #[test]
    fn without_peer_the_same_replica_opens_nothing() {
        for batched in [false, true] {
            let mut p = Pipeline::new(peer_runbook(false), EngineOptions::default());
            let events = drifting_replica(&mut p, batched);
            assert_eq!(opened(&events), vec![], "batched: {batched}");
            assert_eq!(p.stats().anomalies, 0);
        }
    }

    #[test]
    fn one_sample_at_a_time_gets_no_peer_verdict() {
        // `push` (and a slot with one sample) has no siblings to compare.
        let mut p = Pipeline::new(peer_runbook(true), EngineOptions::default());
        let events = drifting_replica(&mut p, false);
        assert_eq!(opened(&events), vec![]);
    }

    #[test]
    fn signals_without_peer_behave_the_same_in_slots() {
        // A spike on each replica: the detectors fire, and the engine acts,
        // identically whether the samples come one by one or in slots.
        let run = |batched: bool| {
            let mut p = Pipeline::new(peer_runbook(false), EngineOptions::default());
            let handles: Vec<_> = (0..4)
                .map(|k| {
                    p.register(
                        &format!("latency{{service=\"s{}\",instance=\"i{k}\"}}", k % 2)
                            .parse()
                            .unwrap(),
                    )
                    .unwrap()
                })
                .collect();
            let mut noise = SplitMix64::new(7);
            let mut out = Vec::new();
            for i in 0..500i64 {
                let slot: Vec<_> = handles
                    .iter()
                    .enumerate()
                    .map(|(k, &h)| {
                        // One spike per series, after the tail fits have
                        // 100 samples (routine spikes would be learnt as normal).
                        let spike = if i == 300 + 40 * k as i64 { 80.0 } else { 0.0 };
                        (h, 50.0 + noise.noise() + spike)
                    })
                    .collect();
                let pushed = if batched {
                    p.push_slot(i * 1000, &slot)
                } else {
                    slot.iter().map(|&(h, v)| p.push(h, i * 1000, v)).collect()
                };
                for x in pushed {
                    out.push((x.scored, format!("{:?}", x.events)));
                }
            }
            (out, p.finish(500_000))
        };
        let (one, inc_one) = run(false);
        let (slots, inc_slots) = run(true);
        assert_eq!(one, slots);
        assert_eq!(inc_one, inc_slots);
        assert!(
            inc_one.len() >= 4,
            "the spikes opened incidents: {}",
            inc_one.len()
        );
    }

    #[test]
    fn an_evicted_series_frees_its_place_and_hands_out_its_open_evidence() {
        let set = RunbookSet::from_sources(&[("rb.yaml".into(), RUNBOOK.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(set, EngineOptions::default());
        let labels: Labels = "queue_depth{service=\"jobs\"}".parse().unwrap();
        let h = p.register(&labels).unwrap();
        let mut opened = None;
        for i in 0..302i64 {
            let v = if i >= 300 { 60.0 } else { normal(i) };
            for e in p.push(h, i * 1000, v).events {
                if let EngineEvent::Opened { incident, .. } = e {
                    opened = Some(incident);
                }
            }
        }
        let id = opened.expect("the fault opened an incident");
        assert_eq!(p.live_series("queue_depth"), 1);
        // The series stops reporting while its incident is open: the
        // incident resolves (its pending verification decided).
        let events = p.evict(h, 400_000);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                EngineEvent::Verified { .. } => "verified",
                EngineEvent::Resolved { .. } => "resolved",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["verified", "resolved"], "{events:?}");
        let inc = p.engine().incident(&id).unwrap();
        assert_eq!(inc.resolved_ms, Some(400_000));
        let v = inc.actions[0].verification.as_ref().unwrap();
        assert_eq!(
            v.detail,
            "the series stopped reporting before the wait was over"
        );
        assert_eq!(
            p.engine_mut().forget_resolved(i64::MAX),
            1,
            "nothing holds it"
        );
        assert_eq!(p.live_series("queue_depth"), 0);
        assert_eq!(p.series_count(), 0);
        let taken = p.take_resolved_evidence();
        assert_eq!(taken.len(), 1, "the incident's evidence is kept");
        assert_eq!(taken[0].0, id);
        assert!(taken[0].1.points.iter().any(|pt| pt.value == 60.0));
        // A new series takes the freed place; it starts afresh.
        let other: Labels = "queue_depth{service=\"mail\"}".parse().unwrap();
        let h2 = p.register(&other).unwrap();
        assert_eq!(h2, h, "the slot is reused");
        assert_eq!(p.series.slots.len(), 1);
        assert_eq!(
            p.series[h2.0].labels.get("service").map(String::as_str),
            Some("mail")
        );
    }
}
