//! Line formats: how a raw line becomes a message (what the miner sees), named
//! fields (level, component, ...) and, when a field gives it, the event time.
//!
//! - `log_format`: a header layout in Loghub's `log_format` syntax
//!   (`<Date> <Time> <Level> <Component>: <Content>`), as logparser reads it.
//! - `json`: one JSON object per line, fields by dotted path (`log.message`).
//! - `logfmt`: `key=value` pairs, values optionally double-quoted.
//! - `regex`: a regular expression with named groups.
//! - `plain`: the whole line is the message.
//!
//! Without a time field the caller stamps the line with its arrival time:
//! nothing here reads a clock.

mod json;
mod logfmt;
mod loghub;
mod regex_format;
mod time;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, LineError};

pub use json::{JsonFormat, JsonFormatConfig};
pub use logfmt::{LogfmtFormat, LogfmtFormatConfig};
pub use loghub::{LoghubFormat, LoghubFormatConfig};
pub use regex_format::{RegexFormat, RegexFormatConfig};
pub use time::{TimeField, TimeParser};

/// One line read by its format.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// The message: what the template miner sees.
    pub message: Cow<'a, str>,
    /// Event time in ms since the epoch, when the format has a time field.
    pub ts_ms: Option<i64>,
    /// The other fields, in the order the format defines them.
    pub fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Record<'_> {
    /// The value of field `name`, if the line has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A source's line format, as written in its configuration (`type:` selects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FormatConfig {
    /// The whole line (without its line ending) is the message.
    Plain,
    /// A Loghub `log_format` header layout.
    LogFormat(LoghubFormatConfig),
    /// JSON lines.
    Json(JsonFormatConfig),
    /// logfmt.
    Logfmt(LogfmtFormatConfig),
    /// A regex with named groups.
    Regex(RegexFormatConfig),
}

/// A compiled [`FormatConfig`].
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// See [`FormatConfig::Plain`].
    Plain,
    /// See [`LoghubFormat`].
    LogFormat(LoghubFormat),
    /// See [`JsonFormat`].
    Json(JsonFormat),
    /// See [`LogfmtFormat`].
    Logfmt(LogfmtFormat),
    /// See [`RegexFormat`].
    Regex(RegexFormat),
}

impl LineFormat {
    /// Compiles a format configuration.
    pub fn new(config: &FormatConfig) -> Result<Self, ConfigError> {
        Ok(match config {
            FormatConfig::Plain => Self::Plain,
            FormatConfig::LogFormat(c) => Self::LogFormat(LoghubFormat::new(c)?),
            FormatConfig::Json(c) => Self::Json(JsonFormat::new(c)?),
            FormatConfig::Logfmt(c) => Self::Logfmt(LogfmtFormat::new(c)?),
            FormatConfig::Regex(c) => Self::Regex(RegexFormat::new(c)?),
        })
    }

    /// Reads one line (its line ending already removed).
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, LineError> {
        match self {
            Self::Plain => Ok(Record {
                message: Cow::Borrowed(line),
                ts_ms: None,
                fields: Vec::new(),
            }),
            Self::LogFormat(f) => f.parse(line),
            Self::Json(f) => f.parse(line),
            Self::Logfmt(f) => f.parse(line),
            Self::Regex(f) => f.parse(line),
        }
    }
}

/// Applies `time` to the fields of a record being built.
pub(crate) fn stamp(
    time: Option<&TimeParser>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<i64>, LineError> {
    let Some(t) = time else {
        return Ok(None);
    };
    let mut joined = String::new();
    for (i, f) in t.fields.iter().enumerate() {
        let v = lookup(f).ok_or_else(|| LineError::Field {
            field: f.clone(),
            reason: "missing (it holds the event time)".into(),
        })?;
        if i > 0 {
            joined.push(' ');
        }
        joined.push_str(&v);
    }
    t.parse(&joined).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_lines_give_records_or_errors_never_panics() {
        let mut x: u64 = 11;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let formats: Vec<LineFormat> = [
            r#"{"type":"log_format","log_format":"<Date> <Time> <Level> \\[<P>\\] <Component>: <Content>"}"#,
            r#"{"type":"log_format","log_format":"<A> <B>(\\[<C>\\])?: <Content>"}"#,
            r#"{"type":"json","message":"m.x","fields":["a.0"],"time":{"field":"t","format":"rfc3339"}}"#,
            r#"{"type":"logfmt","time":{"field":"ts","format":"unix_ms"}}"#,
            r#"{"type":"regex","regex":"^(?P<lvl>\\w+) (?P<message>.*)$"}"#,
        ]
        .iter()
        .map(|j| LineFormat::new(&serde_json::from_str::<FormatConfig>(j).unwrap()).unwrap())
        .collect();
        let alphabet: Vec<char> = "a1 :[]{}\"=\\,.tsmx-é\t{\"m\":".chars().collect();
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = (next() % 30) as usize;
            let line: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for f in &formats {
                parsed += usize::from(f.parse(&line).is_ok());
            }
        }
        assert!(parsed > 0);
    }

    #[test]
    fn configs_deserialize_by_type() {
        let c: FormatConfig = serde_json::from_str(
            r#"{"type":"log_format","log_format":"<Level> <Content>","time":null}"#,
        )
        .unwrap();
        let f = LineFormat::new(&c).unwrap();
        let r = f.parse("WARN disk almost full").unwrap();
        assert_eq!(r.message, "disk almost full");
        assert_eq!(r.field("Level"), Some("WARN"));
        let bad =
            serde_json::from_str::<FormatConfig>(r#"{"type":"json","message":"m","extra":1}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("unknown field `extra`"));
        let plain: FormatConfig = serde_json::from_str(r#"{"type":"plain"}"#).unwrap();
        assert_eq!(
            LineFormat::new(&plain)
                .unwrap()
                .parse("x y")
                .unwrap()
                .message,
            "x y"
        );
    }
}
