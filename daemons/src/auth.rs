//! Bearer tokens, checked the same way by every heal HTTP API that takes
//! one (`heal watch`'s changing endpoints, `heal supervise`'s control API).

use axum::http::HeaderMap;

/// Whether the request carries `Authorization: Bearer <expected>`. The
/// scheme is matched without regard to case (`bearer`, `BEARER`: RFC 7235
/// section 2.1 says auth schemes are case-insensitive) and may be followed
/// by one or more spaces; the token is compared exactly. The comparison
/// runs without an early exit, so the time taken does not tell how much of
/// a guessed token was right.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    !given.is_empty() && constant_time_eq(given.as_bytes(), expected.as_bytes())
}

/// The token of a `Bearer` credential, the scheme in any case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// Compares without an early exit (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&headers, "s3cre"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        // RFC 7235 section 2.1; issue 10, 9.
        for value in ["bearer s3cret", "BEARER s3cret", "bEaReR s3cret", "Bearer  s3cret"] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            assert!(bearer_matches(&headers, "s3cret"), "{value}");
        }
        for value in ["Basic s3cret", "Bearers3cret", "Bearer s3cret ", "Bearer", "s3cret"] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            assert!(!bearer_matches(&headers, "s3cret"), "{value}");
        }
    }
}
