//! The `agent` executor and the `heal agent` protocol: how heal asks
//! another host to run one of the actions that host allows. The agent's
//! side (configuration, verification, audit, the server) is
//! `daemons::agent`; both sides take the protocol from here.
//!
//! This is the secure form of a remote "command listener". The listener
//! (`heal agent`, `daemons::agent`) runs nothing it was sent: a request
//! names an action of the agent's own allowlist and gives typed parameters,
//! which the agent checks against strict patterns and substitutes into a
//! fixed argv (never a shell). Before any of that, the request must prove it
//! comes from a holder of the shared key:
//!
//! ```text
//! POST /v1/actions
//! X-Heal-Timestamp: 1767225600                       (unix seconds)
//! X-Heal-Signature: hex(HMAC-SHA256(key, timestamp + "\n" + body))
//!
//! {"action": "restart-api", "params": {"instance": "api-2"}, "request_id": "9f0c..."}
//! ```
//!
//! Checks, in this order, each a named [`Refusal`]:
//! 1. both headers present and well-formed (`unauthenticated`);
//! 2. the timestamp within the replay window of the agent's clock, ±30 s by
//!    default (`stale`): a captured request cannot be replayed later;
//! 3. the signature (`bad_signature`), compared in constant time by
//!    `hmac`'s `verify_slice`, so the time taken leaks nothing about how
//!    much of a forged MAC was right;
//! 4. the signature not seen before within the window (`replayed`): a
//!    captured request cannot be replayed now either. Signatures are
//!    remembered only after they verified, so unauthenticated traffic
//!    cannot fill the memory; the memory is bounded and refuses
//!    (`replay_cache_full`) rather than forgetting early.
//! 5. the body: a known action (`unknown_action`), every parameter declared
//!    and valid (`invalid_params`).
//!
//! Answers are signed too: an answer to a request whose signature verified
//! carries `X-Heal-Signature` = hex(HMAC-SHA256(key, `"response\n" +
//! request signature + "\n" + body`)), which the client checks before
//! believing it (see [`verify_response`]).
//!
//! Why HMAC over a shared key rather than TLS client certificates: heal
//! builds without a TLS stack (see the workspace `Cargo.toml`), and an HMAC
//! with a timestamp and replay memory gives authenticity and freshness over
//! plain HTTP on a trusted network. It gives no confidentiality: parameters
//! travel in clear, which is acceptable because they are label values, not
//! secrets (put the agent behind a TLS proxy if the network is not trusted).
//! The signed message includes the body byte for byte, so the body is
//! verified before it is parsed.
//!
//! The client ([`call`]) never retries by itself: an action request is not
//! idempotent, and a timeout leaves open whether it ran. Its
//! [`ActionResult::retryable`] says whether a retry could help, and the
//! engine decides.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use remediate::action::ActionResult;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::http::{error_chain, http_client, read_bytes_capped};

/// The one endpoint of an agent.
pub const ACTIONS_PATH: &str = "/v1/actions";
/// Header with the request's unix time in seconds, decimal digits only.
pub const TIMESTAMP_HEADER: &str = "x-heal-timestamp";
/// Header with the lowercase hex HMAC-SHA256 of `timestamp + "\n" + body`.
pub const SIGNATURE_HEADER: &str = "x-heal-signature";
/// Largest request body an agent reads; a request is a name and a few
/// label values.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Shortest shared key accepted (bytes): 256 bits, the HMAC-SHA256 output
/// size (RFC 2104 §3: shorter keys weaken the MAC). `openssl rand -hex 32`
/// makes a 64-byte key.
pub const MIN_KEY_BYTES: usize = 32;
type HmacSha256 = Hmac<Sha256>;

/// What a client asks an agent to do; the request body, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Name of an action of the agent's allowlist.
    pub action: String,
    /// Parameter values, by name; each is checked against its declared type.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Random per request (`[A-Za-z0-9_-]{1,64}`): makes two identical
    /// calls in the same second two different signed messages, so replay
    /// protection refuses only true replays; also correlates the client's
    /// log with the agent's audit log.
    pub request_id: String,
}

/// The agent's answer to an accepted request (HTTP 200), whatever the
/// program's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResponse {
    /// Whether the program succeeded.
    pub ok: bool,
    /// Whether a retry could help (the program timed out).
    pub retryable: bool,
    /// `exit status 0`, `timed out after 10s`.
    pub summary: String,
    /// The program's output, truncated.
    pub output: String,
    /// How long the program ran.
    pub duration_ms: u64,
}

