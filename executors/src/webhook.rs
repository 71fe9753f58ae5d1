//! The `webhook` executor: one HTTP request (method, URL, headers, JSON
//! body), with secrets taken from heal's environment at execution time.
//!
//! Secrets: a URL or a header value may hold `${env:NAME}`, replaced just
//! before the request by the variable `NAME` of heal's environment. The
//! runbook, the incident records and the reports keep the reference, never
//! the secret: the substitution happens here, after everything that is
//! recorded was rendered. A label value cannot smuggle a reference in (the
//! safe-value pattern admits no `$`, `{` or `}`), and the body is never
//! substituted (it is recorded in incidents and often echoed by receivers).
//! A missing variable is an error, never an empty string: an empty token
//! sent to a paging service fails late and silently.
//!
//! Retries: only what a second try can fix is retried (timeouts, connection
//! errors, 5xx), a bounded number of times with exponential backoff; a 4xx
//! is the receiver saying no and is never retried. A 3xx is not followed
//! (see `http_client`) and is a failure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use remediate::action::ActionResult;
pub use remediate::action::{env_references, is_env_name};
use remediate::runbook::HttpMethod;
use stdx::Backoff;

use crate::http::{error_chain, http_client, read_capped};

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// HTTP method.
    pub method: HttpMethod,
    /// URL, possibly with `${env:NAME}` references.
    pub url: String,
    /// Headers; values may hold `${env:NAME}` references.
    pub headers: BTreeMap<String, String>,
    /// JSON body, sent with `Content-Type: application/json` (unless a
    /// header sets another).
    pub body: Option<serde_json::Value>,
    /// Timeout of each attempt (connecting, sending and reading the
    /// response).
    pub timeout: Duration,
    /// Record what would be sent, send nothing.
    pub dry_run: bool,
    /// How many times to try.
    pub retry: Retry,
}

/// How a failed attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Wait before each further attempt (the first retry waits
    /// `backoff.initial`, each next one twice as long up to `backoff.max`).
    pub backoff: Backoff,
}

impl Default for Retry {
    /// Three attempts, 500 ms then 1 s apart: enough to ride out a
    /// receiver's restart or a dropped connection, short enough that the
    /// act stage (one action at a time) is not held for long. Worst case:
    /// 3 × timeout + 1.5 s.
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Backoff::exponential(Duration::from_millis(500), Duration::from_secs(4)),
        }
    }
}

/// Replaces every `${env:NAME}` of `text` with `env(NAME)`.
///
/// # Errors
///
/// A malformed reference, or a variable `env` does not know (named in the
/// message; its value never is).
pub fn substitute_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    env_references(text)?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${env:".len()..];
        let end = after.find('}').expect("checked by env_references");
        let name = &after[..end];
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How one attempt ended.
enum Attempt {
    /// Final: success, or a failure a retry cannot fix.
    Done(ActionResult),
    /// A failure a retry may fix; the summary says what happened.
    Transient(String, String),
}

/// Sends `req`, retrying per `req.retry`. `env` looks up the variables of
/// `${env:NAME}` references (the binary passes `std::env::var`; only the
/// binary reads the environment).
pub async fn run(
    req: &WebhookRequest,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> ActionResult {
    let started = Instant::now();
    let fail = |summary: String, retryable: bool| ActionResult {
        ok: false,
        retryable,
        summary,
        output: String::new(),
        duration: started.elapsed(),
    };
    // What is shown is the URL as written: references, never secrets.
    let shown = format!("{} {}", req.method.as_str(), req.url);
    let url = match substitute_env(&req.url, env) {
        Ok(url) => url,
        Err(e) => return fail(format!("webhook {shown}: url: {e}"), false),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &req.headers {
        let value = match substitute_env(value, env) {
            Ok(v) => v,
            Err(e) => return fail(format!("webhook {shown}: header {name}: {e}"), false),
        };
        let parsed = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        );
        match parsed {
            (Ok(n), Ok(mut v)) => {
                // Keeps the value out of any debug output of the request.
                v.set_sensitive(true);
                headers.insert(n, v);
            }
            _ => {
                return fail(
                    format!("webhook {shown}: header {name}: not a valid HTTP header"),
                    false,
                )
            }
        }
    }
    if req.dry_run {
        return ActionResult {
            ok: true,
            retryable: false,
            summary: format!("dry run: would send webhook {shown}"),
            output: req.body.as_ref().map(|b| b.to_string()).unwrap_or_default(),
            duration: started.elapsed(),
        };
    }
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => return fail(format!("webhook {shown}: {e}"), false),
    };
    let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
        .expect("HttpMethod names are valid methods");
    let attempts = req.retry.attempts.max(1);
    let mut last = (String::new(), String::new());
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(req.retry.backoff.delay(attempt - 1, 0.0)).await;
        }
        let mut builder = client
            .request(method.clone(), &url)
            .headers(headers.clone())
            .timeout(req.timeout);
        if let Some(body) = &req.body {
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            builder = builder.body(body.to_string());
        }
        match once(builder, req.timeout).await {
            Attempt::Done(mut result) => {
                if attempt > 1 {
                    result.summary =
                        format!("{} (attempt {attempt} of {attempts})", result.summary);
                }
                result.summary = format!("webhook {shown}: {}", result.summary);
                result.duration = started.elapsed();
                return result;
            }
            Attempt::Transient(summary, output) => {
                tracing::debug!(attempt, attempts, %summary, "webhook attempt failed; retryable");
                last = (summary, output);
            }
        }
    }
    let (summary, output) = last;
    ActionResult {
        ok: false,
        retryable: true,
        summary: format!("webhook {shown}: {summary} ({attempts} attempts)"),
        output,
        duration: started.elapsed(),
    }
}

