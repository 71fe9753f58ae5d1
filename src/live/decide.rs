//! The decide stage: evaluations through sample policy, detectors and the
//! engine ([`Pipeline`]), commands from the API and the act stage, and what
//! both change written to the incident store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ingest::{Labels, SourceEvent};
use remediate::engine::EngineEvent;
use stdx::Clock;
use store::{Mark, Marked, StoreWriter};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{ActionJob, ChangeError, Command, SeriesPolicy, KEEP_RESOLVED_MS, LOG_TARGET};
use crate::marks::{self, MarkError};
use crate::pipeline::{Pipeline, SeriesHandle};
use crate::telemetry::Telemetry;
use crate::tuning::save_guard_state;

/// The decide stage and everything it owns: the pipeline (so the engine),
/// the series handles, where allowed actions go, and where what happened
/// is recorded.
#[derive(Debug)]
pub(crate) struct Decider {
    pub(crate) pipeline: Pipeline,
    /// Registered series by labels (`None`: no signal watches it), with
    /// the event time each last reported.
    pub(crate) handles: HashMap<Labels, Tracked>,
    /// When series are evicted, and how many may live per signal.
    pub(crate) series: SeriesPolicy,
    /// Event time of the last sweep for stale series.
    pub(crate) last_sweep_ms: i64,
    /// The act stage's queue.
    pub(crate) act: mpsc::Sender<ActionJob>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Wall time of the last evaluation processed (`/healthz`).
    pub(crate) last_processed: Arc<AtomicI64>,
    /// `--state`: the guard state's file.
    pub(crate) state_path: Option<PathBuf>,
    /// `--db`: the incident store's writer.
    pub(crate) store: Option<StoreWriter>,
    /// Wall time, for commands and telemetry.
    pub(crate) clock: Arc<dyn Clock>,
    /// Event time of the last evaluation.
    pub(crate) last_ts_ms: i64,
    /// `--remote-write`: each slot's scores and bands go here.
    pub(crate) scores: Option<(
        ingest::sinks::remote_write::ScoreSender,
        Arc<ingest::sinks::remote_write::SinkStats>,
    )>,
}

/// A series the decider knows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    handle: Option<SeriesHandle>,
    last_seen_ms: i64,
}