/// The agent's answer to a refused request (HTTP 4xx or 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalBody {
    /// The refusal's code ([`Refusal::code`]).
    pub refused: String,
    /// Why, for humans.
    pub message: String,
}

/// Why an agent refuses a request. Nothing runs for any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header is missing or malformed.
    #[error("{0}")]
    Unauthenticated(String),
    /// The timestamp is outside the replay window.
    #[error("timestamp {timestamp} is {skew} s away from the agent's clock (window ±{window} s)")]
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// Agent time minus request time, seconds.
        skew: i64,
        /// The window, seconds.
        window: i64,
    },
    /// The signature does not match the body, timestamp and key.
    #[error("signature does not match")]
    BadSignature,
    /// This exact signed request was already received within the window.
    #[error("request already received (replay)")]
    Replayed,
    /// Too many requests within the window to remember them all.
    #[error("too many requests within the replay window; try again later")]
    ReplayCacheFull,
    /// The body is larger than [`MAX_BODY_BYTES`] or could not be read.
    #[error("{0}")]
    BadBody(String),
    /// The body is not a valid [`ActionRequest`].
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The action is not in the allowlist.
    #[error("action {0:?} is not allowed here")]
    UnknownAction(String),
    /// A parameter is missing, undeclared or invalid.
    #[error("{0}")]
    InvalidParams(String),
    /// Anything not `POST /v1/actions`.
    #[error("no such endpoint: {0}")]
    NotFound(String),
}

