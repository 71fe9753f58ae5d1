//! The faults a lab service can be told to have, and how they are written:
//! `KIND[:PARAM]` on the command line, `POST /fault/KIND?param=V` over HTTP.

use std::fmt;

use crate::error::{Error, Result};

/// Every fault kind, in the order `lab_fault{kind}` lists them.
pub const KINDS: [&str; 7] = [
    "crash",
    "hang",
    "leak",
    "latency",
    "errors",
    "cpu",
    "dependency",
];

/// One active fault. A service has at most one at a time: setting another
/// replaces it, which keeps each experiment's cause unambiguous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Exit with status 1, `after_ms` after the fault was set (0: right after
    /// answering the request that set it).
    Crash { after_ms: u64 },
    /// `/` and `/healthz` never answer; `/metrics` and the fault API still do.
    Hang,
    /// Allocate and touch `mb_per_s` MiB per second until the memory limit,
    /// then die by SIGKILL like the kernel's OOM killer would.
    Leak { mb_per_s: f64 },
    /// Every `/` sleeps `ms` milliseconds before answering.
    Latency { ms: u64 },
    /// That fraction of `/` (and `/healthz`) answers 500.
    Errors { rate: f64 },
    /// `threads` threads spin on the CPU.
    Cpu { threads: u32 },
    /// A dependency refuses connections: the service still answers 200 (from
    /// its cache) and only its log says so, on that share of requests.
    Dependency { rate: f64 },
}

