//! A small client for Prometheus' HTTP query API (`/api/v1/query`, `/api/v1/query_range`).
//!
//! Requests are `POST`s with a form body, as Prometheus' own UI sends them: long PromQL does not
//! run into URL length limits of proxies. Every request carries Prometheus' `timeout` parameter
//! set to the client's timeout, so that Prometheus stops working on a query heal has given up on.
//!
//! Values are kept exactly as Prometheus sends them: `"NaN"`, `"+Inf"` and `"-Inf"` become the
//! corresponding `f64`. Deciding what to do with them is the job of the [`crate::Sanitizer`]
//! downstream, which drops and counts them per series; the client does not second-guess data.
//!
//! Plain HTTP only: the workspace builds reqwest without a TLS backend (it doubles cold compile
//! time), so an `https://` URL is refused by [`PrometheusConfig::problems`]. Supporting it means
//! adding reqwest's `rustls` feature. The client never uses a proxy from `HTTP_PROXY` and the
//! like: only the `heal` binary reads environment variables.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::time::Instant;

use super::config::{Auth, PrometheusConfig, RetryConfig};
use crate::error::PromError;
use crate::series::{Labels, Sample};

/// Prometheus refuses a range query with more than 11,000 points per series
/// (`exceeded maximum resolution of 11,000 points per timeseries`, web/api/v1/api.go); a chunk
/// of [`PrometheusClient::query_range`] asks for at most this many.
pub const MAX_POINTS_PER_SERIES: usize = 11_000;

/// How much of an unexpected response body an error keeps.
const BODY_EXCERPT_BYTES: usize = 512;

/// The outcome of a request that may have been tried several times.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted<T> {
    /// The result of the last attempt.
    pub result: Result<T, PromError>,
    /// How many attempts were made (at least 1; for a chunked range query, over all chunks).
    pub attempts: u32,
}

/// A client for one Prometheus server. Cheap to clone: clones share the connection pool and the
/// random generator of the retry jitter.
///
/// - Values are kept as Prometheus sends them: `"NaN"`, `"+Inf"` and `"-Inf"` become the same
///   `f64`; the [`crate::Sanitizer`] downstream drops and counts them.
/// - Plain HTTP only: the workspace builds reqwest without TLS, so `https://` is refused by
///   [`PrometheusConfig::problems`] until reqwest's `rustls` feature is added.
/// - No proxy from `HTTP_PROXY` and the like: only the `heal` binary reads the environment.
/// - Every failure is a [`PromError`]; [`PromError::retryable`] ones are retried with backoff
///   ([`RetryConfig`]) up to `max_attempts` attempts in all.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    /// The configured URL without a trailing `/`.
    base: String,
    auth: Option<Auth>,
    timeout_ms: u64,
    max_series: usize,
    retry: RetryConfig,
    max_points: usize,
    /// Behind a std mutex, not a tokio one: it is held for one `gen()` and never across an
    /// `.await` (the reasoning of mini-redis' db.rs).
    rng: Arc<Mutex<SmallRng>>,
}

