//! Numbers for people: a sample's value with the unit its metric name
//! gives (Prometheus' naming convention puts the base unit last: `_bytes`,
//! `_seconds`, with `_total` after it for counters), and scores with three
//! decimals. Reports and verification details use these instead of `f64`'s
//! seventeen digits (`2303191588.459139` is `2.15 GiB`).

/// The unit a metric's name declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `..._bytes`: binary prefixes (KiB, MiB, GiB).
    Bytes,
    /// `..._seconds`: µs, ms, s, min, h.
    Seconds,
    /// Anything else: SI suffixes from ten thousand on.
    Plain,
}

/// The unit of a metric by its name's suffix (`_total` skipped).
pub fn unit_of(metric: &str) -> Unit {
    let name = metric.strip_suffix("_total").unwrap_or(metric);
    if name.ends_with("_bytes") {
        Unit::Bytes
    } else if name.ends_with("_seconds") {
        Unit::Seconds
    } else {
        Unit::Plain
    }
}

/// `x` with `sig` significant digits, trailing zeros dropped (`2.5`, not
/// `2.50`; `2300`, not `2.3e3`).
fn significant(x: f64, sig: i32) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    if s == "-0" {
        "0".to_owned()
    } else {
        s
    }
}

/// A value of `metric` for people: `2.15 GiB`, `686 ms`, `0.002031`,
/// `67.93`, `1.52M`.
pub fn format_value(v: f64, metric: &str) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    match unit_of(metric) {
        Unit::Bytes => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
            let mut x = v;
            let mut i = 0;
            while x.abs() >= 1024.0 && i < units.len() - 1 {
                x /= 1024.0;
                i += 1;
            }
            format!("{} {}", significant(x, 3), units[i])
        }
        Unit::Seconds => {
            let (x, unit) = if a == 0.0 {
                (v, "s")
            } else if a < 1e-3 {
                (v * 1e6, "µs")
            } else if a < 1.0 {
                (v * 1e3, "ms")
            } else if a < 120.0 {
                (v, "s")
            } else if a < 7200.0 {
                (v / 60.0, "min")
            } else {
                (v / 3600.0, "h")
            };
            format!("{} {unit}", significant(x, 3))
        }
        Unit::Plain => {
            let suffixes = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")];
            match suffixes.iter().find(|(s, _)| a >= *s) {
                Some(&(s, suffix)) => {
                    let scale = if suffix == "k" { 1e3 } else { s };
                    format!("{}{suffix}", significant(v / scale, 3))
                }
                None => significant(v, 4),
            }
        }
    }
}

/// An anomaly score for people: three decimals (`0.561`, `1.000`).
pub fn format_score(score: f64) -> String {
    format!("{score:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_with_their_units() {
        let cases = [
            (2_303_191_588.459_139, "process_memory_bytes", "2.15 GiB"),
            (512.0, "process_resident_memory_bytes", "512 B"),
            (
                0.686_377_890_806_090_1,
                "http_latency_p99_seconds",
                "686 ms",
            ),
            (1.25, "http_request_duration_seconds", "1.25 s"),
            (0.000_25, "x_seconds", "250 µs"),
            (600.0, "process_cpu_seconds_total", "10 min"),
            (0.002_030_903_139_511_225_6, "http_error_ratio", "0.002031"),
            (67.926_785_698_859_45, "http_request_rate", "67.93"),
            (1_520_000.0, "queue_depth", "1.52M"),
            (12_345.0, "queue_depth", "12.3k"),
            (1.0, "up", "1"),
            (0.0, "up", "0"),
            (-3.5, "delta", "-3.5"),
        ];
        for (v, metric, want) in cases {
            assert_eq!(format_value(v, metric), want, "{v} {metric}");
        }
        assert_eq!(format_score(0.560_735_340_888_005_8), "0.561");
        assert_eq!(format_score(1.0), "1.000");
    }
}
