//! What `heal supervise --config FILE` reads: the services heal runs itself.
//!
//! ```yaml
//! services:
//!   - name: api
//!     release:
//!       version: v1
//!       argv: [/usr/local/bin/api, --port, "{port}", --replica, "{replica}"]
//!       env: {API_MODE: prod}
//!     replicas: 2
//!     ports: 18000-18009
//!     depends_on: [db]
//!     check: {type: http, path: /healthz, interval: 1s, timeout: 1s, failures: 3}
//!     restart: {initial: 1s, max: 30s, reset_after: 1m}
//! ```
//!
//! Loading reports every problem at once, each as `file:line:column: field:
//! message` (the same [`RunbookError`] the runbook loader uses, found with the
//! same positioned YAML reader).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use executors::supervisor::valid_name;
use remediate::action::{ApiAddress, Name};
use remediate::runbook::yaml::{self, join, Positions};
use remediate::{Duration, RunbookError, RunbookErrors};

/// Most replicas a port range may hold; keeps a typo such as `1-65535` from
/// starting thousands of processes.
pub const MAX_REPLICAS: u32 = 256;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// The services, started in dependency order (see `depends_on`).
    pub services: Vec<ServiceConfig>,
}

/// One service: a program run as one or more replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or
    /// digit. Runbook targets name it as `supervisor/NAME`.
    pub name: String,
    /// What to run. Only the first run uses it: afterwards the release
    /// recorded in the state directory (changed by `deploy` and `rollback`)
    /// wins, unless this version was never run, which counts as a deploy.
    pub release: Release,
    /// How many replicas to run at start, at least 1 (default 1); at most
    /// the size of `ports`.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Ports of the replicas, `18000-18009` or `18000`: replica `i` gets the
    /// `i`-th port, substituted for `{port}` in the argv and env values.
    /// Needed for more than one replica and for `tcp` and `http` checks.
    #[serde(default)]
    pub ports: Option<PortRange>,
    /// Services that must pass their check before this one starts (at start,
    /// and at every restart, so after a power cut everything comes back in
    /// dependency order without a global order to maintain).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How liveness is checked (default: the process is running).
    #[serde(default)]
    pub check: Check,
    /// How restarts back off.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A replica being stopped (restart, deploy, scale-down, shutdown, a
    /// failed check) gets SIGTERM, then SIGKILL if it still runs this long
    /// after (default 10s; `0s`: SIGKILL at once).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Duration,
    /// Register the replicas in an HAProxy backend: a replica is added
    /// (as server `NAME-REPLICA` at `127.0.0.1:PORT`) once it passed its
    /// check, and removed before a scale-down or shutdown stops it.
    #[serde(default)]
    pub haproxy: Option<HaproxyBackend>,
}

/// An HAProxy backend the replicas of a service are registered in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyBackend {
    /// HAProxy's runtime API: `unix:/run/haproxy/admin.sock` or
    /// `HOST:PORT`, declared with `level admin`.
    pub api: ApiAddress,
    /// The backend; its balance algorithm must be dynamic (`roundrobin`,
    /// `leastconn`, `first`, `random`) for runtime `add server`.
    pub backend: String,
}

fn one() -> u32 {
    1
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A release: what one start of a replica runs. Recorded with every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Version name, 1 to 64 of `[A-Za-z0-9._+-]`; `rollback` names it.
    pub version: String,
    /// Program and arguments, never run through a shell. `{port}` and
    /// `{replica}` are replaced by the replica's port and index.
    pub argv: Vec<String>,
    /// The program's whole environment (nothing of heal's is passed on);
    /// values may hold `{port}` and `{replica}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Liveness check of a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// `pid` (alive while the process runs), `tcp` (the port accepts a
    /// connection) or `http` (`GET path` on the port answers 2xx).
    #[serde(rename = "type", default)]
    pub kind: CheckKind,
    /// Path of the `http` check, such as `/healthz`.
    #[serde(default)]
    pub path: Option<String>,
    /// Time between two checks (default 1s).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// One check fails after this long (default 1s).
    #[serde(default = "default_interval")]
    pub timeout: Duration,
    /// This many failed checks in a row, after the replica passed once,
    /// count as down: the process is killed and restarted (default 3).
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// A replica that has not passed its first check this long after its
    /// start is killed and restarted (default 30s).
    #[serde(default = "default_start_timeout")]
    pub start_timeout: Duration,
}

