//! Reads: one incident with everything about it, and the report feed's
//! paginated list.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Params, Row};
use serde::de::DeserializeOwned;

use super::{sql, Store};
use crate::{
    ActionKey, ActionRecord, AnomalyRecord, ExecutionState, IncidentFilter, IncidentOutcome,
    IncidentPage, IncidentRecord, IncidentStatus, IncidentSummary, StoreError, DEFAULT_LIMIT,
};
use remediate::action::ActionResult;
use remediate::engine::{Decision, Incident, PlannedAction, Verification};
use remediate::runbook::Severity;

use crate::query::{parse_cursor, MAX_LIMIT};

fn corrupt(path: &Path, table: &'static str, row: &str, message: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        table,
        row: row.to_owned(),
        message,
    }
}

/// Decodes a serde name (`"cooldown"`) or JSON text into `T`.
fn decode<T: DeserializeOwned>(
    path: &Path,
    table: &'static str,
    row: &str,
    field: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| corrupt(path, table, row, format!("{field}: {e}")))
}

fn decode_name<T: DeserializeOwned>(
    path: &Path,
    table: &'static str,
    row: &str,
    field: &str,
    name: String,
) -> Result<T, StoreError> {
    decode(path, table, row, field, serde_json::Value::String(name))
}

fn decode_json<T: DeserializeOwned>(
    path: &Path,
    table: &'static str,
    row: &str,
    field: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(path, table, row, format!("{field}: {e}")))
}

