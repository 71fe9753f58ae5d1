//! Timestamp parsing and formatting shared by the readers.
//!
//! The hot path, NAB's naive `YYYY-MM-DD HH:MM:SS`, is parsed by hand with Howard Hinnant's
//! `days_from_civil` (<https://howardhinnant.github.io/date_algorithms.html#days_from_civil>): it
//! is a dozen integer operations, where going through chrono's format-string machinery costs
//! several times more per row. Everything else (RFC 3339 with an offset) falls back to chrono.
//! Naive timestamps are taken as UTC.

use chrono::{DateTime, SecondsFormat};

/// Days since 1970-01-01 of a proleptic Gregorian date; `month` in 1..=12, `day` in 1..=31.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(n)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (also with `T` as separator) with an optional fraction of a
/// second (`.000000` in NAB label files; truncated to ms), as UTC, to ms since the epoch.
#[inline]
pub(crate) fn parse_naive(b: &[u8]) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = i64::from(digits(&b[11..13])?);
    let minute = i64::from(digits(&b[14..16])?);
    let second = i64::from(digits(&b[17..19])?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut millis = 0;
    if b.len() > 19 {
        let frac = &b[19..];
        if frac[0] != b'.' || frac.len() == 1 {
            return None;
        }
        // Any number of digits (a long fraction would overflow `digits`);
        // only the first three count.
        if !frac[1..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let ms_digits = &frac[1..frac.len().min(4)];
        millis = i64::from(digits(ms_digits)?) * 10i64.pow(3 - ms_digits.len() as u32);
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Epoch numbers at or above this are milliseconds, below it seconds: 1e11 s is the year 5138,
/// 1e11 ms is March 1973, so neither reading is plausible on the other side.
const EPOCH_MS_THRESHOLD: i64 = 100_000_000_000;

/// Parses a timestamp in any accepted form to ms since the epoch (UTC): naive
/// `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC, RFC 3339 with `Z` or an offset, or an integer
/// number of seconds (below 1e11) or milliseconds (from 1e11) since the epoch.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    if let Some(ms) = parse_naive(s.as_bytes()) {
        return Some(ms);
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return if n.abs() >= EPOCH_MS_THRESHOLD {
            Some(n)
        } else {
            n.checked_mul(1000)
        };
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Formats ms since the epoch as RFC 3339 in UTC, with milliseconds only when not zero.
pub(crate) fn format_rfc3339(ts_ms: i64) -> String {
    match DateTime::from_timestamp_millis(ts_ms) {
        Some(d) => d.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{ts_ms}ms"),
    }
}

/// Formats a duration in ms compactly: `90s`, `5m`, `1h30m`, `2d3h`.
pub(crate) fn format_duration(ms: i64) -> String {
    if ms % 1000 != 0 || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (sec, "s")] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_ms(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn naive_matches_chrono() {
        for s in [
            "1970-01-01 00:00:00",
            "2014-07-01 00:30:00",
            "2000-02-29 23:59:59",
            "1900-03-01 12:00:00",
            "2026-01-05 00:00:00",
            "9999-12-31 23:59:59",
            "0001-01-01 00:00:00",
        ] {
            assert_eq!(parse_naive(s.as_bytes()), Some(chrono_ms(s)), "{s}");
        }
    }

    #[test]
    fn days_from_civil_matches_chrono_every_day() {
        use chrono::Datelike;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut d = chrono::NaiveDate::from_ymd_opt(1896, 1, 1).unwrap();
        while d.year() < 2104 {
            let expected = (d - epoch).num_days();
            assert_eq!(
                days_from_civil(d.year().into(), d.month(), d.day()),
                expected
            );
            d = d.succ_opt().unwrap();
        }
    }

    #[test]
    fn naive_rejects_invalid() {
        for s in [
            "2014-02-29 00:00:00",
            "2014-13-01 00:00:00",
            "2014-00-01 00:00:00",
            "2014-01-32 00:00:00",
            "2014-01-01 24:00:00",
            "2014-01-01 00:60:00",
            "2014-01-01 00:00:60",
            "2014-01-01",
            "2014/01/01 00:00:00",
            "2014-01-01 00:00:0x",
            "2014-01-01 00:00:00.",
            "2014-01-01 00:00:00.1a",
            "2014-01-01 00:00:00Z",
        ] {
            assert_eq!(parse_naive(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn fractions_truncate_to_ms() {
        let base = chrono_ms("2014-04-10 07:15:00");
        assert_eq!(parse_timestamp("2014-04-10 07:15:00.000000"), Some(base));
        assert_eq!(parse_timestamp("2014-04-10 07:15:00.5"), Some(base + 500));
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.1239"),
            Some(base + 123)
        );
    }

    #[test]
    fn other_forms() {
        let base = chrono_ms("2026-01-05 00:00:00");
        assert_eq!(parse_timestamp("2026-01-05T00:00:00Z"), Some(base));
        assert_eq!(parse_timestamp("2026-01-05T01:00:00+01:00"), Some(base));
        assert_eq!(
            parse_timestamp("2026-01-05T00:00:00.250Z"),
            Some(base + 250)
        );
        assert_eq!(parse_timestamp(&(base / 1000).to_string()), Some(base));
        assert_eq!(parse_timestamp(&base.to_string()), Some(base));
        assert_eq!(parse_timestamp("0"), Some(0));
        assert_eq!(parse_timestamp(""), None);
        assert_eq!(parse_timestamp("-"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn formatting() {
        let base = chrono_ms("2026-01-05 00:00:00");
        assert_eq!(format_rfc3339(base), "2026-01-05T00:00:00Z");
        assert_eq!(format_rfc3339(base + 250), "2026-01-05T00:00:00.250Z");
        assert_eq!(format_duration(60_000), "1m");
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(93_600_000), "1d2h");
        assert_eq!(format_duration(1500), "1500ms");
        assert_eq!(format_duration(0), "0ms");
    }

    #[test]
    fn a_long_fraction_of_a_second_is_truncated_not_an_overflow() {
        // Found by the window-file property test: ten or more fraction
        // digits overflowed (a panic in debug, a wrong time in release).
        assert_eq!(
            parse_naive(b"2014-10-30 15:30:00.0000011211211211211"),
            Some(chrono_ms("2014-10-30 15:30:00"))
        );
        assert_eq!(
            parse_naive(b"2014-10-30 15:30:00.1234567890123"),
            Some(chrono_ms("2014-10-30 15:30:00") + 123)
        );
        assert_eq!(parse_naive(b"2014-10-30 15:30:00.12345x"), None);
        assert_eq!(digits(b"99999999999"), None);
    }
}
