//! `heal-lab up` and its control CLI, with real children, pidfiles and kills.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{client, eventually, free_port, run, Proc, TempDir};
use lab::procfs;

const T: Duration = Duration::from_secs(10);

/// A running lab: the manager, its control address, its services.
struct Lab {
    manager: Proc,
    control: SocketAddr,
    /// name -> (pid, address) as printed at start.
    started: BTreeMap<String, (u32, SocketAddr)>,
    dir: TempDir,
}

impl Lab {
    fn up(lab_file: &str) -> Lab {
        let dir = TempDir::new("up");
        let config = dir.path().join("lab.conf");
        std::fs::write(&config, lab_file).unwrap();
        let run_dir = dir.path().join("run");
        let manager = Proc::spawn(&[
            "up",
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--control",
            "127.0.0.1:0",
            "--exit-on-stdin-eof",
        ]);
        let mut started = BTreeMap::new();
        let control = loop {
            let line = manager.line(T);
            if let Some(addr) = line.strip_prefix("control listening on ") {
                break addr.parse().unwrap();
            }
            // NAME pid PID listening on ADDR
            let w: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                (w.len(), w[1], w[3], w[4]),
                (6, "pid", "listening", "on"),
                "{line}"
            );
            started.insert(
                w[0].to_string(),
                (w[2].parse().unwrap(), w[5].parse().unwrap()),
            );
        };
        Lab {
            manager,
            control,
            started,
            dir,
        }
    }

    fn pidfile(&self, name: &str) -> PathBuf {
        self.dir.path().join("run").join(format!("{name}.pid"))
    }

    fn pidfile_pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.pidfile(name))
            .ok()
            .map(|s| s.trim().parse().unwrap())
    }

    /// Runs `heal-lab VERB --control C [NAME]`: (exit code, stdout, stderr).
    fn cli(&self, verb: &str, name: Option<&str>) -> (i32, String, String) {
        let control = self.control.to_string();
        let mut args = vec![verb, "--control", &control];
        args.extend(name);
        let out = run(&args, Duration::from_secs(40));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status(&self) -> String {
        client::get(self.control, "/status", T).unwrap().body_text()
    }
}

/// The raw JSON value of `"key":` in a flat object (numbers, booleans, null, strings).
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let start = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let rest = &json[start..];
    let end = match rest.strip_prefix('"') {
        Some(string) => string.find('"').unwrap() + 2,
        None => rest.find([',', '}']).unwrap(),
    };
    &rest[..end]
}

/// The status object of service `name`.
fn service_status<'a>(status: &'a str, name: &str) -> &'a str {
    let start = status
        .find(&format!("{{\"name\":\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    &status[start..start + status[start..].find('}').unwrap() + 1]
}

#[test]
fn starts_every_service_with_a_pidfile() {
    let port = free_port();
    let lab = Lab::up(&format!(
        "# two services\nweb 0\napi {port} --fault latency:1\n"
    ));
    assert_eq!(lab.started.len(), 2);
    assert_eq!(lab.started["api"].1.port(), port);
    for (name, (pid, addr)) in &lab.started {
        assert_eq!(lab.pidfile_pid(name), Some(*pid), "{name}");
        assert!(procfs::is_running(*pid));
        let r = client::get(*addr, "/", T).unwrap();
        assert_eq!(r.body_text(), format!("hello from {name}\n"));
    }
    let status = lab.status();
    let api = service_status(&status, "api");
    assert_eq!(
        (
            field(api, "alive"),
            field(api, "restarts"),
            field(api, "port")
        ),
        ("true", "0", port.to_string().as_str())
    );
    assert_eq!(field(api, "pid"), lab.started["api"].0.to_string());
    assert_eq!(field(api, "last_exit"), "null");
}

#[test]
fn restart_gives_a_new_pid_on_the_same_port() {
    let lab = Lab::up("web 0\n");
    let (old_pid, addr) = lab.started["web"];
    let (code, out, err) = lab.cli("restart", Some("web"));
    assert_eq!(code, 0, "{err}");
    let new_pid: u32 = field(&out, "pid").parse().unwrap();
    assert_ne!(new_pid, old_pid);
    assert_eq!(field(&out, "port"), addr.port().to_string());
    assert_eq!(field(&out, "restarts"), "1");
    assert!(field(&out, "took_ms").parse::<f64>().unwrap() > 0.0);
    assert!(
        eventually(T, || (!procfs::is_running(old_pid)).then_some(())).is_some(),
        "old pid still there"
    );
    assert_eq!(lab.pidfile_pid("web"), Some(new_pid));
    assert_eq!(client::get(addr, "/healthz", T).unwrap().status, 200);
    let status = lab.status();
    assert_eq!(field(service_status(&status, "web"), "restarts"), "1");
    assert_eq!(
        field(service_status(&status, "web"), "last_exit"),
        "\"signal: 9 (SIGKILL)\""
    );
}

#[test]
fn a_crashed_child_is_reaped_and_left_down() {
    let lab = Lab::up("web 0\n");
    let (pid, addr) = lab.started["web"];
    client::post(addr, "/fault/crash", T).unwrap();
    let reaped = eventually(T, || {
        let status = lab.status();
        (field(service_status(&status, "web"), "alive") == "false").then_some(status)
    })
    .expect("the crash is seen");
    assert_eq!(
        field(service_status(&reaped, "web"), "last_exit"),
        "\"exit status: 1\""
    );
    // Reaped (no zombie), not restarted, the pidfile left stale as a crashed daemon's.
    assert!(!procfs::is_running(pid));
    std::thread::sleep(Duration::from_millis(300));
    assert!(client::get(addr, "/", Duration::from_millis(500)).is_err());
    assert_eq!(lab.pidfile_pid("web"), Some(pid));
    // `start` brings it back, on the same port; a second `start` does nothing.
    let (code, out, err) = lab.cli("start", Some("web"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "already_running"), "false");
    let new_pid = field(&out, "pid").to_string();
    assert_eq!(client::get(addr, "/", T).unwrap().status, 200);
    let (code, out, _) = lab.cli("start", Some("web"));
    assert_eq!(
        (code, field(&out, "already_running"), field(&out, "pid")),
        (0, "true", new_pid.as_str())
    );
}

#[test]
fn stop_kills_and_removes_the_pidfile() {
    let lab = Lab::up("web 0\nother 0\n");
    let (pid, _) = lab.started["web"];
    let (code, out, _) = lab.cli("stop", Some("web"));
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!(r#"{{"name":"web","stopped_pid":{pid}}}"#).as_str()
        )
    );
    assert!(!procfs::is_running(pid));
    assert!(!lab.pidfile("web").exists());
    let status = lab.status();
    assert_eq!(
        field(service_status(&status, "web"), "last_exit"),
        "\"stopped\""
    );
    assert_eq!(field(service_status(&status, "other"), "alive"), "true");
    let (code, out, _) = lab.cli("stop", Some("web"));
    assert_eq!((code, field(&out, "stopped_pid")), (0, "null"));
}

