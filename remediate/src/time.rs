//! Event-time formatting: milliseconds since the Unix epoch as RFC 3339 UTC
//! and durations for humans. No clock is read here.

/// `ms` since the Unix epoch as RFC 3339 in UTC, with milliseconds only when
/// they are not zero: `2026-03-01T04:05:06Z`, `2026-03-01T04:05:06.250Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// Proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01. Howard Hinnant's `civil_from_days`,
/// <http://howardhinnant.github.io/date_algorithms.html#civil_from_days>;
/// exact for every `i64` day count whose year fits in an `i64`.
///
/// Why not chrono: this is the only calendar arithmetic remediate needs, and
/// twenty lines beat a dependency whose clock feature would tempt code into
/// reading the system time.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A span for humans, largest units first, seconds precision:
/// `0s`, `45s`, `2m30s`, `1h5m`, `2d3h`.
pub fn human(ms: i64) -> String {
    let negative = ms < 0;
    let mut s = ms.unsigned_abs() / 1000;
    if s == 0 {
        return if ms == 0 {
            "0s".to_owned()
        } else {
            format!("{ms}ms")
        };
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_772_337_906_250), "2026-03-01T04:05:06.250Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // Walk 1970..2101 one day at a time with the month-length rules.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..47_847 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn human_spans() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(250), "250ms");
        assert_eq!(human(45_000), "45s");
        assert_eq!(human(150_000), "2m30s");
        assert_eq!(human(3_900_000), "1h5m");
        assert_eq!(human(183_600_000), "2d3h");
    }
}
