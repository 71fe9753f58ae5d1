//! The post-incident report feed over HTTP, served by `heal watch --db`:
//! `GET /api/incidents` (JSON, paginated, filtered by service, time,
//! status and outcome), `GET /api/incidents/ID` (one incident as JSON),
//! `GET /incidents/ID` (the HTML report with its SVG chart) and
//! `GET /feed.atom` (the latest closed incidents).
//!
//! Every request opens the store read-only on a blocking thread: SQLite in
//! WAL mode lets readers work while the store writer commits, and a reader
//! never migrates or marks anything.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use stdx::Clock;
use store::{IncidentFilter, IncidentOutcome, IncidentStatus, Store};

use super::error;

#[derive(Clone)]
struct Feed {
    db: Option<PathBuf>,
    clock: Arc<dyn Clock>,
}

/// Query string of `GET /api/incidents`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub(crate) service: Option<String>,
    pub(crate) signal: Option<String>,
    pub(crate) rule: Option<String>,
    /// RFC 3339 or ms since the epoch.
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
}

/// The feed's routes; without a store they answer 404 saying how to get one.
pub(crate) fn routes(db: Option<PathBuf>, clock: Arc<dyn Clock>) -> axum::Router {
    axum::Router::new()
        .route("/api/incidents", get(list))
        .route("/api/incidents/{id}", get(show))
        .route("/incidents/{id}", get(page))
        .route("/feed.atom", get(feed_atom))
        .with_state(Feed { db, clock })
}

/// ms since the epoch, or any form `heal record --start` takes.
fn time(field: &str, v: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    crate::text::parse_time(field, v, now_ms).map_err(|e| e.to_string())
}

/// The filter a query asks for, or every problem with it.
pub(crate) fn filter(q: ListQuery, now_ms: i64) -> Result<IncidentFilter, String> {
    let mut problems = Vec::new();
    let mut f = IncidentFilter {
        service: q.service,
        signal: q.signal,
        rule: q.rule,
        limit: q.limit.unwrap_or(0),
        cursor: q.cursor,
        ..IncidentFilter::default()
    };
    for (field, v, slot) in [
        ("since", &q.since, &mut f.since_ms),
        ("until", &q.until, &mut f.until_ms),
    ] {
        if let Some(v) = v {
            match time(field, v, now_ms) {
                Ok(t) => *slot = Some(t),
                Err(e) => problems.push(e),
            }
        }
    }
    if let Some(s) = &q.status {
        match IncidentStatus::parse(s) {
            Some(s) => f.status = Some(s),
            None => problems.push(format!("status {s:?}: expected open, resolved or closed")),
        }
    }
    if let Some(o) = &q.outcome {
        match IncidentOutcome::parse(o) {
            Some(o) => f.outcome = Some(o),
            None => problems.push(format!(
                "outcome {o:?}: expected recovered, worse, not_recovered or none"
            )),
        }
    }
    if problems.is_empty() {
        Ok(f)
    } else {
        Err(problems.join("; "))
    }
}

