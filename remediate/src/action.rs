//! The action contract: what the engine hands an executor and what an
//! executor hands back, and the rules both sides check (names safe in an
//! HAProxy command, runtime API addresses, `${env:NAME}` references).
//!
//! It lives here, in the pure crate, once: the runbook validation, the engine
//! (which renders actions), the executors (`executors`), the incident store
//! (`store`) and the daemons all take it from here, so the dependencies run
//! one way (`remediate` <- `executors`, `store`, `daemons`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runbook::{DockerOp, HttpMethod, ServerState};

/// Largest absolute weight HAProxy accepts (`set server ... weight`).
pub const MAX_WEIGHT: u32 = 256;

/// Most characters of a [`Name`]; HAProxy has no limit of its own, this one
/// keeps messages readable.
pub const MAX_NAME: usize = 128;

/// How one execution went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// Whether the action did what it was asked.
    pub ok: bool,
    /// Whether trying again could help (timeouts, transient failures).
    pub retryable: bool,
    /// One line for humans: `exit status 0`, `timed out after 5s`.
    pub summary: String,
    /// Captured output (stdout then stderr), truncated to a few KiB.
    pub output: String,
    /// Wall time the execution took.
    pub duration: Duration,
}

/// An action with every template filled in: what an executor would get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum RenderedAction {
    /// Restart `target`.
    Restart {
        /// What to restart.
        target: String,
    },
    /// Scale `target` to `replicas`.
    Scale {
        /// What to scale.
        target: String,
        /// Desired replicas.
        replicas: u32,
    },
    /// Roll `target` back.
    Rollback {
        /// What to roll back.
        target: String,
        /// Release to go back to; the previous one when `None`.
        to: Option<String>,
    },
    /// Set server `target` of HAProxy backend `backend` to `state`.
    Reroute {
        /// The server.
        target: String,
        /// The backend.
        backend: String,
        /// The new state.
        state: ServerState,
        /// HAProxy's runtime API.
        api: ApiAddress,
        /// The new weight, when the step sets one.
        #[serde(skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
    },
    /// Run `argv` directly.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// Send an HTTP request.
    Webhook {
        /// URL.
        url: String,
        /// Method.
        method: HttpMethod,
        /// Headers.
        headers: BTreeMap<String, String>,
        /// JSON body.
        body: Option<serde_json::Value>,
    },
    /// Ask the `heal agent` at `url` to run its allowlisted action `name`.
    Agent {
        /// The agent's base URL.
        url: String,
        /// The allowlisted action.
        name: String,
        /// Parameter values.
        params: BTreeMap<String, String>,
        /// Environment variable holding the shared key (the name only: the
        /// key never enters a record).
        key_env: String,
    },
    /// A Docker Engine operation on a container, a label selector or a
    /// Swarm service.
    Docker {
        /// What to do.
        op: DockerOp,
        /// `container/NAME`, `label/KEY=VALUE` or `service/NAME`.
        target: String,
        /// `kill`'s signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
        /// `scale`'s replica count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<u32>,
        /// `update`'s image, rendered and checked ([`image_ref`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// `update`'s rollout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollout: Option<crate::runbook::Rollout>,
    },
}

/// Whether `image` is an image reference heal passes to the engine:
/// `[registry[:port]/]name[:tag][@digest]`, of `[A-Za-z0-9._/:@-]`, at
/// most 255 characters, starting with a letter or digit, and no `..`.
///
/// # Errors
///
/// A message naming the image and the rule.
pub fn image_ref(image: &str) -> Result<(), String> {
    let ok = !image.is_empty()
        && image.len() <= 255
        && image.as_bytes()[0].is_ascii_alphanumeric()
        && !image.contains("..")
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "refusing image {image:?}: allowed are 1 to 255 of [A-Za-z0-9._/:@-], starting with a letter or digit, without `..`"
        ))
    }
}

