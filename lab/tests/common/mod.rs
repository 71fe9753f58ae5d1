//! Helpers for the lab's integration tests: start the real `heal-lab`
//! binary, read its ready line, talk HTTP, parse the exposition format.
//! Every wait has a deadline; every child is killed when its guard drops.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use lab::http::client;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_heal-lab");

/// A running `heal-lab` child, killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    /// Its stdout lines, as they come.
    pub lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    /// Starts `heal-lab ARGS` with piped stdin, stdout and stderr.
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning heal-lab");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            lines,
            stderr,
            stdin,
        }
    }

    /// The next stdout line, within `timeout`.
    pub fn line(&self, timeout: Duration) -> String {
        self.lines.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "no stdout line within {timeout:?} ({e}); stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of it.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line(left);
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits up to `timeout` for it to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `heal-lab service` on a free port.
#[derive(Debug)]
pub struct Service {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Service {
    /// `heal-lab service --name NAME --port 0 EXTRA...`, ready.
    pub fn start(name: &str, extra: &[&str]) -> Service {
        let mut args = vec!["service", "--name", name, "--port", "0"];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(&args);
        let addr = proc
            .wait_for_line("listening on ", Duration::from_secs(10))
            .parse()
            .expect("listening address");
        Service { proc, addr }
    }

    pub fn get(&self, path: &str) -> client::Response {
        client::get(self.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn post(&self, path: &str) -> client::Response {
        client::post(self.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The parsed `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let text = self.get("/metrics").body_text();
        parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The value of one sample of `/metrics`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        value(&self.metrics(), name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict reader of the text format 0.0.4 as the lab writes it: every
/// family has `# HELP` and `# TYPE` before its samples, samples of a family
/// are contiguous, label values are quoted and escaped, values are floats,
/// and histograms are cumulative with `+Inf` equal to `_count`.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut finished: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            if !valid_metric_name(name) {
                return Err(at("bad metric name in comment"));
            }
            match kw {
                "HELP" => {
                    if let Some(c) = current.take() {
                        finished.push(c);
                    }
                    if finished.iter().any(|f| f == name) {
                        return Err(at("family appears twice"));
                    }
                    current = Some(name.to_string());
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail) {
                        return Err(at("unknown type"));
                    }
                    if current.as_deref() != Some(name) {
                        return Err(at("TYPE without HELP just before"));
                    }
                    types.insert(name.to_string(), tail.to_string());
                }
                _ => return Err(at("unknown comment")),
            }
            continue;
        }
        if line.is_empty() {
            return Err(at("empty line"));
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(
                    rest.strip_suffix('}')
                        .ok_or_else(|| at("unterminated labels"))?,
                )
                .map_err(|e| at(&e))?,
            ),
            None => (series, BTreeMap::new()),
        };
        if !valid_metric_name(name) {
            return Err(at("bad metric name"));
        }
        let family = current
            .as_deref()
            .ok_or_else(|| at("sample before any HELP/TYPE"))?;
        let kind = types.get(family).ok_or_else(|| at("sample before TYPE"))?;
        let belongs = match kind.as_str() {
            "histogram" => [
                family.to_string() + "_bucket",
                family.to_string() + "_sum",
                family.to_string() + "_count",
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        if !belongs {
            return Err(at(&format!("sample outside its family {family}")));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !valid_metric_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(labels)
}

fn check_histograms(samples: &[Sample], types: &BTreeMap<String, String>) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
            .collect();
        let mut previous = (f64::NEG_INFINITY, 0.0);
        for b in &buckets {
            let le: f64 = match b.labels.get("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().map_err(|_| format!("{family}: bad le {v}"))?,
                None => return Err(format!("{family}: bucket without le")),
            };
            if le <= previous.0 || b.value < previous.1 {
                return Err(format!("{family}: buckets not increasing at le={le}"));
            }
            previous = (le, b.value);
        }
        let count = value(samples, &format!("{family}_count"), &[])
            .ok_or(format!("{family}: no _count"))?;
        if previous.0 != f64::INFINITY || previous.1 != count {
            return Err(format!(
                "{family}: +Inf bucket {} differs from _count {count}",
                previous.1
            ));
        }
        value(samples, &format!("{family}_sum"), &[]).ok_or(format!("{family}: no _sum"))?;
    }
    Ok(())
}

/// Runs `heal-lab ARGS` to the end (bounded by `timeout`, then killed).
pub fn run(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("heal-lab {args:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("heal-lab-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A binary of the Prometheus package: `$ENV` when set, else
/// `/usr/bin/NAME`. A missing one fails the test (never a silent skip):
/// `.ci/run` installs the package.
fn prometheus_package_bin(name: &str, env: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin").join(name));
    assert!(
        p.is_file(),
        "this test needs {name} at {}: `apt-get install prometheus` (.ci/run does), or set {env}",
        p.display()
    );
    p
}

#[allow(dead_code)] // not every test binary sharing this module uses it
/// The `promtool` binary (`PROMTOOL_BIN` or `/usr/bin/promtool`): an
/// extra, independent check of the lab's outputs.
pub fn promtool() -> PathBuf {
    prometheus_package_bin("promtool", "PROMTOOL_BIN")
}

/// The `prometheus` binary (`PROMETHEUS_BIN` or `/usr/bin/prometheus`),
/// looked up as every other test of the workspace does.
#[allow(dead_code)] // not every test binary sharing this module uses it
pub fn prometheus() -> PathBuf {
    prometheus_package_bin("prometheus", "PROMETHEUS_BIN")
}
