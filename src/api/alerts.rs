//! Alertmanager in: `POST /api/v1/alerts`, Alertmanager's webhook
//! (`webhook_configs: [{url: http://heal:9464/api/v1/alerts}]`), behind the
//! bearer token (`http_config: {authorization: {credentials: ...}}`). The
//! payload is read by `ingest::alerts` and its alerts go to the runbooks'
//! `alertmanager:` signals, read at the next slot.
//!
//! Answers 200 when taken (Alertmanager retries anything else but 4xx);
//! 400 for a body that is not a webhook payload, 413 for one too large;
//! 401/403 without the token; 404 when no runbook signal takes alerts.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ingest::alerts::{self, AlertsError, MAX_BODY_BYTES};

use super::{error, push_gate, ApiState};

/// The webhook route.
pub(crate) fn routes(api: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/alerts", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .with_state(api)
}

async fn receive(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (held, outcome) = match push_gate(
        &api,
        &headers,
        &api.alerts,
        "heal_alertmanager_requests_total",
        "no runbook signal takes Alertmanager's alerts (`alertmanager:`)",
    ) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let payload = match alerts::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                AlertsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                AlertsError::Json(_) => StatusCode::BAD_REQUEST,
            };
            outcome(status.as_str());
            tracing::warn!(stage = "ingest", error = %e, "alertmanager webhook refused");
            return error(status, e.to_string());
        }
    };
    let taken = held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .accept(&payload);
    api.telemetry.add(
        "heal_alerts_received_total",
        &[("outcome", "taken")],
        taken.alerts.saturating_sub(taken.refused) as f64,
    );
    api.telemetry.add(
        "heal_alerts_received_total",
        &[("outcome", "refused")],
        taken.refused as f64,
    );
    outcome("200");
    StatusCode::OK.into_response()
}