impl RenderedAction {
    /// The action kind as runbooks spell it (`restart`, `exec`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            RenderedAction::Restart { .. } => "restart",
            RenderedAction::Scale { .. } => "scale",
            RenderedAction::Rollback { .. } => "rollback",
            RenderedAction::Reroute { .. } => "reroute",
            RenderedAction::Exec { .. } => "exec",
            RenderedAction::Webhook { .. } => "webhook",
            RenderedAction::Agent { .. } => "agent",
            RenderedAction::Docker { .. } => "docker",
        }
    }

    /// What the guards key on, with the rule: the object acted upon.
    pub fn target(&self) -> String {
        match self {
            RenderedAction::Restart { target }
            | RenderedAction::Scale { target, .. }
            | RenderedAction::Rollback { target, .. } => target.clone(),
            RenderedAction::Reroute {
                target, backend, ..
            } => format!("{backend}/{target}"),
            RenderedAction::Exec { argv } => argv.join(" "),
            RenderedAction::Webhook { url, .. } => url.clone(),
            RenderedAction::Agent {
                url, name, params, ..
            } => format!("{url} {name}{}", params_text(params)),
            RenderedAction::Docker { target, .. } => format!("docker/{target}"),
        }
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        match self {
            RenderedAction::Restart { target } => format!("restart {target}"),
            RenderedAction::Scale { target, replicas } => {
                format!("scale {target} to {replicas} replicas")
            }
            RenderedAction::Rollback { target, to: None } => {
                format!("roll back {target} to the previous release")
            }
            RenderedAction::Rollback {
                target,
                to: Some(to),
            } => format!("roll back {target} to {to}"),
            RenderedAction::Reroute {
                target,
                backend,
                state,
                weight,
                ..
            } => {
                let weight = weight.map(|w| format!(", weight {w}")).unwrap_or_default();
                format!(
                    "set server {target} of backend {backend} to {}{weight}",
                    state.as_str()
                )
            }
            RenderedAction::Exec { argv } => format!("exec {}", shell_words(argv)),
            RenderedAction::Webhook { url, method, .. } => {
                format!("webhook {} {url}", method.as_str())
            }
            RenderedAction::Agent {
                url, name, params, ..
            } => format!("agent {url} {name}{}", params_text(params)),
            RenderedAction::Docker {
                op,
                target,
                signal,
                replicas,
                image,
                ..
            } => {
                let extra = match (op, signal, replicas) {
                    (DockerOp::Kill, s, _) => {
                        format!(" with {}", s.as_deref().unwrap_or(DEFAULT_SIGNAL))
                    }
                    (DockerOp::Scale, _, Some(n)) => format!(" to {n} replicas"),
                    (DockerOp::Update, _, _) => {
                        format!(" to {}", image.as_deref().unwrap_or("?"))
                    }
                    _ => String::new(),
                };
                format!("docker {} {target}{extra}", op.as_str())
            }
        }
    }
}

/// The signal `kill` sends when the step names none.
pub const DEFAULT_SIGNAL: &str = "SIGKILL";

/// Most replicas a `docker` `scale` step may ask for.
pub const MAX_DOCKER_REPLICAS: u32 = 100;

/// The signals a `docker` `kill` step may send.
pub const DOCKER_SIGNALS: [&str; 10] = [
    "SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGSTOP",
    "SIGCONT", "SIGABRT",
];

/// What a `docker` step acts on, parsed and checked: each name becomes a
/// path segment of an Engine API URL, each selector a query filter, so
/// nothing that would need escaping there is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerTarget {
    /// One container, by name or id.
    Container(String),
    /// Every container carrying label `key` with `value`.
    Label {
        /// Label key, e.g. `com.docker.compose.service`.
        key: String,
        /// Label value.
        value: String,
    },
    /// One Swarm service, by name or id.
    Service(String),
    /// One Swarm node, by hostname or id.
    Node(String),
}

impl DockerTarget {
    /// Parses `container/NAME`, `label/KEY=VALUE` or `service/NAME` and
    /// checks it fits `op` (container operations take containers or
    /// selectors, service operations services).
    ///
    /// # Errors
    ///
    /// A message naming the target and what is wrong with it.
    pub fn parse(target: &str, op: DockerOp) -> Result<DockerTarget, String> {
        let parsed = if let Some(name) = target.strip_prefix("container/") {
            DockerTarget::Container(docker_name(target, name)?)
        } else if let Some(name) = target.strip_prefix("service/") {
            DockerTarget::Service(docker_name(target, name)?)
        } else if let Some(name) = target.strip_prefix("node/") {
            DockerTarget::Node(docker_name(target, name)?)
        } else if let Some(sel) = target.strip_prefix("label/") {
            let Some((key, value)) = sel.split_once('=') else {
                return Err(format!(
                    "docker target {target:?}: expected label/KEY=VALUE"
                ));
            };
            let key_ok = key.len() <= MAX_NAME
                && key
                    .as_bytes()
                    .first()
                    .is_some_and(u8::is_ascii_alphanumeric)
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !key_ok {
                return Err(format!(
                    "docker target {target:?}: refusing label key {key:?}: allowed are 1 to {MAX_NAME} of [A-Za-z0-9._-], starting with a letter or digit"
                ));
            }
            DockerTarget::Label {
                key: key.to_owned(),
                value: docker_name(target, value)?,
            }
        } else {
            return Err(format!(
                "docker target {target:?}: expected container/NAME, label/KEY=VALUE, service/NAME or node/NAME"
            ));
        };
        let kind = match parsed {
            DockerTarget::Service(_) => 1,
            DockerTarget::Node(_) => 2,
            _ => 0,
        };
        let wanted = if op.on_service() {
            1
        } else if op.on_node() {
            2
        } else {
            0
        };
        if kind != wanted {
            let wants = match wanted {
                1 => "service/NAME",
                2 => "node/NAME",
                _ => "container/NAME or label/KEY=VALUE",
            };
            return Err(format!(
                "docker target {target:?}: {} takes {wants}",
                op.as_str()
            ));
        }
        Ok(parsed)
    }
}

