//! A line regex with named groups: one group holds the message, the others
//! are fields.

use std::borrow::Cow;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::time::{TimeField, TimeParser};
use super::{stamp, Record};
use crate::error::{ConfigError, LineError};

/// A regex source format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexFormatConfig {
    /// The pattern (Rust `regex` syntax, `(?P<name>...)` groups).
    pub regex: String,
    /// The group holding the message (default `message`).
    #[serde(default = "default_message")]
    pub message: String,
    /// Where the event time is (a group name).
    #[serde(default)]
    pub time: Option<TimeField>,
}

fn default_message() -> String {
    "message".into()
}

/// A compiled [`RegexFormatConfig`].
#[derive(Debug, Clone)]
pub struct RegexFormat {
    regex: Regex,
    names: Vec<String>,
    message: String,
    time: Option<TimeParser>,
}

impl RegexFormat {
    /// Compiles the pattern; it must have the message group (and the time
    /// groups, if any).
    pub fn new(config: &RegexFormatConfig) -> Result<Self, ConfigError> {
        let regex = Regex::new(&config.regex).map_err(|e| ConfigError::Regex {
            what: "line regex".into(),
            pattern: config.regex.clone(),
            reason: e.to_string(),
        })?;
        let names: Vec<String> = regex
            .capture_names()
            .flatten()
            .map(str::to_string)
            .collect();
        let missing = |group: &str| ConfigError::NoMessageGroup {
            pattern: config.regex.clone(),
            group: group.to_string(),
        };
        if !names.contains(&config.message) {
            return Err(missing(&config.message));
        }
        let time = config.time.as_ref().map(TimeParser::new).transpose()?;
        if let Some(t) = &time {
            for f in &t.fields {
                if !names.contains(f) {
                    return Err(ConfigError::Regex {
                        what: "line regex".into(),
                        pattern: config.regex.clone(),
                        reason: format!("no named group `{f}` for the event time"),
                    });
                }
            }
        }
        Ok(Self {
            regex,
            names,
            message: config.message.clone(),
            time,
        })
    }

    /// Reads one line.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, LineError> {
        let caps = self
            .regex
            .captures(line)
            .ok_or_else(|| LineError::NoMatch {
                kind: "line regex",
                format: self.regex.as_str().to_string(),
            })?;
        let get = |n: &str| caps.name(n).map(|m| m.as_str());
        let ts_ms = stamp(self.time.as_ref(), |f| get(f).map(str::to_string))?;
        let message = get(&self.message).unwrap_or("");
        let fields = self
            .names
            .iter()
            .filter(|n| **n != self.message)
            .filter_map(|n| get(n).map(|v| (Cow::Owned(n.clone()), Cow::Borrowed(v))))
            .collect();
        Ok(Record {
            message: Cow::Borrowed(message),
            ts_ms,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_groups() {
        let f = RegexFormat::new(&RegexFormatConfig {
            regex: r"^(?P<ts>\S+) \[(?P<level>\w+)\] (?P<message>.*)$".into(),
            message: "message".into(),
            time: Some(TimeField {
                field: "ts".into(),
                format: "unix_s".into(),
            }),
        })
        .unwrap();
        let r = f.parse("1704164645 [ERROR] db down").unwrap();
        assert_eq!(r.message, "db down");
        assert_eq!(r.field("level"), Some("ERROR"));
        assert_eq!(r.ts_ms, Some(1_704_164_645_000));
        assert!(matches!(f.parse("garbage"), Err(LineError::NoMatch { .. })));
    }

    #[test]
    fn missing_groups_are_config_errors() {
        let e = RegexFormat::new(&RegexFormatConfig {
            regex: r"(?P<msg>.*)".into(),
            message: "message".into(),
            time: None,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line regex \"(?P<msg>.*)\": no named group `message` for the message"
        );
        assert!(RegexFormat::new(&RegexFormatConfig {
            regex: "(".into(),
            message: "message".into(),
            time: None
        })
        .is_err());
    }
}
