//! `heal agent` end to end: the real binary, real signed HTTP requests over
//! loopback, a real program run (`touch`), the audit log read back.
//!
//! Requests are built by hand (a few lines of HTTP/1.1 over a `TcpStream`)
//! so that tests can send what no well-behaved client would: a wrong key, a
//! replay, a stale timestamp, hostile parameters.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemons::agent::{AuditEvent, AuditRecord};
use executors::agent::{self, ActionRequest, AgentCall};

const KEY: &str = "5f1c0e7a9d2b4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e";

/// A running `heal agent`, killed on drop.
struct Agent {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The configuration the tests use: one action, `touch-marker`, that
/// touches `DIR/work/marker-{{name}}`.
fn config_text(dir: &Path) -> String {
    format!(
        r#"key_file: agent.key
audit_log: audit.jsonl
replay_window: 30s
actions:
  touch-marker:
    argv: [touch, "{}/work/marker-{{{{name}}}}"]
    params:
      name: {{type: label}}
    timeout: 10s
"#,
        dir.display()
    )
}

impl Agent {
    /// An agent with the key in a file.
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("agent.key"), &format!("{KEY}\n"));
        std::fs::write(dir.path().join("agent.yaml"), config_text(dir.path())).unwrap();
        Agent::spawn(dir, &[])
    }

    /// Starts `heal agent` on `DIR/agent.yaml` with extra environment
    /// variables, and waits for the line that says where it listens.
    fn spawn(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Agent {
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["agent", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir.path().join("agent.yaml"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting heal agent");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads stderr to the end, so the agent never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("heal agent did not start; stderr: {seen:?}"));
            if let Some(rest) = line.strip_prefix("heal agent listening on http://") {
                let addr = rest.split('/').next().unwrap();
                break addr.parse().unwrap();
            }
            seen.push(line);
        };
        Agent { child, addr, dir }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join("work").join(format!("marker-{name}"))
    }

    /// Files the agent's programs created.
    fn work_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The audit log, parsed; every line must be a valid record.
    fn audit(&self) -> Vec<AuditRecord> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }

    /// Sends raw headers and body; returns the status and the body.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String) {
        let (status, _, body) = self.exchange(method, path, headers, body);
        (status, body)
    }

    /// Sends raw headers and body; returns the status, the answer's
    /// `X-Heal-Signature` if any, and the body.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, Option<String>, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let signature = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-heal-signature")
                .then(|| value.trim().to_owned())
        });
        (status, signature, body.to_owned())
    }

    /// Signs and posts `req`; returns the status and whether the answer is
    /// signed by the agent for this request (`None`: not signed at all).
    fn post_checking_answer(&self, key: &str, req: &ActionRequest) -> (u16, Option<bool>) {
        let (body, timestamp, signature) = agent::signed_request(key.as_bytes(), now_secs(), req);
        let (status, answer_sig, answer) = self.exchange(
            "POST",
            "/v1/actions",
            &[
                ("X-Heal-Timestamp", timestamp),
                ("X-Heal-Signature", signature.clone()),
            ],
            &body,
        );
        let authentic = answer_sig
            .map(|sig| agent::verify_response(KEY.as_bytes(), &signature, answer.as_bytes(), &sig));
        (status, authentic)
    }

    /// Signs `req` with `key` at `ts` and posts it.
    fn post_signed(&self, key: &str, ts: i64, req: &ActionRequest) -> (u16, String) {
        let (body, timestamp, signature) = agent::signed_request(key.as_bytes(), ts, req);
        self.post_raw(&timestamp, &signature, &body)
    }

    fn post_raw(&self, timestamp: &str, signature: &str, body: &[u8]) -> (u16, String) {
        self.send(
            "POST",
            "/v1/actions",
            &[
                ("X-Heal-Timestamp", timestamp.to_owned()),
                ("X-Heal-Signature", signature.to_owned()),
            ],
            body,
        )
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn touch(name: &str, id: &str) -> ActionRequest {
    ActionRequest {
        action: "touch-marker".into(),
        params: [("name".to_owned(), name.to_owned())].into(),
        request_id: id.into(),
    }
}

fn refused_reasons(records: &[AuditRecord]) -> Vec<&str> {
    records
        .iter()
        .filter(|r| r.event == AuditEvent::Refused)
        .map(|r| r.reason.as_deref().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_key_runs_the_action_and_both_steps_are_audited() {
    let agent = tokio::task::spawn_blocking(Agent::start).await.unwrap();
    let call = AgentCall {
        url: format!("http://{}", agent.addr),
        action: "touch-marker".into(),
        params: [("name".to_owned(), "checkout-1".to_owned())].into(),
        key: KEY.as_bytes().to_vec(),
        timeout: Duration::from_secs(30),
        dry_run: false,
    };
    let r = agent::call(&call, now_secs()).await;
    assert!(r.ok, "{r:?}");
    assert!(r.summary.ends_with(": exit status 0"), "{}", r.summary);
    assert!(agent.marker("checkout-1").exists());
    let audit = agent.audit();
    let events: Vec<AuditEvent> = audit.iter().map(|r| r.event).collect();
    assert_eq!(events, [AuditEvent::Accepted, AuditEvent::Completed]);
    assert_eq!(audit[0].action.as_deref(), Some("touch-marker"));
    assert_eq!(
        audit[0].params,
        Some(BTreeMap::from([(
            "name".to_owned(),
            "checkout-1".to_owned()
        )]))
    );
    let marker = agent.marker("checkout-1").display().to_string();
    assert_eq!(audit[0].argv, Some(vec!["touch".to_owned(), marker]));
    assert_eq!(audit[1].ok, Some(true));
    assert_eq!(audit[1].summary.as_deref(), Some("exit status 0"));
    assert!(
        audit[0].remote.starts_with("127.0.0.1:"),
        "{}",
        audit[0].remote
    );
}

#[test]
fn a_bad_key_is_refused_and_nothing_runs() {
    let agent = Agent::start();
    let (status, body) = agent.post_signed(
        "another key, long enough: 0123456789abcdef",
        now_secs(),
        &touch("x", "r1"),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"refused\":\"bad_signature\""), "{body}");
    // The agent signs nothing for a request it could not authenticate.
    assert_eq!(
        agent.post_checking_answer(
            "another key, long enough: 0123456789abcdef",
            &touch("x", "r0")
        ),
        (401, None)
    );
    // Unsigned, and a signature that is not even hex.
    let (body_bytes, ts, _) = agent::signed_request(KEY.as_bytes(), now_secs(), &touch("x", "r2"));
    assert_eq!(agent.send("POST", "/v1/actions", &[], &body_bytes).0, 401);
    assert_eq!(agent.post_raw(&ts, "not-hex", &body_bytes).0, 401);
    assert!(agent.work_files().is_empty());
    let audit = agent.audit();
    assert_eq!(
        refused_reasons(&audit),
        [
            "bad_signature",
            "bad_signature",
            "unauthenticated",
            "unauthenticated"
        ]
    );
    // An unauthenticated body is not trusted enough to be recorded.
    assert!(audit
        .iter()
        .all(|r| r.action.is_none() && r.params.is_none()));
}

#[test]
fn a_replayed_request_is_refused() {
    let agent = Agent::start();
    let (body, ts, sig) = agent::signed_request(KEY.as_bytes(), now_secs(), &touch("once", "r1"));
    let (status, text) = agent.post_raw(&ts, &sig, &body);
    assert_eq!(status, 200, "{text}");
    std::fs::remove_file(agent.marker("once")).unwrap();
    let (status, text) = agent.post_raw(&ts, &sig, &body);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("\"refused\":\"replayed\""), "{text}");
    assert!(
        !agent.marker("once").exists(),
        "the replay ran the action again"
    );
    let audit = agent.audit();
    let events: Vec<AuditEvent> = audit.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            AuditEvent::Accepted,
            AuditEvent::Completed,
            AuditEvent::Refused
        ]
    );
    assert_eq!(refused_reasons(&audit), ["replayed"]);
}