impl PrometheusClient {
    /// A client for the server in `cfg`, after checking it ([`PrometheusConfig::problems`]).
    ///
    /// Not `async`: building it connects to nothing, the first request does.
    pub fn new(cfg: PrometheusConfig) -> Result<Self, PromError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            let reason = problems
                .iter()
                .map(|(field, problem)| format!("{field}: {problem}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PromError::Config { reason });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .no_proxy()
            .build()
            .map_err(|e| PromError::Config {
                reason: error_chain(&e),
            })?;
        Ok(PrometheusClient {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
            auth: cfg.auth,
            timeout_ms: cfg.timeout_ms,
            max_series: cfg.max_series_per_signal,
            retry: cfg.retry,
            max_points: MAX_POINTS_PER_SERIES,
            rng: Arc::new(Mutex::new(SmallRng::from_entropy())),
        })
    }

    /// Seeds the generator of the retry jitter, for reproducible waits (tests).
    pub fn with_seed(self, seed: u64) -> Self {
        PrometheusClient {
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
            ..self
        }
    }

    /// Lowers the points per range-query chunk below [`MAX_POINTS_PER_SERIES`], so that tests
    /// exercise chunking on a short range.
    #[doc(hidden)]
    pub fn with_max_points_per_chunk(self, max_points: usize) -> Self {
        PrometheusClient {
            max_points: max_points.clamp(1, MAX_POINTS_PER_SERIES),
            ..self
        }
    }

    /// The configured cap on series per signal (`max_series_per_signal`).
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The configured base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Evaluates `expr` at `at_ms` (ms since the epoch): one value per series of the instant
    /// vector, or a scalar as one series without labels. Retried as configured.
    pub async fn query(&self, expr: &str, at_ms: i64) -> Result<Vec<(Labels, f64)>, PromError> {
        self.query_attempted(expr, at_ms, None).await.result
    }

    /// [`PrometheusClient::query`], reporting the number of attempts. No retry is started whose
    /// backoff would end after `deadline`.
    pub async fn query_attempted(
        &self,
        expr: &str,
        at_ms: i64,
        deadline: Option<Instant>,
    ) -> Attempted<Vec<(Labels, f64)>> {
        let form = [
            ("query", expr.to_string()),
            ("time", format_secs(at_ms)),
            ("timeout", format_secs(self.timeout_ms as i64)),
        ];
        let form = &form;
        self.with_retry(deadline, || async move {
            match self.post("/api/v1/query", form).await? {
                Data::Vector(series) => Ok(series
                    .into_iter()
                    .filter_map(|s| {
                        let labels = Labels::from_pairs(s.metric);
                        match s.value {
                            Some(point) => Some(parse_value(&point.1).map(|v| (labels, v))),
                            None => {
                                skipped_histogram(&labels, s.histogram.is_some());
                                None
                            }
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|reason| self.decode_error("/api/v1/query", reason))?),
                Data::Scalar(point) => Ok(vec![(
                    Labels::new(),
                    parse_value(&point.1)
                        .map_err(|reason| self.decode_error("/api/v1/query", reason))?,
                )]),
                other => Err(self.decode_error(
                    "/api/v1/query",
                    format!(
                        "expected an instant vector or a scalar, got a {}",
                        other.kind()
                    ),
                )),
            }
        })
        .await
    }

    /// Evaluates `expr` at every `step_ms` from `start_ms` to `end_ms` (inclusive, ms since the
    /// epoch), series sorted by labels, each series' samples in time order.
    ///
    /// The range is split into chunks of at most [`MAX_POINTS_PER_SERIES`] points, each retried
    /// on its own, and the chunks' series are merged: a series may appear in some chunks only
    /// (it started or stopped within the range), and a timestamp is never kept twice.
    pub async fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, PromError> {
        self.query_range_attempted(expr, start_ms, end_ms, step_ms, None)
            .await
            .result
    }

    /// [`PrometheusClient::query_range`], reporting the attempts over all chunks. No retry is
    /// started whose backoff would end after `deadline`.
    pub async fn query_range_attempted(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        deadline: Option<Instant>,
    ) -> Attempted<Vec<(Labels, Vec<Sample>)>> {
        let chunks = match chunks(start_ms, end_ms, step_ms, self.max_points) {
            Ok(c) => c,
            Err(reason) => {
                return Attempted {
                    result: Err(PromError::InvalidRequest { reason }),
                    attempts: 0,
                }
            }
        };
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut attempts = 0;
        for (chunk_start, chunk_end) in chunks {
            let form = [
                ("query", expr.to_string()),
                ("start", format_secs(chunk_start)),
                ("end", format_secs(chunk_end)),
                ("step", format_secs(step_ms)),
                ("timeout", format_secs(self.timeout_ms as i64)),
            ];
            let form = &form;
            let chunk = self
                .with_retry(deadline, || async move {
                    match self.post("/api/v1/query_range", form).await? {
                        Data::Matrix(series) => Ok(series),
                        other => Err(self.decode_error(
                            "/api/v1/query_range",
                            format!("expected a range vector (matrix), got a {}", other.kind()),
                        )),
                    }
                })
                .await;
            attempts += chunk.attempts;
            let series = match chunk.result {
                Ok(s) => s,
                Err(e) => {
                    return Attempted {
                        result: Err(e),
                        attempts,
                    }
                }
            };
            for s in series {
                let labels = Labels::from_pairs(s.metric);
                if s.values.is_empty() {
                    skipped_histogram(&labels, s.histograms.is_some());
                    continue;
                }
                let samples = merged.entry(labels).or_default();
                for (t, v) in s.values {
                    let sample = match parse_value(&v) {
                        Ok(value) => Sample::new(secs_to_ms(t), value),
                        Err(reason) => {
                            return Attempted {
                                result: Err(self.decode_error("/api/v1/query_range", reason)),
                                attempts,
                            }
                        }
                    };
                    // Chunks are disjoint on the step grid, so this only guards against a
                    // server that answers outside the asked range.
                    if samples.last().is_none_or(|last| last.ts_ms < sample.ts_ms) {
                        samples.push(sample);
                    }
                }
            }
        }
        Attempted {
            result: Ok(merged.into_iter().collect()),
            attempts,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good ([`PromError::retryable`] is false),
    /// `max_attempts` is reached, or the next backoff would end after `deadline`. Waits grow
    /// exponentially with jitter ([`RetryConfig`]).
    async fn with_retry<T, F, Fut>(&self, deadline: Option<Instant>, mut attempt: F) -> Attempted<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PromError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(v) => {
                    return Attempted {
                        result: Ok(v),
                        attempts,
                    }
                }
                Err(e) => e,
            };
            if !error.retryable() || attempts >= self.retry.max_attempts {
                return Attempted {
                    result: Err(error),
                    attempts,
                };
            }
            let u: f64 = self.rng.lock().expect("rng mutex poisoned").gen();
            let wait = self.retry.backoff().delay(attempts, u);
            if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                return Attempted {
                    result: Err(error),
                    attempts,
                };
            }
            tracing::debug!(error = %error, attempt = attempts, wait_ms = wait.as_millis() as u64, "prometheus request failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: POST `form` to `path`, classify what comes back.
    async fn post(&self, path: &str, form: &[(&str, String)]) -> Result<Data, PromError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).form(form);
        request = match &self.auth {
            Some(Auth::Bearer { token }) => request.bearer_auth(token),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        decode(&url, status, &body)
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> PromError {
        let url = url.to_string();
        if e.is_timeout() {
            PromError::Timeout {
                url,
                timeout_ms: self.timeout_ms,
            }
        } else if e.is_connect() {
            PromError::Connect {
                url,
                reason: error_chain(e),
            }
        } else {
            PromError::Transport {
                url,
                reason: error_chain(e),
            }
        }
    }

    fn decode_error(&self, path: &str, reason: String) -> PromError {
        PromError::Decode {
            url: format!("{}{path}", self.base),
            reason,
        }
    }
}

/// The causes of a reqwest error, outermost first, without reqwest's own "error sending request
/// for url (...)" (the URL is in our message already).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

fn skipped_histogram(labels: &Labels, is_histogram: bool) {
    if is_histogram {
        tracing::debug!(series = %labels, "skipping a native histogram series: not supported");
    }
}

/// Prometheus' JSON envelope (<https://prometheus.io/docs/prometheus/latest/querying/api/>).
#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSeries>),
    Matrix(Vec<MatrixSeries>),
    Scalar(Point),
    String(IgnoredAny),
}

impl Data {
    fn kind(&self) -> &'static str {
        match self {
            Data::Vector(_) => "vector",
            Data::Matrix(_) => "matrix",
            Data::Scalar(_) => "scalar",
            Data::String(_) => "string",
        }
    }
}

/// `[<unix seconds>, "<value>"]`.
type Point = (f64, String);

#[derive(Debug, Deserialize)]
struct VectorSeries {
    #[serde(default)]
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<Point>,
    #[serde(default)]
    histogram: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: HashMap<String, String>,
    #[serde(default)]
    values: Vec<Point>,
    #[serde(default)]
    histograms: Option<IgnoredAny>,
}

/// Classifies an answer: Prometheus' error body whatever the status, any other non-2xx as an
/// HTTP error, and a 2xx that is not a success envelope as undecodable.
fn decode(url: &str, status: u16, body: &[u8]) -> Result<Data, PromError> {
    let ok_status = (200..300).contains(&status);
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if env.status == "error" => Err(PromError::Api {
            url: url.to_string(),
            status,
            error_type: env.error_type.unwrap_or_else(|| "unknown".to_string()),
            error: env.error.unwrap_or_default(),
        }),
        Ok(env) if ok_status && env.status == "success" => {
            if !env.warnings.is_empty() {
                tracing::debug!(url, warnings = ?env.warnings, "prometheus returned warnings");
            }
            env.data.ok_or_else(|| PromError::Decode {
                url: url.to_string(),
                reason: "success without data".to_string(),
            })
        }
        _ if !ok_status => Err(PromError::Http {
            url: url.to_string(),
            status,
            body: excerpt(body),
        }),
        Ok(env) => Err(PromError::Decode {
            url: url.to_string(),
            reason: format!("unexpected status {:?}", env.status),
        }),
        Err(e) => Err(PromError::Decode {
            url: url.to_string(),
            reason: format!("{e} (body starts {:?})", excerpt(body)),
        }),
    }
}

/// The first [`BODY_EXCERPT_BYTES`] of a body as text, cut at a character boundary.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT_BYTES)]);
    text.trim_end_matches('\u{fffd}').trim().to_string()
}

