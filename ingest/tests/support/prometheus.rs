//! A real Prometheus server for tests: `/usr/bin/prometheus` (Debian's `prometheus` package) on
//! a free 127.0.0.1 port, with its own temporary storage and a configuration that scrapes itself
//! every second. Killed when dropped.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the binary is looked for; `PROMETHEUS_BIN` overrides (tests may read the environment,
/// the library may not).
fn binary() -> PathBuf {
    let path = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "the Prometheus integration tests need the prometheus binary at {}: install it with \
         `apt-get install prometheus` (CI does), or point PROMETHEUS_BIN at one",
        path.display()
    );
    path
}

/// A port nothing listens on (at the time of the call).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free port and waits until it is ready and has scraped itself once.
    pub fn start() -> Prometheus {
        Prometheus::start_on(free_port())
    }

    /// Starts Prometheus on `port` and waits until it is ready and has scraped itself once.
    pub fn start_on(port: u16) -> Prometheus {
        let bin = binary();
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{port}']\n"
            ),
        )
        .expect("writing prometheus.yml");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("creating log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        prometheus.wait_until(Duration::from_secs(30), "ready", |p| {
            p.get("/-/ready").is_some_and(|(status, _)| status == 200)
        });
        prometheus.wait_until(Duration::from_secs(30), "scraped itself", |p| {
            p.get("/api/v1/query?query=up")
                .is_some_and(|(_, body)| body.contains("\"value\""))
        });
        prometheus
    }

    fn wait_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Prometheus) -> bool) {
        let start = Instant::now();
        loop {
            if done(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was {what}; its log:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "prometheus at {} not {what} after {limit:?}; its log:\n{}",
                    self.url,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prometheus' own log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET, by hand: the test helper must not depend on the client under test.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