#[test]
fn a_stale_or_future_timestamp_is_refused() {
    let agent = Agent::start();
    for skew in [-120, 120] {
        let (status, body) = agent.post_signed(KEY, now_secs() + skew, &touch("late", "r1"));
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("\"refused\":\"stale\""), "{body}");
    }
    assert!(agent.work_files().is_empty());
    assert_eq!(refused_reasons(&agent.audit()), ["stale", "stale"]);
}

#[test]
fn hostile_parameters_are_refused_before_anything_runs_and_audited() {
    let agent = Agent::start();
    let hostile = [
        "; rm -rf /",
        "$(id)",
        "`id`",
        "a\nb",
        "../../etc/passwd",
        "-rf",
        "",
    ];
    for (i, value) in hostile.iter().enumerate() {
        let (status, body) = agent.post_signed(KEY, now_secs(), &touch(value, &format!("h{i}")));
        assert_eq!(status, 400, "{value:?}: {body}");
        assert!(body.contains("\"refused\":\"invalid_params\""), "{body}");
    }
    // An authenticated request's refusal is signed for that request.
    assert_eq!(
        agent.post_checking_answer(KEY, &touch("$(id)", "signed")),
        (400, Some(true))
    );
    // Not in the allowlist, an undeclared parameter.
    let mut other = touch("ok", "u1");
    other.action = "rm".into();
    assert_eq!(agent.post_signed(KEY, now_secs(), &other).0, 403);
    let mut extra = touch("ok", "u2");
    extra.params.insert("dir".into(), "/".into());
    assert_eq!(agent.post_signed(KEY, now_secs(), &extra).0, 400);
    assert!(agent.work_files().is_empty(), "{:?}", agent.work_files());
    let audit = agent.audit();
    assert_eq!(audit.len(), hostile.len() + 3);
    for (record, value) in audit.iter().zip(hostile) {
        assert_eq!(record.event, AuditEvent::Refused);
        assert_eq!(record.reason.as_deref(), Some("invalid_params"));
        // Recorded as sent, JSON-escaped: a newline cannot forge a line.
        assert_eq!(record.params.as_ref().unwrap()["name"], value);
    }
    assert_eq!(
        refused_reasons(&audit[hostile.len()..]),
        ["invalid_params", "unknown_action", "invalid_params"]
    );
}

