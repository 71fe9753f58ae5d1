//! Reads: one incident with everything about it, and the report feed's
//! paginated list, in the SQL both backends run (see `db.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::db::{decoded, vals, ColumnError, Db, Row, Val};
use crate::{
    ActionKey, ActionRecord, AnomalyRecord, ExecutionState, IncidentFilter, IncidentOutcome,
    IncidentPage, IncidentRecord, IncidentStatus, IncidentSummary, Store, StoreError,
    DEFAULT_LIMIT,
};
use remediate::action::ActionResult;
use remediate::engine::{Decision, Incident, PlannedAction, Verification};

use crate::query::{parse_cursor, MAX_LIMIT};

/// Decodes a serde name (`"cooldown"`) into `T`.
fn decode_name<T: DeserializeOwned>(field: &str, name: String) -> Result<T, ColumnError> {
    serde_json::from_value(serde_json::Value::String(name)).map_err(|e| format!("{field}: {e}"))
}

/// Decodes JSON text into `T`.
fn decode_json<T: DeserializeOwned>(field: &str, text: &str) -> Result<T, ColumnError> {
    serde_json::from_str(text).map_err(|e| format!("{field}: {e}"))
}

fn status(text: &str) -> Result<IncidentStatus, ColumnError> {
    IncidentStatus::parse(text).ok_or_else(|| format!("status: unknown {text:?}"))
}

fn outcome(text: &str) -> Result<IncidentOutcome, ColumnError> {
    IncidentOutcome::parse(text).ok_or_else(|| format!("outcome: unknown {text:?}"))
}

impl Store {
    /// What the guards remembered when last written; `None` for a store
    /// that never had any.
    pub fn guard_state(&self) -> Result<Option<remediate::engine::GuardState>, StoreError> {
        decoded(
            self.db(),
            "reading the guard state",
            "guard_state",
            "SELECT id, state FROM guard_state WHERE id = 1",
            &[],
            |r| decode_json("state", &r.text(1)?),
        )
        .map(|v| v.into_iter().next())
    }

    /// The evidence stored for an incident (its series around it with the
    /// detector's band); `None` when none was stored.
    pub fn evidence(&self, id: &str) -> Result<Option<remediate::report::Evidence>, StoreError> {
        decoded(
            self.db(),
            "reading an incident's evidence",
            "evidence",
            "SELECT incident_id, points FROM evidence WHERE incident_id = ?1",
            vals![id],
            |r| decode_json("points", &r.text(1)?),
        )
        .map(|v| v.into_iter().next())
    }

    /// One incident with its anomalies and executions; `None` if no
    /// incident has this id.
    pub fn incident(&self, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let db = self.db();
        let found = decoded(
            db,
            "reading an incident",
            "incidents",
            "SELECT id, service, signal, rule, description, severity, above, series,
                 onset_ms, opened_ms, peak_score, chain_len, resolved_ms,
                 unresolved_at_ms, status, outcome, peer_z, closed_reason, diagnosis
             FROM incidents WHERE id = ?1",
            vals![id],
            |r| {
                let incident = Incident {
                    id: r.text(0)?,
                    service: r.text(1)?,
                    signal: r.text(2)?,
                    rule: r.text(3)?,
                    description: r.opt_text(4)?,
                    severity: decode_name("severity", r.text(5)?)?,
                    above: r.bool(6)?,
                    series: decode_json::<BTreeMap<String, String>>("series", &r.text(7)?)?,
                    onset_ms: r.i64(8)?,
                    opened_ms: r.i64(9)?,
                    peak_score: r.f64(10)?,
                    chain_len: r.i64(11)?.max(0) as usize,
                    resolved_ms: r.opt_i64(12)?,
                    unresolved_at_ms: r.opt_i64(13)?,
                    peer_z: r.opt_f64(16)?,
                    diagnosis: r
                        .opt_text(18)?
                        .map(|t| decode_json("diagnosis", &t))
                        .transpose()?,
                    actions: Vec::new(),
                };
                Ok((
                    incident,
                    status(&r.text(14)?)?,
                    outcome(&r.text(15)?)?,
                    r.opt_text(17)?,
                ))
            },
        )?;
        let Some((mut incident, status, outcome, closed_reason)) = found.into_iter().next() else {
            return Ok(None);
        };
        incident.actions = actions(db, &incident.id)?;
        let anomalies = anomalies(db, &incident.id)?;
        let executions = executions_where(db, "incident_id = ?1", vals![&incident.id])?;
        Ok(Some(IncidentRecord {
            incident,
            status,
            outcome,
            anomalies,
            executions,
            closed_reason,
        }))
    }

