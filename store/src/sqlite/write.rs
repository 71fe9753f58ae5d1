//! Writes: incident snapshots, the event log, anomalies and the two-phase
//! action journal.
//!
//! Each public method is one transaction. The functions under them take a
//! plain `&Connection` so [`super::StoreWriter`] can run many of them in one
//! transaction (one commit per batch instead of one per write).

use rusqlite::{params, Connection, OptionalExtension};

use remediate::action::ActionResult;
use remediate::engine::{series_selector, EngineEvent, Incident, Outcome};

use super::{sql, Store};
use crate::{ActionKey, AnomalyRecord, ChildProcess, IncidentOutcome, IncidentStatus, StoreError};

impl Store {
    /// Writes `incident` as it is now: its row, its anomaly, every planned
    /// step and every verification. Writing the same incident again replaces
    /// the earlier snapshot (the engine's view only grows, so the last one
    /// is the most complete).
    pub fn record_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&self.path, "starting a write"))?;
        put_incident(&tx, incident).map_err(sql(&self.path, "writing an incident"))?;
        tx.commit()
            .map_err(sql(&self.path, "committing an incident"))
    }

    /// Writes many incidents (see [`Store::record_incident`]) and events
    /// in one transaction: what a replay does at its end.
    pub fn record_batch(
        &mut self,
        incidents: &[Incident],
        events: &[EngineEvent],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&self.path, "starting a write"))?;
        for incident in incidents {
            put_incident(&tx, incident).map_err(sql(&self.path, "writing an incident"))?;
        }
        for event in events {
            put_event(&tx, event).map_err(sql(&self.path, "writing an engine event"))?;
        }
        tx.commit().map_err(sql(&self.path, "committing a batch"))
    }

    /// Appends one engine event to the incident's event log.
    pub fn record_event(&mut self, event: &EngineEvent) -> Result<(), StoreError> {
        put_event(&self.conn, event).map_err(sql(&self.path, "writing an engine event"))
    }

    /// Records what the guards remember (replacing the earlier state).
    pub fn record_guard_state(
        &mut self,
        state: &remediate::engine::GuardState,
    ) -> Result<(), StoreError> {
        put_guard_state(&self.conn, state).map_err(sql(&self.path, "writing the guard state"))
    }

    /// Records the evidence of an incident (replacing any earlier one).
    pub fn record_evidence(
        &mut self,
        incident: &str,
        evidence: &remediate::report::Evidence,
    ) -> Result<(), StoreError> {
        put_evidence(&self.conn, incident, evidence)
            .map_err(sql(&self.path, "writing an incident's evidence"))
    }

    /// Records an anomaly that no incident holds (one that fired but matched
    /// no rule); an incident's own anomaly is written by
    /// [`Store::record_incident`].
    pub fn record_anomaly(&mut self, anomaly: &AnomalyRecord) -> Result<(), StoreError> {
        put_anomaly(&self.conn, anomaly).map_err(sql(&self.path, "writing an anomaly"))
    }

    /// Phase one: records that the action `key` is about to run, at wall
    /// time `started_ms`. Refuses a key already recorded, whatever its state:
    /// that is what keeps an action from running twice.
    ///
    /// Committed with `synchronous=FULL`: this one row must survive a power
    /// cut, since it is what stops a second run after one.
    pub fn begin_action(
        &mut self,
        key: &ActionKey,
        summary: &str,
        started_ms: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        with_full_sync(&self.conn, &path, |conn| {
            let tx = conn
                .unchecked_transaction()
                .map_err(sql(&path, "starting a write"))?;
            put_begin(&tx, &path, key, summary, started_ms)?;
            tx.commit()
                .map_err(sql(&path, "committing an action begin"))
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
        put_finish(&self.conn, &self.path, key, result, finished_ms)
    }
}

impl Store {
    /// Records the child process the action `key` (begun, not finished)
    /// started, right after its spawn: a restart after heal was killed can
    /// then settle it ([`Store::settle_interrupted`]).
    pub fn record_process(
        &mut self,
        key: &ActionKey,
        process: ChildProcess,
    ) -> Result<(), StoreError> {
        put_process(&self.conn, &self.path, key, process)
    }

    /// Records how an interrupted action was settled at a restart (its
    /// process group killed, or found gone). Only an interrupted action
    /// not yet settled: settling happens once.
    pub fn settle_interrupted(&mut self, key: &ActionKey, note: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE executions SET settled = ?2
                 WHERE key = ?1 AND state = 'interrupted' AND settled IS NULL",
                params![key.to_string(), note],
            )
            .map_err(sql(
                &self.path,
                "recording how an interrupted action was settled",
            ))?;
        Ok(n == 1)
    }
}

