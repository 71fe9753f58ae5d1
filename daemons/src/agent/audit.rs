//! The agent's audit log: one JSON line per event of a request.

use std::collections::BTreeMap;

use executors::agent::ActionRequest;
use serde::{Deserialize, Serialize};

/// What happened to a request, in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// Authenticated and allowed: the program is about to run.
    Accepted,
    /// The program ran (or timed out); the result follows.
    Completed,
    /// Refused; nothing ran.
    Refused,
}

/// One line of the audit log (JSON Lines). A request that runs gets two
/// lines, `accepted` before the program starts and `completed` after, so a
/// crash in between still leaves a trace of what started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the agent received the request, RFC 3339 UTC.
    pub ts: String,
    /// The same, unix milliseconds.
    pub ts_ms: i64,
    /// Peer address.
    pub remote: String,
    /// What happened.
    pub event: AuditEvent,
    /// HTTP status answered.
    pub status: u16,
    /// The refusal's code, for `refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refusal's message, for `refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The request's id, once the body was authenticated and parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The action asked for, once the body was authenticated and parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The parameters given, once the body was authenticated and parsed
    /// (JSON-escaped: a newline in a value cannot forge a line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// What runs, for `accepted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Whether the program succeeded, for `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// The program's outcome, for `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// How long the program ran, for `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl AuditRecord {
    /// A record with only the always-present fields set.
    pub fn new(ts_ms: i64, remote: String, event: AuditEvent, status: u16) -> AuditRecord {
        AuditRecord {
            ts: remediate::time::rfc3339(ts_ms),
            ts_ms,
            remote,
            event,
            status,
            reason: None,
            message: None,
            request_id: None,
            action: None,
            params: None,
            argv: None,
            ok: None,
            summary: None,
            duration_ms: None,
        }
    }

    /// Fills in what the request asked for.
    pub fn with_request(mut self, req: Option<&ActionRequest>) -> AuditRecord {
        if let Some(req) = req {
            self.request_id = Some(req.request_id.clone());
            self.action = Some(req.action.clone());
            self.params = Some(req.params.clone());
        }
        self
    }
}