impl Default for Check {
    fn default() -> Check {
        Check {
            kind: CheckKind::Pid,
            path: None,
            interval: default_interval(),
            timeout: default_interval(),
            failures: default_failures(),
            start_timeout: default_start_timeout(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_failures() -> u32 {
    3
}
fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Which liveness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// The process is running (its exit is noticed at once).
    #[default]
    Pid,
    /// The replica's port accepts a TCP connection.
    Tcp,
    /// `GET path` on the replica's port answers with a 2xx status.
    Http,
}

/// Restart backoff: the first restart waits `initial`, each next one twice
/// as long up to `max`; a replica that stayed up `reset_after` starts over
/// at `initial`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// First wait (default 1s).
    #[serde(default = "default_interval")]
    pub initial: Duration,
    /// Longest wait (default 30s).
    #[serde(default = "default_max")]
    pub max: Duration,
    /// Up this long since its start, a replica's backoff resets (default 1m).
    #[serde(default = "default_reset")]
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            initial: default_interval(),
            max: default_max(),
            reset_after: default_reset(),
        }
    }
}

fn default_max() -> Duration {
    Duration::from_secs(30)
}
fn default_reset() -> Duration {
    Duration::from_secs(60)
}

/// A range of ports, `first-last` inclusive (`18000-18009`) or one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "String")]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

impl PortRange {
    /// How many ports.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Port of replica `i`, if the range holds it.
    pub fn port(&self, i: u32) -> Option<u16> {
        (i < self.len()).then(|| self.first + i as u16)
    }
}

impl TryFrom<Value> for PortRange {
    type Error = String;