#[test]
fn the_control_cli_exit_codes() {
    let lab = Lab::up("web 0\n");
    let (code, _, err) = lab.cli("restart", Some("nope"));
    assert_eq!(
        (code, err.trim()),
        (
            1,
            "heal-lab: restart nope: unknown service \"nope\" (HTTP 404)"
        )
    );
    let (code, _, err) = lab.cli("stop", Some("../x"));
    assert_eq!(code, 64, "{err}");
    let (code, out, _) = lab.cli("status", None);
    assert_eq!(code, 0);
    assert!(out.starts_with(r#"{"services":[{"name":"web""#), "{out}");
    // Nothing listens there.
    let closed = format!("127.0.0.1:{}", free_port());
    let out = run(&["restart", "--control", &closed, "web"], T);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!(
        "heal-lab: restart web: control API at {closed} unreachable: "
    )));
    let out = run(&["restart", "web"], T);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn shutdown_stops_every_child_and_the_manager() {
    let mut lab = Lab::up("a 0\nb 0\n");
    let (code, out, _) = lab.cli("shutdown", None);
    assert_eq!((code, out.trim()), (0, r#"{"shutdown":true}"#));
    assert_eq!(
        lab.manager.wait_exit(T).expect("the manager exits").code(),
        Some(0)
    );
    for (name, (pid, _)) in &lab.started {
        assert!(!procfs::is_running(*pid), "{name}");
        assert!(!lab.pidfile(name).exists(), "{name}");
    }
}

#[test]
fn children_die_with_a_killed_manager() {
    let mut lab = Lab::up("a 0\nb 0\n");
    lab.manager.child.kill().unwrap();
    lab.manager.wait_exit(T).unwrap();
    for (name, (pid, _)) in &lab.started {
        assert!(
            eventually(T, || (!procfs::is_running(*pid)).then_some(())).is_some(),
            "{name} survived its manager"
        );
    }
}

#[test]
fn stdin_eof_stops_the_lab_when_asked() {
    let mut lab = Lab::up("a 0\n");
    lab.manager.close_stdin();
    assert_eq!(
        lab.manager.wait_exit(T).expect("the manager exits").code(),
        Some(0)
    );
    assert!(!procfs::is_running(lab.started["a"].0));
    assert!(!lab.pidfile("a").exists());
}

#[test]
fn a_bad_lab_file_or_control_address_is_refused() {
    let dir = TempDir::new("bad");
    let config = dir.path().join("lab.conf");
    std::fs::write(&config, "web 1\nweb 2 --port 3\n").unwrap();
    let (config, run_dir) = (config.to_str().unwrap(), dir.path().join("run"));
    let out = run(
        &[
            "up",
            "--config",
            config,
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--control",
            "127.0.0.1:0",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("heal-lab: {config}:2: service \"web\" is listed twice\n{config}:2: argument --port is set by the manager\n")
    );
    std::fs::write(dir.path().join("ok.conf"), "web 0\n").unwrap();
    let ok = dir.path().join("ok.conf");
    let out = run(
        &[
            "up",
            "--config",
            ok.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--control",
            "0.0.0.0:0",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
}

#[test]
fn a_service_that_cannot_start_is_an_error() {
    let port = free_port();
    let lab = Lab::up(&format!("web {port}\n"));
    assert_eq!(lab.cli("stop", Some("web")).0, 0);
    // Someone else takes the port while the service is down.
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (code, _, err) = lab.cli("start", Some("web"));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim(), "heal-lab: start web: starting service web: it ended before listening (exit status: 1) (HTTP 500)");
    let status = lab.status();
    assert_eq!(field(service_status(&status, "web"), "alive"), "false");
    // The service's own reason reached the manager's stderr.
    let stderr = eventually(T, || {
        Some(lab.manager.stderr()).filter(|s| s.contains("Address already in use"))
    });
    assert!(stderr.is_some(), "{}", lab.manager.stderr());
}
