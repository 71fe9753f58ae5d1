//! The executor of `restart`, `scale` and `rollback` on a target
//! `supervisor/NAME`: one call to `heal supervise`'s control API (the
//! daemon is `daemons::supervisor`).
//!
//! The API accepts the change and answers with the service's status; it
//! does not wait for the new children to pass their checks. Whether the
//! action helped is what the rule engine's verification judges from the
//! metrics afterwards, as for every other executor.

use std::time::{Duration, Instant};

use remediate::action::ActionResult;

/// Prefix of the targets this executor handles.
pub const TARGET_PREFIX: &str = "supervisor/";

/// Most bytes of an answer kept in the result's output.
const MAX_OUTPUT: usize = 4096;

/// What to ask the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Restart every replica.
    Restart,
    /// Run this many replicas.
    Scale {
        /// Replica count.
        replicas: u32,
    },
    /// Go back to release `to`, or to the previous one.
    Rollback {
        /// A version, or `None` for the previous release.
        to: Option<String>,
    },
}

impl Operation {
    fn describe(&self, service: &str) -> String {
        match self {
            Operation::Restart => format!("restart {service}"),
            Operation::Scale { replicas } => format!("scale {service} to {replicas}"),
            Operation::Rollback { to: None } => format!("roll back {service}"),
            Operation::Rollback { to: Some(v) } => format!("roll back {service} to {v}"),
        }
    }
}

/// Where the control API is, and its token.
#[derive(Debug, Clone)]
pub struct SupervisorClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl SupervisorClient {
    /// A client of the control API at `base_url` (`http://127.0.0.1:9465`),
    /// sending `token` as a bearer token on every request.
    ///
    /// # Errors
    ///
    /// A URL that is not plain `http://HOST[:PORT]` (TLS is not built in).
    pub fn new(base_url: &str, token: Option<String>) -> Result<SupervisorClient, String> {
        let base = base_url.trim_end_matches('/').to_owned();
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            format!("supervisor URL {base_url:?}: expected http://HOST:PORT (plain HTTP only)")
        })?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "supervisor URL {base_url:?}: expected http://HOST:PORT with no path"
            ));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(SupervisorClient { base, token, http })
    }

    /// Performs `op` on `target` (`supervisor/NAME`) within `timeout`.
    ///
    /// Not ok and not retryable: a target this executor does not handle, an
    /// invalid service name, a 4xx answer (unknown service, bad token, a
    /// replica count out of range, no previous release). Retryable: the
    /// API unreachable, a timeout, a 5xx answer.
    pub async fn run(
        &self,
        target: &str,
        op: &Operation,
        timeout: Duration,
        dry_run: bool,
    ) -> ActionResult {
        let started = Instant::now();
        let result = |ok, retryable, summary: String, output: String| ActionResult {
            ok,
            retryable,
            summary,
            output,
            duration: started.elapsed(),
        };
        let service = match service_of(target) {
            Ok(s) => s,
            Err(e) => return result(false, false, e, String::new()),
        };
        let what = op.describe(service);
        if dry_run {
            return result(
                true,
                false,
                format!("dry run: would {what} via {}", self.base),
                String::new(),
            );
        }
        let (path, body) = match op {
            Operation::Restart => ("restart", serde_json::json!({})),
            Operation::Scale { replicas } => ("scale", serde_json::json!({ "replicas": replicas })),
            Operation::Rollback { to } => ("rollback", serde_json::json!({ "to": to })),
        };
        let url = format!("{}/v1/services/{service}/{path}", self.base);
        let mut req = self.http.post(&url).timeout(timeout).json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let output = text.chars().take(MAX_OUTPUT).collect::<String>();
                if status.is_success() {
                    result(true, false, format!("{what}: accepted"), output)
                } else {
                    let reason = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                        .unwrap_or_else(|| text.trim().to_owned());
                    result(
                        false,
                        status.is_server_error(),
                        format!("{what}: supervisor answered {}: {reason}", status.as_u16()),
                        output,
                    )
                }
            }
            Err(e) if e.is_timeout() => result(
                false,
                true,
                format!("{what}: timed out after {timeout:?}"),
                String::new(),
            ),
            Err(e) => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                result(
                    false,
                    true,
                    format!("{what}: calling {url}: {text}"),
                    String::new(),
                )
            }
        }
    }
}

