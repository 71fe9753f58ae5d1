//! Silences, maintenance windows and approvals over the API.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use remediate::engine::{EngineEvent, Matcher};
use serde::{Deserialize, Serialize};

use stdx::Clock;

use super::{ask, authorize, error, ApiState};
use crate::live::{ChangeError, Command};

/// Body of `POST /api/silences`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `name=value`, `name!=value`, `name=~re`, `name!~re`; all must match.
    pub matchers: Vec<String>,
    /// Start, RFC 3339; now when left out.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// How long (`30m`, `2h`).
    pub duration: String,
    /// Who sets it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Body of `POST /api/incidents/ID/approve`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Who approves.
    pub by: String,
}

/// The routes of silences and approvals.
pub(crate) fn routes(api: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/silences", get(list_silences).post(add_silence))
        .route("/api/silences/{id}", axum::routing::delete(expire_silence))
        .route("/api/approvals", get(list_approvals))
        .route("/api/incidents/{id}/approve", post(approve))
        .with_state(api)
}

async fn list_silences(State(api): State<ApiState>) -> Response {
    match ask(&api, |reply| Command::ListSilences { reply }).await {
        Ok(list) => Json(list).into_response(),
        Err(r) => r,
    }
}

/// Checks a new silence at wall time `now_ms`: its matchers, start and
/// duration. The API checks it, and `heal silence add` before sending, so
/// a typo is reported without a round trip.
///
/// # Errors
///
/// Every problem, `; `-separated.
pub fn check_new_silence(
    body: &NewSilence,
    now_ms: i64,
) -> Result<(Vec<Matcher>, i64, i64), String> {
    let mut problems = Vec::new();
    let mut matchers = Vec::new();
    for m in &body.matchers {
        match Matcher::parse(m) {
            Ok(m) => matchers.push(m),
            Err(e) => problems.push(e),
        }
    }
    if body.matchers.is_empty() {
        problems.push("matchers: at least one is needed".to_owned());
    }
    let starts = match &body.starts_at {
        None => Some(now_ms),
        Some(t) => match crate::text::parse_time("starts_at", t, now_ms) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
    };
    let duration = match body.duration.parse::<remediate::Duration>() {
        Ok(d) if !d.is_zero() => Some(d.as_millis_i64()),
        Ok(_) => {
            problems.push("duration: must be longer than 0s".to_owned());
            None
        }
        Err(e) => {
            problems.push(format!("duration {:?}: {e}", body.duration));
            None
        }
    };
    if body.created_by.trim().is_empty() {
        problems.push("created_by: say who sets the silence".to_owned());
    }
    match (problems.is_empty(), starts, duration) {
        (true, Some(s), Some(d)) => Ok((matchers, s, s.saturating_add(d))),
        _ => Err(problems.join("; ")),
    }
}

async fn add_silence(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (matchers, starts_ms, ends_ms) = match check_new_silence(&body, api.clock.now_ms()) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let result = ask(&api, |reply| Command::AddSilence {
        matchers,
        starts_ms,
        ends_ms,
        by: body.created_by.clone(),
        comment: body.comment.clone(),
        reply,
    })
    .await;
    match result {
        Ok(Ok(s)) => (StatusCode::CREATED, Json(s)).into_response(),
        Ok(Err(e @ ChangeError::NotPersisted(_))) => not_persisted(e),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(r) => r,
    }
}

async fn expire_silence(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    match ask(&api, |reply| Command::ExpireSilence { id, reply }).await {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e @ ChangeError::NotPersisted(_))) => not_persisted(e),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(r) => r,
    }
}

async fn list_approvals(State(api): State<ApiState>) -> Response {
    match ask(&api, |reply| Command::ListApprovals { reply }).await {
        Ok(ids) => Json(ids).into_response(),
        Err(r) => r,
    }
}

async fn approve(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(incident): Path<String>,
    body: Result<Json<Approval>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let result = ask(&api, |reply| Command::Approve {
        incident,
        by: body.by,
        reply,
    })
    .await;
    match result {
        Ok(Ok(events)) => {
            let decisions: Vec<serde_json::Value> = events
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Planned { incident, action } => Some(serde_json::json!({
                        "incident": incident,
                        "step": action.step,
                        "action": action.summary,
                        "decision": action.decision.label(),
                        "detail": action.decision.detail,
                    })),
                    _ => None,
                })
                .collect();
            Json(decisions).into_response()
        }
        Ok(Err(e @ ChangeError::NotPersisted(_))) => not_persisted(e),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(r) => r,
    }
}

/// A change the engine applied but heal could not persist: a server
/// error, so no client takes it as done.
fn not_persisted(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(matchers: &[&str], duration: &str, starts_at: Option<&str>) -> NewSilence {
        NewSilence {
            matchers: matchers.iter().map(|m| (*m).to_owned()).collect(),
            starts_at: starts_at.map(str::to_owned),
            duration: duration.to_owned(),
            created_by: "alice".into(),
            comment: "deploy".into(),
        }
    }

    #[test]
    fn new_silences_are_checked_with_every_problem_reported() {
        let (m, s, e) = check_new_silence(&body(&["service=web"], "1h", None), 1000).unwrap();
        assert_eq!((m.len(), s, e), (1, 1000, 3_601_000));
        let (_, s, _) = check_new_silence(
            &body(&["service=web"], "1h", Some("2026-03-01T00:00:00Z")),
            0,
        )
        .unwrap();
        assert_eq!(s, 1_772_323_200_000);
        let e = check_new_silence(&body(&["service"], "0s", Some("yesterday")), 0).unwrap_err();
        assert!(e.contains("expected NAME=VALUE"), "{e}");
        assert!(e.contains("starts_at \"yesterday\""), "{e}");
        assert!(e.contains("duration: must be longer than 0s"), "{e}");
        assert!(check_new_silence(&body(&[], "1h", None), 0)
            .unwrap_err()
            .contains("at least one"));
    }
}
