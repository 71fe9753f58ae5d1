//! Times and durations as heal reads them from people and writes them in
//! tables: one parser for every time a user gives (CLI flags, API bodies,
//! the feed's query string) and one format per table column.

use crate::{Error, Result};

/// `now`, `-DURATION` (before now) or RFC 3339, to ms since the epoch.
/// Every time heal reads from a user goes through here; `flag` names the
/// field in the error.
///
/// # Errors
///
/// [`Error::Usage`] naming the flag, the value and the forms accepted.
pub fn parse_time(flag: &str, s: &str, now_ms: i64) -> Result<i64> {
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d: remediate::Duration = ago
            .parse()
            .map_err(|e| Error::Usage(format!("{flag} {s:?}: not a relative time: {e}")))?;
        return Ok(now_ms.saturating_sub(d.as_millis_i64()));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| {
            Error::Usage(format!(
                "{flag} {s:?}: expected RFC 3339 (2026-01-05T00:00:00Z), \"now\" or a time before now like \"-1h\" ({e})"
            ))
        })
}

/// A duration for a table column: `45s`, `12m`, `3h05m`.
pub fn fmt_duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if s < 7200 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// A time for a table column, to the minute: `2026-01-06 14:00` (UTC).
pub fn fmt_minute(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A time for a table column, to the second: `2026-01-06 14:00:05` (UTC).
pub fn fmt_second(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_now_and_relative() {
        let now = 1_767_571_200_000; // 2026-01-05T00:00:00Z
        assert_eq!(parse_time("--since", "now", now).unwrap(), now);
        assert_eq!(parse_time("--since", "-2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("--since", "2026-01-05T01:00:00+01:00", 0).unwrap(),
            now
        );
        assert_eq!(
            parse_time("--start", "-1d12h", now).unwrap(),
            now - 129_600_000
        );
        assert_eq!(
            parse_time("--start", "-1x", now).unwrap_err().to_string(),
            r#"--start "-1x": not a relative time: invalid duration "1x": unknown unit (use ms, s, m, h or d)"#
        );
        let e = parse_time("--since", "yesterday", now).unwrap_err();
        assert!(e.is_usage());
        assert!(e
            .to_string()
            .starts_with("--since \"yesterday\": expected RFC 3339"));
    }

    #[test]
    fn table_formats() {
        assert_eq!(
            [
                fmt_duration(45_000),
                fmt_duration(720_000),
                fmt_duration(11_100_000)
            ],
            ["45s", "12m", "3h05m"]
        );
        assert_eq!(fmt_minute(1_767_571_200_000), "2026-01-05 00:00");
        assert_eq!(fmt_second(1_767_571_205_000), "2026-01-05 00:00:05");
    }
}
