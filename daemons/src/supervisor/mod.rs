//! The `heal supervise` daemon: heal runs and watches processes itself.
//!
//! [`Supervisor`] (`runtime.rs`) runs the services of a [`SupervisorConfig`]
//! as child processes (argv, never a shell), each replica on its own port of
//! the service's range; `api.rs` serves its control API ([`serve`]). The
//! executor the runbook actions `restart`, `scale` and `rollback` use on a
//! target `supervisor/NAME` is the client of that API,
//! `executors::supervisor`.
//!
//! ```
//! use daemons::supervisor::{CheckKind, SupervisorConfig};
//! let yaml = r#"
//! services:
//!   - name: db
//!     release: {version: "15.4", argv: [/usr/bin/db, --port, "{port}"]}
//!     ports: 15432
//!     check: {type: tcp}
//!   - name: api
//!     release: {version: v7, argv: [/usr/bin/api, --listen, "127.0.0.1:{port}"]}
//!     replicas: 2
//!     ports: 18000-18009
//!     depends_on: [db]
//!     check: {type: http, path: /healthz, interval: 1s, failures: 3}
//!     restart: {initial: 1s, max: 30s, reset_after: 1m}
//! "#;
//! let config = SupervisorConfig::from_text("supervise.yaml".as_ref(), yaml).unwrap();
//! let api = config.service("api").unwrap();
//! assert_eq!(api.ports.unwrap().port(1), Some(18001));
//! assert_eq!(api.check.kind, CheckKind::Http);
//!
//! // Every problem at once, with line, column and field.
//! let bad = "services:\n  - {name: a, release: {version: v1, argv: [a]}, depends_on: [b]}\n";
//! let e = SupervisorConfig::from_text("bad.yaml".as_ref(), bad).unwrap_err();
//! assert_eq!(e.to_string(), "bad.yaml:2:63: services[0].depends_on[0]: unknown service \"b\"");
//! ```
//!
//! # What the supervisor does on its own
//!
//! Liveness is the supervisor's own self-healing, independent of heal's
//! detectors and runbooks: a child that exits is reaped at once and started
//! again after a backoff (1s doubling to 30s by default, reset once a
//! replica stayed up a while); a replica whose `tcp` or `http` check fails
//! `failures` times in a row is killed and restarted the same way. Runbook
//! actions are for what a liveness check cannot see (latency, error rate,
//! a leak), judged from metrics by the rule engine.
//!
//! # Dependency order without a global order
//!
//! Each replica, before every start (the first one, and every restart),
//! waits until every service in its `depends_on` has a replica that passed
//! its check, probing it again right then rather than trusting a cached
//! state. Nobody computes an order: after a power cut everything is down at
//! once, every replica waits for its own dependencies, and the services
//! come back layer by layer while independent ones start concurrently.
//! Cycles and unknown names are configuration errors.
//!
//! # Releases
//!
//! A release is a version, an argv and an environment. Every start records
//! the release it runs in the state file (see `state.rs`), which keeps every
//! release a service ever ran. `deploy` makes a new release current and
//! restarts the replicas with it; `rollback` goes back to the previously
//! activated release, or to a named version.
//!
//! # Stopping
//!
//! A replica is stopped (restart, deploy, rollback, scale-down, shutdown, a
//! failed check) with SIGTERM, then SIGKILL if it still runs `stop_timeout`
//! later. Control messages that pile up while a restart runs are served by
//! that restart, not replayed one by one.
//!
//! # HAProxy
//!
//! With `haproxy: {api, backend}` on a service, each replica is registered
//! in the backend (server `NAME-REPLICA`, through
//! [`executors::haproxy`]) once it passed its check, and removed, with
//! HAProxy draining its connections, before a scale-down or the
//! supervisor's shutdown stops it.
//!
//! Known limits: a deploy restarts every replica at once (not rolling); if
//! heal itself is killed with SIGKILL its children keep running (setting a
//! parent-death signal needs `pre_exec`, which is `unsafe`); `scale` lasts
//! until the supervisor restarts (replica counts at start come from the
//! configuration, releases from the state file).

mod api;
mod config;
mod runtime;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use api::fuzz_bodies;

pub use api::serve;
pub use config::{
    valid_name, valid_version, Check, CheckKind, HaproxyBackend, PortRange, Release, RestartPolicy,
    ServiceConfig, SupervisorConfig, MAX_REPLICAS,
};
pub use runtime::{Phase, ReplicaStatus, ServiceStatus, Supervisor};
pub use state::{ReleaseRecord, ServiceState, State, StateFile, STATE_FILE};

use std::path::PathBuf;

/// What a supervisor operation may fail with.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No service by that name.
    #[error("unknown service {name:?} (services: {known})")]
    UnknownService {
        /// The name asked for.
        name: String,
        /// The services there are, comma-separated.
        known: String,
    },
    /// A replica count out of range.
    #[error("cannot scale {service} to {replicas} replicas: {reason}")]
    InvalidReplicas {
        /// The service.
        service: String,
        /// The count asked for.
        replicas: u32,
        /// Why not.
        reason: String,
    },
    /// A release given to `deploy` is invalid; every problem is listed.
    #[error("invalid release: {0}")]
    InvalidRelease(String),
    /// `rollback` without a version, but only one release was ever active.
    #[error("no previous release to roll back to")]
    NoPreviousRelease,
    /// `rollback` to a version the service never ran.
    #[error("unknown release version {version:?} (known: {known})")]
    UnknownVersion {
        /// The version asked for.
        version: String,
        /// The versions recorded, comma-separated.
        known: String,
    },
    /// A release reuses a recorded version with a different argv or env.
    #[error("release {version:?} is recorded with another argv or env: give a changed release a new version")]
    VersionConflict {
        /// The version.
        version: String,
    },
    /// The supervisor is shutting down.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The state file cannot be read or written.
    #[error("supervisor state {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The state or log directory cannot be created.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SupervisorError {
    /// Whether the request itself was wrong (as opposed to the supervisor
    /// failing to carry it out): the control API answers 4xx for these.
    pub fn is_request_error(&self) -> bool {
        !matches!(
            self,
            SupervisorError::State { .. }
                | SupervisorError::Dir { .. }
                | SupervisorError::ShuttingDown
        )
    }
}
