//! `heal bench agent` and `heal bench supervise`: the figures the README
//! gives for heal's own daemons, measured on the real binaries (this
//! executable run as `heal agent` / `heal supervise`, the lab's services as
//! supervised children), over loopback.
//!
//! - agent: sequential signed requests through the runbook executor's
//!   client (`executors::agent::call`), each answered after the HMAC
//!   checks, two audit lines and a real program run (`touch`); then the
//!   same number refused for a bad signature.
//! - supervise: a chain of three lab services (`c` depends on `b` depends
//!   on `a`, `http` checks every 100 ms, restart backoff from 100 ms):
//!   `kill -9` of `a`'s child to `a` serving again from a new process, and
//!   a power cut (every child killed at once) to `c`, the last of the
//!   chain, serving again.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A child stopped when dropped: SIGTERM (so `heal supervise` stops its
/// own children), then SIGKILL after 10 s.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` with stderr piped and returns it with the rest of the
/// first stderr line that contains `marker` (within 60 s). The rest of
/// stderr is drained.
fn start(mut cmd: Command, marker: &'static str) -> Result<(Stopped, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::msg(format!("starting {cmd:?}: {e}")))?;
    let stderr = child.stderr.take().expect("piped");
    let child = Stopped(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if let Some(rest) = line.split(marker).nth(1) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::msg(format!("{cmd:?} did not print {marker:?} within 60 s")))?;
    Ok((child, rest))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh directory under the system's temporary directory.
fn scratch(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("heal-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `heal bench agent --requests N`.
///
/// # Errors
///
/// The agent does not start, or a request that should run does not.
pub fn agent(requests: usize) -> Result<()> {
    use executors::agent::{call, AgentCall};
    use std::os::unix::fs::PermissionsExt;
    let requests = requests.max(1);
    let dir = scratch("agent")?;
    let key = "4f1c0e7a9d2b4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";
    std::fs::write(dir.join("agent.key"), format!("{key}\n"))?;
    std::fs::set_permissions(
        dir.join("agent.key"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    std::fs::create_dir_all(dir.join("work"))?;
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "key_file: agent.key\naudit_log: audit.jsonl\nreplay_window: 30s\nactions:\n  touch-marker:\n    argv: [touch, \"{}/work/marker-{{{{name}}}}\"]\n    params:\n      name: {{type: label}}\n    timeout: 10s\n",
            dir.display()
        ),
    )?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["agent", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("agent.yaml"))
        .env("PATH", "/usr/bin:/bin");
    let (_agent, rest) = start(cmd, "heal agent listening on http://")?;
    let addr = rest.split('/').next().unwrap_or_default().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timed = |key: &[u8], n: usize, accepted: bool| -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let c = AgentCall {
                url: format!("http://{addr}"),
                action: "touch-marker".into(),
                params: [("name".to_owned(), format!("m{i}"))].into(),
                key: key.to_vec(),
                timeout: Duration::from_secs(10),
                dry_run: false,
            };
            let t = Instant::now();
            let r = runtime.block_on(call(&c, now_secs()));
            out.push(t.elapsed());
            if r.ok != accepted {
                return Err(Error::msg(format!("request {i}: {}", r.summary)));
            }
        }
        out.sort();
        Ok(out)
    };
    let ok = timed(key.as_bytes(), requests, true)?;
    let wrong = "0".repeat(64);
    let refused = timed(wrong.as_bytes(), requests, false)?;
    println!(
        "heal bench agent: {requests} sequential requests each to a real `heal agent` on loopback ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "accepted (HMAC, two audit lines, runs touch): p50 {:.1} ms, p99 {:.1} ms",
        super::percentile_ms(&ok, 0.5),
        super::percentile_ms(&ok, 0.99)
    );
    println!(
        "refused (bad signature):                      p50 {:.1} ms, p99 {:.1} ms",
        super::percentile_ms(&refused, 0.5),
        super::percentile_ms(&refused, 0.99)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn get_json(api: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let r = lab::http::client::get(api, path, Duration::from_secs(5)).ok()?;
    (r.status == 200)
        .then(|| serde_json::from_slice(&r.body).ok())
        .flatten()
}

/// The pid of a service's replica 0 once it is healthy.
fn healthy_pid(api: SocketAddr, name: &str) -> Option<u32> {
    healthy(api, name).map(|(pid, _)| pid)
}

/// The pid and start time (ms) of a service's replica 0 once healthy.
fn healthy(api: SocketAddr, name: &str) -> Option<(u32, i64)> {
    let s = get_json(api, &format!("/v1/services/{name}"))?;
    let r = &s["instances"][0];
    if r["phase"] != "healthy" {
        return None;
    }
    Some((r["pid"].as_u64()? as u32, r["started_ms"].as_i64()?))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn serves(port: u16) -> bool {
    lab::http::client::get(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "/",
        Duration::from_millis(500),
    )
    .is_ok_and(|r| r.status == 200)
}

/// Polls `f` every millisecond until it holds, for at most 30 s.
fn poll(what: &str, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if f() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(Error::msg(format!(
        "timed out after 30 s waiting for {what}"
    )))
}

fn kill9(pids: &[u32]) {
    for pid in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// `heal bench supervise --rounds N`.
///
/// # Errors
///
/// `heal-lab` is not beside this executable, the supervisor does not
/// start, or a service does not come back within 30 s.
pub fn supervise(rounds: usize) -> Result<()> {
    let rounds = rounds.max(1);
    let exe = std::env::current_exe()?;
    let lab = exe.parent().unwrap_or(Path::new(".")).join("heal-lab");
    if !lab.is_file() {
        return Err(Error::msg(format!(
            "{} is missing: build it with `cargo build -p lab` (same profile as heal)",
            lab.display()
        )));
    }
    let dir = scratch("supervise")?;
    let names = ["a", "b", "c"];
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut config = String::from("services:\n");
    for (i, (name, port)) in names.iter().zip(ports).enumerate() {
        let deps = if i == 0 {
            String::new()
        } else {
            names[i - 1].to_owned()
        };
        config.push_str(&format!(
            "  - name: {name}\n    release: {{version: v1, argv: [{lab}, service, --name, {name}, --port, \"{{port}}\"]}}\n    ports: {port}\n    depends_on: [{deps}]\n    check: {{type: http, path: /healthz, interval: 100ms, timeout: 1s, failures: 3, start_timeout: 20s}}\n    restart: {{initial: 100ms, max: 1s, reset_after: 500ms}}\n",
            lab = lab.display()
        ));
    }
    std::fs::write(dir.join("supervise.yaml"), config)?;
    let mut cmd = Command::new(&exe);
    cmd.args(["supervise", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("supervise.yaml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("HEAL_LOG", "info");
    let (_sup, rest) = start(cmd, "control API on http://")?;
    let api: SocketAddr = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| Error::msg(format!("control API address {rest:?}: {e}")))?;
    // Every replica healthy and up past `reset_after` (500 ms), so each
    // kill meets the initial 100 ms backoff, as a first crash does.
    let all_healthy = || -> Option<Vec<u32>> {
        let up: Vec<(u32, i64)> = names
            .iter()
            .map(|n| healthy(api, n))
            .collect::<Option<_>>()?;
        let now = now_ms();
        up.iter()
            .all(|(_, started)| now - started >= 600)
            .then(|| up.iter().map(|(pid, _)| *pid).collect())
    };
    let mut single = Vec::with_capacity(rounds);
    let mut cut = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut pids = Vec::new();
        poll("every service healthy", || {
            all_healthy().map(|p| pids = p).is_some()
        })?;
        // kill -9 of a's child: a new process serving.
        let old = pids[0];
        kill9(&[old]);
        single.push(poll("a serving again", || {
            healthy_pid(api, "a").is_some_and(|p| p != old) && serves(ports[0])
        })?);
        poll("every service healthy", || {
            all_healthy().map(|p| pids = p).is_some()
        })?;
        // A power cut: every child at once; the chain comes back in order.
        let old = pids.clone();
        kill9(&old);
        cut.push(poll("c serving again", || {
            healthy_pid(api, "c").is_some_and(|p| p != old[2]) && serves(ports[2])
        })?);
    }
    single.sort();
    cut.sort();
    println!(
        "heal bench supervise: {rounds} rounds, three lab services a <- b <- c, http checks every 100 ms, backoff 100 ms (each kill after reset_after) ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "kill -9 of a's child to a serving again:      median {:.2} s, max {:.2} s",
        super::percentile_ms(&single, 0.5) / 1000.0,
        single[single.len() - 1].as_secs_f64()
    );
    println!(
        "power cut (all three killed) to c serving:   median {:.2} s, max {:.2} s",
        super::percentile_ms(&cut, 0.5) / 1000.0,
        cut[cut.len() - 1].as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