#[test]
fn other_endpoints_are_refused_and_audited() {
    let agent = Agent::start();
    assert_eq!(agent.send("GET", "/v1/actions", &[], b"").0, 404);
    assert_eq!(agent.send("POST", "/run", &[], b"id").0, 404);
    assert_eq!(refused_reasons(&agent.audit()), ["not_found", "not_found"]);
}

#[test]
fn a_bad_configuration_or_an_exposed_key_file_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "key_env: HEAL_TEST_AGENT_KEY\naudit_log: a.jsonl\nactions:\n  x:\n    argv: [sh, -c, \"{{cmd}}\"]\n",
    )
    .unwrap();
    let run = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(["agent", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env_remove("HEAL_TEST_AGENT_KEY")
            .output()
            .unwrap()
    };
    let o = run(&config);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("agent.yaml:5:12: actions.x.argv[0]: \"sh\" would run a command line"),
        "{err}"
    );
    assert!(
        err.contains("agent.yaml:5:20: actions.x.argv[2]: undeclared parameter \"cmd\""),
        "{err}"
    );
    // A key file others can read.
    std::fs::write(dir.path().join("agent.key"), KEY).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("agent.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&config, config_text(dir.path())).unwrap();
    let o = run(&config);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("readable by group or others (mode 644); run chmod 600 on it"),
        "{err}"
    );
}