impl Fault {
    /// The fault's kind, as in `lab_fault{kind}` and `/fault/KIND`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Hang => "hang",
            Fault::Leak { .. } => "leak",
            Fault::Latency { .. } => "latency",
            Fault::Errors { .. } => "errors",
            Fault::Cpu { .. } => "cpu",
            Fault::Dependency { .. } => "dependency",
        }
    }

    /// The name of the HTTP query parameter that sets this kind's parameter.
    fn param_name(kind: &str) -> Option<&'static str> {
        match kind {
            "crash" => Some("after_ms"),
            "leak" => Some("mb_per_s"),
            "latency" => Some("ms"),
            "errors" => Some("rate"),
            "cpu" => Some("threads"),
            "dependency" => Some("rate"),
            _ => None,
        }
    }

    /// Builds a fault from its kind and optional parameter text, with the
    /// defaults and bounds documented on `heal-lab service --fault`.
    pub fn new(kind: &str, param: Option<&str>) -> Result<Fault> {
        let name = Fault::param_name(kind);
        let parse = |default: f64, min: f64, max: f64| -> Result<f64> {
            let Some(text) = param.filter(|p| !p.is_empty()) else {
                return Ok(default);
            };
            let value: f64 = text.parse().map_err(|_| {
                Error::usage(format!(
                    "fault {kind}: {} must be a number, got {text:?}",
                    name.unwrap_or("parameter")
                ))
            })?;
            if !(min..=max).contains(&value) {
                return Err(Error::usage(format!(
                    "fault {kind}: {} must be in [{min}, {max}], got {value}",
                    name.unwrap_or("parameter")
                )));
            }
            Ok(value)
        };
        Ok(match kind {
            "crash" => Fault::Crash {
                after_ms: parse(0.0, 0.0, 3_600_000.0)? as u64,
            },
            "hang" if param.is_none_or(str::is_empty) => Fault::Hang,
            "hang" => return Err(Error::usage("fault hang takes no parameter")),
            "leak" => {
                let mb_per_s = parse(10.0, 0.0, 1024.0)?;
                if mb_per_s <= 0.0 {
                    return Err(Error::usage("fault leak: mb_per_s must be above 0"));
                }
                Fault::Leak { mb_per_s }
            }
            "latency" => Fault::Latency {
                ms: parse(500.0, 0.0, 600_000.0)? as u64,
            },
            "errors" => Fault::Errors {
                rate: parse(0.5, 0.0, 1.0)?,
            },
            "cpu" => Fault::Cpu {
                threads: parse(1.0, 1.0, 16.0)? as u32,
            },
            "dependency" => Fault::Dependency {
                rate: parse(1.0, 0.0, 1.0)?,
            },
            other => {
                return Err(Error::usage(format!(
                    "unknown fault {other:?}: expected one of {}",
                    KINDS.join(", ")
                )))
            }
        })
    }

    /// Parses the command-line form `KIND[:PARAM]`, e.g. `leak:20`.
    pub fn parse_spec(spec: &str) -> Result<Fault> {
        let (kind, param) = match spec.split_once(':') {
            Some((k, p)) => (k, Some(p)),
            None => (spec, None),
        };
        Fault::new(kind, param)
    }

    /// Builds a fault from `POST /fault/KIND?...`'s kind and query string.
    pub fn from_query(kind: &str, query: &str) -> Result<Fault> {
        let param = Fault::param_name(kind).and_then(|name| crate::http::query_param(query, name));
        Fault::new(kind, param)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { after_ms } => write!(f, "crash after_ms={after_ms}"),
            Fault::Hang => f.write_str("hang"),
            Fault::Leak { mb_per_s } => write!(f, "leak mb_per_s={mb_per_s}"),
            Fault::Latency { ms } => write!(f, "latency ms={ms}"),
            Fault::Errors { rate } => write!(f, "errors rate={rate}"),
            Fault::Cpu { threads } => write!(f, "cpu threads={threads}"),
            Fault::Dependency { rate } => write!(f, "dependency rate={rate}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults() {
        assert_eq!(Fault::parse_spec("hang").unwrap(), Fault::Hang);
        assert_eq!(
            Fault::parse_spec("leak").unwrap(),
            Fault::Leak { mb_per_s: 10.0 }
        );
        assert_eq!(
            Fault::parse_spec("leak:2.5").unwrap(),
            Fault::Leak { mb_per_s: 2.5 }
        );
        assert_eq!(
            Fault::parse_spec("latency:250").unwrap(),
            Fault::Latency { ms: 250 }
        );
        assert_eq!(
            Fault::parse_spec("errors:0.25").unwrap(),
            Fault::Errors { rate: 0.25 }
        );
        assert_eq!(
            Fault::parse_spec("cpu:2").unwrap(),
            Fault::Cpu { threads: 2 }
        );
        assert_eq!(
            Fault::parse_spec("crash").unwrap(),
            Fault::Crash { after_ms: 0 }
        );
        assert_eq!(
            Fault::parse_spec("crash:1500").unwrap(),
            Fault::Crash { after_ms: 1500 }
        );
    }

    #[test]
    fn queries_name_their_parameter() {
        assert_eq!(
            Fault::from_query("leak", "mb_per_s=30").unwrap(),
            Fault::Leak { mb_per_s: 30.0 }
        );
        assert_eq!(
            Fault::from_query("errors", "x=1&rate=1").unwrap(),
            Fault::Errors { rate: 1.0 }
        );
        assert_eq!(
            Fault::from_query("cpu", "").unwrap(),
            Fault::Cpu { threads: 1 }
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        let msg = |s: &str| Fault::parse_spec(s).unwrap_err().to_string();
        assert_eq!(
            msg("errors:1.5"),
            "fault errors: rate must be in [0, 1], got 1.5"
        );
        assert_eq!(
            msg("latency:abc"),
            "fault latency: ms must be a number, got \"abc\""
        );
        assert_eq!(msg("leak:0"), "fault leak: mb_per_s must be above 0");
        assert_eq!(
            msg("cpu:99"),
            "fault cpu: threads must be in [1, 16], got 99"
        );
        assert_eq!(msg("hang:3"), "fault hang takes no parameter");
        assert_eq!(
            msg("melt"),
            "unknown fault \"melt\": expected one of crash, hang, leak, latency, errors, cpu, dependency"
        );
    }
}
