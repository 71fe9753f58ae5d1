//! The command-line side of the API: `heal silence` and `heal approve`
//! send one request to a running `heal watch`.

use std::time::Duration;

use crate::{Context, Error, Result};

/// One request to the API.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// Base URL of the running `heal watch` (its `--listen` address).
    pub base: String,
    /// The bearer token, when there is one.
    pub token: Option<String>,
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path and query, such as `/api/silences`.
    pub path: String,
    /// JSON body.
    pub body: Option<serde_json::Value>,
}

/// Sends `call` and returns the answer's body.
///
/// # Errors
///
/// heal is not reachable there, or it refused the request (a usage error
/// with its status and answer).
pub async fn call(call: ApiCall) -> Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let url = format!("{}{}", call.base.trim_end_matches('/'), call.path);
    let method = reqwest::Method::from_bytes(call.method.as_bytes())
        .map_err(|e| Error::msg(format_args!("method {}: {e}", call.method)))?;
    let mut req = client.request(method, &url);
    if let Some(token) = &call.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = &call.body {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling {url} (is heal watch running there?)"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        Err(Error::Usage(format!("{url}: {status}: {text}")))
    }
}
