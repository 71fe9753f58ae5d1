//! Learning from outcomes over the API: `POST /api/incidents/ID/false-alarm`
//! and `POST /api/missed`, behind the same bearer token as the other
//! changes. The marks are built by `crate::marks` (as `heal incidents mark`
//! and `missed` build theirs); the decider records each through the
//! store's writer and applies the new offset before it answers.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde::{Deserialize, Serialize};
use stdx::Clock;
use store::{Mark, Marked, Store};

use super::{ask, authorize, error, ApiState};
use crate::live::Command;
use crate::marks::{self, MarkError};

/// Body of `POST /api/incidents/ID/false-alarm` (may be empty).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalseAlarmBody {
    /// Why, for the sensitivity history.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `POST /api/missed`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedBody {
    /// The signal that should have fired.
    pub signal: String,
    /// When the missed anomaly happened: RFC 3339, `now` or `-1h`.
    pub at: String,
    /// What was missed.
    #[serde(default)]
    pub note: Option<String>,
}

/// The routes that mark incidents.
pub(crate) fn routes(api: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/incidents/{id}/false-alarm", post(false_alarm))
        .route("/api/missed", post(missed))
        .with_state(api)
}

/// The status of a refused mark.
fn refused(e: &MarkError) -> Response {
    let status = match e {
        MarkError::NoSuchIncident(_) => StatusCode::NOT_FOUND,
        MarkError::Invalid(_) => StatusCode::BAD_REQUEST,
        MarkError::NeedsStore => StatusCode::CONFLICT,
        MarkError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// A JSON body, or the default for an empty one.
#[allow(clippy::result_large_err)]
fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn false_alarm(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(incident): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let body: FalseAlarmBody = match body_or_default(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(db) = api.db.clone() else {
        return refused(&MarkError::NeedsStore);
    };
    let now = api.clock.now_ms();
    let built = tokio::task::spawn_blocking(move || {
        let store = Store::open_read_only(&db)?;
        marks::false_alarm(&store, &incident, body.note, now)
    })
    .await;
    match built {
        Ok(Ok(mark)) => send_mark(&api, mark).await,
        Ok(Err(e)) => refused(&e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn missed(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<MissedBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if api.db.is_none() {
        return refused(&MarkError::NeedsStore);
    }
    let now = api.clock.now_ms();
    let at = match crate::text::parse_time("at", &body.at, now) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match marks::missed(&body.signal, at, body.note, now) {
        Ok(mark) => send_mark(&api, mark).await,
        Err(e) => refused(&e),
    }
}

async fn send_mark(api: &ApiState, mark: Mark) -> Response {
    match ask(api, |reply| Command::Mark { mark, reply }).await {
        Ok(Ok(marked)) => {
            let (adjustment, already) = match marked {
                Marked::Adjusted(a) => (a, false),
                Marked::AlreadyMarked(a) => (a, true),
            };
            Json(serde_json::json!({
                "adjustment": adjustment,
                "already_marked": already,
            }))
            .into_response()
        }
        Ok(Err(e)) => refused(&e),
        Err(r) => r,
    }
}
