//! JSON lines: one object per line; the message and other fields by dotted
//! path (`log.message`, `kubernetes.labels.app`; a numeric segment indexes an
//! array).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::time::{TimeField, TimeParser};
use super::{stamp, Record};
use crate::error::{ConfigError, LineError};

/// A JSON-lines source format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFormatConfig {
    /// Path of the message field (`msg`, `log.message`).
    pub message: String,
    /// Paths of the other fields to keep (level, service, a latency, ...).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Where the event time is (its field is looked up by path too).
    #[serde(default)]
    pub time: Option<TimeField>,
}

/// A compiled [`JsonFormatConfig`].
#[derive(Debug, Clone)]
pub struct JsonFormat {
    message: Vec<String>,
    message_path: String,
    fields: Vec<(String, Vec<String>)>,
    time: Option<TimeParser>,
}

fn split_path(path: &str) -> Result<Vec<String>, ConfigError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(ConfigError::FieldPath {
            path: path.to_string(),
            reason: "empty segment".into(),
        });
    }
    Ok(path.split('.').map(str::to_string).collect())
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A scalar as text (strings without quotes); objects and arrays as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl JsonFormat {
    /// Checks the paths and the time format.
    pub fn new(config: &JsonFormatConfig) -> Result<Self, ConfigError> {
        let fields = config
            .fields
            .iter()
            .map(|f| Ok((f.clone(), split_path(f)?)))
            .collect::<Result<_, ConfigError>>()?;
        let time = config.time.as_ref().map(TimeParser::new).transpose()?;
        if let Some(t) = &time {
            for f in &t.fields {
                split_path(f)?;
            }
        }
        Ok(Self {
            message: split_path(&config.message)?,
            message_path: config.message.clone(),
            fields,
            time,
        })
    }

    /// Reads one line.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, LineError> {
        let v: Value = serde_json::from_str(line).map_err(|e| LineError::Json {
            reason: e.to_string(),
        })?;
        if !v.is_object() {
            return Err(LineError::Json {
                reason: "a JSON value that is not an object".into(),
            });
        }
        let message = match lookup(&v, &self.message) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(_) | Value::Array(_)) => {
                return Err(LineError::Field {
                    field: self.message_path.clone(),
                    reason: "is an object or array, not a message".into(),
                })
            }
            Some(other) => text(other),
            None => {
                return Err(LineError::Field {
                    field: self.message_path.clone(),
                    reason: "missing (it holds the message)".into(),
                })
            }
        };
        let ts_ms = stamp(self.time.as_ref(), |f| {
            let path: Vec<String> = f.split('.').map(str::to_string).collect();
            lookup(&v, &path).map(text)
        })?;
        let fields = self
            .fields
            .iter()
            .filter_map(|(name, path)| {
                lookup(&v, path).map(|x| (Cow::Owned(name.clone()), Cow::Owned(text(x))))
            })
            .collect();
        Ok(Record {
            message: Cow::Owned(message),
            ts_ms,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(message: &str, fields: &[&str], time: Option<(&str, &str)>) -> JsonFormat {
        JsonFormat::new(&JsonFormatConfig {
            message: message.into(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            time: time.map(|(f, t)| TimeField {
                field: f.into(),
                format: t.into(),
            }),
        })
        .unwrap()
    }

    #[test]
    fn nested_paths_and_scalars() {
        let f = fmt(
            "log.msg",
            &["level", "http.latency_ms", "tags.1", "absent"],
            Some(("ts", "rfc3339")),
        );
        let r = f
            .parse(r#"{"ts":"2024-01-02T03:04:05Z","level":"warn","log":{"msg":"slow call to db"},"http":{"latency_ms":12.5},"tags":["a","b"]}"#)
            .unwrap();
        assert_eq!(r.message, "slow call to db");
        assert_eq!(r.ts_ms, Some(1_704_164_645_000));
        assert_eq!(r.field("level"), Some("warn"));
        assert_eq!(r.field("http.latency_ms"), Some("12.5"));
        assert_eq!(r.field("tags.1"), Some("b"));
        assert_eq!(r.field("absent"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let f = fmt("msg", &[], Some(("ts", "unix_ms")));
        assert_eq!(
            f.parse(r#"{"ts":1}"#).unwrap_err().to_string(),
            "field `msg`: missing (it holds the message)"
        );
        assert_eq!(
            f.parse(r#"{"msg":"x"}"#).unwrap_err().to_string(),
            "field `ts`: missing (it holds the event time)"
        );
        assert!(matches!(f.parse("not json"), Err(LineError::Json { .. })));
        assert!(matches!(f.parse("[1]"), Err(LineError::Json { .. })));
        assert!(JsonFormat::new(&JsonFormatConfig {
            message: "a..b".into(),
            fields: vec![],
            time: None
        })
        .is_err());
    }
}
