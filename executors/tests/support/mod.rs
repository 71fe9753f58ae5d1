//! A real HAProxy for the executor tests (Debian package `haproxy`, 2.5 or
//! later for runtime `add server`/`del server`), started in the
//! foreground with a generated configuration: one frontend, one
//! `roundrobin` backend `be` whose servers are small HTTP servers in this
//! process that answer their own name, and a runtime API on a UNIX socket
//! in a temporary directory and on a TCP port.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use executors::haproxy::{ApiAddress, Name, RuntimeApi, ServerStatus};

/// How long HAProxy may take to come up on a loaded machine.
pub const STARTUP: Duration = Duration::from_secs(30);
/// Step timeout given to the executor; generous, it is a bound, not a
/// measurement.
pub const STEP: Duration = Duration::from_secs(20);

/// The `haproxy` program: `PATH` first, then the sbin directories Debian
/// installs it to (not in a normal user's `PATH`).
pub fn haproxy_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("haproxy");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "haproxy not found in PATH, /usr/sbin or /usr/local/sbin: these tests need a real \
         HAProxy 2.5 or later; install it with `apt-get install -y haproxy` (Debian package \
         `haproxy`; .ci/run installs it when missing)"
    );
}

/// `(major, minor)` of `haproxy -v`.
pub fn haproxy_version(program: &Path) -> (u32, u32) {
    let out = Command::new(program)
        .arg("-v")
        .output()
        .expect("running haproxy -v");
    let text = String::from_utf8_lossy(&out.stdout);
    // "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `haproxy -v` output: {text}"));
    let mut parts = version.split(['.', '-']);
    let mut next = || -> u32 { parts.next().and_then(|p| p.parse().ok()).unwrap_or(0) };
    (next(), next())
}

/// A tiny HTTP/1.0 server that answers every request with its own name.
/// Its thread lives as long as the test process; it holds nothing else.
pub fn name_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a backend server");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                // Read the request head, answer, close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

/// A port nothing listens on right now. HAProxy cannot report a port it
/// picked itself, so the test picks one; the tiny race with another
/// process is handled by starting again on new ports (see `Lab::start`).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A running HAProxy; killed when dropped, whatever the test did.
pub struct Lab {
    child: Child,
    pub dir: tempfile::TempDir,
    pub frontend: SocketAddr,
    pub unix_api: ApiAddress,
    pub tcp_api: ApiAddress,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    /// HAProxy with backend `be` holding `servers` (name, address).
    pub async fn start(servers: &[(&str, SocketAddr)]) -> Lab {
        let program = haproxy_program();
        let version = haproxy_version(&program);
        assert!(
            version >= (2, 5),
            "HAProxy {}.{} is too old: runtime add/del server needs 2.5 or later",
            version.0,
            version.1
        );
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let socket = dir.path().join("admin.sock");
            let frontend = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let api_port = free_port();
            let mut config = format!(
                "global\n\
                 \x20 stats socket {socket} level admin\n\
                 \x20 stats socket ipv4@127.0.0.1:{api_port} level admin\n\
                 defaults\n\
                 \x20 mode http\n\
                 \x20 timeout connect 5s\n\
                 \x20 timeout client 30s\n\
                 \x20 timeout server 30s\n\
                 frontend fe\n\
                 \x20 bind {frontend}\n\
                 \x20 default_backend be\n\
                 backend be\n\
                 \x20 balance roundrobin\n",
                socket = socket.display()
            );
            for (name, addr) in servers {
                config.push_str(&format!("  server {name} {addr}\n"));
            }
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(&cfg, config).expect("writing haproxy.cfg");
            let log = dir.path().join("haproxy.log");
            let log_file = std::fs::File::create(&log).unwrap();
            let child = Command::new(&program)
                .arg("-f")
                .arg(&cfg)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("starting haproxy");
            let mut lab = Lab {
                child,
                frontend,
                unix_api: ApiAddress::Unix(socket),
                tcp_api: format!("127.0.0.1:{api_port}").parse().unwrap(),
                dir,
            };
            if lab.wait_ready().await {
                return lab;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("haproxy did not come up in three attempts; its last output:\n{last_log}");
    }

    /// Waits until both runtime APIs answer and the frontend accepts;
    /// false if HAProxy exited (a port taken meanwhile) or never answered.
    pub async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP;
        let backend = Name::new("backend name", "be").unwrap();
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let unix = RuntimeApi::new(self.unix_api.clone());
            let tcp = RuntimeApi::new(self.tcp_api.clone());
            if unix.servers_state(&backend).await.is_ok()
                && tcp.servers_state(&backend).await.is_ok()
                && tokio::net::TcpStream::connect(self.frontend).await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Sends `n` requests through the frontend, one connection each, and
    /// counts the answers per server name.
    pub async fn traffic(&self, n: usize) -> BTreeMap<String, usize> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let mut stream = tokio::net::TcpStream::connect(self.frontend)
                .await
                .expect("connecting to the frontend");
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            tokio::time::timeout(STEP, stream.read_to_string(&mut answer))
                .await
                .expect("frontend answered in time")
                .expect("reading the answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer}");
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            *counts.entry(body.to_owned()).or_default() += 1;
        }
        counts
    }

    pub async fn table(&self) -> Vec<ServerStatus> {
        RuntimeApi::new(self.unix_api.clone())
            .servers_state(&Name::new("backend name", "be").unwrap())
            .await
            .expect("show servers state be")
    }
}
