//! What a user writes to point heal at a Prometheus server.
//!
//! Every `///` doc here is user documentation. Secrets (tokens, passwords) are values here, never
//! names of environment variables: only the `heal` binary reads the environment, and it fills
//! these fields in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How to reach a Prometheus server and how hard to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:9090`, or with a path prefix when it sits
    /// behind a reverse proxy (`http://host/prometheus`). Plain `http://` only: this build has
    /// no TLS support.
    pub url: String,
    /// How long one HTTP request (connect, query, reading the answer) may take, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Credentials sent with every request; leave out for none.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Most series one signal may yield. A live evaluation keeps the first ones in label order
    /// and counts the rest as truncated; a recording refuses the query.
    #[serde(default = "default_max_series_per_signal")]
    pub max_series_per_signal: usize,
    /// Retries of failed requests.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_max_series_per_signal() -> usize {
    10_000
}

impl PrometheusConfig {
    /// The defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusConfig {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            auth: None,
            max_series_per_signal: default_max_series_per_signal(),
            retry: RetryConfig::default(),
        }
    }

    /// Every problem with these settings, each as `(field, what is wrong)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Err(e) => out.push(("url", format!("not a URL ({e}): {:?}", self.url))),
            Ok(u) if u.scheme() == "https" => out.push((
                "url",
                format!(
                    "https is not supported by this build (no TLS feature), got {:?}",
                    self.url
                ),
            )),
            Ok(u) if u.scheme() != "http" => out.push((
                "url",
                format!("must start with http://, got {:?}", self.url),
            )),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                out.push(("url", format!("has no host: {:?}", self.url)))
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => out.push((
                "url",
                format!("must not have a query or fragment, got {:?}", self.url),
            )),
            Ok(_) => {}
        }
        if self.timeout_ms == 0 {
            out.push(("timeout_ms", "must be at least 1, got 0".to_string()));
        }
        if self.max_series_per_signal == 0 {
            out.push((
                "max_series_per_signal",
                "must be at least 1, got 0".to_string(),
            ));
        }
        match &self.auth {
            Some(Auth::Bearer { token }) if token.is_empty() => {
                out.push(("auth.token", "must not be empty".to_string()))
            }
            Some(Auth::Basic { username, .. }) if username.is_empty() => {
                out.push(("auth.username", "must not be empty".to_string()))
            }
            Some(Auth::Basic { username, .. }) if username.contains(':') => out.push((
                "auth.username",
                "must not contain ':' (it separates user and password in basic auth)".to_string(),
            )),
            _ => {}
        }
        out.extend(self.retry.problems());
        out
    }
}

/// Credentials for Prometheus (or the proxy in front of it), tagged by `type`.
///
/// `Debug` prints `<redacted>` instead of the secret, so a configuration can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Exponential backoff with jitter between attempts of one request.
///
/// Attempt `n` (1 for the first retry) waits `min(max_backoff_ms, initial_backoff_ms * 2^(n-1))`
/// scaled by a random factor in `(1 - jitter, 1]`. `jitter: 1.0` is "full jitter" in the terms of
/// Marc Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015), which spreads a
/// crowd of clients best; the default 0.2 keeps the waits predictable for one client while still
/// keeping several heal instances from retrying in lockstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Wait before the first retry, in ms.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in ms.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Attempts in all, the first included; 1 means never retry.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Share of each wait that is random, in [0, 1].
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_initial_backoff_ms() -> u64 {
    200
}

fn default_max_backoff_ms() -> u64 {
    10_000
}

fn default_max_attempts() -> u32 {
    4
}

fn default_jitter() -> f64 {
    0.2
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_attempts: default_max_attempts(),
            jitter: default_jitter(),
        }
    }
}

