//! End to end on the real Docker Engine: `heal watch --docker` with a
//! runbook whose signal is read from the engine (`docker: {metric: up}`)
//! and whose step is `action: docker`. A lab service in a container with
//! no restart policy crashes; the engine's `die` event reaches heal's
//! source, the rule fires and heal restarts the container, which serves
//! again. Docker alone would leave it exited (restart count stays 0: the
//! restart is heal's, not a policy's). Then it hangs: its HEALTHCHECK
//! fails, the `health_status: unhealthy` event reaches heal
//! (`docker: {metric: healthy}`), and heal restarts it again; Docker alone
//! only marks it unhealthy. Then it leaks memory: the engine's stats
//! (`docker: {metric: memory}`) pass 64 MiB and heal restarts it long before
//! the service's own 256 MiB limit; Docker alone would let it grow. The
//! `cpu` and `restarts` signals of the same runbook have their series.
//!
//! Fails, never skips, without an engine (CI checks `docker info` first).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::heal_lab;

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `/heal-lab` and what it links (`lab::image`), imported once per run.
fn lab_image(tag: &str) {
    lab::image::import(
        &heal_lab(),
        tag,
        &[r#"HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/heal-lab", "probe", "--addr", "127.0.0.1:8080", "--timeout-ms", "500"]"#],
    )
    .expect("the lab image");
}

/// Removes, when dropped (test failed or not): heal, the container or the
/// Swarm service (waiting for its tasks' containers to go), then the image.
struct Cleanup {
    container: Option<String>,
    service: Option<String>,
    image: String,
    heal: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.heal.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(container) = &self.container {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        if let Some(service) = &self.service {
            let _ = Command::new("docker")
                .args(["service", "rm", service])
                .output();
            // The tasks' containers go with the service, a moment later.
            for _ in 0..50 {
                let gone = Command::new("docker")
                    .args(["ps", "-aq", "--filter"])
                    .arg(format!("label=com.docker.swarm.service.name={service}"))
                    .output()
                    .map(|o| o.stdout.is_empty())
                    .unwrap_or(true);
                if gone {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
    }
}

fn inspect(container: &str, format: &str) -> String {
    run(&["docker", "inspect", "-f", format, container])
}

fn post(addr: &str, path: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
}

fn get_ok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// Injects `fault` into the lab service in `name` and waits (at most
/// `limit`) until the container runs again from a new start; panics with
/// heal's log otherwise. Returns heal's log then.
fn fault_and_restart(name: &str, fault: &str, limit: Duration, log: &Path) -> String {
    let addr = format!("{}:8080", inspect(name, "{{.NetworkSettings.IPAddress}}"));
    let started = inspect(name, "{{.State.StartedAt}}");
    post(&addr, fault);
    let since = Instant::now();
    while since.elapsed() < limit {
        let now = inspect(name, "{{.State.Running}} {{.State.StartedAt}}");
        if now.starts_with("true") && !now.ends_with(&started) {
            return std::fs::read_to_string(log).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "heal did not restart the container after {fault}; heal's log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits (at most 20 s) until the lab service in `name` serves `/`.
fn wait_serving(name: &str, what: &str) {
    let addr = format!("{}:8080", inspect(name, "{{.NetworkSettings.IPAddress}}"));
    let start = Instant::now();
    while !get_ok(&addr) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not serving {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most `limit`) until heal's log contains `want`; returns it.
fn wait_log(log: &Path, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let heal_log = std::fs::read_to_string(log).unwrap_or_default();
        if heal_log.contains(want) {
            return heal_log;
        }
        assert!(
            start.elapsed() < limit,
            "{want:?} not in heal's log:\n{heal_log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails (never skips) without an engine.
fn assert_engine() {
    let info = Command::new("docker").args(["info"]).output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "Docker Engine is not reachable: this test needs it and never skips"
    );
}

/// `heal watch --execute --docker` with the runbooks of `dir`, its API on
/// `port`, its log in `log`.
fn watch(dir: &Path, port: u16, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_heal"))
        .args(["watch", "--prometheus", "http://127.0.0.1:9", "--runbooks"])
        .arg(dir)
        .args(["--interval", "1s", "--backfill", "0s", "--execute"])
        .args(["--docker", "/var/run/docker.sock"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("HEAL_LOG", "heal::live=info,warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn heal_watch_restarts_a_crashed_container_from_the_engines_events() {
    let _one = one_at_a_time();
    assert_engine();
    let pid = std::process::id();
    let image = format!("heal-watch-test:{pid}");
    let name = format!("heal-w-web-{pid}");
    let mut cleanup = Cleanup {
        container: Some(name.clone()),
        service: None,
        image: image.clone(),
        heal: None,
    };
    lab_image(&image);
    run(&[
        "docker",
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &format!("heal.test=w{pid}"),
        &image,
        "service",
        "--name",
        "web",
        "--port",
        "8080",
        "--addr",
        "0.0.0.0",
    ]);
    let addr = format!("{}:8080", inspect(&name, "{{.NetworkSettings.IPAddress}}"));
    let start = Instant::now();
    while !get_ok(&addr) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the lab service never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker.yaml"),
        format!(
            "signals:
  - name: container_up
    docker: {{metric: up, label: heal.test=w{pid}}}
    detector:
      direction: down
      limit_below: 0.5
  - name: container_healthy
    docker: {{metric: healthy, label: heal.test=w{pid}}}
    detector:
      direction: down
      limit_below: 0.5
  - name: container_memory_bytes
    docker: {{metric: memory, label: heal.test=w{pid}}}
    detector:
      direction: up
      limit_above: 67108864
  - name: container_cpu
    docker: {{metric: cpu, label: heal.test=w{pid}}}
  - name: container_restarts
    docker: {{metric: restarts, label: heal.test=w{pid}}}
rules:
  - name: container-died
    when: {{signal: container_up, direction: down, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 5s
      recovered_when:
        value_above: 0.5
  - name: container-unhealthy
    when: {{signal: container_healthy, direction: down, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 8s
      recovered_when:
        value_above: 0.5
  - name: container-leaking
    when: {{signal: container_memory_bytes, direction: up, for: 0s}}
    then:
      - action: docker
        op: restart
        target: container/{{{{instance}}}}
        timeout: 30s
    verify:
      wait: 5s
      recovered_when:
        value_below: 67108864
"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("heal.log");
    cleanup.heal = Some(watch(dir.path(), port, &log));
    // A few healthy slots first.
    std::thread::sleep(Duration::from_secs(4));
    fault_and_restart(&name, "/fault/crash", Duration::from_secs(45), &log);
    // Not a restart policy's doing.
    assert_eq!(inspect(&name, "{{.RestartCount}}"), "0");
    wait_serving(&name, "after heal's restart");
    // heal's log says what it did, with the state before and after.
    wait_log(
        &log,
        &format!("kind=\"docker\" outcome=\"ok\" summary=restart container/{name}: {name} exited"),
        Duration::from_secs(10),
    );

    // The first incident verified before the next fault (its step holds
    // the target until then).
    wait_log(
        &log,
        "incident=inc-000001 step=1 outcome=",
        Duration::from_secs(30),
    );
    // The hang: `/` and `/healthz` block; the HEALTHCHECK fails twice and
    // the engine says `unhealthy`; heal restarts the container again.
    let heal_log = fault_and_restart(&name, "/fault/hang", Duration::from_secs(60), &log);
    assert!(heal_log.contains("rule=container-unhealthy"), "{heal_log}");
    wait_serving(&name, "after the hang's restart");

    // The usage signals have their one series each, read from the engine.
    let metrics = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    for signal in [
        "container_memory_bytes",
        "container_cpu",
        "container_restarts",
    ] {
        let want = format!("heal_series_live{{signal=\"{signal}\"}} 1");
        let start = Instant::now();
        while !metrics().contains(&want) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{want:?} not in heal's metrics:\n{}",
                metrics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The leak: 16 MiB/s from about 10 MiB; heal reads the engine's stats
    // every second and restarts the container past 64 MiB, well before the
    // service would kill itself at 256 MiB.
    wait_log(
        &log,
        "incident=inc-000002 step=1 outcome=",
        Duration::from_secs(30),
    );
    let heal_log = fault_and_restart(
        &name,
        "/fault/leak?mb_per_s=16",
        Duration::from_secs(45),
        &log,
    );
    // The leak's incident, and its restart done while the container still
    // ran: not after the service's own 256 MiB limit killed it (that would
    // be `exited`, and the crash's rule).
    let incident = heal_log
        .lines()
        .find(|l| l.contains("incident opened") && l.contains("rule=container-leaking"))
        .and_then(|l| l.split("incident=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no container-leaking incident in heal's log:\n{heal_log}"))
        .to_owned();
    // The container runs again a moment before the engine's restart call
    // returns to heal and heal logs it: wait for the line.
    let performed = format!("action{{incident={incident} step=1}}");
    let heal_log = wait_log(
        &log,
        &format!("{performed}: heal::live: action "),
        Duration::from_secs(15),
    );
    let want = format!("summary=restart container/{name}: {name} running");
    assert!(
        heal_log
            .lines()
            .any(|l| l.contains(&performed) && l.contains(&want)),
        "no {want:?} for {incident} in heal's log:\n{heal_log}"
    );
    wait_serving(&name, "after the leak's restart");
    // Verified once the restart is over (a restart of a PID 1 that ignores
    // SIGTERM takes the engine's 10 s stop timeout, twice the rule's 5 s
    // wait), never judged while it ran: recovered.
    let verified = format!("incident={incident} step=1 outcome=");
    let heal_log = wait_log(&log, &verified, Duration::from_secs(30));
    let line_of = |needle: &str| heal_log.lines().position(|l| l.contains(needle));
    assert!(
        line_of(&performed) < line_of(&verified),
        "verified before the action finished:\n{heal_log}"
    );
    assert!(
        heal_log.contains(&format!("{verified}\"recovered\"")),
        "{heal_log}"
    );
}

/// One test of this file at a time: the Swarm test initialises a swarm
/// (and leaves it) around the other's containers.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A single-node swarm for the test's life: initialised if the engine
/// had none, and left again then.
struct SwarmGuard {
    was_inactive: bool,
}

impl SwarmGuard {
    fn ensure() -> SwarmGuard {
        let state = run(&["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let was_inactive = state == "inactive";
        if was_inactive {
            run(&["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"]);
        } else {
            assert_eq!(state, "active", "the engine's swarm is {state:?}");
        }
        SwarmGuard { was_inactive }
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        if self.was_inactive {
            let _ = Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .output();
        }
    }
}

/// The lab service's arguments in the Swarm service, with a fault from
/// its start when given.
fn swarm_args(fault: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "service", "--name", "web", "--port", "8080", "--addr", "0.0.0.0",
    ]
    .map(String::from)
    .to_vec();
    if let Some(f) = fault {
        a.extend(["--fault".to_owned(), f.to_owned()]);
    }
    a
}

/// The service's spec as `docker service inspect` gives it: (replicas,
/// arguments).
fn service_state(service: &str) -> (u64, Vec<String>) {
    let out = run(&[
        "docker",
        "service",
        "inspect",
        "-f",
        "{{.Spec.Mode.Replicated.Replicas}} {{json .Spec.TaskTemplate.ContainerSpec.Args}}",
        service,
    ]);
    let (replicas, args) = out.split_once(' ').unwrap();
    (
        replicas.parse().unwrap(),
        serde_json::from_str(args).unwrap(),
    )
}

/// The `ADDR:8080` of each running container of `service`, by its
/// address on `docker_gwbridge` (the host reaches a task there; this
/// machine's routing mesh does not answer on published ports).
fn task_addrs(service: &str) -> Vec<String> {
    let ids = run(&[
        "docker",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    let bridge: serde_json::Value = serde_json::from_str(&run(&[
        "docker",
        "network",
        "inspect",
        "docker_gwbridge",
        "-f",
        "{{json .Containers}}",
    ]))
    .unwrap();
    ids.lines()
        .filter_map(|id| bridge[id]["IPv4Address"].as_str())
        .map(|a| format!("{}:8080", a.split('/').next().unwrap_or(a)))
        .collect()
}

/// Waits (at most `limit`) until `service` runs `n` containers that all
/// serve `/`; returns their addresses.
fn serving_tasks(service: &str, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let addrs = task_addrs(service);
        if addrs.len() == n && addrs.iter().all(|a| get_ok(a)) {
            return addrs;
        }
        assert!(
            start.elapsed() < limit,
            "{service} never served with {n} tasks: {addrs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Running tasks of `service`.
fn running_tasks(service: &str) -> usize {
    run(&[
        "docker",
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        service,
    ])
    .lines()
    .count()
}

/// Issue 14's Swarm case, decided by `heal watch` itself from the engine's
/// service-level signals (`docker: {per: service}`): a deploy whose new
/// version fails its health check is rolled back by heal (the service's
/// health fraction drops below 1; the rule's step is `op: rollback`);
/// then one replica saturates its CPU, heal finds the service one replica
/// short (`spare_replicas` at 0.5 core a replica: HPA's arithmetic) and
/// scales it to the runbook's ceiling of 3, verified once no replica is
/// missing; when the load is gone the service has 2 spare and heal scales
/// it back to 1, verified too. Every action on the real engine, every
/// decision heal's.
#[test]
fn heal_watch_rolls_back_a_bad_swarm_deploy_and_scales_the_service_out_and_in() {
    let _one = one_at_a_time();
    assert_engine();
    let pid = std::process::id();
    let image = format!("heal-watch-test:{pid}-svc");
    let service = format!("heal-w-svc-{pid}");
    lab_image(&image);
    let _swarm = SwarmGuard::ensure();
    let mut cleanup = Cleanup {
        container: None,
        service: Some(service.clone()),
        image: image.clone(),
        heal: None,
    };
    let mut create: Vec<String> = [
        "docker",
        "service",
        "create",
        "--detach",
        "--name",
        &service,
        "--replicas",
        "1",
        "--update-parallelism",
        "1",
        "--update-failure-action",
        "pause",
        "--update-monitor",
        "5s",
        // The lab, PID 1, ignores SIGTERM: a removed task is killed after
        // this, not Docker's default 10 s.
        "--stop-grace-period",
        "3s",
        // A network, so that each task has an address on docker_gwbridge.
        "--publish",
        "target=8080",
        &image,
    ]
    .map(String::from)
    .to_vec();
    create.extend(swarm_args(None));
    run(&create.iter().map(String::as_str).collect::<Vec<_>>());
    serving_tasks(&service, 1, Duration::from_secs(60));

    let dir = tempfile::tempdir().unwrap();
    let select = format!("com.docker.swarm.service.name={service}");
    std::fs::write(
        dir.path().join("swarm.yaml"),
        format!(
            "# Hard limits only (the adaptive part never warms up): these
# values mean the same on every service.
signals:
  - name: svc_healthy
    docker: {{metric: healthy, per: service, label: {select}}}
    detector: {{direction: down, limit_below: 0.99, warmup: 1000000}}
  - name: svc_spare
    docker: {{metric: spare_replicas, per: service, cpu_per_replica: 0.5, label: {select}}}
    detector: {{direction: both, limit_below: -0.5, limit_above: 1.5, warmup: 1000000}}
  - name: svc_replicas
    docker: {{metric: replicas, per: service, label: {select}}}
rules:
  - name: bad-deploy
    when: {{signal: svc_healthy, direction: down, for: 0s}}
    then:
      - {{action: docker, op: rollback, target: \"service/{{{{service}}}}\", timeout: 90s}}
    verify: {{wait: 15s, recovered_when: {{value_above: 0.99}}}}
  - name: scale-out
    when: {{signal: svc_spare, direction: down, for: 3s}}
    then:
      - {{action: docker, op: scale, target: \"service/{{{{service}}}}\", replicas: 3, timeout: 60s}}
    verify: {{wait: 10s, recovered_when: {{value_above: -0.5}}}}
  - name: scale-in
    when: {{signal: svc_spare, direction: up, for: 10s}}
    then:
      - {{action: docker, op: scale, target: \"service/{{{{service}}}}\", replicas: 1, timeout: 60s}}
    verify: {{wait: 15s, recovered_when: {{value_below: 0.5}}}}
"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("heal.log");
    cleanup.heal = Some(watch(dir.path(), port, &log));
    // The service's replica count is a series of its own.
    let metrics = || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let start = Instant::now();
    while !metrics().contains("heal_series_live{signal=\"svc_replicas\"} 1") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no svc_replicas series:\n{}\n{}",
            metrics(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));

    // 1. The bad deploy: every health check of the new version fails.
    let good = swarm_args(None);
    let bad = swarm_args(Some("errors:1.0"));
    let mut update: Vec<String> = ["docker", "service", "update", "--detach", "--args"]
        .map(String::from)
        .to_vec();
    update.push(bad.join(" "));
    update.push(service.clone());
    run(&update.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(service_state(&service).1, bad);
    let heal_log = wait_log(&log, "rule=bad-deploy", Duration::from_secs(60));
    assert!(heal_log.contains("incident opened"), "{heal_log}");
    let heal_log = wait_log(
        &log,
        &format!("summary=rollback service/{service}"),
        Duration::from_secs(90),
    );
    assert!(
        heal_log.contains("kind=\"docker\" outcome=\"ok\""),
        "{heal_log}"
    );
    assert_eq!(
        service_state(&service).1,
        good,
        "rolled back to the good args"
    );
    let heal_log = wait_log(
        &log,
        "incident=inc-000001 step=1 outcome=",
        Duration::from_secs(60),
    );
    assert!(
        heal_log.contains("incident=inc-000001 step=1 outcome=\"recovered\""),
        "{heal_log}"
    );

    // 2. Load: the one replica burns a core; at 0.5 core a replica the
    // service is one short. heal scales it to 3, no further.
    let one = serving_tasks(&service, 1, Duration::from_secs(60));
    assert_eq!(running_tasks(&service), 1);
    post(&one[0], "/fault/cpu?threads=1");
    let heal_log = wait_log(
        &log,
        &format!("summary=scale service/{service}"),
        Duration::from_secs(60),
    );
    assert!(heal_log.contains("rule=scale-out"), "{heal_log}");
    assert_eq!(service_state(&service).0, 3);
    let verified = wait_log(
        &log,
        "incident=inc-000002 step=1 outcome=",
        Duration::from_secs(60),
    );
    assert!(
        verified.contains("incident=inc-000002 step=1 outcome=\"recovered\""),
        "{verified}"
    );
    assert!(!verified.contains("incident=inc-000003"), "{verified}");
    assert_eq!(service_state(&service).0, 3, "no further than the ceiling");

    // 3. The load ends; two replicas are spare, and heal scales back to 1.
    for a in serving_tasks(&service, 3, Duration::from_secs(60)) {
        post(&a, "/fault/clear");
    }
    let heal_log = wait_log(&log, "rule=scale-in", Duration::from_secs(60));
    assert!(heal_log.contains("incident=inc-000003"), "{heal_log}");
    let verified = wait_log(
        &log,
        "incident=inc-000003 step=1 outcome=",
        Duration::from_secs(60),
    );
    assert!(
        verified.contains("incident=inc-000003 step=1 outcome=\"recovered\""),
        "{verified}"
    );
    assert_eq!(service_state(&service).0, 1);
    serving_tasks(&service, 1, Duration::from_secs(60));
}
