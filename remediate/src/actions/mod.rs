//! Executors: what performs a planned action.
//!
//! Every executor takes an action whose templates the engine already filled
//! in (every substituted label value checked against the safe-value pattern
//! first), honours dry-run, has a timeout, and returns an [`ActionResult`]
//! that says whether a retry can help.
//!
//! - [`exec`]: a local program with an argv, never a shell.
//! - [`haproxy`]: HAProxy's runtime API (reroute, replicas).
//! - [`webhook`]: an HTTP request, secrets from the environment, retried on
//!   timeouts, connection errors and 5xx only.
//! - [`agent`]: the `heal agent` protocol: signed requests to run an
//!   allowlisted action on another host, the client that sends them and the
//!   verification the agent does.

pub mod agent;
pub mod exec;
pub mod haproxy;
pub mod supervisor;
pub mod webhook;

pub use crate::action::ActionResult;

/// Most of a response body kept in an [`ActionResult`]'s output.
const MAX_HTTP_OUTPUT: usize = 4096;

/// An HTTP client for executors: no proxy from the environment (only the
/// binary reads the environment, and a proxy would see every secret
/// header), no redirects (a redirect to another host would carry the
/// request's secret headers there; a 3xx is reported instead).
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
}

/// The causes of a reqwest error, outermost first, without reqwest's own
/// "error sending request for url (...)": the URL may hold a secret taken
/// from the environment, and the caller names the request already.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        // Only reqwest's own text is left; make sure it names no URL.
        e.to_string()
            .split(" for url (")
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        parts.join(": ")
    }
}

/// Reads at most [`MAX_HTTP_OUTPUT`] bytes of a response body, lossily as
/// UTF-8; the rest is not read (the connection is dropped).
async fn read_capped(response: reqwest::Response) -> Result<String, reqwest::Error> {
    let kept = read_bytes_capped(response, MAX_HTTP_OUTPUT).await?;
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// Reads at most `max` bytes of a response body.
async fn read_bytes_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut kept = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= max {
            break;
        }
    }
    Ok(kept)
}

#[cfg(test)]
pub(crate) mod test_server;
