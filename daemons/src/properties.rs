//! Property tests of the daemons' parsers of untrusted input: `heal agent
//! --config` and `heal supervise --config` (YAML), the agent's signed
//! requests and the supervisor control API's bodies. Each feeds mutated
//! valid inputs and garbage and asserts the parser returns (an error is
//! fine) without panicking; see `stdx::fuzz` for seeds and replay.

use std::path::Path;

use stdx::fuzz::{check, garbage, mutated, Rng};

use crate::agent::{admit, AgentConfig, Verifier};
use crate::supervisor::SupervisorConfig;

const AGENT_YAML: &str = r#"key_env: HEAL_AGENT_KEY
audit_log: /tmp/audit.jsonl
actions:
  touch-marker:
    argv: [touch, "/tmp/x/marker-{{name}}"]
    params:
      name: {type: label}
  scale:
    argv: [/usr/local/bin/scale, "--replicas={{n}}", "{{mode}}"]
    params:
      n: {type: integer, min: 1, max: 10}
      mode: {type: one_of, values: [fast, slow]}
    timeout: 5s
"#;

const SUPERVISOR_YAML: &str = "services:
  - name: a
    release: {version: v1, argv: [sleep, \"300\"], env: {PATH: /usr/bin:/bin}}
    restart: {initial: 100ms, max: 200ms}
    ports: 18000-18003
    replicas: 2
  - name: b
    release: {version: v1, argv: [sleep, \"300\"]}
    depends_on: [a]
";

/// Valid text mutated, or garbage, one case in eight.
fn text_case(rng: &mut Rng, base: &str) -> String {
    let bytes = if rng.one_in(8) {
        garbage(rng, 512)
    } else {
        mutated(rng, base.as_bytes(), 8)
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn agent_config_never_panics() {
    check(
        "agent_config",
        3000,
        |rng| text_case(rng, AGENT_YAML),
        |text| {
            let _ = AgentConfig::from_yaml(Path::new("agent.yaml"), text);
        },
    );
}

#[test]
fn supervisor_config_never_panics() {
    SupervisorConfig::from_text(Path::new("services.yaml"), SUPERVISOR_YAML)
        .expect("the base configuration is valid");
    check(
        "supervisor_config",
        3000,
        |rng| text_case(rng, SUPERVISOR_YAML),
        |text| {
            let _ = SupervisorConfig::from_text(Path::new("services.yaml"), text);
        },
    );
}

#[test]
fn signed_agent_requests_never_panic() {
    // Signed with the right key, so that what is mutated reaches the JSON
    // reading and the parameter checks, not only the signature check.
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";
    let base = br#"{"action":"scale","params":{"n":"3","mode":"fast"},"request_id":"r-1"}"#;
    let c = AgentConfig::from_yaml(Path::new("agent.yaml"), AGENT_YAML).expect("the base configuration is valid");
    let mut v = Verifier::new(KEY.to_vec(), remediate::Duration::from_secs(30));
    let mut n = 0i64;
    check(
        "agent_request",
        4000,
        |rng| {
            if rng.one_in(8) {
                garbage(rng, 256)
            } else {
                mutated(rng, base, 6)
            }
        },
        |body| {
            // A fresh timestamp per case: the replay cache would refuse a
            // body seen before.
            n += 1;
            let ts = (1_000_000 + n).to_string();
            let sig = executors::agent::sign(KEY, &ts, body);
            let _ = admit(&mut v, &c, 1_000_000 + n, Some(&ts), Some(&sig), body);
        },
    );
}

#[test]
fn supervisor_api_bodies_never_panic() {
    check(
        "supervisor_api_body",
        4000,
        |rng| {
            let bases: [&[u8]; 3] = [
                br#"{"replicas": 3}"#,
                br#"{"to": "v1"}"#,
                br#"{"version": "v2", "argv": ["sleep", "1"], "env": {"A": "b"}}"#,
            ];
            let base = *rng.pick(&bases);
            mutated(rng, base, 6)
        },
        |bytes| {
            let bytes = axum::body::Bytes::copy_from_slice(bytes);
            crate::supervisor::fuzz_bodies(&bytes);
        },
    );
}