impl Decider {
    /// Runs until the sources are done (their channel closed), serving
    /// commands in between; then stores the incidents still open.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<SourceEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => break,
                },
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
            }
        }
        self.finish().await;
    }

    /// Shutting down: incidents still open are stored as open at the last
    /// evaluation (a restarted heal starts a new engine and never closes
    /// them; the record says how far this run saw them).
    async fn finish(self) {
        if let Some(store) = &self.store {
            for incident in self.pipeline.finish(self.last_ts_ms) {
                if incident.resolved_ms.is_none() {
                    let _ = store.incident(incident).await;
                }
            }
        }
    }

    /// The handle of a series seen at `ts_ms`, registering it if new.
    /// `None` when no signal watches it, or when its signal is at its limit
    /// of live series (`refused` counts those; they are tried again at
    /// their next sample, and get in once old series are evicted).
    fn register(&mut self, labels: &Labels, ts_ms: i64, refused: &mut u64) -> Option<SeriesHandle> {
        if let Some(t) = self.handles.get_mut(labels) {
            t.last_seen_ms = t.last_seen_ms.max(ts_ms);
            return t.handle;
        }
        if let Some(name) = labels.name() {
            if self.pipeline.watches_signal(name)
                && self.pipeline.live_series(name) >= self.series.max_per_signal
            {
                *refused += 1;
                return None;
            }
        }
        let handle = self.pipeline.register(labels);
        self.handles.insert(
            labels.clone(),
            Tracked {
                handle,
                last_seen_ms: ts_ms,
            },
        );
        handle
    }

    /// Counts and logs the series of `signal` refused at its limit.
    fn report_refused(&self, signal: &str, refused: u64) {
        if refused == 0 {
            return;
        }
        self.telemetry.add(
            "heal_series_refused_total",
            &[("signal", signal)],
            refused as f64,
        );
        tracing::warn!(
            stage = "detect",
            %signal,
            refused,
            limit = self.series.max_per_signal,
            "signal at its limit of live series: new series refused (not watched) until older ones go stale"
        );
    }

    /// Evicts the series that have not reported for `series.stale_ms` of
    /// event time: their detector state and evidence go (see
    /// `Pipeline::evict`). Swept at most every quarter of the staleness, so
    /// the cost is a pass over the series now and then, not per sample.
    fn evict_stale(&mut self, ts_ms: i64) -> Vec<EngineEvent> {
        let mut events = Vec::new();
        let stale_ms = self.series.stale_ms();
        if ts_ms - self.last_sweep_ms < (stale_ms / 4).max(1) {
            return events;
        }
        self.last_sweep_ms = ts_ms;
        let cutoff = ts_ms - stale_ms;
        let mut evicted: HashMap<String, u64> = HashMap::new();
        let pipeline = &mut self.pipeline;
        self.handles.retain(|labels, t| {
            if t.last_seen_ms >= cutoff {
                return true;
            }
            if let Some(h) = t.handle {
                events.extend(pipeline.evict(h, ts_ms));
                let signal = labels.name().unwrap_or_default().to_owned();
                *evicted.entry(signal).or_default() += 1;
            }
            false
        });
        if self.handles.capacity() > 2 * self.handles.len().max(1024) {
            // A burst of churn gone: give the memory back.
            self.handles.shrink_to_fit();
        }
        for (signal, n) in evicted {
            self.telemetry.add(
                "heal_series_evicted_total",
                &[("signal", &signal)],
                n as f64,
            );
            self.telemetry.set(
                "heal_series_live",
                &[("signal", &signal)],
                self.pipeline.live_series(&signal) as f64,
            );
            tracing::info!(stage = "detect", %signal, evicted = n, stale_ms, "stale series evicted");
        }
        events
    }

    /// One event of the sources.
    pub(crate) async fn on_event(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Backfill {
                signal,
                series,
                truncated,
                duplicates,
            } => {
                if truncated + duplicates > 0 {
                    tracing::warn!(stage = "ingest", %signal, truncated, duplicates, "back-fill: series over the cap or duplicated were left out");
                }
                let mut n = 0;
                let mut refused = 0;
                for (labels, samples) in &series {
                    let last = samples.last().map_or(i64::MIN, |s| s.ts_ms);
                    if let Some(h) = self.register(labels, last, &mut refused) {
                        for s in samples {
                            self.pipeline.warm(h, s.ts_ms, s.value);
                            n += 1;
                        }
                        self.pipeline.end_warm(h);
                    }
                }
                self.report_refused(&signal, refused);
                tracing::info!(stage = "detect", %signal, series = series.len(), samples = n, "back-filled");
            }
            SourceEvent::BackfillFailed { signal, error } => {
                // Not fatal: detectors warm up on live samples instead.
                tracing::warn!(stage = "ingest", %signal, %error, "back-fill failed; warming up live");
                self.telemetry.add(
                    "heal_evaluation_failures_total",
                    &[("signal", &signal), ("reason", error.kind())],
                    1.0,
                );
            }
            SourceEvent::Skipped { first_ts_ms, slots } => {
                tracing::warn!(
                    stage = "ingest",
                    first_ts_ms,
                    slots,
                    "evaluation slots skipped: heal fell behind"
                );
                self.telemetry
                    .add("heal_evaluation_slots_skipped_total", &[], slots as f64);
            }
            SourceEvent::Evaluation(ev) => self.on_evaluation(ev).await,
            SourceEvent::Logs(ex) => self.pipeline.log_examples(ex),
            SourceEvent::Topology(edges) => self.pipeline.set_discovered_edges(&edges),
        }
    }

    /// One evaluation: its samples through the pipeline as one slot.
    async fn on_evaluation(&mut self, ev: ingest::Evaluation) {
        let telemetry = self.telemetry.clone();
        telemetry.add("heal_evaluations_total", &[("signal", &ev.signal)], 1.0);
        let results = match ev.outcome {
            Ok(results) => results,
            Err(e) => {
                // No data: nothing reaches a detector or the engine.
                telemetry.add(
                    "heal_evaluation_failures_total",
                    &[("signal", &ev.signal), ("reason", e.kind())],
                    1.0,
                );
                tracing::warn!(stage = "ingest", error = %e, "evaluation failed: no data");
                return;
            }
        };
        telemetry.add(
            "heal_samples_total",
            &[("signal", &ev.signal)],
            results.len() as f64,
        );
        telemetry.set(
            "heal_series",
            &[("signal", &ev.signal)],
            results.len() as f64,
        );
        let mut changed = false;
        // The slot's samples go in together: a signal with `peer:` compares
        // the instances of each service at this timestamp.
        let mut slot = Vec::with_capacity(results.len());
        let mut slot_labels = Vec::with_capacity(results.len());
        let mut refused = 0;
        for (labels, value) in &results {
            if let Some(h) = self.register(labels, ev.ts_ms, &mut refused) {
                slot.push((h, *value));
                slot_labels.push(labels);
            }
        }
        self.report_refused(&ev.signal, refused);
        if ev.truncated > 0 {
            // The source's own cap per evaluation: counted here too.
            telemetry.add(
                "heal_series_truncated_total",
                &[("signal", &ev.signal)],
                ev.truncated as f64,
            );
        }
        let pushed_all = self.pipeline.push_slot(ev.ts_ms, &slot);
        if let Some((sender, stats)) = &self.scores {
            sender.offer(
                slot_labels
                    .iter()
                    .zip(&pushed_all)
                    .filter_map(|(labels, p)| {
                        Some(ingest::sinks::remote_write::ScorePoint {
                            labels: (*labels).clone(),
                            ts_ms: ev.ts_ms,
                            score: p.scored?.score,
                            band: p.band?,
                        })
                    })
                    .collect(),
            );
            report_sink(&telemetry, stats);
        }
        for (labels, pushed) in slot_labels.into_iter().zip(pushed_all) {
            if let Some(reason) = pushed.dropped {
                telemetry.add(
                    "heal_samples_dropped_total",
                    &[("reason", reason.as_str())],
                    1.0,
                );
            }
            if let Some((s, e)) = pushed
                .scored
                .and_then(|s| s.excursion.filter(|e| e.first).map(|e| (s, e)))
            {
                telemetry.add("heal_anomalies_total", &[("signal", &ev.signal)], 1.0);
                tracing::info!(target: LOG_TARGET, stage = "detect", series = %labels,
                    score = s.score, direction = if e.above { "above" } else { "below" }, "anomaly fired");
            }
            let span = tracing::info_span!("evaluation", signal = %ev.signal, ts_ms = ev.ts_ms);
            changed |= !pushed.events.is_empty();
            self.store_events(&pushed.events).await;
            for event in pushed.events {
                self.handle_event(event).instrument(span.clone()).await;
            }
        }
        if changed {
            // Logged when it fails; the next change tries again.
            let _ = self.persist(ev.ts_ms, false).await;
        }
        // Learning from outcomes: performed steps that did not help.
        self.learn_from_not_helped().await;
        // The evidence of incidents that resolved goes to the store (the
        // HTML report charts it); without a store it is dropped.
        let resolved = self.pipeline.take_resolved_evidence();
        if let Some(store) = &self.store {
            for (id, evidence) in resolved {
                let _ = store.evidence(id, evidence).await;
            }
        }
        // Memory stays bounded: incidents resolved over an hour ago were
        // logged (and stored) already.
        self.pipeline
            .engine_mut()
            .forget_resolved(ev.ts_ms - KEEP_RESOLVED_MS);
        // And with churn: series that stopped reporting go, and their
        // incidents resolve (recorded like any other).
        let gone = self.evict_stale(ev.ts_ms);
        if !gone.is_empty() {
            self.store_events(&gone).await;
            for event in gone {
                self.handle_event(event).await;
            }
            let _ = self.persist(ev.ts_ms, false).await; // logged inside
            let resolved = self.pipeline.take_resolved_evidence();
            if let Some(store) = &self.store {
                for (id, evidence) in resolved {
                    let _ = store.evidence(id, evidence).await;
                }
            }
        }
        telemetry.set(
            "heal_series_live",
            &[("signal", &ev.signal)],
            self.pipeline.live_series(&ev.signal) as f64,
        );
        telemetry.set(
            "heal_incidents_held",
            &[],
            self.pipeline.engine().incidents_held() as f64,
        );
        self.last_ts_ms = ev.ts_ms;
        let now = self.clock.now_ms();
        self.last_processed.store(now, Ordering::Relaxed);
        telemetry.set(
            "heal_loop_lag_seconds",
            &[],
            (now - ev.ts_ms) as f64 / 1000.0,
        );
    }

    /// One command. Whatever it changed is persisted (and, with a store,
    /// committed) before the answer goes out: a client told "created" can
    /// rely on it surviving a crash.
    async fn on_command(&mut self, cmd: Command) {
        let now = self.clock.now_ms();
        match cmd {
            Command::AddSilence {
                matchers,
                starts_ms,
                ends_ms,
                by,
                comment,
                reply,
            } => {
                let r = self
                    .pipeline
                    .engine_mut()
                    .add_silence(matchers, starts_ms, ends_ms, &by, &comment)
                    .map_err(ChangeError::Refused);
                let r = match r {
                    Ok(s) => self
                        .persist(now, true)
                        .await
                        .map(|()| s)
                        .map_err(ChangeError::NotPersisted),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::ExpireSilence { id, reply } => {
                let r = self
                    .pipeline
                    .engine_mut()
                    .expire_silence(&id, now)
                    .map_err(ChangeError::Refused);
                let r = match r {
                    Ok(s) => self
                        .persist(now, true)
                        .await
                        .map(|()| s)
                        .map_err(ChangeError::NotPersisted),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::ListSilences { reply } => {
                let _ = reply.send(self.pipeline.engine().silences(now));
            }
            Command::ListApprovals { reply } => {
                let _ = reply.send(self.pipeline.engine().awaiting_approval());
            }
            Command::Approve {
                incident,
                by,
                reply,
            } => match self.pipeline.engine_mut().approve(&incident, now, &by) {
                Ok(events) => {
                    self.store_events(&events).await;
                    let persisted = self.persist(now, true).await;
                    let _ = reply.send(
                        persisted
                            .map(|()| events.clone())
                            .map_err(ChangeError::NotPersisted),
                    );
                    for event in events {
                        self.handle_event(event).await;
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(ChangeError::Refused(e)));
                }
            },
            // Recorded through the store's writer (awaited), then applied.
            Command::Mark { mark, reply } => {
                let marked = self.record_mark(mark).await;
                let _ = reply.send(marked);
            }
            Command::Recheck {
                incident,
                step,
                reply,
            } => {
                let muted = self.pipeline.engine_mut().recheck(&incident, step, now);
                // The answer first: if the act stage stopped waiting (it
                // went ahead), nothing is recorded, so the record never
                // contradicts what ran.
                if reply.send(muted.is_none()).is_err() {
                    return;
                }
                if let Some(decision) = muted {
                    let events = self
                        .pipeline
                        .engine_mut()
                        .redecide(&incident, step, decision, now);
                    self.store_events(&events).await;
                    let _ = self.persist(now, false).await;
                    for event in events {
                        self.handle_event(event).await;
                    }
                }
            }
            Command::ActionFinished { incident, step } => {
                if self
                    .pipeline
                    .engine_mut()
                    .action_finished(&incident, step, now)
                {
                    tracing::debug!(stage = "remediate", %incident, step, "action finished: verification wait starts");
                }
            }
        }
    }

    /// Persists the guard state: to `--state`, or else into the incident
    /// store when there is one (committed first when `commit`). A failure
    /// is logged, and returned for an API change to refuse its "done".
    async fn persist(&self, ts_ms: i64, commit: bool) -> Result<(), String> {
        let state = self.pipeline.engine().guard_state(ts_ms);
        let result = if let Some(path) = &self.state_path {
            save_guard_state(path, &state)
                .map_err(|e| format!("writing the guard state to {}: {e:#}", path.display()))
        } else if let Some(store) = &self.store {
            let queued = store.guard_state(state).await;
            // Committed before the client hears back.
            let committed = match queued {
                Ok(()) if commit => store.flush().await,
                other => other,
            };
            committed.map_err(|e| format!("recording the guard state in the incident store: {e}"))
        } else {
            Ok(())
        };
        result.inspect_err(|e| {
            tracing::error!(stage = "remediate", error = %e, "guard state not persisted");
        })
    }

    /// Writes what the engine just did, and a snapshot of each incident
    /// concerned, before any of its actions reaches `act` (so an action's
    /// begin is always stored after its incident).
    async fn store_events(&self, events: &[EngineEvent]) {
        let Some(store) = &self.store else {
            return;
        };
        let mut seen: Vec<&str> = Vec::new();
        for event in events {
            let id = event.incident();
            if !seen.contains(&id) {
                seen.push(id);
            }
            let _ = store.event(event.clone()).await;
        }
        for id in seen {
            if let Some(incident) = self.pipeline.engine().incident(id) {
                let _ = store.incident(incident.clone()).await;
            }
        }
    }

    /// Logs and counts an engine event; hands an allowed step to the act
    /// stage.
    async fn handle_event(&self, event: EngineEvent) {
        let telemetry = &self.telemetry;
        match event {
            EngineEvent::Opened {
                incident,
                rule,
                series,
                severity,
                ..
            } => {
                telemetry.add("heal_incidents_total", &[("rule", &rule)], 1.0);
                tracing::warn!(target: LOG_TARGET, stage = "remediate", %incident, %rule, %series, severity = severity.as_str(), "incident opened");
            }
            EngineEvent::Planned { incident, action } => {
                if !action.decision.allowed {
                    not_performed(telemetry, &incident, &action);
                    // A step waiting for a person is news for the person
                    // reading the log: said at the default level, with
                    // when it expires.
                    if let Some(expires) = action.decision.approval_expires() {
                        tracing::warn!(target: LOG_TARGET, stage = "remediate", %incident, step = action.step, %expires,
                            "awaiting approval of step {} ({}): `heal approve {incident}` before {expires}",
                            action.step, action.summary);
                    }
                    return;
                }
                let Some(rendered) = action.rendered else {
                    return;
                };
                let job = ActionJob {
                    incident,
                    step: action.step,
                    action: rendered,
                    // The step's own timeout, else the engine's default.
                    timeout: Duration::from_millis(
                        action
                            .timeout
                            .map_or(remediate::engine::DEFAULT_STEP_TIMEOUT_MS, |t| {
                                t.as_millis_i64()
                            })
                            .max(1) as u64,
                    ),
                };
                // Backpressure: if actions pile up, evaluation waits.
                let _ = self.act.send(job).await;
            }
            EngineEvent::Redecided {
                incident, action, ..
            } => not_performed(telemetry, &incident, &action),
            EngineEvent::Verified {
                incident,
                step,
                verification,
            } => {
                tracing::info!(target: LOG_TARGET, stage = "remediate", %incident, step, outcome = verification.outcome.as_str(), "verified");
            }
            EngineEvent::Diagnosed {
                incident,
                group,
                root_cause,
                ..
            } => {
                telemetry.add("heal_diagnoses_total", &[], 1.0);
                tracing::warn!(target: LOG_TARGET, stage = "diagnose", %incident, %group, %root_cause, "incident diagnosed: its group's root cause is {root_cause}");
            }
            EngineEvent::Resolved { .. } => {
                tracing::info!(target: LOG_TARGET, stage = "remediate", ?event, "incident resolved");
            }
        }
    }

    /// The decider's side of [`Command::Mark`]: the signal must be one of
    /// the runbooks', the mark is recorded through the store's writer
    /// (committed before the answer), and the new offset applied to the
    /// signal's detectors.
    async fn record_mark(&mut self, mark: Mark) -> Result<Marked, MarkError> {
        let Some(store) = &self.store else {
            return Err(MarkError::NeedsStore);
        };
        marks::check_watched(&mark, self.pipeline.watches_signal(&mark.signal))?;
        let marked = store.mark(mark).await?;
        if let Marked::Adjusted(a) = &marked {
            self.apply_offset(&a.signal, a.new);
            tracing::info!(stage = "detect", signal = %a.signal, old = a.old, new = a.new, reason = a.reason.as_str(), incident = ?a.incident, "threshold offset adjusted");
        }
        Ok(marked)
    }

    /// Records the performed steps that did not help (see
    /// `Pipeline::take_not_helped`) as marks and applies them. Without a
    /// store nothing is learnt: an adjustment that is not recorded is not
    /// made.
    async fn learn_from_not_helped(&mut self) {
        for nh in self.pipeline.take_not_helped() {
            let mark = marks::not_helped(nh, self.clock.now_ms());
            if self.store.is_none() {
                tracing::debug!(signal = %mark.signal, "step did not help; no --db, nothing learnt");
                continue;
            }
            if let Err(e) = self.record_mark(mark).await {
                tracing::error!(stage = "detect", error = %e, "recording a step that did not help failed");
            }
        }
    }

    /// Sets a signal's threshold offset in the pipeline and in `/metrics`.
    fn apply_offset(&mut self, signal: &str, offset: f64) {
        self.pipeline.set_threshold_offset(signal, offset);
        self.telemetry.set(
            "heal_signal_threshold_offset",
            &[("signal", signal)],
            offset,
        );
    }
}

/// Counts and logs a step that will not run, with its reason.
fn not_performed(telemetry: &Telemetry, incident: &str, action: &remediate::engine::PlannedAction) {
    let reason = action.decision.label();
    telemetry.add("heal_actions_suppressed_total", &[("reason", reason)], 1.0);
    tracing::info!(target: LOG_TARGET, stage = "remediate", %incident, step = action.step, %reason, detail = %action.decision.detail, "action not performed");
}

/// The remote-write sender's counters, into heal's own metrics.
fn report_sink(telemetry: &Telemetry, stats: &ingest::sinks::remote_write::SinkStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let out = "heal_remote_write_out_samples_total";
    telemetry.set(out, &[("outcome", "sent")], stats.sent.load(Relaxed) as f64);
    telemetry.set(
        out,
        &[("outcome", "dropped_queue_full")],
        stats.dropped_queue_full.load(Relaxed) as f64,
    );
    telemetry.set(
        out,
        &[("outcome", "dropped_failed")],
        stats.dropped_failed.load(Relaxed) as f64,
    );
    telemetry.set(
        "heal_remote_write_out_failed_requests_total",
        &[],
        stats.failed_requests.load(Relaxed) as f64,
    );
}
