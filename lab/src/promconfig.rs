//! `heal-lab prometheus-config`: a `prometheus.yml` that scrapes the lab.
//!
//! Labels: every target gets `service=NAME` and `instance=NAME-K` (K counts
//! the targets of one name from 0), as target labels in the job `services`.
//! So `sum by (service, instance) (rate(http_requests_total[1m]))` has one
//! series per service instance, with a stable instance name instead of a
//! port that changes between runs. A third target label, `address`
//! (`host:port`), is where the target listens: heal's probes read their URL
//! from it (`http://{{label.address}}/healthz`). `honor_labels: true` because the services
//! export `service` on their request metrics themselves: with the default
//! `false`, Prometheus would rename theirs to `exported_service`.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::service::valid_name;

/// One service to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The `service` label.
    pub name: String,
    /// `HOST:PORT` to scrape.
    pub addr: String,
}

impl ScrapeTarget {
    /// Parses `NAME=HOST:PORT`.
    pub fn parse(spec: &str) -> Result<ScrapeTarget> {
        let bad = |why: &str| Error::usage(format!("scrape target {spec:?}: {why}"));
        let (name, addr) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=HOST:PORT"))?;
        if !valid_name(name) {
            return Err(bad(
                "the name must be 1 to 64 letters, digits, '_', '-' or '.'",
            ));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected NAME=HOST:PORT"))?;
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
        if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad("expected NAME=HOST:PORT with a port in 1..=65535"));
        }
        Ok(ScrapeTarget {
            name: name.to_string(),
            addr: addr.to_string(),
        })
    }
}

/// Parses a Prometheus duration made of one number and a unit among `ms`,
/// `s`, `m`, `h`, e.g. `1s`, `500ms`, into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let bad = || {
        Error::usage(format!("duration {text:?}: expected a whole number and a unit among ms, s, m, h (e.g. 1s, 500ms)"))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(n * factor)
}

/// Renders `prometheus.yml`. `scrape_timeout` is the scrape interval capped
/// at Prometheus' default of 10s, since Prometheus refuses a timeout longer
/// than the interval.
pub fn render(
    targets: &[ScrapeTarget],
    scrape_interval: &str,
    evaluation_interval: &str,
) -> Result<String> {
    if targets.is_empty() {
        return Err(Error::usage(
            "prometheus-config: give at least one --target",
        ));
    }
    let interval_ms = parse_duration_ms(scrape_interval)?;
    parse_duration_ms(evaluation_interval)?;
    let timeout = if interval_ms > 10_000 {
        "10s"
    } else {
        scrape_interval
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by heal-lab prometheus-config: one static target per lab service."
    );
    let _ = writeln!(out, "# `service` and `instance` are target labels, so");
    let _ = writeln!(
        out,
        "#   sum by (service, instance) (rate(http_requests_total[1m]))"
    );
    let _ = writeln!(
        out,
        "# has one series per service instance. `address` is where it listens,"
    );
    let _ = writeln!(
        out,
        "# for probes (`instance` is a stable name, not an address)."
    );
    let _ = writeln!(out, "global:");
    let _ = writeln!(out, "  scrape_interval: {scrape_interval}");
    let _ = writeln!(out, "  scrape_timeout: {timeout}");
    let _ = writeln!(out, "  evaluation_interval: {evaluation_interval}");
    let _ = writeln!(out, "scrape_configs:");
    let _ = writeln!(out, "  - job_name: services");
    let _ = writeln!(
        out,
        "    # The services export `service` on their request metrics themselves;"
    );
    let _ = writeln!(
        out,
        "    # honouring it keeps one `service` label instead of `exported_service`."
    );
    let _ = writeln!(out, "    honor_labels: true");
    let _ = writeln!(out, "    metrics_path: /metrics");
    let _ = writeln!(out, "    static_configs:");
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for target in targets {
        let k = match seen.iter_mut().find(|(n, _)| *n == target.name) {
            Some((_, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                seen.push((&target.name, 1));
                0
            }
        };
        let _ = writeln!(out, "      - targets: [\"{}\"]", target.addr);
        let _ = writeln!(out, "        labels:");
        let _ = writeln!(out, "          service: \"{}\"", target.name);
        let _ = writeln!(out, "          instance: \"{}-{k}\"", target.name);
        let _ = writeln!(out, "          address: \"{}\"", target.addr);
    }
    Ok(out)
}

/// Writes `contents` to `path` atomically (`stdx::write_atomically`: a
/// temporary sibling, flushed, then a rename).
pub fn write_atomically(path: &std::path::Path, contents: &str) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::usage(format!(
            "output {}: not a file path",
            path.display()
        )));
    }
    stdx::write_atomically(path, contents.as_bytes())
        .map_err(|e| Error::io(format_args!("{} {}", e.doing, e.path.display()), e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_expected_file() {
        let targets: Vec<_> = [
            "web=127.0.0.1:8001",
            "api=127.0.0.1:8002",
            "web=127.0.0.1:8003",
        ]
        .iter()
        .map(|s| ScrapeTarget::parse(s).unwrap())
        .collect();
        let yml = render(&targets, "1s", "1s").unwrap();
        let expected = r#"# Written by heal-lab prometheus-config: one static target per lab service.
# `service` and `instance` are target labels, so
#   sum by (service, instance) (rate(http_requests_total[1m]))
# has one series per service instance. `address` is where it listens,
# for probes (`instance` is a stable name, not an address).
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: services
    # The services export `service` on their request metrics themselves;
    # honouring it keeps one `service` label instead of `exported_service`.
    honor_labels: true
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:8001"]
        labels:
          service: "web"
          instance: "web-0"
          address: "127.0.0.1:8001"
      - targets: ["127.0.0.1:8002"]
        labels:
          service: "api"
          instance: "api-0"
          address: "127.0.0.1:8002"
      - targets: ["127.0.0.1:8003"]
        labels:
          service: "web"
          instance: "web-1"
          address: "127.0.0.1:8003"
"#;
        assert_eq!(yml, expected);
    }

    #[test]
    fn long_intervals_keep_the_default_timeout() {
        let t = [ScrapeTarget::parse("a=localhost:1").unwrap()];
        assert!(render(&t, "1m", "15s")
            .unwrap()
            .contains("  scrape_timeout: 10s\n"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("15s").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000);
        assert_eq!(
            parse_duration_ms("1.5s").unwrap_err().to_string(),
            "duration \"1.5s\": expected a whole number and a unit among ms, s, m, h (e.g. 1s, 500ms)"
        );
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("10").is_err());
    }

    #[test]
    fn bad_targets_say_why() {
        let msg = |s: &str| ScrapeTarget::parse(s).unwrap_err().to_string();
        assert_eq!(msg("web"), "scrape target \"web\": expected NAME=HOST:PORT");
        assert_eq!(msg("w b=127.0.0.1:1"), "scrape target \"w b=127.0.0.1:1\": the name must be 1 to 64 letters, digits, '_', '-' or '.'");
        assert_eq!(
            msg("web=127.0.0.1:0"),
            "scrape target \"web=127.0.0.1:0\": expected NAME=HOST:PORT with a port in 1..=65535"
        );
        assert_eq!(
            msg("web=a b:1"),
            "scrape target \"web=a b:1\": expected NAME=HOST:PORT with a port in 1..=65535"
        );
    }
}
