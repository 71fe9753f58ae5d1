//! Writes: incident snapshots, the event log, anomalies and the two-phase
//! action journal.
//!
//! Each public method is one transaction. The functions under them take a
//! plain connection ([`Db`]) so [`crate::StoreWriter`] can run many of them
//! in one transaction (one commit per batch instead of one per write), and
//! so SQLite and PostgreSQL run the very same statements.

use remediate::action::ActionResult;
use remediate::engine::{series_selector, EngineEvent, Incident, Outcome};

use crate::db::{in_transaction, vals, Db};
use crate::{
    ActionKey, AnomalyRecord, ChildProcess, IncidentOutcome, IncidentStatus, Store, StoreError,
};

impl Store {
    /// Writes `incident` as it is now: its row, its anomaly, every planned
    /// step and every verification. Writing the same incident again replaces
    /// the earlier snapshot (the engine's view only grows, so the last one
    /// is the most complete).
    pub fn record_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        in_transaction(self.db(), "writing an incident", |db| {
            put_incident(db, incident, writer.as_deref())
        })
    }

    /// Writes many incidents (see [`Store::record_incident`]) and events
    /// in one transaction: what a replay does at its end.
    pub fn record_batch(
        &mut self,
        incidents: &[Incident],
        events: &[EngineEvent],
    ) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        in_transaction(self.db(), "writing a batch", |db| {
            for incident in incidents {
                put_incident(db, incident, writer.as_deref())?;
            }
            for event in events {
                put_event(db, event)?;
            }
            Ok(())
        })
    }

    /// Appends one engine event to the incident's event log.
    pub fn record_event(&mut self, event: &EngineEvent) -> Result<(), StoreError> {
        put_event(self.db(), event)
    }

    /// Records what the guards remember (replacing the earlier state).
    pub fn record_guard_state(
        &mut self,
        state: &remediate::engine::GuardState,
    ) -> Result<(), StoreError> {
        put_guard_state(self.db(), state)
    }

    /// Records the evidence of an incident (replacing any earlier one).
    pub fn record_evidence(
        &mut self,
        incident: &str,
        evidence: &remediate::report::Evidence,
    ) -> Result<(), StoreError> {
        put_evidence(self.db(), incident, evidence)
    }

    /// Records an anomaly that no incident holds (one that fired but matched
    /// no rule); an incident's own anomaly is written by
    /// [`Store::record_incident`].
    pub fn record_anomaly(&mut self, anomaly: &AnomalyRecord) -> Result<(), StoreError> {
        put_anomaly(self.db(), anomaly)
    }

    /// Phase one: records that the action `key` is about to run, at wall
    /// time `started_ms`. Refuses a key already recorded, whatever its state:
    /// that is what keeps an action from running twice.
    ///
    /// Committed durable through a power cut (SQLite's `synchronous=FULL`):
    /// this one row must survive one, since it is what stops a second run
    /// after it.
    pub fn begin_action(
        &mut self,
        key: &ActionKey,
        summary: &str,
        started_ms: i64,
    ) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        power_cut_durable(self.db(), |db| {
            in_transaction(db, "recording an action begin", |db| {
                put_begin(db, key, summary, started_ms, writer.as_deref())
            })
        })
    }

    /// Phase two: records the result of the action `key`, begun by
    /// [`Store::begin_action`], at wall time `finished_ms`.
    pub fn finish_action(
        &mut self,
        key: &ActionKey,
        result: &ActionResult,
        finished_ms: i64,
    ) -> Result<(), StoreError> {
        put_finish(self.db(), key, result, finished_ms)
    }

    /// Records the child process the action `key` (begun, not finished)
    /// started, right after its spawn: a restart after heal was killed can
    /// then settle it ([`Store::settle_interrupted`]).
    pub fn record_process(
        &mut self,
        key: &ActionKey,
        process: ChildProcess,
    ) -> Result<(), StoreError> {
        put_process(self.db(), key, process)
    }

    /// Records how an interrupted action was settled at a restart (its
    /// process group killed, or found gone). Only an interrupted action
    /// not yet settled: settling happens once.
    pub fn settle_interrupted(&mut self, key: &ActionKey, note: &str) -> Result<bool, StoreError> {
        let n = self.db().exec(
            "recording how an interrupted action was settled",
            "UPDATE executions SET settled = ?2
             WHERE key = ?1 AND state = 'interrupted' AND settled IS NULL",
            vals![key.to_string(), note],
        )?;
        Ok(n == 1)
    }
}