impl Store {
    /// What the guards remembered when last written; `None` for a store
    /// that never had any.
    pub fn guard_state(&self) -> Result<Option<remediate::engine::GuardState>, StoreError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM guard_state WHERE id = 1")
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(super::sql(&self.path, "reading the guard state"))?;
        text.map(|t| decode_json(&self.path, "guard_state", "1", "state", &t))
            .transpose()
    }

    /// The evidence stored for an incident (its series around it with the
    /// detector's band); `None` when none was stored.
    pub fn evidence(&self, id: &str) -> Result<Option<remediate::report::Evidence>, StoreError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT points FROM evidence WHERE incident_id = ?1")
            .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
            .map_err(super::sql(&self.path, "reading an incident's evidence"))?;
        text.map(|t| decode_json(&self.path, "evidence", id, "points", &t))
            .transpose()
    }

    /// One incident with its anomalies and executions; `None` if no
    /// incident has this id.
    pub fn incident(&self, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let path = &self.path;
        let c = &self.conn;
        let row = c
            .prepare_cached(
                "SELECT id, service, signal, rule, description, severity, above, series,
                     onset_ms, opened_ms, peak_score, chain_len, resolved_ms,
                     unresolved_at_ms, status, outcome, peer_z, closed_reason, diagnosis
                 FROM incidents WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, bool>(6)?,
                        r.get::<_, String>(7)?,
                        (r.get::<_, i64>(8)?, r.get::<_, i64>(9)?),
                        r.get::<_, f64>(10)?,
                        r.get::<_, i64>(11)?,
                        (r.get::<_, Option<i64>>(12)?, r.get::<_, Option<i64>>(13)?),
                        (r.get::<_, String>(14)?, r.get::<_, String>(15)?),
                        r.get::<_, Option<f64>>(16)?,
                        (
                            r.get::<_, Option<String>>(17)?,
                            r.get::<_, Option<String>>(18)?,
                        ),
                    ))
                })
                .optional()
            })
            .map_err(sql(path, "reading an incident"))?;
        let Some((
            id,
            service,
            signal,
            rule,
            description,
            severity,
            above,
            series,
            (onset_ms, opened_ms),
            peak_score,
            chain_len,
            (resolved_ms, unresolved_at_ms),
            (status, outcome),
            peer_z,
            (closed_reason, diagnosis),
        )) = row
        else {
            return Ok(None);
        };
        let t = "incidents";
        let status = IncidentStatus::parse(&status)
            .ok_or_else(|| corrupt(path, t, &id, format!("status: unknown {status:?}")))?;
        let outcome = IncidentOutcome::parse(&outcome)
            .ok_or_else(|| corrupt(path, t, &id, format!("outcome: unknown {outcome:?}")))?;
        let id_for_diagnosis = id.clone();
        let incident = Incident {
            severity: decode_name(path, t, &id, "severity", severity)?,
            series: decode_json::<BTreeMap<String, String>>(path, t, &id, "series", &series)?,
            actions: self.actions(&id)?,
            id,
            service,
            signal,
            rule,
            description,
            above,
            onset_ms,
            opened_ms,
            peak_score,
            peer_z,
            chain_len: chain_len.max(0) as usize,
            resolved_ms,
            unresolved_at_ms,
            diagnosis: match diagnosis {
                Some(text) => Some(decode_json(path, t, &id_for_diagnosis, "diagnosis", &text)?),
                None => None,
            },
        };
        let anomalies = self.anomalies(&incident.id)?;
        let executions = executions_where(c, path, "incident_id = ?1", [&incident.id])?;
        Ok(Some(IncidentRecord {
            incident,
            status,
            outcome,
            anomalies,
            executions,
            closed_reason,
        }))
    }

    fn actions(&self, id: &str) -> Result<Vec<PlannedAction>, StoreError> {
        let path = &self.path;
        type Raw = (
            i64,
            String,
            String,
            Option<String>,
            (bool, Option<String>, String),
            (i64, Option<String>),
            Option<(String, i64, String)>,
        );
        let rows: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT a.step, a.kind, a.summary, a.rendered, a.allowed, a.reason, a.detail,
                     a.planned_ms, o.outcome, o.decided_ms, o.detail, a.timeout
                 FROM actions a LEFT JOIN outcomes o USING (incident_id, step)
                 WHERE a.incident_id = ?1 ORDER BY a.step",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| {
                    let verification = match r.get::<_, Option<String>>(8)? {
                        Some(outcome) => Some((outcome, r.get(9)?, r.get(10)?)),
                        None => None,
                    };
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        (r.get(4)?, r.get(5)?, r.get(6)?),
                        (r.get(7)?, r.get(11)?),
                        verification,
                    ))
                })?
                .collect()
            })
            .map_err(sql(path, "reading actions"))?;
        let t = "actions";
        rows.into_iter()
            .map(
                |(
                    step,
                    kind,
                    summary,
                    rendered,
                    (allowed, reason, detail),
                    (planned_ms, timeout),
                    v,
                )| {
                    let row = format!("{id} step {step}");
                    Ok(PlannedAction {
                        step: step.max(0) as usize,
                        kind: decode_name(path, t, &row, "kind", kind)?,
                        rendered: rendered
                            .map(|j| decode_json(path, t, &row, "rendered", &j))
                            .transpose()?,
                        summary,
                        decision: Decision {
                            allowed,
                            reason: reason
                                .map(|r| decode_name(path, t, &row, "reason", r))
                                .transpose()?,
                            detail,
                        },
                        planned_ms,
                        timeout: timeout
                            .map(|t| decode_name(path, "actions", &row, "timeout", t))
                            .transpose()?,
                        verification: v
                            .map(|(outcome, decided_ms, detail)| {
                                Ok::<_, StoreError>(Verification {
                                    outcome: decode_name(
                                        path, "outcomes", &row, "outcome", outcome,
                                    )?,
                                    decided_ms,
                                    detail,
                                })
                            })
                            .transpose()?,
                    })
                },
            )
            .collect()
    }

    fn anomalies(&self, id: &str) -> Result<Vec<AnomalyRecord>, StoreError> {
        let path = &self.path;
        let rows: Vec<(String, String, f64, i64, bool, String)> = self
            .conn
            .prepare_cached(
                "SELECT selector, labels, score, onset_ms, above, evidence
                 FROM anomalies WHERE incident_id = ?1 ORDER BY pk",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect()
            })
            .map_err(sql(path, "reading anomalies"))?;
        rows.into_iter()
            .map(|(selector, labels, score, onset_ms, above, evidence)| {
                Ok(AnomalyRecord {
                    incident: Some(id.to_owned()),
                    labels: decode_json(path, "anomalies", id, "labels", &labels)?,
                    evidence: decode_json(path, "anomalies", id, "evidence", &evidence)?,
                    selector,
                    score,
                    onset_ms,
                    above,
                })
            })
            .collect()
    }

    /// The services, signals and rules incidents name (for a filter's
    /// choices), each sorted, at most [`crate::MAX_FACET_VALUES`].
    pub fn facets(&self) -> Result<crate::Facets, StoreError> {
        let path = &self.path;
        let column = |name: &str| -> Result<Vec<String>, StoreError> {
            let q = format!(
                "SELECT DISTINCT {name} FROM incidents WHERE {name} <> '' ORDER BY {name} LIMIT {}",
                crate::MAX_FACET_VALUES
            );
            self.conn
                .prepare(&q)
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(sql(path, "listing facets"))
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
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |clause: &'static str, v: Value, clauses: &mut Vec<&str>| {
            values.push(v);
            clauses.push(clause);
        };
        // Placeholders are numbered in the order values are pushed.
        if let Some(service) = &filter.service {
            bind("i.service = ?", Value::Text(service.clone()), &mut clauses);
        }
        if let Some(signal) = &filter.signal {
            bind("i.signal = ?", Value::Text(signal.clone()), &mut clauses);
        }
        if let Some(rule) = &filter.rule {
            bind("i.rule = ?", Value::Text(rule.clone()), &mut clauses);
        }
        if let Some(t) = filter.since_ms {
            bind("i.opened_ms >= ?", Value::Integer(t), &mut clauses);
        }
        if let Some(t) = filter.until_ms {
            bind("i.opened_ms < ?", Value::Integer(t), &mut clauses);
        }
        if let Some(s) = filter.status {
            bind("i.status = ?", Value::Text(s.as_str().into()), &mut clauses);
        }
        if let Some(o) = filter.outcome {
            bind(
                "i.outcome = ?",
                Value::Text(o.as_str().into()),
                &mut clauses,
            );
        }
        if let Some(cursor) = &filter.cursor {
            let (opened, pk) =
                parse_cursor(cursor).ok_or_else(|| StoreError::BadCursor(cursor.clone()))?;
            bind(
                "(i.opened_ms, i.pk) < (?, ?)",
                Value::Integer(opened),
                &mut clauses,
            );
            values.push(Value::Integer(pk));
        }
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut query = String::from(
            "SELECT i.pk, i.id, i.service, i.signal, i.rule, i.severity, i.selector,
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
        let path = &self.path;
        type Raw = (i64, IncidentSummary);
        let mut bad: Option<StoreError> = None;
        let rows: Vec<Raw> = self
            .conn
            .prepare(&query)
            .and_then(|mut s| {
                s.query_map(rusqlite::params_from_iter(values), |r| {
                    summary_row(r, path, &mut bad)
                })?
                .collect()
            })
            .map_err(sql(path, "listing incidents"))?;
        if let Some(e) = bad {
            return Err(e);
        }
        let more = rows.len() > limit;
        let mut incidents: Vec<(i64, IncidentSummary)> = rows;
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

/// One list row; a value that does not decode is put in `bad` (the first
/// one) and the row gets a placeholder, since `query_map` can only return
/// SQLite errors.
fn summary_row(
    r: &Row<'_>,
    path: &Path,
    bad: &mut Option<StoreError>,
) -> rusqlite::Result<(i64, IncidentSummary)> {
    let id: String = r.get(1)?;
    let severity: String = r.get(5)?;
    let status: String = r.get(7)?;
    let outcome: String = r.get(8)?;
    let t = "incidents";
    let mut note = |e: StoreError| {
        bad.get_or_insert(e);
    };
    let severity = decode_name(path, t, &id, "severity", severity).unwrap_or_else(|e| {
        note(e);
        Severity::Warning
    });
    let status = IncidentStatus::parse(&status).unwrap_or_else(|| {
        note(corrupt(path, t, &id, format!("status: unknown {status:?}")));
        IncidentStatus::Open
    });
    let outcome = IncidentOutcome::parse(&outcome).unwrap_or_else(|| {
        note(corrupt(
            path,
            t,
            &id,
            format!("outcome: unknown {outcome:?}"),
        ));
        IncidentOutcome::None
    });
    Ok((
        r.get(0)?,
        IncidentSummary {
            id,
            service: r.get(2)?,
            signal: r.get(3)?,
            rule: r.get(4)?,
            severity,
            selector: r.get(6)?,
            status,
            outcome,
            onset_ms: r.get(9)?,
            opened_ms: r.get(10)?,
            resolved_ms: r.get(11)?,
            unresolved_at_ms: r.get(12)?,
            peak_score: r.get(13)?,
            chain_len: r.get::<_, i64>(14)?.max(0) as usize,
            steps: r.get::<_, i64>(15)?.max(0) as usize,
            performed: r.get::<_, i64>(16)?.max(0) as usize,
        },
    ))
}

/// Executions matching `condition` (SQL over the `executions` table), by
/// incident, step and attempt.
pub(super) fn executions_where<P: Params>(
    c: &Connection,
    path: &Path,
    condition: &str,
    params: P,
) -> Result<Vec<ActionRecord>, StoreError> {
    type Raw = (
        String,
        (String, i64, i64),
        String,
        String,
        (i64, Option<i64>),
        Option<(bool, bool, String, String, i64)>,
        (Option<i64>, Option<i64>, Option<String>),
    );
    let rows: Vec<Raw> = c
        .prepare_cached(&format!(
            "SELECT key, incident_id, step, attempt, summary, state, started_ms, finished_ms,
                 ok, retryable, result, output, duration_us, pid, pid_start, settled
             FROM executions WHERE {condition} ORDER BY incident_id, step, attempt"
        ))
        .and_then(|mut s| {
            s.query_map(params, |r| {
                let result = match r.get::<_, Option<bool>>(8)? {
                    Some(ok) => Some((
                        ok,
                        r.get::<_, Option<bool>>(9)?.unwrap_or(false),
                        r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                        r.get::<_, Option<i64>>(12)?.unwrap_or(0),
                    )),
                    None => None,
                };
                Ok((
                    r.get(0)?,
                    (r.get(1)?, r.get(2)?, r.get(3)?),
                    r.get(4)?,
                    r.get(5)?,
                    (r.get(6)?, r.get(7)?),
                    result,
                    (r.get(13)?, r.get(14)?, r.get(15)?),
                ))
            })?
            .collect()
        })
        .map_err(sql(path, "reading executions"))?;
    rows.into_iter()
        .map(
            |(
                key,
                (incident, step, attempt),
                summary,
                state,
                (started_ms, finished_ms),
                result,
                (pid, pid_start, settled),
            )| {
                let state = ExecutionState::parse(&state).ok_or_else(|| {
                    corrupt(
                        path,
                        "executions",
                        &key,
                        format!("state: unknown {state:?}"),
                    )
                })?;
                Ok(ActionRecord {
                    key: ActionKey {
                        incident,
                        step: step.max(0) as usize,
                        attempt: attempt.clamp(0, u32::MAX as i64) as u32,
                    },
                    summary,
                    state,
                    started_ms,
                    finished_ms,
                    result: result.map(|(ok, retryable, summary, output, us)| ActionResult {
                        ok,
                        retryable,
                        summary,
                        output,
                        duration: Duration::from_micros(us.max(0) as u64),
                    }),
                    process: pid.and_then(|p| u32::try_from(p).ok()).map(|pid| {
                        crate::ChildProcess {
                            pid,
                            start_ticks: pid_start.and_then(|t| u64::try_from(t).ok()),
                        }
                    }),
                    settled,
                })
            },
        )
        .collect()
}