impl RetryConfig {
    /// Every problem with these settings, each as `(field, what is wrong)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.max_attempts == 0 {
            out.push((
                "retry.max_attempts",
                "must be at least 1, got 0".to_string(),
            ));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            out.push((
                "retry.max_backoff_ms",
                format!(
                    "must not be below initial_backoff_ms ({}), got {}",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            ));
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            out.push((
                "retry.jitter",
                format!("must be within [0, 1], got {}", self.jitter),
            ));
        }
        out
    }

    /// The waits between attempts: `stdx::Backoff`, the one exponential
    /// backoff of heal.
    pub fn backoff(&self) -> stdx::Backoff {
        stdx::Backoff::exponential(
            std::time::Duration::from_millis(self.initial_backoff_ms),
            std::time::Duration::from_millis(self.max_backoff_ms),
        )
        .with_jitter(self.jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_minimal_json() {
        let c: PrometheusConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9090"}"#).unwrap();
        assert_eq!(c, PrometheusConfig::new("http://127.0.0.1:9090"));
        assert_eq!(c.timeout_ms, 5_000);
        assert_eq!(c.max_series_per_signal, 10_000);
        assert_eq!(
            c.retry,
            RetryConfig {
                initial_backoff_ms: 200,
                max_backoff_ms: 10_000,
                max_attempts: 4,
                jitter: 0.2
            }
        );
        assert!(c.problems().is_empty());
    }

    #[test]
    fn auth_is_tagged_and_unknown_fields_are_refused() {
        let c: PrometheusConfig = serde_json::from_str(
            r#"{"url":"http://p:9090","auth":{"type":"basic","username":"u","password":"p"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.auth,
            Some(Auth::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let e = serde_json::from_str::<PrometheusConfig>(r#"{"url":"http://p","timeout":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown field `timeout`"), "{e}");
        let e = serde_json::from_str::<Auth>(r#"{"type":"bearer","token":"t","user":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `user`"), "{e}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let b = Auth::Bearer {
            token: "s3cret".into(),
        };
        let p = Auth::Basic {
            username: "me".into(),
            password: "s3cret".into(),
        };
        assert_eq!(format!("{b:?}"), r#"Bearer { token: "<redacted>" }"#);
        assert_eq!(
            format!("{p:?}"),
            r#"Basic { username: "me", password: "<redacted>" }"#
        );
    }

    #[test]
    fn problems_are_all_reported() {
        let c = PrometheusConfig {
            url: "https://p:9090".into(),
            timeout_ms: 0,
            auth: Some(Auth::Bearer {
                token: String::new(),
            }),
            max_series_per_signal: 0,
            retry: RetryConfig {
                initial_backoff_ms: 500,
                max_backoff_ms: 100,
                max_attempts: 0,
                jitter: 1.5,
            },
        };
        let fields: Vec<_> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "url",
                "timeout_ms",
                "max_series_per_signal",
                "auth.token",
                "retry.max_attempts",
                "retry.max_backoff_ms",
                "retry.jitter"
            ]
        );
        assert_eq!(
            c.problems()[0].1,
            r#"https is not supported by this build (no TLS feature), got "https://p:9090""#
        );
        for (url, expected) in [
            ("p:9090", "must start with http://, got \"p:9090\""),
            (
                "localhost",
                "not a URL (relative URL without a base): \"localhost\"",
            ),
            (
                "http://p/?x=1",
                "must not have a query or fragment, got \"http://p/?x=1\"",
            ),
        ] {
            let p = PrometheusConfig::new(url).problems();
            assert_eq!(p, [("url", expected.to_string())], "{url}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_only_shortens() {
        let r = RetryConfig {
            jitter: 0.0,
            ..RetryConfig::default()
        };
        let waits: Vec<_> = (1..=8)
            .map(|n| r.backoff().delay(n, 0.5).as_millis())
            .collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(r.backoff().delay(1000, 0.5).as_millis(), 10_000);
        let full = RetryConfig {
            jitter: 1.0,
            ..RetryConfig::default()
        };
        assert_eq!(full.backoff().delay(2, 0.0).as_millis(), 400);
        assert_eq!(full.backoff().delay(2, 0.75).as_millis(), 100);
        let default = RetryConfig::default();
        assert_eq!(default.backoff().delay(1, 0.5).as_millis(), 180);
    }
}