#[test]
fn the_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        config_text(dir.path()).replace("key_file: agent.key", "key_env: HEAL_TEST_AGENT_KEY");
    std::fs::write(dir.path().join("agent.yaml"), text).unwrap();
    let agent = Agent::spawn(dir, &[("HEAL_TEST_AGENT_KEY", KEY)]);
    let (status, body) = agent.post_signed(KEY, now_secs(), &touch("env", "e1"));
    assert_eq!(status, 200, "{body}");
    assert!(agent.marker("env").exists());
}

#[test]
fn runbooks_check_and_schema_know_the_agent_action() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        r#"signals: [{name: mem, query: q}]
rules:
  - name: mem-high
    when: {signal: mem}
    then:
      - action: agent
        url: "http://{{instance}}:9465"
        name: touch-marker
        params: {name: "{{service}}"}
        key_env: HEAL_AGENT_KEY
        timeout: 20s
      - action: webhook
        url: "https://hooks.example.com/${env:HOOK_PATH}"
        headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}
        body: {text: "{{service}} still leaking"}
"#,
    )
    .unwrap();
    let heal = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_heal"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = heal(&["runbooks", "check", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ok: 1 file, 1 signal, 1 rule"
    );
    let o = heal(&["runbooks", "schema"]);
    let schema = String::from_utf8_lossy(&o.stdout);
    assert!(
        schema.contains("\"key_env\""),
        "schema lacks the agent action"
    );
    assert!(
        schema.contains("Ask a `heal agent`"),
        "schema lacks the agent docs"
    );
}

/// Both timeouts of a remote action, against a real agent running a real
/// program that would take 30 s (it writes its pid first):
///
/// - the agent's own `timeout` (500 ms) kills the program and answers a
///   timed-out, retryable result;
/// - the client's call timeout (500 ms, the action allowed 30 s) gives up
///   on a slow agent with a timed-out, retryable result: a hung remote
///   action never holds the act stage longer than the step's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_action_timeout_kills_the_program_and_the_client_timeout_holds() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("agent.key"), &format!("{KEY}\n"));
    let script = dir.path().join("stall.sh");
    std::fs::write(&script, "#!/bin/sh\necho $$ > \"$1\"\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pid_file = |name: &str| dir.path().join("work").join(format!("{name}.pid"));
    let config = format!(
        "{}  stall-short:
    argv: [{script}, {short}]
    timeout: 500ms
  stall-long:
    argv: [{script}, {long}]
    timeout: 30s
",
        config_text(dir.path()),
        script = script.display(),
        short = pid_file("short").display(),
        long = pid_file("long").display(),
    );
    std::fs::write(dir.path().join("agent.yaml"), config).unwrap();
    let agent = Agent::spawn(dir, &[]);
    let call = |action: &str, timeout: Duration| AgentCall {
        url: format!("http://{}", agent.addr),
        action: action.into(),
        params: BTreeMap::new(),
        key: KEY.as_bytes().to_vec(),
        timeout,
        dry_run: false,
    };
    let pid_of = |path: PathBuf| -> u32 {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    };
    let running = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
            .unwrap_or(false)
    };

    // The agent's timeout: the client waits up to 20 s, the agent 500 ms.
    let r = agent::call(&call("stall-short", Duration::from_secs(20)), now_secs()).await;
    assert!(!r.ok && r.retryable, "{r:?}");
    assert!(r.summary.contains("timed out after 500ms"), "{}", r.summary);
    // Killed (SIGKILL is sent as the agent answers; the kernel takes a
    // moment to end it): gone within a deadline.
    let pid = pid_of(agent.dir.path().join("work/short.pid"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the timed-out program {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The client's timeout: the agent would wait 30 s, the client 500 ms.
    let r = agent::call(&call("stall-long", Duration::from_millis(500)), now_secs()).await;
    assert!(!r.ok && r.retryable, "{r:?}");
    assert!(
        r.summary.ends_with("timed out after 500ms"),
        "{}",
        r.summary
    );
}