    fn try_from(v: Value) -> Result<PortRange, String> {
        let bad = || {
            format!("invalid port range {v}: expected `FIRST-LAST` (like `18000-18009`) or one port, ports 1 to 65535")
        };
        let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
        let (first, last) = match &v {
            Value::Number(n) => {
                let p = n
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(bad)?;
                (p, p)
            }
            Value::String(s) => match s.split_once('-') {
                Some((a, b)) => (port(a).ok_or_else(bad)?, port(b).ok_or_else(bad)?),
                None => {
                    let p = port(s).ok_or_else(bad)?;
                    (p, p)
                }
            },
            _ => return Err(bad()),
        };
        if last < first {
            return Err(format!(
                "invalid port range {v}: the last port is below the first"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Whether `version` is a valid release version: 1 to 64 of
/// `[A-Za-z0-9._+-]`, starting with a letter or digit.
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The placeholders argv and env values may hold.
const PLACEHOLDERS: [&str; 2] = ["{port}", "{replica}"];

impl Release {
    /// Problems of this release as `(field, message)`, fields relative to
    /// the release (`argv[1]`); `has_ports` says whether `{port}` can be
    /// filled in.
    pub fn problems(&self, has_ports: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !valid_version(&self.version) {
            out.push((
                "version".to_owned(),
                format!("invalid version {:?}: use 1 to 64 of [A-Za-z0-9._+-], starting with a letter or digit", self.version),
            ));
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            out.push((
                "argv".to_owned(),
                "argv must name a program: `[program, args...]`".to_owned(),
            ));
        }
        let mut check_text = |field: String, text: &str| {
            if text.contains('\0') {
                out.push((field.clone(), "a NUL byte cannot be passed".to_owned()));
            }
            let mut rest = text;
            while let Some(i) = rest.find('{') {
                let tail = &rest[i..];
                match PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) {
                    Some(&"{port}") if !has_ports => {
                        out.push((
                            field.clone(),
                            "`{port}` needs `ports` on the service".to_owned(),
                        ));
                        rest = &tail[6..];
                    }
                    Some(p) => rest = &tail[p.len()..],
                    None => {
                        out.push((
                            field.clone(),
                            format!("unknown placeholder in {text:?}: only `{{port}}` and `{{replica}}` are filled in"),
                        ));
                        break;
                    }
                }
            }
        };
        for (i, a) in self.argv.iter().enumerate() {
            check_text(format!("argv[{i}]"), a);
        }
        for (k, v) in &self.env {
            check_text(format!("env.{k}"), v);
        }
        for k in self.env.keys() {
            let ok = !k.is_empty()
                && !k.as_bytes()[0].is_ascii_digit()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                out.push((
                    format!("env.{k}"),
                    format!("invalid environment variable name {k:?}: use [A-Za-z_][A-Za-z0-9_]*"),
                ));
            }
        }
        out
    }

    /// The argv and env of replica `replica` on `port`.
    pub fn render(
        &self,
        replica: u32,
        port: Option<u16>,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let fill = |s: &str| {
            let s = s.replace("{replica}", &replica.to_string());
            match port {
                Some(p) => s.replace("{port}", &p.to_string()),
                None => s,
            }
        };
        (
            self.argv.iter().map(|a| fill(a)).collect(),
            self.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        )
    }
}

impl SupervisorConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    ///
    /// Every problem found, each with file, line and field.
    pub fn load(path: &Path) -> Result<SupervisorConfig, RunbookErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RunbookErrors(vec![RunbookError::unreadable(
                path,
                "supervisor configuration",
                &e,
            )])
        })?;
        SupervisorConfig::from_text(path, &text)
    }

    /// Parses and validates `text`; `path` is only used in messages.
    ///
    /// # Errors
    ///
    /// Every problem found, each with file, line and field.
    pub fn from_text(path: &Path, text: &str) -> Result<SupervisorConfig, RunbookErrors> {
        let error = |positions: &Positions, field: &str, message: String| {
            let pos = positions.find(field);
            RunbookError {
                file: path.to_path_buf(),
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                field: field.to_owned(),
                message,
            }
        };
        let (value, positions, problems) = yaml::parse(text).map_err(|p| {
            RunbookErrors(vec![RunbookError {
                file: path.to_path_buf(),
                line: Some(p.pos.line),
                column: Some(p.pos.column),
                field: String::new(),
                message: p.message,
            }])
        })?;
        let mut found: Vec<RunbookError> = problems
            .into_iter()
            .map(|p| RunbookError {
                file: path.to_path_buf(),
                line: Some(p.pos.line),
                column: Some(p.pos.column),
                field: p.path,
                message: p.message,
            })
            .collect();
        let mut services: Vec<(usize, ServiceConfig)> = Vec::new();
        // Names of services that did not deserialize: a `depends_on` naming
        // one is not also reported as unknown.
        let mut broken = BTreeSet::new();
        match value {
            Value::Object(mut top) => {
                for key in top.keys().filter(|k| *k != "services") {
                    found.push(error(
                        &positions,
                        key,
                        format!("unknown field `{key}`, expected `services`"),
                    ));
                }
                match top.remove("services") {
                    Some(Value::Array(items)) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let base = format!("services[{i}]");
                            match serde_path_to_error::deserialize::<_, ServiceConfig>(&item) {
                                Ok(s) => services.push((i, s)),
                                Err(e) => {
                                    let (field, message) = path_and_message(&base, e, &positions);
                                    found.push(error(&positions, &field, message));
                                    if let Some(n) = item.get("name").and_then(Value::as_str) {
                                        broken.insert(n.to_owned());
                                    }
                                }
                            }
                        }
                    }
                    Some(_) => found.push(error(
                        &positions,
                        "services",
                        "invalid type: expected a list of services".to_owned(),
                    )),
                    None => {
                        found.push(error(&positions, "", "missing field `services`".to_owned()))
                    }
                }
            }
            _ => found.push(error(
                &positions,
                "",
                "invalid type: expected a mapping with `services`".to_owned(),
            )),
        }
        for (field, message) in validate(&services, &broken) {
            found.push(error(&positions, &field, message));
        }
        if !found.is_empty() {
            found.sort_by_key(|e| (e.line, e.column));
            return Err(RunbookErrors(found));
        }
        Ok(SupervisorConfig {
            services: services.into_iter().map(|(_, s)| s).collect(),
        })
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The full JSON path and message of a deserialization error, pointing an
/// unknown field at the field itself rather than the struct holding it.
fn path_and_message(
    base: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
    positions: &Positions,
) -> (String, String) {
    let (field, message) = yaml::path_and_message(base, e);
    (positions.unknown_field_path(field, &message), message)
}