pub(super) fn put_process(
    c: &Connection,
    path: &std::path::Path,
    key: &ActionKey,
    process: ChildProcess,
) -> Result<(), StoreError> {
    let n = c
        .prepare_cached(
            "UPDATE executions SET pid = ?2, pid_start = ?3 WHERE key = ?1 AND state = 'started'",
        )
        .and_then(|mut s| {
            s.execute(params![
                key.to_string(),
                i64::from(process.pid),
                process.start_ticks.and_then(|t| i64::try_from(t).ok())
            ])
        })
        .map_err(sql(path, "recording an action's process"))?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotInFlight {
            key: key.clone(),
            why: "no begun action to record a process for".into(),
        })
    }
}

/// Runs `f` with `synchronous=FULL`, then goes back to `NORMAL`. (The
/// pragma cannot change inside a transaction, hence around it.)
pub(super) fn with_full_sync<T>(
    conn: &Connection,
    path: &std::path::Path,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql(path, "setting synchronous=FULL"))?;
    let out = f(conn);
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql(path, "setting synchronous=NORMAL"))?;
    out
}

/// The number in `inc-000042`.
fn incident_seq(id: &str) -> Option<i64> {
    id.strip_prefix("inc-")?.parse().ok()
}

/// What an incident's steps achieved: recovered if any step did, else the
/// verdict on the last verified step, else none.
pub(super) fn incident_outcome(incident: &Incident) -> IncidentOutcome {
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

/// A unit enum's serde name (`"cooldown"` without the quotes).
pub(super) fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("engine types serialize to JSON") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

pub(super) fn put_incident(c: &Connection, inc: &Incident) -> rusqlite::Result<()> {
    let status = if inc.resolved_ms.is_some() {
        IncidentStatus::Resolved
    } else {
        IncidentStatus::Open
    };
    let selector = series_selector(&inc.series);
    c.prepare_cached(
        "INSERT INTO incidents (id, seq, service, signal, rule, description, severity, above,
             series, selector, onset_ms, opened_ms, peak_score, chain_len, resolved_ms,
             unresolved_at_ms, status, outcome, peer_z, diagnosis)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20)
         ON CONFLICT (id) DO UPDATE SET
             seq = excluded.seq, service = excluded.service, signal = excluded.signal,
             rule = excluded.rule, description = excluded.description,
             severity = excluded.severity, above = excluded.above, series = excluded.series,
             selector = excluded.selector, onset_ms = excluded.onset_ms,
             opened_ms = excluded.opened_ms, peak_score = excluded.peak_score,
             chain_len = excluded.chain_len, resolved_ms = excluded.resolved_ms,
             unresolved_at_ms = excluded.unresolved_at_ms, status = excluded.status,
             outcome = excluded.outcome, peer_z = excluded.peer_z,
             diagnosis = excluded.diagnosis",
    )?
    .execute(params![
        inc.id,
        incident_seq(&inc.id),
        inc.service,
        inc.signal,
        inc.rule,
        inc.description,
        inc.severity.as_str(),
        inc.above,
        json(&inc.series),
        selector,
        inc.onset_ms,
        inc.opened_ms,
        inc.peak_score,
        inc.chain_len as i64,
        inc.resolved_ms,
        inc.unresolved_at_ms,
        status.as_str(),
        incident_outcome(inc).as_str(),
        inc.peer_z,
        inc.diagnosis.as_ref().map(json),
    ])?;

    put_anomaly(
        c,
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

    let mut action = c.prepare_cached(
        "INSERT INTO actions (incident_id, step, kind, summary, rendered, allowed, reason,
             detail, planned_ms, timeout)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (incident_id, step) DO UPDATE SET
             kind = excluded.kind, summary = excluded.summary, rendered = excluded.rendered,
             allowed = excluded.allowed, reason = excluded.reason, detail = excluded.detail,
             planned_ms = excluded.planned_ms, timeout = excluded.timeout",
    )?;
    let mut outcome = c.prepare_cached(
        "INSERT INTO outcomes (incident_id, step, outcome, decided_ms, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (incident_id, step) DO UPDATE SET
             outcome = excluded.outcome, decided_ms = excluded.decided_ms,
             detail = excluded.detail",
    )?;
    let mut no_outcome =
        c.prepare_cached("DELETE FROM outcomes WHERE incident_id = ?1 AND step = ?2")?;
    for a in &inc.actions {
        action.execute(params![
            inc.id,
            a.step as i64,
            a.kind.as_str(),
            a.summary,
            a.rendered.as_ref().map(json),
            a.decision.allowed,
            a.decision.reason.as_ref().map(name_of),
            a.decision.detail,
            a.planned_ms,
            a.timeout.as_ref().map(name_of),
        ])?;
        match &a.verification {
            Some(v) => {
                outcome.execute(params![
                    inc.id,
                    a.step as i64,
                    name_of(&v.outcome),
                    v.decided_ms,
                    v.detail
                ])?;
            }
            None => {
                no_outcome.execute(params![inc.id, a.step as i64])?;
            }
        }
    }
    // The snapshot is the whole truth: no step beyond the ones it has.
    let last = inc.actions.iter().map(|a| a.step as i64).max().unwrap_or(0);
    c.prepare_cached("DELETE FROM actions WHERE incident_id = ?1 AND step > ?2")?
        .execute(params![inc.id, last])?;
    Ok(())
}

