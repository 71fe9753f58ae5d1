//! The one duration type of runbooks: `"90s"`, `"2m"`, `"1h30m"`, `"0s"`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written as a sequence of `<integer><unit>` parts with
/// units `ms`, `s`, `m`, `h` and `d`, largest first, like `"90s"`, `"1h30m"`
/// or `"0s"`. Stored as whole milliseconds.
///
/// Why a newtype and not `std::time::Duration` with `humantime`: runbook
/// durations only ever need millisecond precision, the engine does integer
/// arithmetic on event-time milliseconds, and keeping the grammar this small
/// (no spaces, no fractions, no `min`/`sec` aliases) means one spelling per
/// value, which keeps reviews of runbook diffs boring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Duration {
    /// Zero length.
    pub const ZERO: Duration = Duration(0);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Duration {
        Duration(s * 1000)
    }

    /// Length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Length in milliseconds as a signed event-time offset (saturating).
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Whether this is zero length.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Duration, ParseDurationError> {
        let fail = |reason| ParseDurationError {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(fail(
                "expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\"",
            ));
        }
        let bytes = s.as_bytes();
        let mut total: u64 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(fail(
                    "expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\"",
                ));
            }
            let number: u64 = s[start..i]
                .parse()
                .map_err(|_| fail("number is too large"))?;
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[unit_start..i];
            let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    fail("missing unit after number (use ms, s, m, h or d)")
                } else {
                    fail("unknown unit (use ms, s, m, h or d)")
                });
            };
            total = number
                .checked_mul(*scale)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(|| fail("duration is too large"))?;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// The canonical spelling, largest unit first (`90000` ms prints as
    /// `1m30s`); parsing it gives back the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (name, scale) in UNITS {
            if rest >= scale {
                write!(f, "{}{}", rest / scale, name)?;
                rest %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"90s\" or \"1h30m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Pattern of a duration string, shared by the JSON Schema.
pub(crate) const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

impl JsonSchema for Duration {
    fn schema_name() -> String {
        "Duration".to_owned()
    }

    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        use schemars::schema::{InstanceType, Metadata, SchemaObject, StringValidation};
        SchemaObject {
            instance_type: Some(InstanceType::String.into()),
            string: Some(Box::new(StringValidation {
                pattern: Some(DURATION_PATTERN.to_owned()),
                ..Default::default()
            })),
            metadata: Some(Box::new(Metadata {
                description: Some(
                    "A duration: `<integer><unit>` parts with units ms, s, m, h, d, largest \
                     first, e.g. \"90s\", \"2m\", \"1h30m\", \"0s\"."
                        .to_owned(),
                ),
                examples: vec!["90s".into(), "5m".into(), "1h30m".into()],
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sequences_of_parts() {
        let ms = |s: &str| s.parse::<Duration>().map(Duration::as_millis);
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms("90s"), Ok(90_000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("1d2h3m4s5ms"), Ok(93_784_005));
        assert_eq!(ms("250ms"), Ok(250));
    }

    #[test]
    fn rejects_malformed_strings_with_the_reason() {
        let err = |s: &str| s.parse::<Duration>().unwrap_err().to_string();
        assert_eq!(
            err("90"),
            "invalid duration \"90\": missing unit after number (use ms, s, m, h or d)"
        );
        assert_eq!(
            err("5 min"),
            "invalid duration \"5 min\": missing unit after number (use ms, s, m, h or d)"
        );
        assert_eq!(
            err("5min"),
            "invalid duration \"5min\": unknown unit (use ms, s, m, h or d)"
        );
        assert_eq!(
            err("1.5h"),
            "invalid duration \"1.5h\": missing unit after number (use ms, s, m, h or d)"
        );
        assert_eq!(
            err(""),
            "invalid duration \"\": expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\""
        );
        assert_eq!(
            err("-5s"),
            "invalid duration \"-5s\": expected a number and a unit (ms, s, m, h or d), like \"90s\" or \"1h30m\""
        );
        assert_eq!(
            err("99999999999999999999d"),
            "invalid duration \"99999999999999999999d\": number is too large"
        );
        assert_eq!(
            err("999999999999999d"),
            "invalid duration \"999999999999999d\": duration is too large"
        );
    }

    #[test]
    fn display_round_trips() {
        for ms in [
            0, 1, 999, 1000, 90_000, 5_400_000, 86_400_000, 93_784_005, 3_600_001,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(d.to_string().parse::<Duration>(), Ok(d), "{d}");
        }
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::from_millis(0).to_string(), "0s");
    }
}