pub(crate) fn put_process(
    db: &dyn Db,
    key: &ActionKey,
    process: ChildProcess,
) -> Result<(), StoreError> {
    let n = db.exec(
        "recording an action's process",
        "UPDATE executions SET pid = ?2, pid_start = ?3 WHERE key = ?1 AND state = 'started'",
        vals![
            key.to_string(),
            i64::from(process.pid),
            process.start_ticks.and_then(|t| i64::try_from(t).ok())
        ],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotInFlight {
            key: key.clone(),
            why: "no begun action to record a process for".into(),
        })
    }
}

/// Runs `f` with the commits durable through a power cut, then goes back.
/// (SQLite's pragma cannot change inside a transaction, hence around it.)
pub(crate) fn power_cut_durable<T>(
    db: &dyn Db,
    f: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    db.power_cut_durable(true)?;
    let out = f(db);
    db.power_cut_durable(false)?;
    out
}

/// The number in `inc-000042`.
fn incident_seq(id: &str) -> Option<i64> {
    id.strip_prefix("inc-")?.parse().ok()
}

/// What an incident's steps achieved: recovered if any step did, else the
/// verdict on the last verified step, else none.
pub(crate) fn incident_outcome(incident: &Incident) -> IncidentOutcome {
    let verdicts = || {
        incident
            .actions
            .iter()
            .filter_map(|a| a.verification.as_ref())
    };
    if verdicts().any(|v| v.outcome == Outcome::Recovered) {
        return IncidentOutcome::Recovered;
    }
    match verdicts().next_back().map(|v| v.outcome) {
        Some(Outcome::Worse) => IncidentOutcome::Worse,
        Some(_) => IncidentOutcome::NotRecovered,
        None => IncidentOutcome::None,
    }
}

/// Serializes a value the engine made; these are plain data and cannot fail.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("engine types serialize to JSON")
}

/// Serializes a value that may hold what JSON cannot (a map keyed by a
/// non-string, say): refused with a clear error instead of a panic.
fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode {
        what,
        message: e.to_string(),
    })
}

