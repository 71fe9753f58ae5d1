//! The `heal agent` daemon: runs allowlisted local actions for a remote
//! heal, when asked with a signed request.
//!
//! The protocol (signing, request and answer types, refusals) is
//! `executors::agent`, shared with the client that sends the requests; this
//! module is the agent's side of it:
//!
//! - `config.rs`: the agent's YAML configuration (where the key is, the
//!   audit log, the allowlist with typed parameters), validated with every
//!   problem's place;
//! - `verify.rs`: [`Verifier`] (timestamp window, constant-time MAC check,
//!   replay memory) and [`admit`], every check before anything runs;
//! - `audit.rs`: the audit record, one JSON line per event;
//! - `server.rs`: the HTTP server around them ([`serve`]).
//!
//! # Configuration
//!
//! The agent's YAML file names where the key is (a file readable only by
//! its owner, or an environment variable; never the command line), the
//! audit log, and the allowlist. Paths are relative to the file.
//!
//! ```
//! use std::path::Path;
//! use daemons::agent::AgentConfig;
//! use executors::agent::ActionRequest;
//!
//! let config = AgentConfig::from_yaml(Path::new("agent.yaml"), r#"
//! key_file: agent.key            # chmod 600; or key_env: HEAL_AGENT_KEY
//! audit_log: agent-audit.jsonl
//! replay_window: 30s
//! actions:
//!   restart-api:
//!     argv: [/usr/bin/systemctl, restart, "api@{{instance}}.service"]
//!     params:
//!       instance: {type: label}
//!     timeout: 60s
//!   set-workers:
//!     argv: [/usr/local/bin/api-ctl, workers, "{{count}}", "--mode={{mode}}"]
//!     params:
//!       count: {type: integer, min: 1, max: 64}
//!       mode: {type: one_of, values: [graceful, immediate]}
//! "#).unwrap();
//! let run = config.prepare(&ActionRequest {
//!     action: "restart-api".into(),
//!     params: [("instance".to_owned(), "api-2".to_owned())].into(),
//!     request_id: "doc".into(),
//! }).unwrap();
//! assert_eq!(run.argv, ["/usr/bin/systemctl", "restart", "api@api-2.service"]);
//! ```
//!

mod audit;
mod config;
mod server;
mod verify;

pub use audit::{AuditEvent, AuditRecord};
pub use config::{AgentConfig, AllowedAction, ParamType};
pub use server::{load_key, serve, AgentServer};
pub use verify::{admit, Verifier};

/// Why an agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration file has problems; every one is listed.
    #[error(transparent)]
    Config(#[from] remediate::RunbookErrors),
    /// The key or the audit log cannot be used.
    #[error("{0}")]
    Setup(String),
}