    /// The services, signals and rules incidents name (for a filter's
    /// choices), each sorted, at most [`crate::MAX_FACET_VALUES`].
    pub fn facets(&self) -> Result<crate::Facets, StoreError> {
        let column = |name: &str| -> Result<Vec<String>, StoreError> {
            let q = format!(
                "SELECT DISTINCT {name} FROM incidents WHERE {name} <> '' ORDER BY {name} LIMIT {}",
                crate::MAX_FACET_VALUES
            );
            decoded(self.db(), "listing facets", "incidents", &q, &[], |r| {
                r.text(0)
            })
        };
        Ok(crate::Facets {
            services: column("service")?,
            signals: column("signal")?,
            rules: column("rule")?,
        })
    }

    /// A page of incidents matching `filter`, newest first.
    pub fn list(&self, filter: &IncidentFilter) -> Result<IncidentPage, StoreError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut values: Vec<Val> = Vec::new();
        // Placeholders are numbered in the order values are pushed.
        let mut bind = |clause: &'static str, v: Val| {
            values.push(v);
            clauses.push(clause);
        };
        if let Some(service) = &filter.service {
            bind("i.service = ?", service.into());
        }
        if let Some(signal) = &filter.signal {
            bind("i.signal = ?", signal.into());
        }
        if let Some(rule) = &filter.rule {
            bind("i.rule = ?", rule.into());
        }
        if let Some(t) = filter.since_ms {
            bind("i.opened_ms >= ?", t.into());
        }
        if let Some(t) = filter.until_ms {
            bind("i.opened_ms < ?", t.into());
        }
        if let Some(s) = filter.status {
            bind("i.status = ?", s.as_str().into());
        }
        if let Some(o) = filter.outcome {
            bind("i.outcome = ?", o.as_str().into());
        }
        if let Some(cursor) = &filter.cursor {
            let (opened, pk) =
                parse_cursor(cursor).ok_or_else(|| StoreError::BadCursor(cursor.clone()))?;
            bind("(i.opened_ms, i.pk) < (?, ?)", opened.into());
            values.push(pk.into());
        }
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut query = String::from(
            "SELECT i.id, i.pk, i.service, i.signal, i.rule, i.severity, i.selector,
                 i.status, i.outcome, i.onset_ms, i.opened_ms, i.resolved_ms,
                 i.unresolved_at_ms, i.peak_score, i.chain_len,
                 (SELECT COUNT(*) FROM actions a WHERE a.incident_id = i.id),
                 (SELECT COUNT(*) FROM actions a WHERE a.incident_id = i.id AND a.allowed)
             FROM incidents i",
        );
        if !clauses.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&clauses.join(" AND "));
        }
        // One more than the page: whether there is a next page.
        query.push_str(&format!(
            " ORDER BY i.opened_ms DESC, i.pk DESC LIMIT {}",
            limit + 1
        ));
        let mut incidents = decoded(
            self.db(),
            "listing incidents",
            "incidents",
            &query,
            &values,
            summary_row,
        )?;
        let more = incidents.len() > limit;
        incidents.truncate(limit);
        let next_cursor = more
            .then(|| incidents.last())
            .flatten()
            .map(|(pk, s)| format!("{}:{pk}", s.opened_ms));
        Ok(IncidentPage {
            incidents: incidents.into_iter().map(|(_, s)| s).collect(),
            next_cursor,
        })
    }
}

fn actions(db: &dyn Db, id: &str) -> Result<Vec<PlannedAction>, StoreError> {
    decoded(
        db,
        "reading actions",
        "actions",
        // The first column names the row in an error: `inc-000001 step 3`.
        "SELECT a.incident_id || ' step ' || a.step, a.step, a.kind, a.summary, a.rendered, a.allowed, a.reason,
             a.detail, a.planned_ms, o.outcome, o.decided_ms, o.detail, a.timeout
         FROM actions a LEFT JOIN outcomes o USING (incident_id, step)
         WHERE a.incident_id = ?1 ORDER BY a.step",
        vals![id],
        |r| {
            let step = r.i64(1)?;
            Ok(PlannedAction {
                step: step.max(0) as usize,
                kind: decode_name("kind", r.text(2)?)?,
                summary: r.text(3)?,
                rendered: r
                    .opt_text(4)?
                    .map(|j| decode_json("rendered", &j))
                    .transpose()?,
                decision: Decision {
                    allowed: r.bool(5)?,
                    reason: r
                        .opt_text(6)?
                        .map(|t| decode_name("reason", t))
                        .transpose()
                        ?,
                    detail: r.text(7)?,
                },
                planned_ms: r.i64(8)?,
                timeout: r
                    .opt_text(12)?
                    .map(|t| decode_name("timeout", t))
                    .transpose()?,
                verification: match r.opt_text(9)? {
                    Some(outcome) => Some(Verification {
                        outcome: decode_name("outcome", outcome)?,
                        decided_ms: r.i64(10)?,
                        detail: r.text(11)?,
                    }),
                    None => None,
                },
            })
        },
    )
}