pub(super) fn put_anomaly(c: &Connection, a: &AnomalyRecord) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO anomalies (incident_id, selector, labels, score, onset_ms, above, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (incident_id) DO UPDATE SET
             selector = excluded.selector, labels = excluded.labels, score = excluded.score,
             onset_ms = excluded.onset_ms, above = excluded.above, evidence = excluded.evidence",
    )?
    .execute(params![
        a.incident,
        a.selector,
        json(&a.labels),
        a.score,
        a.onset_ms,
        a.above,
        a.evidence.to_string(),
    ])?;
    Ok(())
}

pub(super) fn put_event(c: &Connection, event: &EngineEvent) -> rusqlite::Result<()> {
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
    c.prepare_cached(
        "INSERT INTO events (incident_id, kind, ts_ms, body) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![incident, kind, ts_ms, json(event)])?;
    Ok(())
}

/// The state recorded for `key`, if any.
fn state_of(c: &Connection, key: &ActionKey) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT state FROM executions WHERE key = ?1")?
        .query_row([key.to_string()], |r| r.get(0))
        .optional()
}

pub(super) fn put_begin(
    c: &Connection,
    path: &std::path::Path,
    key: &ActionKey,
    summary: &str,
    started_ms: i64,
) -> Result<(), StoreError> {
    let inserted = c
        .prepare_cached(
            "INSERT INTO executions (key, incident_id, step, attempt, summary, state, started_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'started', ?6)
             ON CONFLICT (key) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                key.to_string(),
                key.incident,
                key.step as i64,
                key.attempt,
                summary,
                started_ms
            ])
        })
        .map_err(sql(path, "recording an action begin"))?;
    if inserted == 0 {
        let state = state_of(c, key)
            .map_err(sql(path, "reading an action"))?
            .unwrap_or_default();
        return Err(StoreError::DuplicateAction {
            key: key.clone(),
            state,
        });
    }
    Ok(())
}

pub(super) fn put_finish(
    c: &Connection,
    path: &std::path::Path,
    key: &ActionKey,
    result: &ActionResult,
    finished_ms: i64,
) -> Result<(), StoreError> {
    let updated = c
        .prepare_cached(
            "UPDATE executions SET state = 'finished', finished_ms = ?2, ok = ?3,
                 retryable = ?4, result = ?5, output = ?6, duration_us = ?7
             WHERE key = ?1 AND state = 'started'",
        )
        .and_then(|mut s| {
            s.execute(params![
                key.to_string(),
                finished_ms,
                result.ok,
                result.retryable,
                result.summary,
                result.output,
                i64::try_from(result.duration.as_micros()).unwrap_or(i64::MAX),
            ])
        })
        .map_err(sql(path, "recording an action result"))?;
    if updated == 1 {
        return Ok(());
    }
    let why = match state_of(c, key)
        .map_err(sql(path, "reading an action"))?
        .as_deref()
    {
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

pub(super) fn put_evidence(
    c: &Connection,
    incident: &str,
    evidence: &remediate::report::Evidence,
) -> rusqlite::Result<()> {
    let text = serde_json::to_string(evidence)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    c.prepare_cached(
        "INSERT INTO evidence (incident_id, points) VALUES (?1, ?2)
         ON CONFLICT (incident_id) DO UPDATE SET points = excluded.points",
    )?
    .execute(params![incident, text])?;
    Ok(())
}

pub(super) fn put_guard_state(
    c: &Connection,
    state: &remediate::engine::GuardState,
) -> rusqlite::Result<()> {
    let text = serde_json::to_string(state)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    c.prepare_cached(
        "INSERT INTO guard_state (id, state) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state",
    )?
    .execute(params![text])?;
    Ok(())
}