/// A container or service name (or label value): Docker's own name rule,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`MAX_NAME`] characters.
fn docker_name(target: &str, name: &str) -> Result<String, String> {
    let ok = name.len() <= MAX_NAME
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "docker target {target:?}: refusing name {name:?}: allowed are 1 to {MAX_NAME} of [A-Za-z0-9_.-], starting with a letter or digit"
        ))
    }
}

/// ` a=1 b=2` (label-safe values, nothing to quote), or nothing.
fn params_text(params: &BTreeMap<String, String>) -> String {
    params.iter().map(|(k, v)| format!(" {k}={v}")).collect()
}

/// argv for display, quoting items a reader could misjoin. Display only:
/// argv is never given to a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
            {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where HAProxy's runtime API listens: `unix:/run/haproxy/admin.sock` or
/// `127.0.0.1:9999` (any `HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ApiAddress {
    /// A UNIX socket, by absolute path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp {
        /// Host name or IP address (IPv6 in brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

impl FromStr for ApiAddress {
    type Err = ApiAddressError;

    fn from_str(s: &str) -> Result<ApiAddress, ApiAddressError> {
        let fail = |reason| ApiAddressError {
            value: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(fail(
                    "a UNIX socket needs an absolute path, as in unix:/run/haproxy/admin.sock",
                ));
            }
            if path.chars().any(char::is_control) {
                return Err(fail("control characters in the socket path"));
            }
            return Ok(ApiAddress::Unix(PathBuf::from(path)));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(fail("expected unix:/PATH or HOST:PORT"));
        };
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(fail("the port must be a number within [1, 65535]")),
        };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host_ok = !bare.is_empty()
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
            && if bare == host {
                !host.contains(':')
            } else {
                bare.parse::<std::net::Ipv6Addr>().is_ok()
            };
        if !host_ok {
            return Err(fail(
                "the host must be a name or an IP address (IPv6 in brackets)",
            ));
        }
        Ok(ApiAddress::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl TryFrom<String> for ApiAddress {
    type Error = ApiAddressError;

    fn try_from(s: String) -> Result<ApiAddress, ApiAddressError> {
        s.parse()
    }
}

impl From<ApiAddress> for String {
    fn from(a: ApiAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            ApiAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl schemars::JsonSchema for ApiAddress {
    fn schema_name() -> String {
        "ApiAddress".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        use schemars::schema::{InstanceType, Metadata, SchemaObject, StringValidation};
        SchemaObject {
            instance_type: Some(InstanceType::String.into()),
            metadata: Some(Box::new(Metadata {
                description: Some(
                    "HAProxy runtime API address: `unix:/ABSOLUTE/PATH` or `HOST:PORT`".to_owned(),
                ),
                examples: vec![
                    "unix:/run/haproxy/admin.sock".into(),
                    "127.0.0.1:9999".into(),
                ],
                ..Default::default()
            })),
            string: Some(Box::new(StringValidation {
                pattern: Some(r"^(unix:/.+|[^\s]+:[0-9]{1,5})$".to_owned()),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// A backend or server name that is safe to put into a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// Checks `value` against `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`;
    /// `what` names it in the error (`backend name`, `server name`).
    ///
    /// # Errors
    ///
    /// [`NameError`] for anything else.
    pub fn new(what: &'static str, value: &str) -> Result<Name, NameError> {
        let b = value.as_bytes();
        let ok = b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.len() <= MAX_NAME
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c));
        if ok {
            Ok(Name(value.to_owned()))
        } else {
            Err(NameError {
                what,
                value: value.to_owned(),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backend or server name that does not match the name pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing {what} {value:?}: allowed are 1 to {MAX_NAME} of [A-Za-z0-9._:-], starting with a letter or digit")]
pub struct NameError {
    /// `backend name` or `server name`.
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

/// An HAProxy runtime API address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HAProxy runtime API address {value:?}: {reason}")]
pub struct ApiAddressError {
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Whether `name` may be used in `${env:NAME}`: `[A-Z_][A-Z0-9_]*`, the
/// POSIX portable form. Lowercase is refused so that a typo cannot pick up
/// an unrelated variable of a different case.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The names referenced as `${env:NAME}` in `text`, in order.
///
/// # Errors
///
/// The first malformed reference: an unclosed `${env:`, or a name outside
/// `[A-Z_][A-Z0-9_]*`. The message is the runbook validation's.
pub fn env_references(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        let after = &rest[start + "${env:".len()..];
        let Some(end) = after.find('}') else {
            return Err("unclosed \"${env:\": write ${env:NAME}".to_owned());
        };
        let name = &after[..end];
        if !is_env_name(name) {
            return Err(format!(
                "invalid environment variable name {name:?} in ${{env:...}}: must match [A-Z_][A-Z0-9_]*"
            ));
        }
        names.push(name);
        rest = &after[end + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_admit_what_haproxy_admits_and_nothing_else() {
        for ok in ["be_payments", "payments-0", "10.0.0.1:9090", "a.b", "A"] {
            assert!(Name::new("server name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a\nshow info",
            "a;shutdown sessions server be/b",
            "a b",
            "be/a",
            "-a",
            "_a",
            "a@b",
            "$(id)",
            "`id`",
            "é",
            &"a".repeat(129),
        ] {
            let e = Name::new("server name", bad).unwrap_err();
            assert_eq!(e.value, bad);
        }
        assert_eq!(
            Name::new("backend name", "a;b").unwrap_err().to_string(),
            "refusing backend name \"a;b\": allowed are 1 to 128 of [A-Za-z0-9._:-], starting with a letter or digit"
        );
    }

    #[test]
    fn docker_targets_admit_docker_names_and_nothing_else() {
        use DockerOp as O;
        assert_eq!(
            DockerTarget::parse("container/web-1", O::Restart),
            Ok(DockerTarget::Container("web-1".into()))
        );
        assert_eq!(
            DockerTarget::parse("label/com.docker.compose.service=web", O::Kill),
            Ok(DockerTarget::Label {
                key: "com.docker.compose.service".into(),
                value: "web".into()
            })
        );
        assert_eq!(
            DockerTarget::parse("service/api_v2", O::Scale),
            Ok(DockerTarget::Service("api_v2".into()))
        );
        for bad in [
            "container/a/b",
            "container/../x",
            "container/x?force=1",
            "container/-x",
            "container/",
            "container/a b",
            "container/a%2Fb",
            "label/a=b,c",
            "label/a=b=c",
            "label/=b",
            "label/a",
            "service/a@b",
            "pod/a",
        ] {
            let op = if bad.starts_with("service/") {
                O::Scale
            } else {
                O::Restart
            };
            assert!(DockerTarget::parse(bad, op).is_err(), "{bad}");
        }
        assert_eq!(
            DockerTarget::parse("service/api", O::Restart).unwrap_err(),
            "docker target \"service/api\": restart takes container/NAME or label/KEY=VALUE"
        );
        assert_eq!(
            DockerTarget::parse("container/api", O::Rollback).unwrap_err(),
            "docker target \"container/api\": rollback takes service/NAME"
        );
        assert_eq!(
            DockerTarget::parse("container/a;b", O::Stop).unwrap_err(),
            "docker target \"container/a;b\": refusing name \"a;b\": allowed are 1 to 128 of [A-Za-z0-9_.-], starting with a letter or digit"
        );
    }

    #[test]
    fn api_addresses() {
        let ok = |s: &str| s.parse::<ApiAddress>().unwrap().to_string();
        assert_eq!(
            ok("unix:/run/haproxy/admin.sock"),
            "unix:/run/haproxy/admin.sock"
        );
        assert_eq!(ok("127.0.0.1:9999"), "127.0.0.1:9999");
        assert_eq!(ok("lb-1.internal:9999"), "lb-1.internal:9999");
        assert_eq!(ok("[::1]:9999"), "[::1]:9999");
        let bad = |s: &str| s.parse::<ApiAddress>().unwrap_err().to_string();
        assert_eq!(
            bad("unix:admin.sock"),
            "invalid HAProxy runtime API address \"unix:admin.sock\": a UNIX socket needs an absolute path, as in unix:/run/haproxy/admin.sock"
        );
        assert_eq!(
            bad("/run/haproxy/admin.sock"),
            "invalid HAProxy runtime API address \"/run/haproxy/admin.sock\": expected unix:/PATH or HOST:PORT"
        );
        assert_eq!(
            bad("127.0.0.1:0"),
            "invalid HAProxy runtime API address \"127.0.0.1:0\": the port must be a number within [1, 65535]"
        );
        assert_eq!(
            bad("a b:80"),
            "invalid HAProxy runtime API address \"a b:80\": the host must be a name or an IP address (IPv6 in brackets)"
        );
        assert!("::1:80".parse::<ApiAddress>().is_err());
    }
}
