//! The examples README.md gives for `heal supervise` and `heal agent`,
//! checked against the code that reads them: the `services.yaml` is loaded
//! by the supervisor's loader, the agent request body is signed and
//! admitted by an agent running README's `agent.yaml`.

use remediate::Duration;
use std::path::{Path, PathBuf};

use daemons::agent::{admit, AgentConfig, Verifier};
use daemons::supervisor::SupervisorConfig;

/// The text of README.md's fenced block whose info string is `info`
/// (```` ```yaml services.yaml ````).
fn block(info: &str) -> String {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let fence = format!("```{info}\n");
    let start = readme
        .find(&fence)
        .unwrap_or_else(|| panic!("README.md has no block ```{info}"))
        + fence.len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

#[test]
fn the_readme_services_yaml_loads_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, block("yaml services.yaml")).unwrap();
    let config = SupervisorConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "api"]);
    let api = &config.services[1];
    assert_eq!(api.depends_on, ["db"]);
    assert_eq!(api.replicas, 2);
    assert_eq!(api.ports.unwrap().len(), 10);
    assert!(api.haproxy.is_some());
    assert_eq!(api.check.path.as_deref(), Some("/healthz"));
}

#[test]
fn the_readme_agent_request_is_admitted_by_the_readme_agent() {
    let config = AgentConfig::from_yaml(Path::new("agent.yaml"), &block("yaml agent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let key = b"0123456789abcdef0123456789abcdef".to_vec();
    let mut verifier = Verifier::new(key.clone(), Duration::from_secs(30));
    let body = block("json agent-request");
    let now = 1_800_000_000;
    let timestamp = now.to_string();
    let signature = executors::agent::sign(&key, &timestamp, body.as_bytes());
    let (req, exec) = admit(
        &mut verifier,
        &config,
        now,
        Some(&timestamp),
        Some(&signature),
        body.as_bytes(),
    )
    .unwrap_or_else(|(refusal, _)| panic!("refused: {refusal:?}"));
    assert_eq!(req.action, "restart-api");
    assert_eq!(
        exec.argv,
        ["/usr/bin/systemctl", "restart", "api@api-0.service"]
    );
}