/// Runs `read` on the store in a blocking thread.
pub(crate) async fn with_store<T: Send + 'static>(
    db: Option<PathBuf>,
    read: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let Some(db) = db else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no incident store: start heal watch with --db FILE",
        ));
    };
    tokio::task::spawn_blocking(move || {
        let store = Store::open_read_only(&db).map_err(|e| e.to_string())?;
        read(&store)
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn list(
    State(feed): State<Feed>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let f = match filter(q, feed.clock.now_ms()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match with_store(feed.db.clone(), move |s| {
        s.list(&f).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(page) => Json(page).into_response(),
        Err(r) => r,
    }
}

async fn show(State(feed): State<Feed>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    let found = with_store(feed.db.clone(), move |s| {
        let Some(record) = s.incident(&wanted).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        // Evidence is optional: a report without it still reads.
        let logs = s.evidence(&wanted).ok().flatten().and_then(|e| e.logs);
        Ok(Some((record, logs)))
    })
    .await;
    match found {
        Ok(Some((record, logs))) => {
            // The incident as the JSON Lines report writes it, with the
            // store's status, outcome and executions beside it.
            let incident: serde_json::Value =
                serde_json::from_str(&remediate::report::json_line(&record.incident))
                    .unwrap_or_default();
            let executions: Vec<serde_json::Value> = record
                .executions
                .iter()
                .map(|x| {
                    serde_json::json!({
                        "key": x.key,
                        "summary": x.summary,
                        "state": x.state.as_str(),
                        "started_ms": x.started_ms,
                        "finished_ms": x.finished_ms,
                        "result": x.result.as_ref().map(|r| serde_json::json!({
                            "ok": r.ok,
                            "retryable": r.retryable,
                            "summary": r.summary,
                            "output": r.output,
                            "duration_ms": r.duration.as_secs_f64() * 1000.0,
                        })),
                    })
                })
                .collect();
            Json(serde_json::json!({
                "incident": incident,
                "status": record.status.as_str(),
                "outcome": record.outcome.as_str(),
                "anomalies": record.anomalies,
                "executions": executions,
                "logs": logs,
            }))
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        Err(r) => r,
    }
}

/// Closed incidents in the Atom feed.
const FEED_ENTRIES: usize = 50;

async fn page(State(feed): State<Feed>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    let found = with_store(feed.db.clone(), move |s| {
        let Some(record) = s.incident(&wanted).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let evidence = s.evidence(&wanted).map_err(|e| e.to_string())?;
        Ok(Some(remediate::report::html(
            &record.incident,
            evidence.as_ref(),
        )))
    })
    .await;
    match found {
        Ok(Some(html)) => (
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        Err(r) => r,
    }
}

async fn feed_atom(State(feed): State<Feed>, headers: axum::http::HeaderMap) -> Response {
    // Entry links are absolute, from the address the reader used.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .unwrap_or("127.0.0.1")
        .to_owned();
    let found = with_store(feed.db.clone(), move |s| {
        let page = s
            .list(&IncidentFilter {
                status: Some(IncidentStatus::Resolved),
                limit: FEED_ENTRIES,
                ..IncidentFilter::default()
            })
            .map_err(|e| e.to_string())?;
        let mut incidents = Vec::new();
        for summary in &page.incidents {
            if let Some(r) = s.incident(&summary.id).map_err(|e| e.to_string())? {
                incidents.push(r.incident);
            }
        }
        Ok(incidents)
    })
    .await;
    match found {
        Ok(incidents) => {
            let updated = incidents
                .iter()
                .filter_map(|i| i.resolved_ms)
                .max()
                .unwrap_or(0);
            let url = format!("http://{host}/feed.atom");
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/atom+xml; charset=utf-8",
                )],
                remediate::report::atom(&incidents, &url, updated),
            )
                .into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_filters_with_every_problem_reported() {
        let f = filter(
            ListQuery {
                service: Some("web".into()),
                signal: None,
                rule: Some("latency-high".into()),
                since: Some("2026-03-01T00:00:00Z".into()),
                until: Some("1772323260000".into()),
                status: Some("resolved".into()),
                outcome: Some("recovered".into()),
                limit: Some(10),
                cursor: None,
            },
            0,
        )
        .unwrap();
        assert_eq!(f.rule.as_deref(), Some("latency-high"));
        assert_eq!(f.since_ms, Some(1_772_323_200_000));
        assert_eq!(f.until_ms, Some(1_772_323_260_000));
        assert_eq!(f.status, Some(IncidentStatus::Resolved));
        assert_eq!(f.outcome, Some(IncidentOutcome::Recovered));
        let e = filter(
            ListQuery {
                since: Some("yesterday".into()),
                status: Some("shut".into()),
                outcome: Some("fine".into()),
                ..ListQuery::default()
            },
            0,
        )
        .unwrap_err();
        assert!(e.contains("since \"yesterday\""), "{e}");
        assert!(e.contains("status \"shut\""), "{e}");
        assert!(e.contains("outcome \"fine\""), "{e}");
    }
}