/// Cross-field checks; every problem as `(field, message)`.
fn validate(
    services: &[(usize, ServiceConfig)],
    broken: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in services {
        let at = |f: &str| join(&format!("services[{i}]"), f);
        if !valid_name(&s.name) {
            out.push((
                at("name"),
                format!("invalid service name {:?}: use 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit", s.name),
            ));
        }
        if let Some(first) = seen.insert(&s.name, *i) {
            out.push((
                at("name"),
                format!(
                    "duplicate service name {:?} (also services[{first}])",
                    s.name
                ),
            ));
        }
        for (field, message) in s.release.problems(s.ports.is_some()) {
            out.push((at(&format!("release.{field}")), message));
        }
        if s.replicas == 0 {
            out.push((at("replicas"), "replicas must be at least 1".to_owned()));
        }
        match s.ports {
            Some(r) if r.len() > MAX_REPLICAS => out.push((
                at("ports"),
                format!(
                    "port range {r} holds {} ports; at most {MAX_REPLICAS}",
                    r.len()
                ),
            )),
            Some(r) if s.replicas > r.len() => out.push((
                at("replicas"),
                format!(
                    "{} replicas do not fit in port range {r} ({} ports)",
                    s.replicas,
                    r.len()
                ),
            )),
            None if s.replicas > 1 => out.push((
                at("replicas"),
                "more than one replica needs `ports` (one port per replica)".to_owned(),
            )),
            _ => {}
        }
        let c = &s.check;
        match (c.kind, &c.path) {
            (CheckKind::Http, None) => out.push((
                at("check.path"),
                "an `http` check needs a `path`, such as `/healthz`".to_owned(),
            )),
            (CheckKind::Http, Some(p)) if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) => {
                out.push((
                    at("check.path"),
                    format!("invalid path {p:?}: must start with `/` and hold no spaces or control characters"),
                ))
            }
            (CheckKind::Pid | CheckKind::Tcp, Some(_)) => out.push((
                at("check.path"),
                "`path` only applies to an `http` check".to_owned(),
            )),
            _ => {}
        }
        if c.kind != CheckKind::Pid && s.ports.is_none() {
            out.push((
                at("check.type"),
                "a `tcp` or `http` check needs `ports` on the service".to_owned(),
            ));
        }
        for (f, d) in [
            ("check.interval", c.interval),
            ("check.timeout", c.timeout),
            ("check.start_timeout", c.start_timeout),
            ("restart.initial", s.restart.initial),
            ("restart.max", s.restart.max),
        ] {
            if d.is_zero() {
                out.push((at(f), "must be more than 0s".to_owned()));
            }
        }
        if let Some(h) = &s.haproxy {
            if let Err(e) = Name::new("backend name", &h.backend) {
                out.push((at("haproxy.backend"), e.to_string()));
            }
            if s.ports.is_none() {
                out.push((
                    at("haproxy"),
                    "registering replicas in HAProxy needs `ports` on the service".to_owned(),
                ));
            }
        }
        if c.failures == 0 {
            out.push((at("check.failures"), "must be at least 1".to_owned()));
        }
        if s.restart.max < s.restart.initial {
            out.push((
                at("restart.max"),
                format!(
                    "max {} is below initial {}",
                    s.restart.max, s.restart.initial
                ),
            ));
        }
    }
    // Dependencies: known names, no self-dependency, no cycle.
    let names: BTreeSet<&str> = services.iter().map(|(_, s)| s.name.as_str()).collect();
    for (i, s) in services {
        for (j, d) in s.depends_on.iter().enumerate() {
            let field = format!("services[{i}].depends_on[{j}]");
            if d == &s.name {
                out.push((field, format!("service {d:?} cannot depend on itself")));
            } else if !names.contains(d.as_str()) && !broken.contains(d) {
                out.push((field, format!("unknown service {d:?}")));
            }
        }
    }
    if let Some((i, cycle)) = find_cycle(services) {
        out.push((
            format!("services[{i}].depends_on"),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    out
}

/// One dependency cycle (self-dependencies aside, reported on their own),
/// as the index of the service it starts at and the names along it, the
/// first repeated at the end.
fn find_cycle(services: &[(usize, ServiceConfig)]) -> Option<(usize, Vec<String>)> {
    let by_name: BTreeMap<&str, &(usize, ServiceConfig)> =
        services.iter().map(|e| (e.1.name.as_str(), e)).collect();
    // 0 unvisited, 1 on the current path, 2 done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a (usize, ServiceConfig)>,
        mark: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(name).copied().unwrap_or(0) {
            1 => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            2 => return None,
            _ => {}
        }
        let (_, s) = by_name.get(name)?;
        mark.insert(name, 1);
        path.push(name);
        for d in &s.depends_on {
            if d != name && by_name.contains_key(d.as_str()) {
                if let Some(c) = visit(d, by_name, mark, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        mark.insert(name, 2);
        None
    }
    for (i, s) in services {
        let mut path = Vec::new();
        if let Some(cycle) = visit(&s.name, &by_name, &mut mark, &mut path) {
            let at = by_name.get(cycle[0].as_str()).map(|e| e.0).unwrap_or(*i);
            return Some((at, cycle));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SupervisorConfig, String> {
        SupervisorConfig::from_text(Path::new("sup.yaml"), text).map_err(|e| e.to_string())
    }

    const GOOD: &str = "\
services:
  - name: db
    release: {version: v1, argv: [db, --port, \"{port}\"]}
    ports: 18000
    check: {type: tcp}
  - name: api
    release:
      version: v1
      argv: [api, --port, \"{port}\", --replica, \"{replica}\"]
      env: {MODE: \"r{replica}\"}
    replicas: 2
    ports: 18010-18019
    depends_on: [db]
    check: {type: http, path: /healthz, interval: 500ms}
    restart: {initial: 200ms, max: 5s, reset_after: 10s}
    haproxy: {api: \"unix:/run/haproxy/admin.sock\", backend: be_api}
";

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.services.len(), 2);
        let db = c.service("db").unwrap();
        assert_eq!(db.replicas, 1);
        assert_eq!(
            db.ports,
            Some(PortRange {
                first: 18000,
                last: 18000
            })
        );
        assert_eq!(db.restart, RestartPolicy::default());
        let api = c.service("api").unwrap();
        assert_eq!(api.ports.unwrap().len(), 10);
        assert_eq!(api.ports.unwrap().port(2), Some(18012));
        assert_eq!(api.ports.unwrap().port(10), None);
        assert_eq!(api.check.interval, Duration::from_millis(500));
        assert_eq!(api.check.failures, 3);
        let (argv, env) = api.release.render(1, Some(18011));
        assert_eq!(argv, ["api", "--port", "18011", "--replica", "1"]);
        assert_eq!(env["MODE"], "r1");
    }

    #[test]
    fn every_problem_is_reported_with_line_and_field() {
        let text = "\
services:
  - name: a
    release: {version: v1, argv: [x, \"{port}\", \"{host}\"]}
    replicas: 3
    check: {type: http}
    depends_on: [a, nosuch]
  - name: a
    release: {version: \"bad version\", argv: []}
    ports: 18010-18011
    replicas: 3
    restart: {initial: 5s, max: 1s}
  - name: c
    release: {version: v1, argv: [c]}
    colour: blue
  - name: d
    release: {version: v1, argv: [d]}
    haproxy: {api: \"127.0.0.1:9999\", backend: \"be;x\"}
  - name: e
    release: {version: v1, argv: [e]}
    haproxy: {api: \"run/admin.sock\", backend: be}
";
        let e = load(text).unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            [
                "sup.yaml:3:38: services[0].release.argv[1]: `{port}` needs `ports` on the service",
                "sup.yaml:3:48: services[0].release.argv[2]: unknown placeholder in \"{host}\": only `{port}` and `{replica}` are filled in",
                "sup.yaml:4:5: services[0].replicas: more than one replica needs `ports` (one port per replica)",
                "sup.yaml:5:5: services[0].check.path: an `http` check needs a `path`, such as `/healthz`",
                "sup.yaml:5:13: services[0].check.type: a `tcp` or `http` check needs `ports` on the service",
                "sup.yaml:6:18: services[0].depends_on[0]: service \"a\" cannot depend on itself",
                "sup.yaml:6:21: services[0].depends_on[1]: unknown service \"nosuch\"",
                "sup.yaml:7:5: services[1].name: duplicate service name \"a\" (also services[0])",
                "sup.yaml:8:15: services[1].release.version: invalid version \"bad version\": use 1 to 64 of [A-Za-z0-9._+-], starting with a letter or digit",
                "sup.yaml:8:39: services[1].release.argv: argv must name a program: `[program, args...]`",
                "sup.yaml:10:5: services[1].replicas: 3 replicas do not fit in port range 18010-18011 (2 ports)",
                "sup.yaml:11:28: services[1].restart.max: max 1s is below initial 5s",
                "sup.yaml:14:5: services[2].colour: unknown field `colour`, expected one of `name`, `release`, `replicas`, `ports`, `depends_on`, `check`, `restart`, `stop_timeout`, `haproxy`",
                "sup.yaml:17:5: services[3].haproxy: registering replicas in HAProxy needs `ports` on the service",
                "sup.yaml:17:38: services[3].haproxy.backend: refusing backend name \"be;x\": allowed are 1 to 128 of [A-Za-z0-9._:-], starting with a letter or digit",
                "sup.yaml:20:15: services[4].haproxy.api: invalid HAProxy runtime API address \"run/admin.sock\": expected unix:/PATH or HOST:PORT",
            ]
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let text = "\
services:
  - {name: a, release: {version: v1, argv: [a]}, depends_on: [c]}
  - {name: b, release: {version: v1, argv: [b]}, depends_on: [a]}
  - {name: c, release: {version: v1, argv: [c]}, depends_on: [b]}
  - {name: d, release: {version: v1, argv: [d]}, depends_on: [a]}
";
        let e = load(text).unwrap_err();
        assert_eq!(
            e,
            "sup.yaml:2:50: services[0].depends_on: dependency cycle: a -> c -> b -> a"
        );
    }

    #[test]
    fn port_ranges_parse_or_explain() {
        let p = |v: Value| PortRange::try_from(v);
        assert_eq!(p("9000-9002".into()).unwrap().len(), 3);
        assert_eq!(p(9000.into()).unwrap().to_string(), "9000");
        assert_eq!(
            p("9002-9000".into()).unwrap_err(),
            "invalid port range \"9002-9000\": the last port is below the first"
        );
        assert!(p("0-10".into())
            .unwrap_err()
            .starts_with("invalid port range"));
        assert!(p("x".into()).is_err());
        assert!(p(70000.into()).is_err());
    }

    #[test]
    fn names_and_versions_are_strict() {
        assert!(valid_name("api-2.eu_west"));
        for bad in ["", "-a", "a/b", "a b", "a\nb", "../x", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_version("1.2.3+build-4"));
        assert!(!valid_version("v1;rm"));
    }
}
