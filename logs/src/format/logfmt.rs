//! logfmt (`level=info msg="request done" took=12ms`): space-separated
//! `key=value` pairs, a value double-quoted when it holds spaces (`\"` and
//! `\\` escaped), a bare key meaning `true`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::time::{TimeField, TimeParser};
use super::{stamp, Record};
use crate::error::{ConfigError, LineError};

/// A logfmt source format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogfmtFormatConfig {
    /// The key of the message (default `msg`).
    #[serde(default = "default_message")]
    pub message: String,
    /// Where the event time is.
    #[serde(default)]
    pub time: Option<TimeField>,
}

fn default_message() -> String {
    "msg".into()
}

/// A compiled [`LogfmtFormatConfig`].
#[derive(Debug, Clone)]
pub struct LogfmtFormat {
    message: String,
    time: Option<TimeParser>,
}

impl LogfmtFormat {
    /// Checks the time format.
    pub fn new(config: &LogfmtFormatConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            message: config.message.clone(),
            time: config.time.as_ref().map(TimeParser::new).transpose()?,
        })
    }

    /// Reads one line; the message key's value is the message, every other
    /// pair a field.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, LineError> {
        let pairs = pairs(line)?;
        let ts_ms = stamp(self.time.as_ref(), |f| {
            pairs
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| v.to_string())
        })?;
        let mut message = None;
        let mut fields = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            if k == self.message && message.is_none() {
                message = Some(v);
            } else {
                fields.push((Cow::Borrowed(k), v));
            }
        }
        let message = message.ok_or_else(|| LineError::Field {
            field: self.message.clone(),
            reason: "missing (it holds the message)".into(),
        })?;
        Ok(Record {
            message,
            ts_ms,
            fields,
        })
    }
}

/// Splits a logfmt line into pairs.
pub(crate) fn pairs(line: &str) -> Result<Vec<(&str, Cow<'_, str>)>, LineError> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            if b[i] == b'"' {
                return Err(LineError::Logfmt {
                    at: i,
                    reason: "quote inside a key".into(),
                });
            }
            i += 1;
        }
        let key = &line[ks..i];
        if i == b.len() || b[i] != b'=' {
            out.push((key, Cow::Borrowed("true")));
            continue;
        }
        if key.is_empty() {
            return Err(LineError::Logfmt {
                at: ks,
                reason: "`=` without a key".into(),
            });
        }
        i += 1; // '='
        if i < b.len() && b[i] == b'"' {
            let qs = i;
            i += 1;
            let mut value = String::new();
            let mut seg = i;
            loop {
                if i >= b.len() {
                    return Err(LineError::Logfmt {
                        at: qs,
                        reason: "unterminated quoted value".into(),
                    });
                }
                match b[i] {
                    b'"' => break,
                    b'\\' if i + 1 < b.len() => {
                        value.push_str(&line[seg..i]);
                        let e = b[i + 1];
                        value.push(match e {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            other => other as char,
                        });
                        i += 2;
                        seg = i;
                        continue;
                    }
                    _ => i += 1,
                }
            }
            value.push_str(&line[seg..i]);
            i += 1; // closing quote
            out.push((key, Cow::Owned(value)));
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push((key, Cow::Borrowed(&line[vs..i])));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_quotes_and_flags() {
        let f = LogfmtFormat::new(&LogfmtFormatConfig {
            message: "msg".into(),
            time: Some(TimeField {
                field: "ts".into(),
                format: "rfc3339".into(),
            }),
        })
        .unwrap();
        let r = f
            .parse(r#"ts=2024-01-02T03:04:05Z level=warn msg="call \"db\" failed" took=12ms retry"#)
            .unwrap();
        assert_eq!(r.message, r#"call "db" failed"#);
        assert_eq!(r.ts_ms, Some(1_704_164_645_000));
        assert_eq!(r.field("level"), Some("warn"));
        assert_eq!(r.field("took"), Some("12ms"));
        assert_eq!(r.field("retry"), Some("true"));
    }

    #[test]
    fn errors() {
        let f = LogfmtFormat::new(&LogfmtFormatConfig {
            message: "msg".into(),
            time: None,
        })
        .unwrap();
        assert_eq!(
            f.parse(r#"level=info msg="open"#).unwrap_err().to_string(),
            "logfmt at byte 15: unterminated quoted value"
        );
        assert_eq!(
            f.parse("level=info").unwrap_err().to_string(),
            "field `msg`: missing (it holds the message)"
        );
        assert!(f.parse("a =b").is_err());
    }
}
