//! Authentication, freshness and replay memory, then the allowlist: what
//! the agent decides about one request before anything runs.

use std::collections::HashMap;
use std::fmt;

use executors::agent::{
    parse_signature, request_signature_matches, sign_response, ActionRequest, Refusal,
};
use executors::exec::ExecRequest;
use remediate::Duration;

use super::AgentConfig;

/// Most signatures remembered for replay protection. At the default ±30 s
/// window this allows over 1,500 accepted requests per second, far above
/// what an agent running programs one by one can serve.
const MAX_REMEMBERED: usize = 100_000;

/// Checks the authentication headers and remembers signatures for replay
/// protection. Time is a parameter: the agent passes its clock.
pub struct Verifier {
    key: Vec<u8>,
    window_secs: i64,
    /// Signature -> the unix second after which it can no longer verify
    /// (its timestamp plus the window), so it can be forgotten.
    seen: HashMap<[u8; 32], i64>,
    capacity: usize,
}

impl fmt::Debug for Verifier {
    /// Never shows the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &"<redacted>")
            .field("window_secs", &self.window_secs)
            .field("remembered", &self.seen.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `key` accepting timestamps within ±`window` of now.
    pub fn new(key: Vec<u8>, window: Duration) -> Verifier {
        Verifier {
            key,
            window_secs: (window.as_millis() / 1000).max(1) as i64,
            seen: HashMap::new(),
            capacity: MAX_REMEMBERED,
        }
    }

    /// Signs an answer to an authenticated request (sent back in
    /// [`SIGNATURE_HEADER`]), so the client knows the answer comes from the
    /// agent: without it, anyone on the path could turn a failure into a
    /// reported success. Only answers to requests whose signature verified
    /// are signed, so the agent is no signing oracle.
    pub fn sign_response(&self, request_signature: &str, body: &[u8]) -> String {
        sign_response(&self.key, request_signature, body)
    }

    /// Verifies one request received at `now_secs` (unix seconds) with the
    /// given header values and body; on success its signature is
    /// remembered until it could no longer verify anyway.
    ///
    /// # Errors
    ///
    /// The first check that fails (see the module docs for the order).
    pub fn verify(
        &mut self,
        now_secs: i64,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let missing = |h: &str| Refusal::Unauthenticated(format!("missing header {h}"));
        let ts_text = timestamp.ok_or_else(|| missing("X-Heal-Timestamp"))?;
        let sig_text = signature.ok_or_else(|| missing("X-Heal-Signature"))?;
        // Digits only: one spelling per time, so the signed text is canonical.
        let timestamp: i64 = (!ts_text.is_empty()
            && ts_text.len() <= 12
            && ts_text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ts_text.parse().ok())
        .flatten()
        .ok_or_else(|| {
            Refusal::Unauthenticated(
                "X-Heal-Timestamp must be unix seconds (decimal digits)".to_owned(),
            )
        })?;
        let skew = now_secs - timestamp;
        if skew.abs() > self.window_secs {
            return Err(Refusal::Stale {
                timestamp,
                skew,
                window: self.window_secs,
            });
        }
        let sig: [u8; 32] = parse_signature(sig_text).ok_or_else(|| {
            Refusal::Unauthenticated(
                "X-Heal-Signature must be 64 hex digits (HMAC-SHA256)".to_owned(),
            )
        })?;
        if !request_signature_matches(&self.key, ts_text, body, &sig) {
            return Err(Refusal::BadSignature);
        }
        self.seen.retain(|_, until| *until >= now_secs);
        if self.seen.contains_key(&sig) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::ReplayCacheFull);
        }
        self.seen.insert(sig, timestamp + self.window_secs);
        Ok(())
    }
}

