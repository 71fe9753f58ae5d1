//! Helpers the integration tests of the `heal` binary share (each test file
//! that needs them says `mod common;`). Not every file uses every helper.
#![allow(dead_code)]

use std::process::{Command, Output};

use lab::rng::SplitMix64;

/// A runbook whose one rule parks its step for approval: what the tests of
/// `heal watch`'s API (in-process and through the binary) run.
pub const APPROVAL_RUNBOOK: &str = "signals:
  - name: lat
    query: lat
rules:
  - name: restart-on-latency
    when: {signal: lat, direction: up}
    then:
      - action: exec
        argv: [/bin/true]
    guards: {require_approval: true}
";

/// Runs the real `heal` binary with `args`, from the package root (so the
/// bundled `runbooks/` and `datasets/` resolve), and waits for it.
pub fn heal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running heal")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A standard normal draw (Box-Muller) from the lab's seeded generator.
pub fn normal(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (rng.unit().max(1e-12), rng.unit());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A child process killed (and reaped) when the guard drops.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after
/// `deadline`.
pub fn wait_until<T>(
    what: &str,
    deadline: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}
