//! The decision loop that replay and live watching share: one sample of one
//! series in, what the engine did out.
//!
//! Both paths feed samples in event-time order through the same three steps
//! per series: the sample policy (`ingest::Sanitizer`), the series' detector
//! (`detect`), and the rule engine (`remediate::Engine`). Nothing here reads
//! the clock: the sample's timestamp is the time.

use std::collections::BTreeMap;

use detect::{AdaptiveDetector, Scored};
use ingest::{Admit, DropReason, Labels, Sanitizer};
use remediate::engine::EngineEvent;
use remediate::engine::Outcome;
use remediate::{Engine, EngineOptions, Incident, Observation, RunbookSet};

/// A registered series, as returned by [`Pipeline::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesHandle(usize);

#[derive(Debug)]
struct SeriesState {
    signal: String,
    labels: BTreeMap<String, String>,
    sanitizer: Sanitizer,
    detector: AdaptiveDetector,
    /// Samples left in the grace period after a gap.
    grace_left: u32,
}

/// After a gap in a series (a Prometheus restart, a scrape outage), its
/// first samples are not trusted for this many samples: they update the
/// detector but reach no rule. Rates over a window that straddles the gap
/// are computed from too few points (Prometheus extrapolates them) and dip
/// or jump for about one window; acting on that would be acting on missing
/// data, which heal never does. Ten samples cover a `rate(...[5s])` at a
/// one-second interval with margin, and a `[5m]` window at 30 s.
pub const GAP_GRACE_SAMPLES: u32 = 10;

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
    /// recovered their series (see `AdaptiveDetector::forget_excursion`).
    pub forgotten: u64,
}

/// Sample policy, detectors and rule engine for a set of series.
#[derive(Debug)]
pub struct Pipeline {
    runbooks: RunbookSet,
    series: Vec<SeriesState>,
    engine: Engine,
    stats: PipelineStats,
}

/// What one sample led to.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The detector's verdict, when the sample was accepted.
    pub scored: Option<Scored>,
    /// Why the sample was dropped, when it was.
    pub dropped: Option<DropReason>,
    /// What the engine did because of it.
    pub events: Vec<EngineEvent>,
}

impl Pipeline {
    /// A pipeline for the signals and rules of `runbooks`.
    pub fn new(runbooks: RunbookSet, options: EngineOptions) -> Self {
        let engine = Engine::new(&runbooks, options);
        Pipeline {
            runbooks,
            series: Vec::new(),
            engine,
            stats: PipelineStats::default(),
        }
    }

    /// Registers a series. A series is watched by the signal whose name is
    /// its metric name (`__name__`); `None` when no signal watches it.
    pub fn register(&mut self, labels: &Labels) -> Option<SeriesHandle> {
        let signal = labels.name().and_then(|n| self.runbooks.signal(n));
        let Some(signal) = signal else {
            self.stats.unwatched_series += 1;
            return None;
        };
        let state = SeriesState {
            signal: signal.name.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            sanitizer: Sanitizer::default(),
            detector: AdaptiveDetector::new(signal.detector()),
            grace_left: 0,
        };
        self.series.push(state);
        Some(SeriesHandle(self.series.len() - 1))
    }

    /// Feeds one raw sample of a registered series.
    pub fn push(&mut self, series: SeriesHandle, ts_ms: i64, value: f64) -> Pushed {
        self.stats.samples += 1;
        let state = &mut self.series[series.0];
        let sample = match state.sanitizer.admit(ts_ms, value) {
            Admit::Accept {
                sample,
                gap_before_ms,
            } => {
                if gap_before_ms.is_some() {
                    state.grace_left = GAP_GRACE_SAMPLES;
                }
                sample
            }
            Admit::Drop(reason) => {
                *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
                return Pushed {
                    dropped: Some(reason),
                    ..Pushed::default()
                };
            }
        };
        let scored = state.detector.update(sample.ts_ms, sample.value);
        if state.grace_left > 0 {
            state.grace_left -= 1;
            if state.grace_left == 0 {
                state.detector.end_excursion();
            }
            return Pushed {
                scored: Some(scored),
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
        }) && state.detector.forget_excursion()
        {
            self.stats.forgotten += 1;
        }
        Pushed {
            scored: Some(scored),
            dropped: None,
            events,
        }
    }

    /// Feeds one historical sample (a back-fill) to the series' sample
    /// policy and detector only: detection is warm from the first live
    /// sample, and nothing in the past opens an incident or plans an action.
    pub fn warm(&mut self, series: SeriesHandle, ts_ms: i64, value: f64) -> Option<Scored> {
        let state = &mut self.series[series.0];
        match state.sanitizer.admit(ts_ms, value) {
            Admit::Accept { sample, .. } => Some(state.detector.update(sample.ts_ms, sample.value)),
            Admit::Drop(_) => None,
        }
    }

    /// Ends the back-fill of a series: an excursion still open from history
    /// is forgotten (see `AdaptiveDetector::end_excursion`).
    pub fn end_warm(&mut self, series: SeriesHandle) {
        self.series[series.0].detector.end_excursion();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