/// One attempt.
async fn once(builder: reqwest::RequestBuilder, timeout: Duration) -> Attempt {
    let transport = |e: &reqwest::Error| {
        if e.is_timeout() {
            format!("timed out after {timeout:?}")
        } else {
            error_chain(e)
        }
    };
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => {
            return Attempt::Transient(transport(&e), String::new())
        }
        Err(e) => {
            return Attempt::Done(ActionResult {
                ok: false,
                retryable: false,
                summary: transport(&e),
                output: String::new(),
                duration: Duration::ZERO,
            })
        }
    };
    let status = response.status();
    let output = match read_capped(response).await {
        Ok(text) => text,
        // The status arrived but the body did not in time: the receiver
        // may have acted; a timeout is still worth a retry for a webhook
        // (receivers of alerts deduplicate).
        Err(e) => return Attempt::Transient(transport(&e), String::new()),
    };
    let summary = format!("HTTP {status}");
    if status.is_server_error() {
        return Attempt::Transient(summary, output);
    }
    Attempt::Done(ActionResult {
        ok: status.is_success(),
        retryable: false,
        summary,
        output,
        duration: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, TestServer};

    fn request(url: String) -> WebhookRequest {
        WebhookRequest {
            method: HttpMethod::Post,
            url,
            headers: BTreeMap::new(),
            body: Some(serde_json::json!({"text": "checkout is down", "n": 1})),
            timeout: Duration::from_secs(10),
            dry_run: false,
            retry: Retry {
                attempts: 3,
                backoff: Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)),
            },
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn a_200_is_success_with_the_body_sent_as_json() {
        let server = TestServer::start(vec![Reply::now(200, "queued")]);
        let r = run(&request(server.url("/hook")), &no_env).await;
        assert!(r.ok && !r.retryable, "{r:?}");
        assert_eq!(
            r.summary,
            format!("webhook POST {}: HTTP 200 OK", server.url("/hook"))
        );
        assert_eq!(r.output, "queued");
        let got = server.received();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/hook")
        );
        assert_eq!(got[0].header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"text": "checkout is down", "n": 1})
        );
    }

    #[tokio::test]
    async fn a_500_is_retried_and_a_later_200_succeeds() {
        let server = TestServer::start(vec![Reply::now(500, "busy"), Reply::now(200, "ok")]);
        let r = run(&request(server.url("/")), &no_env).await;
        assert!(r.ok, "{r:?}");
        assert!(
            r.summary.ends_with("HTTP 200 OK (attempt 2 of 3)"),
            "{}",
            r.summary
        );
        assert_eq!(server.received().len(), 2);
    }

    #[tokio::test]
    async fn a_500_every_time_gives_up_after_the_attempts_and_is_retryable() {
        let server = TestServer::start(vec![Reply::now(503, "down")]);
        let r = run(&request(server.url("/")), &no_env).await;
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(
            r.summary
                .ends_with("HTTP 503 Service Unavailable (3 attempts)"),
            "{}",
            r.summary
        );
        assert_eq!(r.output, "down");
        assert_eq!(server.received().len(), 3);
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let server = TestServer::start(vec![
            Reply::now(400, "bad routing key"),
            Reply::now(200, ""),
        ]);
        let r = run(&request(server.url("/")), &no_env).await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(r.summary.ends_with("HTTP 400 Bad Request"), "{}", r.summary);
        assert_eq!(r.output, "bad routing key");
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_not_retried() {
        let server = TestServer::start(vec![Reply::now(302, "elsewhere"), Reply::now(200, "")]);
        let r = run(&request(server.url("/")), &no_env).await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(r.summary.ends_with("HTTP 302 Found"), "{}", r.summary);
        assert_eq!(server.received().len(), 1);
    }

    #[tokio::test]
    async fn a_hung_server_times_out_each_attempt_and_is_retryable() {
        let server = TestServer::start(vec![Reply {
            status: 200,
            body: String::new(),
            delay: Duration::from_secs(30),
        }]);
        let mut q = request(server.url("/"));
        q.timeout = Duration::from_millis(200);
        q.retry.attempts = 2;
        let r = run(&q, &no_env).await;
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(
            r.summary.ends_with("timed out after 200ms (2 attempts)"),
            "{}",
            r.summary
        );
        assert!(r.duration < Duration::from_secs(20), "{:?}", r.duration);
        assert_eq!(server.received().len(), 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_and_retryable() {
        // A port that was just free: bind, read it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = run(&request(format!("http://127.0.0.1:{port}/")), &no_env).await;
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(r.summary.ends_with("(3 attempts)"), "{}", r.summary);
    }

    /// The documented default (README: "3 attempts, 0.5 s then 1 s
    /// apart"), end to end under paused tokio time: against a port nobody
    /// listens on, every attempt fails at once, so the run takes exactly
    /// the two waits, 0.5 s + 1 s.
    #[tokio::test(start_paused = true)]
    async fn the_default_retry_is_three_attempts_half_a_second_then_a_second_apart() {
        let retry = Retry::default();
        assert_eq!(retry.attempts, 3);
        assert_eq!(retry.backoff.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(retry.backoff.delay(2, 0.0), Duration::from_secs(1));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut q = request(format!("http://127.0.0.1:{port}/"));
        q.retry = Retry::default();
        // Far longer than the schedule: a wait that ran into it would show.
        q.timeout = Duration::from_secs(60);
        let t0 = tokio::time::Instant::now();
        let r = run(&q, &no_env).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1500), "{r:?}");
        assert!(!r.ok && r.retryable, "{r:?}");
        assert!(r.summary.ends_with("(3 attempts)"), "{}", r.summary);
    }

    #[tokio::test]
    async fn secrets_come_from_the_environment_and_are_never_shown() {
        let server = TestServer::start(vec![Reply::now(204, "")]);
        let mut q = request(server.url("/hook/${env:HOOK_PATH_TOKEN}"));
        q.headers
            .insert("Authorization".into(), "Bearer ${env:HOOK_TOKEN}".into());
        let env = |name: &str| match name {
            "HOOK_TOKEN" => Some("s3cr3t".to_owned()),
            "HOOK_PATH_TOKEN" => Some("p4th".to_owned()),
            _ => None,
        };
        let r = run(&q, &env).await;
        assert!(r.ok, "{r:?}");
        let got = server.received();
        assert_eq!(got[0].header("authorization"), Some("Bearer s3cr3t"));
        assert_eq!(got[0].path, "/hook/p4th");
        assert!(!r.summary.contains("p4th"), "{}", r.summary);
        assert!(
            r.summary.contains("${env:HOOK_PATH_TOKEN}"),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn a_missing_variable_is_an_error_and_nothing_is_sent() {
        let server = TestServer::start(vec![Reply::now(200, "")]);
        let mut q = request(server.url("/"));
        q.headers
            .insert("X-Api-Key".into(), "${env:HEAL_TEST_UNSET_KEY}".into());
        let r = run(&q, &no_env).await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(
            r.summary
                .ends_with("header X-Api-Key: environment variable HEAL_TEST_UNSET_KEY is not set"),
            "{}",
            r.summary
        );
        assert!(server.received().is_empty());
    }

    #[tokio::test]
    async fn dry_run_sends_nothing() {
        let server = TestServer::start(vec![Reply::now(200, "")]);
        let mut q = request(server.url("/"));
        q.dry_run = true;
        let r = run(&q, &no_env).await;
        assert!(r.ok, "{r:?}");
        assert!(
            r.summary.starts_with("dry run: would send webhook POST"),
            "{}",
            r.summary
        );
        assert!(server.received().is_empty());
    }

    #[test]
    fn env_reference_syntax() {
        assert_eq!(
            env_references("a ${env:A_1} b ${env:_B}"),
            Ok(vec!["A_1", "_B"])
        );
        assert_eq!(env_references("no refs, $HOME, ${other}"), Ok(vec![]));
        assert_eq!(
            env_references("${env:lower}").unwrap_err(),
            "invalid environment variable name \"lower\" in ${env:...}: must match [A-Z_][A-Z0-9_]*"
        );
        assert_eq!(
            env_references("${env:1X}").unwrap_err(),
            "invalid environment variable name \"1X\" in ${env:...}: must match [A-Z_][A-Z0-9_]*"
        );
        assert_eq!(
            env_references("x ${env:TOKEN").unwrap_err(),
            "unclosed \"${env:\": write ${env:NAME}"
        );
        let env = |n: &str| (n == "T").then(|| "v".to_owned());
        assert_eq!(
            substitute_env("a${env:T}b${env:T}", &env),
            Ok("avbv".into())
        );
        assert_eq!(
            substitute_env("${env:U}", &env),
            Err("environment variable U is not set".into())
        );
    }
}