/// A unit enum's serde name (`"cooldown"` without the quotes).
pub(crate) fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("engine types serialize to JSON") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Writes an incident snapshot, recorded as `writer`'s (see
/// `recover.rs`: a writer settles only what it wrote itself).
pub(crate) fn put_incident(
    db: &dyn Db,
    inc: &Incident,
    writer: Option<&str>,
) -> Result<(), StoreError> {
    let doing = "writing an incident";
    let status = if inc.resolved_ms.is_some() {
        IncidentStatus::Resolved
    } else {
        IncidentStatus::Open
    };
    let selector = series_selector(&inc.series);
    // Another writer's incident of the same id (two `heal watch` numbering
    // on one database) is never overwritten: the upsert updates only this
    // writer's row, and nothing else of the snapshot is written.
    let written = db.exec(
        doing,
        "INSERT INTO incidents (id, seq, service, signal, rule, description, severity, above,
             series, selector, onset_ms, opened_ms, peak_score, chain_len, resolved_ms,
             unresolved_at_ms, status, outcome, peer_z, diagnosis, writer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21)
         ON CONFLICT (id) DO UPDATE SET
             seq = excluded.seq, service = excluded.service, signal = excluded.signal,
             rule = excluded.rule, description = excluded.description,
             severity = excluded.severity, above = excluded.above, series = excluded.series,
             selector = excluded.selector, onset_ms = excluded.onset_ms,
             opened_ms = excluded.opened_ms, peak_score = excluded.peak_score,
             chain_len = excluded.chain_len, resolved_ms = excluded.resolved_ms,
             unresolved_at_ms = excluded.unresolved_at_ms, status = excluded.status,
             outcome = excluded.outcome, peer_z = excluded.peer_z,
             diagnosis = excluded.diagnosis, writer = excluded.writer
         WHERE incidents.writer IS NOT DISTINCT FROM excluded.writer",
        vals![
            &inc.id,
            incident_seq(&inc.id),
            &inc.service,
            &inc.signal,
            &inc.rule,
            inc.description.clone(),
            inc.severity.as_str(),
            inc.above,
            json(&inc.series),
            selector.clone(),
            inc.onset_ms,
            inc.opened_ms,
            inc.peak_score,
            inc.chain_len,
            inc.resolved_ms,
            inc.unresolved_at_ms,
            status.as_str(),
            incident_outcome(inc).as_str(),
            inc.peer_z,
            inc.diagnosis.as_ref().map(json),
            writer,
        ],
    )?;
    if written == 0 {
        return Err(StoreError::IncidentOfAnotherWriter {
            id: inc.id.clone(),
            writer: writer.map(str::to_owned),
        });
    }

    put_anomaly(
        db,
        &AnomalyRecord {
            incident: Some(inc.id.clone()),
            selector,
            labels: inc.series.clone(),
            score: inc.peak_score,
            onset_ms: inc.onset_ms,
            above: inc.above,
            evidence: serde_json::json!({
                "signal": inc.signal,
                "rule": inc.rule,
                "severity": inc.severity.as_str(),
                "direction": if inc.above { "up" } else { "down" },
                "peak_score": inc.peak_score,
                "opened_ms": inc.opened_ms,
                "detected_after_ms": inc.opened_ms - inc.onset_ms,
            }),
        },
    )?;

    for a in &inc.actions {
        db.exec(
            doing,
            "INSERT INTO actions (incident_id, step, kind, summary, rendered, allowed, reason,
                 detail, planned_ms, timeout)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (incident_id, step) DO UPDATE SET
                 kind = excluded.kind, summary = excluded.summary, rendered = excluded.rendered,
                 allowed = excluded.allowed, reason = excluded.reason, detail = excluded.detail,
                 planned_ms = excluded.planned_ms, timeout = excluded.timeout",
            vals![
                &inc.id,
                a.step,
                a.kind.as_str(),
                &a.summary,
                a.rendered.as_ref().map(json),
                a.decision.allowed,
                a.decision.reason.as_ref().map(name_of),
                &a.decision.detail,
                a.planned_ms,
                a.timeout.as_ref().map(name_of),
            ],
        )?;
        match &a.verification {
            Some(v) => {
                db.exec(
                    doing,
                    "INSERT INTO outcomes (incident_id, step, outcome, decided_ms, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (incident_id, step) DO UPDATE SET
                         outcome = excluded.outcome, decided_ms = excluded.decided_ms,
                         detail = excluded.detail",
                    vals![
                        &inc.id,
                        a.step,
                        name_of(&v.outcome),
                        v.decided_ms,
                        &v.detail
                    ],
                )?;
            }
            None => {
                db.exec(
                    doing,
                    "DELETE FROM outcomes WHERE incident_id = ?1 AND step = ?2",
                    vals![&inc.id, a.step],
                )?;
            }
        }
    }
    // The snapshot is the whole truth: no step beyond the ones it has.
    let last = inc.actions.iter().map(|a| a.step).max().unwrap_or(0);
    db.exec(
        doing,
        "DELETE FROM actions WHERE incident_id = ?1 AND step > ?2",
        vals![&inc.id, last],
    )?;
    Ok(())
}

pub(crate) fn put_anomaly(db: &dyn Db, a: &AnomalyRecord) -> Result<(), StoreError> {
    db.exec(
        "writing an anomaly",
        "INSERT INTO anomalies (incident_id, selector, labels, score, onset_ms, above, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (incident_id) DO UPDATE SET
             selector = excluded.selector, labels = excluded.labels, score = excluded.score,
             onset_ms = excluded.onset_ms, above = excluded.above, evidence = excluded.evidence",
        vals![
            a.incident.clone(),
            &a.selector,
            json(&a.labels),
            a.score,
            a.onset_ms,
            a.above,
            a.evidence.to_string(),
        ],
    )?;
    Ok(())
}