impl Refusal {
    /// The HTTP status: 401 for authentication, 409 for a replay, 403 for
    /// an action not allowed, 400 for a bad body or parameters, 413 for a
    /// body too large, 503 when the replay memory is full.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthenticated(_) | Refusal::Stale { .. } | Refusal::BadSignature => 401,
            Refusal::Replayed => 409,
            Refusal::ReplayCacheFull => 503,
            Refusal::BadBody(_) => 413,
            Refusal::Malformed(_) | Refusal::InvalidParams(_) => 400,
            Refusal::UnknownAction(_) => 403,
            Refusal::NotFound(_) => 404,
        }
    }

    /// The snake_case code used in responses and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::Stale { .. } => "stale",
            Refusal::BadSignature => "bad_signature",
            Refusal::Replayed => "replayed",
            Refusal::ReplayCacheFull => "replay_cache_full",
            Refusal::BadBody(_) => "bad_body",
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownAction(_) => "unknown_action",
            Refusal::InvalidParams(_) => "invalid_params",
            Refusal::NotFound(_) => "not_found",
        }
    }

    /// The response body.
    pub fn body(&self) -> RefusalBody {
        RefusalBody {
            refused: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

fn request_mac(key: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The signature of `body` sent at `timestamp` (the header's text):
/// lowercase hex of HMAC-SHA256(key, `timestamp + "\n" + body`).
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex::encode(request_mac(key, timestamp, body).finalize().into_bytes())
}

/// The response MAC: HMAC-SHA256(key, `"response\n" + request signature +
/// "\n" + body`). The `response` prefix separates it from request MACs
/// (whose message starts with digits), so an agent's answers can never
/// serve as signed requests; the request signature binds the answer to its
/// request, so an old answer cannot be passed off for a new one.
fn response_mac(key: &[u8], request_signature: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(b"response\n");
    mac.update(request_signature.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// Whether `signature` (hex) is the agent's MAC of `body` answering the
/// request signed `request_signature`; compared in constant time.
pub fn verify_response(key: &[u8], request_signature: &str, body: &[u8], signature: &str) -> bool {
    hex::decode(signature).is_ok_and(|sig| {
        response_mac(key, request_signature, body)
            .verify_slice(&sig)
            .is_ok()
    })
}

/// Whether `signature` (32 bytes) is the MAC of `body` sent at `timestamp`
/// (the header's text) under `key`; compared in constant time by `hmac`'s
/// `verify_slice`, so the time taken leaks nothing about how much of a
/// forged MAC was right. The agent's check.
pub fn request_signature_matches(
    key: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &[u8],
) -> bool {
    request_mac(key, timestamp, body)
        .verify_slice(signature)
        .is_ok()
}

/// The agent's signature of an answer to the request signed
/// `request_signature` (sent back in [`SIGNATURE_HEADER`]); the client
/// checks it with [`verify_response`].
pub fn sign_response(key: &[u8], request_signature: &str, body: &[u8]) -> String {
    hex::encode(
        response_mac(key, request_signature, body)
            .finalize()
            .into_bytes(),
    )
}

/// A signature header's 64 hex digits as bytes; `None` when malformed.
pub fn parse_signature(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok())
}

/// Largest answer a client reads: the program's output (a few KiB per
/// stream) JSON-escaped, with room to spare.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A call to an agent: what the `agent` action performs.
#[derive(Clone)]
pub struct AgentCall {
    /// The agent's base URL, `http://host:port`.
    pub url: String,
    /// The allowlisted action's name.
    pub action: String,
    /// Parameter values.
    pub params: BTreeMap<String, String>,
    /// The shared key.
    pub key: Vec<u8>,
    /// Timeout of the whole call, the agent's run of the program included.
    pub timeout: std::time::Duration,
    /// Record what would be asked, send nothing.
    pub dry_run: bool,
}

impl fmt::Debug for AgentCall {
    /// Never shows the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCall")
            .field("url", &self.url)
            .field("action", &self.action)
            .field("params", &self.params)
            .field("key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// The body and headers of a signed request: (body, timestamp, signature).
pub fn signed_request(key: &[u8], now_secs: i64, req: &ActionRequest) -> (Vec<u8>, String, String) {
    let body = serde_json::to_vec(req).expect("an ActionRequest serializes");
    let timestamp = now_secs.to_string();
    let signature = sign(key, &timestamp, &body);
    (body, timestamp, signature)
}

/// The shared key from its text (a key file's content or an environment
/// variable's value): surrounding whitespace is not part of it, so a
/// trailing newline in a key file does not matter.
///
/// # Errors
///
/// A key shorter than [`MIN_KEY_BYTES`].
pub fn key_from_text(text: &str) -> Result<Vec<u8>, String> {
    let key = text.trim();
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the shared key has {} bytes, fewer than {MIN_KEY_BYTES} (make one with `openssl rand -hex 32`)",
            key.len()
        ));
    }
    Ok(key.as_bytes().to_vec())
}

/// A fresh random request id: 128 bits as 32 hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Sends `call` signed with the time `now_secs` (the caller's clock, unix
/// seconds). Never retries (see the module docs); a transport failure or a
/// 5xx is reported as retryable, a refusal (4xx) is not.
pub async fn call(call: &AgentCall, now_secs: i64) -> ActionResult {
    let started = Instant::now();
    let shown = format!("agent {} action {}", call.url, call.action);
    let fail = |summary: String, retryable: bool, output: String| ActionResult {
        ok: false,
        retryable,
        summary,
        output,
        duration: started.elapsed(),
    };
    if call.dry_run {
        return ActionResult {
            ok: true,
            retryable: false,
            summary: format!("dry run: would call {shown} with {:?}", call.params),
            output: String::new(),
            duration: started.elapsed(),
        };
    }
    let req = ActionRequest {
        action: call.action.clone(),
        params: call.params.clone(),
        request_id: new_request_id(),
    };
    let (body, timestamp, signature) = signed_request(&call.key, now_secs, &req);
    let request_signature = signature.clone();
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => return fail(format!("{shown}: {e}"), false, String::new()),
    };
    let url = format!("{}{ACTIONS_PATH}", call.url.trim_end_matches('/'));
    let sent = client
        .post(&url)
        .timeout(call.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await;
    let transport = |e: &reqwest::Error| {
        if e.is_timeout() {
            format!("{shown}: timed out after {:?}", call.timeout)
        } else {
            format!("{shown}: {}", error_chain(e))
        }
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => return fail(transport(&e), true, String::new()),
    };
    let status = response.status();
    let answer_signature = response
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match read_bytes_capped(response, MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => return fail(transport(&e), true, String::new()),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status.is_success() {
        let authentic = answer_signature
            .is_some_and(|sig| verify_response(&call.key, &request_signature, &bytes, &sig));
        if !authentic {
            // The request may have run; what is known is that this answer
            // is not the agent's. Not retryable: a retry could run it twice.
            return fail(
                format!("{shown}: the answer is not signed by the agent (missing or wrong {SIGNATURE_HEADER})"),
                false,
                String::new(),
            );
        }
        return match serde_json::from_str::<ActionResponse>(&text) {
            Ok(r) => ActionResult {
                ok: r.ok,
                retryable: r.retryable,
                summary: format!("{shown} (request {}): {}", req.request_id, r.summary),
                output: r.output,
                duration: started.elapsed(),
            },
            Err(e) => fail(
                format!("{shown}: HTTP {status} with an unreadable answer: {e}"),
                false,
                text,
            ),
        };
    }
    let why = match serde_json::from_str::<RefusalBody>(&text) {
        Ok(b) => format!("{}: {}", b.refused, b.message),
        Err(_) => text.trim().to_owned(),
    };
    fail(
        format!("{shown}: refused, HTTP {status}: {why}"),
        status.is_server_error(),
        String::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn debug_never_shows_the_key() {
        let c = AgentCall {
            url: "http://127.0.0.1:1".into(),
            action: "a".into(),
            params: BTreeMap::new(),
            key: KEY.to_vec(),
            timeout: std::time::Duration::from_secs(1),
            dry_run: false,
        };
        let text = format!("{c:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_newline_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?";
        // split here as timestamp "what do ya want" + "\n"... is not that
        // data, so check the construction against a direct HMAC instead.
        let direct = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
            m.update(b"1700000000\n{\"a\":1}");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(sign(b"Jefe", "1700000000", b"{\"a\":1}"), direct);
        // And the HMAC itself against RFC 4231 test case 2.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_are_trimmed_and_must_be_long_enough() {
        assert_eq!(
            key_from_text(&format!("{}\n", "k".repeat(32))),
            Ok(vec![b'k'; 32])
        );
        assert_eq!(
            key_from_text(" short \n").unwrap_err(),
            "the shared key has 5 bytes, fewer than 32 (make one with `openssl rand -hex 32`)"
        );
    }

    #[tokio::test]
    async fn dry_run_call_sends_nothing() {
        let c = AgentCall {
            // Nothing listens on port 1; a real call would fail.
            url: "http://127.0.0.1:1".into(),
            action: "touch-marker".into(),
            params: [("name".to_owned(), "a".to_owned())].into(),
            key: KEY.to_vec(),
            timeout: std::time::Duration::from_secs(1),
            dry_run: true,
        };
        let r = call(&c, 0).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.summary,
            "dry run: would call agent http://127.0.0.1:1 action touch-marker with {\"name\": \"a\"}"
        );
    }

    #[tokio::test]
    async fn an_unsigned_success_is_not_believed() {
        use crate::test_server::{Reply, TestServer};
        let answer = serde_json::to_string(&ActionResponse {
            ok: true,
            retryable: false,
            summary: "exit status 0".into(),
            output: String::new(),
            duration_ms: 1,
        })
        .unwrap();
        let server = TestServer::start(vec![Reply::now(200, &answer)]);
        let c = AgentCall {
            url: server.url(""),
            action: "touch-marker".into(),
            params: BTreeMap::new(),
            key: KEY.to_vec(),
            timeout: std::time::Duration::from_secs(10),
            dry_run: false,
        };
        let r = call(&c, 1234).await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(
            r.summary.ends_with(
                "the answer is not signed by the agent (missing or wrong x-heal-signature)"
            ),
            "{}",
            r.summary
        );
    }

    #[tokio::test]
    async fn refusals_and_connection_errors_map_to_results() {
        use crate::test_server::{Reply, TestServer};
        let body = serde_json::to_string(&Refusal::BadSignature.body()).unwrap();
        let server = TestServer::start(vec![Reply::now(401, &body)]);
        let mut c = AgentCall {
            url: server.url(""),
            action: "touch-marker".into(),
            params: BTreeMap::new(),
            key: KEY.to_vec(),
            timeout: std::time::Duration::from_secs(10),
            dry_run: false,
        };
        let r = call(&c, 1234).await;
        assert!(!r.ok && !r.retryable, "{r:?}");
        assert!(
            r.summary.ends_with(
                "refused, HTTP 401 Unauthorized: bad_signature: signature does not match"
            ),
            "{}",
            r.summary
        );
        // What went over the wire verifies with the key.
        let got = &server.received()[0];
        assert_eq!(got.path, ACTIONS_PATH);
        assert_eq!(got.header(TIMESTAMP_HEADER), Some("1234"));
        let sig = parse_signature(got.header(SIGNATURE_HEADER).unwrap()).unwrap();
        assert!(request_signature_matches(KEY, "1234", &got.body, &sig));
        // Nothing listening: retryable (nothing ran).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c.url = format!("http://127.0.0.1:{port}");
        let r = call(&c, 1234).await;
        assert!(!r.ok && r.retryable, "{r:?}");
    }
}