/// Parses a sample value as Prometheus writes it (Go's `strconv.FormatFloat(v, 'f', -1, 64)`:
/// decimal or exponent notation, `NaN`, `+Inf`, `-Inf`).
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .ok()
            // Rust also accepts "inf" and "infinity", Prometheus never sends them.
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("sample value {s:?} is not a number")),
    }
}

/// Unix seconds as Prometheus sends them (float with ms resolution) to ms.
fn secs_to_ms(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

/// ms as decimal seconds with exactly three decimals, exact for any i64 (no float rounding).
fn format_secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Splits the points `start, start + step, ... <= end` into consecutive chunks of at most
/// `max_points` points, as `(first, last)` timestamps. Every chunk starts on the grid of
/// `start`, so the chunks together ask for exactly the points one request would.
fn chunks(
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    max_points: usize,
) -> Result<Vec<(i64, i64)>, String> {
    if step_ms <= 0 {
        return Err(format!(
            "range query step must be positive, got {step_ms} ms"
        ));
    }
    if end_ms < start_ms {
        return Err(format!(
            "range query ends ({end_ms}) before it starts ({start_ms})"
        ));
    }
    let points = (end_ms - start_ms) / step_ms + 1;
    let per_chunk = max_points.max(1) as i64;
    let mut out = Vec::new();
    let mut first = 0;
    while first < points {
        let last = (first + per_chunk - 1).min(points - 1);
        out.push((start_ms + first * step_ms, start_ms + last * step_ms));
        first = last + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_prometheus_writes_them() {
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e-7"), Ok(1e-7));
        assert_eq!(parse_value("-12.5"), Ok(-12.5));
        assert_eq!(parse_value("1"), Ok(1.0));
        assert_eq!(
            parse_value("x"),
            Err(r#"sample value "x" is not a number"#.to_string())
        );
        assert_eq!(
            parse_value("infinity"),
            Err(r#"sample value "infinity" is not a number"#.to_string())
        );
    }

    #[test]
    fn seconds_format_exactly() {
        assert_eq!(format_secs(1_700_000_000_123), "1700000000.123");
        assert_eq!(format_secs(5_000), "5.000");
        assert_eq!(format_secs(-1_500), "-2.500");
        assert_eq!(secs_to_ms(1_700_000_000.123), 1_700_000_000_123);
    }

    #[test]
    fn chunks_cover_the_grid_without_overlap() {
        assert_eq!(chunks(0, 0, 10, 3), Ok(vec![(0, 0)]));
        // 10 points 0..=90 in chunks of 3: 3 + 3 + 3 + 1.
        assert_eq!(
            chunks(0, 95, 10, 3),
            Ok(vec![(0, 20), (30, 50), (60, 80), (90, 90)])
        );
        assert_eq!(chunks(0, 90, 10, 11_000), Ok(vec![(0, 90)]));
        // A day at 1 s: 86,401 points, 8 chunks of 11,000 and one of 9,401.
        let day = chunks(0, 86_400_000, 1_000, MAX_POINTS_PER_SERIES).unwrap();
        assert_eq!(day.len(), 8);
        assert_eq!(day[1], (11_000_000, 21_999_000));
        assert_eq!(day.last(), Some(&(77_000_000, 86_400_000)));
        assert_eq!(
            chunks(10, 0, 1, 5),
            Err("range query ends (0) before it starts (10)".to_string())
        );
        assert_eq!(
            chunks(0, 10, 0, 5),
            Err("range query step must be positive, got 0 ms".to_string())
        );
    }

    fn decode_err(status: u16, body: &str) -> PromError {
        decode("u", status, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn answers_are_classified() {
        let api = decode_err(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        );
        assert_eq!(
            api.to_string(),
            "querying u: prometheus error bad_data (http status 400): parse error"
        );
        assert!(!api.retryable());
        let unavailable = decode_err(
            503,
            r#"{"status":"error","errorType":"unavailable","error":"shutting down"}"#,
        );
        assert!(unavailable.retryable());
        let http = decode_err(502, "<html>Bad Gateway</html>");
        assert_eq!(
            http.to_string(),
            "querying u: http status 502: <html>Bad Gateway</html>"
        );
        assert!(http.retryable());
        assert!(decode_err(429, "slow down").retryable());
        assert!(!decode_err(404, "not found").retryable());
        let garbage = decode_err(200, "not json");
        assert_eq!(
            garbage.to_string(),
            r#"decoding answer of u: expected ident at line 1 column 2 (body starts "not json")"#
        );
        assert!(!garbage.retryable());
        let shape = decode_err(
            200,
            r#"{"status":"success","data":{"resultType":"table","result":[]}}"#,
        );
        assert!(
            shape.to_string().contains("unknown variant `table`"),
            "{shape}"
        );
        let ok = decode(
            "u",
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"NaN"]}]},"warnings":["w"]}"#,
        )
        .unwrap();
        assert_eq!(ok.kind(), "vector");
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "é".repeat(400); // 800 bytes; byte 512 is inside no character
        let e = excerpt(body.as_bytes());
        assert_eq!(e, "é".repeat(256));
    }

    #[test]
    fn any_answer_decodes_or_fails_without_panic() {
        // Property test (see stdx::fuzz): mutated Prometheus answers, as the
        // client reads them: the envelope, then every series' labels, values
        // and timestamps as `query` and `query_range` convert them.
        use stdx::fuzz::{check, garbage, mutated};
        let bases: [&[u8]; 4] = [
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1767571200.123,"1"]},{"metric":{},"value":[1,"NaN"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance":"x:1"},"values":[[1767571200,"0.5"],[1767571260,"+Inf"],[1767571320,"-1e-3"]]}]},"warnings":["w"]}"#,
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
            br#"{"status":"success","data":{"resultType":"scalar","result":[1767571200,"2"]}}"#,
        ];
        check(
            "prometheus_answer",
            5000,
            |rng| {
                let status = *rng.pick(&[200u16, 200, 200, 400, 422, 503]);
                let body = if rng.one_in(10) {
                    garbage(rng, 256)
                } else {
                    let base = *rng.pick(&bases);
                    mutated(rng, base, 6)
                };
                (status, body)
            },
            |(status, body)| {
                match decode("http://p/api/v1/query", *status, body) {
                    Ok(Data::Vector(series)) => {
                        for s in series {
                            let labels = Labels::from_pairs(s.metric);
                            let _ = labels.to_string();
                            if let Some((t, v)) = s.value {
                                let _ = (secs_to_ms(t), parse_value(&v));
                            }
                        }
                    }
                    Ok(Data::Matrix(series)) => {
                        for s in series {
                            let _ = Labels::from_pairs(s.metric).to_string();
                            for (t, v) in s.values {
                                let _ = (secs_to_ms(t), parse_value(&v));
                            }
                        }
                    }
                    Ok(Data::Scalar((t, v))) => {
                        let _ = (secs_to_ms(t), parse_value(&v));
                    }
                    Ok(Data::String(_)) => {}
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            },
        );
    }
}