/// The service named by a target `supervisor/NAME`.
///
/// # Errors
///
/// A target of another kind (`deployment/x`: no executor handles it yet)
/// or an invalid name.
pub fn service_of(target: &str) -> Result<&str, String> {
    let Some(name) = target.strip_prefix(TARGET_PREFIX) else {
        return Err(format!(
            "no executor for target {target:?}: only {TARGET_PREFIX}NAME and docker/... targets are handled (systemd and Kubernetes are not covered)"
        ));
    };
    if !valid_name(name) {
        return Err(format!(
            "invalid supervisor service name {name:?} in target {target:?}"
        ));
    }
    Ok(name)
}

/// Whether `name` is a valid service name: 1 to 64 of `[A-Za-z0-9._-]`,
/// starting with a letter or digit. It becomes a URL path segment, a file
/// name and a runbook target, so nothing that would need escaping there.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_supervised_service() {
        assert_eq!(service_of("supervisor/api").unwrap(), "api");
        assert_eq!(
            service_of("deployment/api").unwrap_err(),
            "no executor for target \"deployment/api\": only supervisor/NAME and docker/... targets are handled (systemd and Kubernetes are not covered)"
        );
        assert!(service_of("supervisor/../x").is_err());
        assert!(service_of("supervisor/a/b").is_err());
        assert!(service_of("supervisor/").is_err());
    }

    #[test]
    fn only_plain_http_base_urls() {
        assert!(SupervisorClient::new("http://127.0.0.1:9465/", None).is_ok());
        assert!(SupervisorClient::new("https://127.0.0.1:9465", None).is_err());
        assert!(SupervisorClient::new("http://127.0.0.1:9465/v1", None).is_err());
    }

    #[tokio::test]
    async fn an_unhandled_target_is_a_clear_result_not_a_panic() {
        let c = SupervisorClient::new("http://127.0.0.1:9", None).unwrap();
        let r = c
            .run(
                "deployment/api",
                &Operation::Restart,
                Duration::from_secs(1),
                false,
            )
            .await;
        assert!(!r.ok && !r.retryable);
        assert!(
            r.summary.starts_with("no executor for target"),
            "{}",
            r.summary
        );
    }

    /// A supervisor that accepts the request and never answers in time
    /// (a real socket, a reply held for 30 s): the call gives up after its
    /// timeout with a retryable result, so a hung supervisor cannot hold
    /// the act stage.
    #[tokio::test]
    async fn a_hung_supervisor_times_out_and_is_retryable() {
        use crate::test_server::{Reply, TestServer};
        let server = TestServer::start(vec![Reply {
            status: 200,
            body: "{}".into(),
            delay: Duration::from_secs(30),
        }]);
        let c = SupervisorClient::new(&server.url(""), Some("t".into())).unwrap();
        let r = c
            .run(
                "supervisor/api",
                &Operation::Restart,
                Duration::from_millis(300),
                false,
            )
            .await;
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(
            r.summary.ends_with("timed out after 300ms"),
            "{}",
            r.summary
        );
        // The request did reach it: the wait was for the answer.
        assert_eq!(server.received()[0].path, "/v1/services/api/restart");
    }

    #[tokio::test]
    async fn dry_run_calls_nothing() {
        // Port 9 (discard) on loopback: nothing listens; a call would fail.
        let c = SupervisorClient::new("http://127.0.0.1:9", None).unwrap();
        let r = c
            .run(
                "supervisor/api",
                &Operation::Scale { replicas: 3 },
                Duration::from_secs(1),
                true,
            )
            .await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.summary,
            "dry run: would scale api to 3 via http://127.0.0.1:9"
        );
    }

    #[tokio::test]
    async fn an_unreachable_supervisor_is_retryable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = SupervisorClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let r = c
            .run(
                "supervisor/api",
                &Operation::Restart,
                Duration::from_secs(5),
                false,
            )
            .await;
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(
            r.summary
                .starts_with("restart api: calling http://127.0.0.1:"),
            "{}",
            r.summary
        );
    }
}
