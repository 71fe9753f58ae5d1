//! Event time from a field: a strftime pattern or a keyword, to milliseconds
//! since the Unix epoch (UTC), the unit of `ingest::Sample::ts_ms`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, LineError};

/// Where a line's event time is and how it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeField {
    /// The field holding the time; several fields separated by commas
    /// (`Date,Time`) are joined with one space before parsing.
    pub field: String,
    /// `rfc3339`, `unix_s`, `unix_ms`, or a strftime pattern with a year
    /// (`%Y-%m-%d %H:%M:%S%.f`, `%y%m%d %H%M%S`). Without an offset (`%z`)
    /// the time is taken as UTC.
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    WithOffset(String),
    Naive(String),
}

/// A compiled [`TimeField`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParser {
    pub(crate) fields: Vec<String>,
    pub(crate) format: TimeFormat,
    spec: TimeField,
}

impl TimeParser {
    /// Checks the format; a strftime pattern must name the year, or the time
    /// would be ambiguous.
    pub fn new(spec: &TimeField) -> Result<Self, ConfigError> {
        let fields: Vec<String> = spec
            .field
            .split(',')
            .map(|f| f.trim().to_string())
            .collect();
        if fields.iter().any(String::is_empty) {
            return Err(ConfigError::FieldPath {
                path: spec.field.clone(),
                reason: "empty field name".into(),
            });
        }
        let f = spec.format.as_str();
        let format = match f {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix_s" => TimeFormat::UnixSeconds,
            "unix_ms" => TimeFormat::UnixMillis,
            _ => {
                let bad = |reason: &str| ConfigError::TimeFormat {
                    format: f.to_string(),
                    reason: reason.into(),
                };
                if chrono::format::StrftimeItems::new(f)
                    .any(|i| matches!(i, chrono::format::Item::Error))
                {
                    return Err(bad("not a strftime pattern"));
                }
                let has_year = ["%Y", "%y", "%G", "%g", "%s", "%+", "%c", "%D", "%F", "%x"]
                    .iter()
                    .any(|y| f.contains(y));
                if !has_year {
                    return Err(bad("has no year (%Y or %y): the time would be ambiguous"));
                }
                if f.contains("%z") || f.contains("%:z") || f.contains("%#z") || f.contains("%+") {
                    TimeFormat::WithOffset(f.to_string())
                } else {
                    TimeFormat::Naive(f.to_string())
                }
            }
        };
        Ok(Self {
            fields,
            format,
            spec: spec.clone(),
        })
    }

    /// Milliseconds since the epoch for `value` (the joined fields).
    pub fn parse(&self, value: &str) -> Result<i64, LineError> {
        let v = value.trim();
        let ms = match &self.format {
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|d| d.timestamp_millis()),
            TimeFormat::UnixSeconds => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|s| (s * 1000.0).round() as i64),
            TimeFormat::UnixMillis => v.parse::<i64>().ok(),
            TimeFormat::WithOffset(f) => DateTime::parse_from_str(v, f)
                .ok()
                .map(|d| d.timestamp_millis()),
            TimeFormat::Naive(f) => NaiveDateTime::parse_from_str(v, f)
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(v, f)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .map(|d| d.and_utc().timestamp_millis()),
        };
        ms.ok_or_else(|| LineError::Time {
            field: self.spec.field.clone(),
            value: value.chars().take(80).collect(),
            format: self.spec.format.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(field: &str, format: &str) -> TimeParser {
        TimeParser::new(&TimeField {
            field: field.into(),
            format: format.into(),
        })
        .unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(
            p("t", "rfc3339").parse("2024-01-02T03:04:05.5Z"),
            Ok(1_704_164_645_500)
        );
        assert_eq!(
            p("t", "unix_s").parse("1704164645.5"),
            Ok(1_704_164_645_500)
        );
        assert_eq!(
            p("t", "unix_ms").parse("1704164645500"),
            Ok(1_704_164_645_500)
        );
        assert_eq!(
            p("d,t", "%y%m%d %H%M%S").parse("240102 030405"),
            Ok(1_704_164_645_000)
        );
        assert_eq!(
            p("t", "%Y-%m-%d %H:%M:%S%.f %z").parse("2024-01-02 04:04:05.5 +0100"),
            Ok(1_704_164_645_500)
        );
        assert_eq!(
            p("t", "%Y-%m-%d").parse("2024-01-02"),
            Ok(1_704_153_600_000)
        );
    }

    #[test]
    fn errors_name_field_value_and_format() {
        let e = p("ts", "%Y-%m-%d").parse("yesterday").unwrap_err();
        assert_eq!(
            e.to_string(),
            "time field `ts` = \"yesterday\" does not match the time format \"%Y-%m-%d\""
        );
        let e = TimeParser::new(&TimeField {
            field: "ts".into(),
            format: "%b %d %H:%M:%S".into(),
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "time format \"%b %d %H:%M:%S\": has no year (%Y or %y): the time would be ambiguous"
        );
        assert!(TimeParser::new(&TimeField {
            field: "ts".into(),
            format: "%Q".into()
        })
        .is_err());
    }
}
