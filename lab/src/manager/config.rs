//! The lab file `heal-lab up` reads: one service per line,
//! `NAME PORT [SERVICE ARGS...]`, `#` comments and blank lines ignored.
//!
//! ```text
//! # name  port  extra `heal-lab service` arguments
//! web     18001
//! api     18002 --mem-limit-mb 64
//! batch   0     --fault latency:200
//! ```
//!
//! Plain lines rather than TOML: the lab stays std only, and a line per
//! service is all there is to say. Port 0 takes a free port at the first
//! start and keeps it for every restart.

use crate::error::{Error, Result};
use crate::service::valid_name;

/// Arguments the manager sets itself and a lab file may not.
const RESERVED_ARGS: [&str; 4] = ["--name", "--port", "--addr", "--exit-on-stdin-eof"];

/// One service of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name: the `service` label, the pidfile's stem, the API's path segment.
    pub name: String,
    /// Its port; 0 for a free one.
    pub port: u16,
    /// Further `heal-lab service` arguments, passed as they are (argv, no shell).
    pub args: Vec<String>,
}

/// Parses a lab file's text. Every problem is reported at once, one per
/// line, each as `FILE:LINE: message`.
pub fn parse(file: &str, text: &str) -> Result<Vec<ServiceSpec>> {
    let mut specs: Vec<ServiceSpec> = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut problem = |m: String| problems.push(format!("{file}:{}: {m}", i + 1));
        let mut words = line.split_whitespace();
        let (Some(name), Some(port)) = (words.next(), words.next()) else {
            problem(format!("expected NAME PORT [ARGS...], got {line:?}"));
            continue;
        };
        let args: Vec<String> = words.map(str::to_string).collect();
        if !valid_name(name) {
            problem(format!(
                "service name {name:?}: use 1 to 64 letters, digits, '_', '-' or '.'"
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                problem(format!("port {port:?}: expected a number in 0..=65535"));
                0
            }
        };
        if specs.iter().any(|s| s.name == name) {
            problem(format!("service {name:?} is listed twice"));
        }
        if port != 0 && specs.iter().any(|s| s.port == port) {
            problem(format!("port {port} is used twice"));
        }
        for arg in &args {
            let flag = arg.split('=').next().unwrap_or_default();
            if RESERVED_ARGS.contains(&flag) {
                problem(format!("argument {flag} is set by the manager"));
            }
        }
        specs.push(ServiceSpec {
            name: name.to_string(),
            port,
            args,
        });
    }
    if specs.is_empty() && problems.is_empty() {
        problems.push(format!("{file}: no service listed"));
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(Error::usage(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_services_with_arguments() {
        let specs = parse(
            "lab.conf",
            "# the lab\nweb 18001\n\napi 0 --mem-limit-mb 64 --fault latency:5  # slow\n",
        )
        .unwrap();
        assert_eq!(
            specs,
            vec![
                ServiceSpec {
                    name: "web".into(),
                    port: 18001,
                    args: vec![]
                },
                ServiceSpec {
                    name: "api".into(),
                    port: 0,
                    args: vec![
                        "--mem-limit-mb".into(),
                        "64".into(),
                        "--fault".into(),
                        "latency:5".into()
                    ]
                },
            ]
        );
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let err = parse("lab.conf", "web 1\nweb 1\nb/c x\nsolo\nd 3 --port 4\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "lab.conf:2: service \"web\" is listed twice\n\
             lab.conf:2: port 1 is used twice\n\
             lab.conf:3: service name \"b/c\": use 1 to 64 letters, digits, '_', '-' or '.'\n\
             lab.conf:3: port \"x\": expected a number in 0..=65535\n\
             lab.conf:4: expected NAME PORT [ARGS...], got \"solo\"\n\
             lab.conf:5: argument --port is set by the manager"
        );
        assert_eq!(
            parse("e", "# nothing\n").unwrap_err().to_string(),
            "e: no service listed"
        );
    }
}