/// Everything an agent decides about one request before running anything:
/// authentication, replay, then the allowlist and parameters.
///
/// # Errors
///
/// The refusal, with the parsed request when the body was authentic and
/// parsed (so the audit log can name what was refused).
pub fn admit(
    verifier: &mut Verifier,
    config: &AgentConfig,
    now_secs: i64,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(ActionRequest, ExecRequest), (Refusal, Option<ActionRequest>)> {
    verifier
        .verify(now_secs, timestamp, signature, body)
        .map_err(|r| (r, None))?;
    let req: ActionRequest =
        serde_json::from_slice(body).map_err(|e| (Refusal::Malformed(e.to_string()), None))?;
    let id_ok = !req.request_id.is_empty()
        && req.request_id.len() <= 64
        && req
            .request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err((
            Refusal::Malformed("request_id must match [A-Za-z0-9_-]{1,64}".into()),
            Some(req),
        ));
    }
    match config.prepare(&req) {
        Ok(exec) => Ok((req, exec)),
        Err(r) => Err((r, Some(req))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use executors::agent::{sign, signed_request, verify_response};

    use crate::agent::config::tests::{config, request};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn debug_never_shows_the_key() {
        let v = Verifier::new(KEY.to_vec(), Duration::from_secs(30));
        let text = format!("{v:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn verifier_accepts_once_and_refuses_replays_stale_and_forgeries() {
        let mut v = Verifier::new(KEY.to_vec(), Duration::from_secs(30));
        let body = b"{}";
        let sig = sign(KEY, "1000", body);
        assert_eq!(v.verify(1010, Some("1000"), Some(&sig), body), Ok(()));
        assert_eq!(
            v.verify(1011, Some("1000"), Some(&sig), body),
            Err(Refusal::Replayed)
        );
        // Stale both ways.
        let old = sign(KEY, "900", body);
        assert_eq!(
            v.verify(1000, Some("900"), Some(&old), body)
                .unwrap_err()
                .to_string(),
            "timestamp 900 is 100 s away from the agent's clock (window ±30 s)"
        );
        let future = sign(KEY, "1100", body);
        assert!(matches!(
            v.verify(1000, Some("1100"), Some(&future), body),
            Err(Refusal::Stale { skew: -100, .. })
        ));
        // Another key, another body, a timestamp changed after signing.
        let other = sign(b"another key of thirty-two bytes or more!", "1000", body);
        assert_eq!(
            v.verify(1000, Some("1000"), Some(&other), body),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            v.verify(1000, Some("1000"), Some(&sign(KEY, "1000", b"{ }")), body),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            v.verify(1000, Some("1001"), Some(&sign(KEY, "1000", body)), body),
            Err(Refusal::BadSignature)
        );
        // Malformed headers.
        for (ts, sig, code) in [
            (None, Some("00"), "unauthenticated"),
            (Some("1000"), None, "unauthenticated"),
            (Some("+1000"), Some("00"), "unauthenticated"),
            (Some("1e3"), Some("00"), "unauthenticated"),
            (Some("1000"), Some("zz"), "unauthenticated"),
            (Some("1000"), Some("abcd"), "unauthenticated"),
        ] {
            assert_eq!(v.verify(1000, ts, sig, body).unwrap_err().code(), code);
        }
    }

    #[test]
    fn verifier_forgets_signatures_after_the_window_and_is_bounded() {
        let mut v = Verifier::new(KEY.to_vec(), Duration::from_secs(30));
        v.capacity = 2;
        for (i, ts) in ["1000", "1001"].iter().enumerate() {
            let body = format!("{{\"n\":{i}}}");
            let sig = sign(KEY, ts, body.as_bytes());
            assert_eq!(
                v.verify(1001, Some(ts), Some(&sig), body.as_bytes()),
                Ok(())
            );
        }
        let sig = sign(KEY, "1002", b"x");
        assert_eq!(
            v.verify(1002, Some("1002"), Some(&sig), b"x"),
            Err(Refusal::ReplayCacheFull)
        );
        // At 1031 the first (1000 + 30) can no longer verify: forgotten.
        let sig = sign(KEY, "1031", b"x");
        assert_eq!(v.verify(1031, Some("1031"), Some(&sig), b"x"), Ok(()));
        assert_eq!(v.seen.len(), 2);
    }

    #[test]
    fn admit_checks_authentication_before_reading_the_body() {
        let c = config();
        let mut v = Verifier::new(KEY.to_vec(), Duration::from_secs(30));
        let req = request("touch-marker", &[("name", "a")]);
        let (body, ts, sig) = signed_request(KEY, 5000, &req);
        let (got, exec) = admit(&mut v, &c, 5000, Some(&ts), Some(&sig), &body).unwrap();
        assert_eq!(got, req);
        assert_eq!(exec.argv[1], "/tmp/x/marker-a");
        // Not JSON but unsigned: refused as unauthenticated, not malformed.
        let (r, parsed) = admit(
            &mut v,
            &c,
            5000,
            Some("5000"),
            Some(&"0".repeat(64)),
            b"nope",
        )
        .unwrap_err();
        assert_eq!((r.code(), parsed), ("bad_signature", None));
        // Signed nonsense: malformed.
        let sig = sign(KEY, "5000", b"nope");
        let (r, _) = admit(&mut v, &c, 5000, Some("5000"), Some(&sig), b"nope").unwrap_err();
        assert_eq!(r.code(), "malformed");
        // Signed, bad parameter: refused with the request, for the audit log.
        let bad = request("touch-marker", &[("name", "$(id)")]);
        let (body, ts, sig) = signed_request(KEY, 5000, &bad);
        let (r, parsed) = admit(&mut v, &c, 5000, Some(&ts), Some(&sig), &body).unwrap_err();
        assert_eq!((r.code(), parsed), ("invalid_params", Some(bad)));
    }

    #[test]
    fn response_signatures_bind_the_answer_to_its_request() {
        let v = Verifier::new(KEY.to_vec(), Duration::from_secs(30));
        let sig = v.sign_response("abcd", b"{\"ok\":true}");
        assert!(verify_response(KEY, "abcd", b"{\"ok\":true}", &sig));
        assert!(!verify_response(KEY, "abce", b"{\"ok\":true}", &sig));
        assert!(!verify_response(KEY, "abcd", b"{\"ok\":false}", &sig));
        assert!(!verify_response(
            b"other key",
            "abcd",
            b"{\"ok\":true}",
            &sig
        ));
        assert!(!verify_response(KEY, "abcd", b"{\"ok\":true}", "zz"));
        // Never equal to a request MAC over the same bytes.
        assert_ne!(sig, sign(KEY, "abcd", b"{\"ok\":true}"));
    }
}
