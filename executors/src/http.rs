//! What the HTTP executors (`webhook`, `agent`, the supervisor client)
//! share: one way to build a client, name a failure and read a bounded
//! answer.

/// Most of a response body kept in an `ActionResult`'s output.
const MAX_HTTP_OUTPUT: usize = 4096;

/// An HTTP client for executors: no proxy from the environment (only the
/// binary reads the environment, and a proxy would see every secret
/// header), no redirects (a redirect to another host would carry the
/// request's secret headers there; a 3xx is reported instead).
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
}

/// The causes of a reqwest error, outermost first, without reqwest's own
/// "error sending request for url (...)": the URL may hold a secret taken
/// from the environment, and the caller names the request already.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
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
pub(crate) async fn read_capped(response: reqwest::Response) -> Result<String, reqwest::Error> {
    let kept = read_bytes_capped(response, MAX_HTTP_OUTPUT).await?;
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// Reads at most `max` bytes of a response body.
pub(crate) async fn read_bytes_capped(
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