pub(crate) fn put_event(db: &dyn Db, event: &EngineEvent) -> Result<(), StoreError> {
    let (incident, kind, ts_ms) = match event {
        EngineEvent::Opened {
            incident, ts_ms, ..
        } => (incident, "opened", *ts_ms),
        EngineEvent::Planned { incident, action } => (incident, "planned", action.planned_ms),
        EngineEvent::Redecided {
            incident, ts_ms, ..
        } => (incident, "redecided", *ts_ms),
        EngineEvent::Verified {
            incident,
            verification,
            ..
        } => (incident, "verified", verification.decided_ms),
        EngineEvent::Diagnosed {
            incident, ts_ms, ..
        } => (incident, "diagnosed", *ts_ms),
        EngineEvent::Resolved { incident, ts_ms } => (incident, "resolved", *ts_ms),
    };
    db.exec(
        "writing an engine event",
        "INSERT INTO events (incident_id, kind, ts_ms, body) VALUES (?1, ?2, ?3, ?4)",
        vals![incident, kind, ts_ms, json(event)],
    )?;
    Ok(())
}

/// The state recorded for `key`, if any.
fn state_of(db: &dyn Db, key: &ActionKey) -> Result<Option<String>, StoreError> {
    match db.row(
        "reading an action",
        "SELECT state FROM executions WHERE key = ?1",
        vals![key.to_string()],
    )? {
        Some(r) => {
            Ok(Some(r.text(0).map_err(|m| {
                db.corrupt("executions", &key.to_string(), m)
            })?))
        }
        None => Ok(None),
    }
}

/// Phase one of an action, recorded as begun by `writer`.
pub(crate) fn put_begin(
    db: &dyn Db,
    key: &ActionKey,
    summary: &str,
    started_ms: i64,
    writer: Option<&str>,
) -> Result<(), StoreError> {
    let inserted = db.exec(
        "recording an action begin",
        "INSERT INTO executions (key, incident_id, step, attempt, summary, state, started_ms,
             begun_by)
         VALUES (?1, ?2, ?3, ?4, ?5, 'started', ?6, ?7)
         ON CONFLICT (key) DO NOTHING",
        vals![
            key.to_string(),
            &key.incident,
            key.step,
            key.attempt,
            summary,
            started_ms,
            writer
        ],
    )?;
    if inserted == 0 {
        let state = state_of(db, key)?.unwrap_or_default();
        return Err(StoreError::DuplicateAction {
            key: key.clone(),
            state,
        });
    }
    Ok(())
}

pub(crate) fn put_finish(
    db: &dyn Db,
    key: &ActionKey,
    result: &ActionResult,
    finished_ms: i64,
) -> Result<(), StoreError> {
    let updated = db.exec(
        "recording an action result",
        "UPDATE executions SET state = 'finished', finished_ms = ?2, ok = ?3,
             retryable = ?4, result = ?5, output = ?6, duration_us = ?7
         WHERE key = ?1 AND state = 'started'",
        vals![
            key.to_string(),
            finished_ms,
            result.ok,
            result.retryable,
            &result.summary,
            &result.output,
            i64::try_from(result.duration.as_micros()).unwrap_or(i64::MAX),
        ],
    )?;
    if updated == 1 {
        return Ok(());
    }
    let why = match state_of(db, key)?.as_deref() {
        None => "it was never begun".to_owned(),
        Some(state @ ("interrupted" | "abandoned")) => {
            format!("it was marked {state} when the store was reopened")
        }
        Some(state) => format!("it is already {state}"),
    };
    Err(StoreError::NotInFlight {
        key: key.clone(),
        why,
    })
}

pub(crate) fn put_evidence(
    db: &dyn Db,
    incident: &str,
    evidence: &remediate::report::Evidence,
) -> Result<(), StoreError> {
    db.exec(
        "writing an incident's evidence",
        "INSERT INTO evidence (incident_id, points) VALUES (?1, ?2)
         ON CONFLICT (incident_id) DO UPDATE SET points = excluded.points",
        vals![incident, encode("an incident's evidence", evidence)?],
    )?;
    Ok(())
}

pub(crate) fn put_guard_state(
    db: &dyn Db,
    state: &remediate::engine::GuardState,
) -> Result<(), StoreError> {
    db.exec(
        "writing the guard state",
        "INSERT INTO guard_state (id, state) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        vals![encode("the guard state", state)?],
    )?;
    Ok(())
}