fn anomalies(db: &dyn Db, id: &str) -> Result<Vec<AnomalyRecord>, StoreError> {
    decoded(
        db,
        "reading anomalies",
        "anomalies",
        "SELECT incident_id, selector, labels, score, onset_ms, above, evidence
         FROM anomalies WHERE incident_id = ?1 ORDER BY pk",
        vals![id],
        |r| {
            Ok(AnomalyRecord {
                incident: r.opt_text(0)?,
                selector: r.text(1)?,
                labels: decode_json("labels", &r.text(2)?)?,
                score: r.f64(3)?,
                onset_ms: r.i64(4)?,
                above: r.bool(5)?,
                evidence: decode_json("evidence", &r.text(6)?)?,
            })
        },
    )
}

/// One list row: the incident's `pk` (for the cursor) and its summary.
fn summary_row(r: &Row) -> Result<(i64, IncidentSummary), ColumnError> {
    Ok((
        r.i64(1)?,
        IncidentSummary {
            id: r.text(0)?,
            service: r.text(2)?,
            signal: r.text(3)?,
            rule: r.text(4)?,
            severity: decode_name("severity", r.text(5)?)?,
            selector: r.text(6)?,
            status: status(&r.text(7)?)?,
            outcome: outcome(&r.text(8)?)?,
            onset_ms: r.i64(9)?,
            opened_ms: r.i64(10)?,
            resolved_ms: r.opt_i64(11)?,
            unresolved_at_ms: r.opt_i64(12)?,
            peak_score: r.f64(13)?,
            chain_len: r.i64(14)?.max(0) as usize,
            steps: r.i64(15)?.max(0) as usize,
            performed: r.i64(16)?.max(0) as usize,
        },
    ))
}

/// Executions matching `condition` (SQL over the `executions` table), by
/// incident, step and attempt.
pub(crate) fn executions_where(
    db: &dyn Db,
    condition: &str,
    params: &[Val],
) -> Result<Vec<ActionRecord>, StoreError> {
    decoded(
        db,
        "reading executions",
        "executions",
        &format!(
            "SELECT key, incident_id, step, attempt, summary, state, started_ms, finished_ms,
                 ok, retryable, result, output, duration_us, pid, pid_start, settled
             FROM executions WHERE {condition} ORDER BY incident_id, step, attempt"
        ),
        params,
        execution_row,
    )
}

/// One `executions` row, in [`executions_where`]'s columns.
pub(crate) fn execution_row(r: &Row) -> Result<ActionRecord, ColumnError> {
    let state = r.text(5)?;
    let state = ExecutionState::parse(&state).ok_or_else(|| format!("state: unknown {state:?}"))?;
    let result = match r.opt_bool(8)? {
        Some(ok) => Some(ActionResult {
            ok,
            retryable: r.opt_bool(9)?.unwrap_or(false),
            summary: r.opt_text(10)?.unwrap_or_default(),
            output: r.opt_text(11)?.unwrap_or_default(),
            duration: Duration::from_micros(r.opt_i64(12)?.unwrap_or(0).max(0) as u64),
        }),
        None => None,
    };
    Ok(ActionRecord {
        key: ActionKey {
            incident: r.text(1)?,
            step: r.i64(2)?.max(0) as usize,
            attempt: r.i64(3)?.clamp(0, i64::from(u32::MAX)) as u32,
        },
        summary: r.text(4)?,
        state,
        started_ms: r.i64(6)?,
        finished_ms: r.opt_i64(7)?,
        result,
        process: r
            .opt_i64(13)?
            .and_then(|p| u32::try_from(p).ok())
            .map(|pid| crate::ChildProcess {
                pid,
                start_ticks: r
                    .opt_i64(14)
                    .ok()
                    .flatten()
                    .and_then(|t| u64::try_from(t).ok()),
            }),
        settled: r.opt_text(15)?,
    })
}
