//! The Docker executor on the real engine (Docker Engine on
//! /var/run/docker.sock, a single-node Swarm for the service tests).
//!
//! No image can be pulled: the image is made here, by `docker import` of a
//! root file system holding `heal-lab` and the shared libraries `ldd` says
//! it links. The services are real `heal-lab service` processes in real
//! containers, crashed, hung and leaking through their fault API; heal's
//! executor restarts them through [`Executors::perform`], the one entry the
//! act stage uses. The Swarm test gets a bad deploy (the new version's
//! health check fails) and rolls it back, scales within the step's limits,
//! and forces a redeploy.
//!
//! These tests fail, never skip, when the engine is not reachable: CI
//! checks `docker info` first (`.ci/run`). The swarm is initialised if it
//! was inactive and left again at the end, so the engine is left as found.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, HealthConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum, TaskSpec,
    TaskSpecContainerSpec,
};
use bollard::query_parameters::{CreateContainerOptions, UpdateServiceOptions};
use executors::docker::{DockerClient, DEFAULT_SOCKET};
use executors::{EnvLookup, Executors, RenderedAction};
use remediate::runbook::DockerOp;

const SECOND_NS: i64 = 1_000_000_000;

fn env() -> EnvLookup {
    Arc::new(|name: &str| match name {
        "PATH" => std::env::var("PATH").ok(),
        _ => None,
    })
}

/// The engine, or a loud failure.
async fn engine() -> DockerClient {
    let client = DockerClient::connect(DEFAULT_SOCKET).unwrap_or_else(|e| {
        panic!("Docker Engine is not reachable ({e}): these tests need it and never skip")
    });
    if let Err(e) = client.ping().await {
        panic!("Docker Engine is not reachable ({e}): these tests need it and never skip");
    }
    client
}

fn executors(client: &DockerClient) -> Executors {
    Executors::new(env(), Arc::new(stdx::SystemClock)).with_docker(client.clone())
}

/// Runs a program (argv, no shell); its stdout, or a panic with stderr.
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

/// `heal-lab`, beside the test binary's directory (target/debug).
fn heal_lab() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("heal-lab");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p lab` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The lab image: `/heal-lab` and what it links (`lab::image`), tagged
/// with a hash of the binary; imported when no image of that binary exists
/// yet (older `heal-lab-test` images are removed then, so runs do not pile
/// them up).
fn lab_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        lab::image::of_binary(&heal_lab(), &[], "heal-lab-test").expect("the lab image")
    })
}

/// The lab's health check, in exec form (the image has no shell).
fn health() -> HealthConfig {
    HealthConfig {
        test: Some(
            [
                "CMD",
                "/heal-lab",
                "probe",
                "--addr",
                "127.0.0.1:8080",
                "--timeout-ms",
                "500",
            ]
            .map(String::from)
            .to_vec(),
        ),
        interval: Some(SECOND_NS),
        timeout: Some(2 * SECOND_NS),
        retries: Some(2),
        start_period: Some(SECOND_NS),
        ..Default::default()
    }
}

fn service_args(fault: Option<&str>) -> Vec<String> {
    let mut a = [
        "service",
        "--name",
        "web",
        "--port",
        "8080",
        "--addr",
        "0.0.0.0",
        "--mem-limit-mb",
        "64",
    ]
    .map(String::from)
    .to_vec();
    if let Some(f) = fault {
        a.push("--fault".into());
        a.push(f.into());
    }
    a
}

/// Removes the containers and services it names when dropped, test
/// failed or not.
struct Cleanup {
    containers: Vec<String>,
    services: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for s in &self.services {
            let _ = Command::new("docker").args(["service", "rm", s]).output();
        }
    }
}

async fn lab_container(client: &DockerClient, name: &str, label: &str) {
    let body = ContainerCreateBody {
        image: Some(lab_image().to_owned()),
        cmd: Some(service_args(None)),
        labels: Some(HashMap::from([("heal.test".to_owned(), label.to_owned())])),
        healthcheck: Some(health()),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    client
        .api()
        .create_container(Some(opts), body)
        .await
        .unwrap();
    client.api().start_container(name, None).await.unwrap();
}

fn ip_of(container: &str) -> String {
    run(&[
        "docker",
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}",
        container,
    ])
}

async fn http(method: reqwest::Method, url: &str) -> Result<(u16, String), String> {
    let c = reqwest::Client::new();
    let r = c
        .request(method, url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

/// Waits until `probe` holds, or fails naming `what`.
async fn until<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn docker_step(op: DockerOp, target: &str) -> RenderedAction {
    RenderedAction::Docker {
        op,
        target: target.to_owned(),
        signal: None,
        replicas: None,
        image: None,
        rollout: None,
    }
}

fn output(r: &executors::ActionResult) -> serde_json::Value {
    serde_json::from_str(&r.output).unwrap_or_else(|e| panic!("output {:?}: {e}", r.output))
}

/// A lab service in a container crashes, hangs and leaks; each time heal's
/// executor restarts it and it serves again. The states before and after
/// are recorded; dry-run changes nothing; a hostile target reaches no API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_hung_or_leaking_container_is_restarted_and_serves_again() {
    let client = engine().await;
    let ex = executors(&client);
    let pid = std::process::id();
    let name = format!("heal-t-web-{pid}");
    let victim = format!("heal-t-victim-{pid}");
    let _cleanup = Cleanup {
        containers: vec![name.clone(), victim.clone()],
        services: vec![],
    };
    let label = format!("crash-{pid}");
    lab_container(&client, &name, &label).await;
    lab_container(&client, &victim, "victim").await;
    let target = format!("container/{name}");
    let base = format!("http://{}:8080", ip_of(&name));
    until(
        "the lab service answers",
        Duration::from_secs(20),
        || async {
            http(reqwest::Method::GET, &format!("{base}/"))
                .await
                .is_ok_and(|(s, _)| s == 200)
        },
    )
    .await;

    // Crash: the process exits; Docker (no restart policy) leaves it so.
    http(reqwest::Method::POST, &format!("{base}/fault/crash"))
        .await
        .unwrap();
    let c = client.clone();
    until("the container exits", Duration::from_secs(20), || {
        let c = c.clone();
        let name = name.clone();
        async move { c.container(&name).await.is_ok_and(|s| !s.running) }
    })
    .await;

    // Dry-run: nothing happens.
    let r = ex
        .perform(
            &docker_step(DockerOp::Restart, &target),
            Duration::from_secs(30),
            true,
        )
        .await;
    assert!(
        r.ok && r.summary.starts_with("dry run: would restart"),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!client.container(&name).await.unwrap().running);

    // heal restarts it: recorded before (exited) and after (running).
    let r = ex
        .perform(
            &docker_step(DockerOp::Restart, &target),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    let rec = &out["containers"][0];
    assert_eq!(rec["before"]["running"], false, "{out}");
    assert_eq!(rec["before"]["status"], "exited", "{out}");
    assert_eq!(rec["after"]["running"], true, "{out}");
    assert_ne!(
        rec["before"]["started_at"], rec["after"]["started_at"],
        "{out}"
    );
    // The container may have a new address after its restart.
    let base = format!("http://{}:8080", ip_of(&name));
    until(
        "serving again after the crash",
        Duration::from_secs(20),
        || async {
            http(reqwest::Method::GET, &format!("{base}/"))
                .await
                .is_ok_and(|(s, _)| s == 200)
        },
    )
    .await;

    // Hang: `/` and `/healthz` block; Docker marks it unhealthy but, with
    // no orchestrator, does nothing about it. heal restarts it, chosen by
    // label selector this time.
    http(reqwest::Method::POST, &format!("{base}/fault/hang"))
        .await
        .unwrap();
    let c = client.clone();
    until(
        "the container is unhealthy",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            let name = name.clone();
            async move {
                c.container(&name)
                    .await
                    .is_ok_and(|s| s.health == "unhealthy")
            }
        },
    )
    .await;
    let selector = format!("label/heal.test={label}");
    let r = ex
        .perform(
            &docker_step(DockerOp::Restart, &selector),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(
        out["containers"].as_array().unwrap().len(),
        1,
        "only the labelled one: {out}"
    );
    assert_eq!(
        out["containers"][0]["before"]["health"], "unhealthy",
        "{out}"
    );
    let base = format!("http://{}:8080", ip_of(&name));
    let c = client.clone();
    until(
        "healthy again after the hang",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            let name = name.clone();
            async move {
                c.container(&name)
                    .await
                    .is_ok_and(|s| s.health == "healthy")
            }
        },
    )
    .await;
    assert_eq!(
        http(reqwest::Method::GET, &format!("{base}/"))
            .await
            .unwrap()
            .0,
        200
    );

    // Leak: memory grows until the service kills itself at 64 MiB (as the
    // OOM killer would); stopped, then started again by heal.
    http(
        reqwest::Method::POST,
        &format!("{base}/fault/leak?mb_per_s=64"),
    )
    .await
    .unwrap();
    let c = client.clone();
    until(
        "the leaking container dies",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            let name = name.clone();
            async move { c.container(&name).await.is_ok_and(|s| !s.running) }
        },
    )
    .await;
    let r = ex
        .perform(
            &docker_step(DockerOp::Start, &target),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let base = format!("http://{}:8080", ip_of(&name));
    until(
        "serving again after the leak",
        Duration::from_secs(20),
        || async {
            http(reqwest::Method::GET, &format!("{base}/"))
                .await
                .is_ok_and(|(s, _)| s == 200)
        },
    )
    .await;

    // Kill with a signal. The lab runs as PID 1, which the kernel spares
    // from signals it installed no handler for: SIGTERM does nothing, and
    // the check after the call says so (a final failure, not a success
    // on the API's word). SIGKILL ends it; stopping it again is already
    // what was asked.
    let kill = |signal: &str| RenderedAction::Docker {
        op: DockerOp::Kill,
        target: target.clone(),
        signal: Some(signal.into()),
        replicas: None,
        image: None,
        rollout: None,
    };
    let r = ex
        .perform(&kill("SIGTERM"), Duration::from_secs(3), false)
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert!(r.summary.ends_with("(not as asked)"), "{r:?}");
    assert_eq!(
        output(&r)["containers"][0]["after"]["running"],
        true,
        "{r:?}"
    );
    let r = ex
        .perform(&kill("SIGKILL"), Duration::from_secs(30), false)
        .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        output(&r)["containers"][0]["after"]["running"],
        false,
        "{r:?}"
    );
    let r = ex
        .perform(
            &docker_step(DockerOp::Stop, &target),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(
        r.ok,
        "stopping a stopped container is what was asked: {r:?}"
    );

    // A hostile target (a label value that would walk the API's paths)
    // is refused before any call: the other container still runs.
    let hostile = format!("container/{name}/../{victim}/kill");
    let r = ex
        .perform(
            &docker_step(DockerOp::Kill, &hostile),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert!(r.summary.contains("refusing name"), "{r:?}");
    assert!(client.container(&victim).await.unwrap().running);
    // No such container: a final failure naming the engine's answer.
    let r = ex
        .perform(
            &docker_step(DockerOp::Restart, "container/heal-t-none"),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert!(r.summary.contains("404"), "{r:?}");
}

/// Leaves the swarm at the end if it joined one for the test.
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

/// A Swarm service gets a bad deploy (its new version fails its health
/// check; the engine pauses the update); heal rolls it back to the
/// previous spec. Then heal scales it up within the step's limits and back
/// down, and forces a redeploy. Each result records the spec version,
/// replicas, image, arguments and task states before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_swarm_deploy_is_rolled_back_the_service_scales_and_its_node_drains() {
    let client = engine().await;
    let ex = executors(&client);
    let image = lab_image();
    let _swarm = SwarmGuard::ensure();
    let name = format!("heal-t-svc-{}", std::process::id());
    let _cleanup = Cleanup {
        containers: vec![],
        services: vec![name.clone()],
    };
    let spec = |args: Vec<String>| ServiceSpec {
        name: Some(name.clone()),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_owned()),
                args: Some(args),
                health_check: Some(health()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
            monitor: Some(5 * SECOND_NS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let good = service_args(None);
    client
        .api()
        .create_service(spec(good.clone()), None)
        .await
        .unwrap();
    let target = format!("service/{name}");
    let c = client.clone();
    until("the service runs", Duration::from_secs(60), || {
        let c = c.clone();
        let name = name.clone();
        async move {
            c.service(&name)
                .await
                .is_ok_and(|s| s.tasks.get("running") == Some(&1) && s.tasks.len() == 1)
        }
    })
    .await;

    // The bad deploy: every health check of the new version fails.
    let version = client.service(&name).await.unwrap().version;
    let bad = service_args(Some("errors:1.0"));
    client
        .api()
        .update_service(
            &name,
            spec(bad.clone()),
            UpdateServiceOptions {
                version: i32::try_from(version).unwrap(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let c = client.clone();
    until(
        "the engine pauses the bad update",
        Duration::from_secs(90),
        || {
            let c = c.clone();
            let name = name.clone();
            async move { c.service(&name).await.is_ok_and(|s| s.update == "paused") }
        },
    )
    .await;
    let before = client.service(&name).await.unwrap();
    assert_eq!(before.args, bad);

    // Dry-run first: the spec stays.
    let r = ex
        .perform(
            &docker_step(DockerOp::Rollback, &target),
            Duration::from_secs(90),
            true,
        )
        .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(client.service(&name).await.unwrap().version, before.version);

    let r = ex
        .perform(
            &docker_step(DockerOp::Rollback, &target),
            Duration::from_secs(90),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(out["before"]["args"], serde_json::json!(bad), "{out}");
    assert_eq!(out["after"]["args"], serde_json::json!(good), "{out}");
    assert_eq!(out["after"]["update"], "rollback_completed", "{out}");
    assert_eq!(
        out["after"]["tasks"],
        serde_json::json!({"running": 1}),
        "{out}"
    );
    assert!(
        out["after"]["version"].as_u64() > out["before"]["version"].as_u64(),
        "{out}"
    );

    // Scale up, within the step's limit, then back down; the old
    // `scale` kind on a docker/ target goes the same way.
    let up = RenderedAction::Docker {
        op: DockerOp::Scale,
        target: target.clone(),
        signal: None,
        replicas: Some(3),
        image: None,
        rollout: None,
    };
    let r = ex.perform(&up, Duration::from_secs(90), false).await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(out["before"]["replicas"], 1, "{out}");
    assert_eq!(out["after"]["replicas"], 3, "{out}");
    assert_eq!(
        out["after"]["tasks"],
        serde_json::json!({"running": 3}),
        "{out}"
    );
    let too_many = RenderedAction::Docker {
        op: DockerOp::Scale,
        target: target.clone(),
        signal: None,
        replicas: Some(1000),
        image: None,
        rollout: None,
    };
    let r = ex.perform(&too_many, Duration::from_secs(10), false).await;
    assert!(
        !r.ok && !r.retryable && r.summary.contains("refusing 1000 replicas"),
        "{r:?}"
    );
    assert_eq!(client.service(&name).await.unwrap().replicas, Some(3));
    let down = RenderedAction::Scale {
        target: format!("docker/{target}"),
        replicas: 1,
    };
    let r = ex.perform(&down, Duration::from_secs(90), false).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(
        output(&r)["after"]["tasks"],
        serde_json::json!({"running": 1}),
        "{r:?}"
    );

    // A forced redeploy: same spec, new tasks, a new version.
    let r = ex
        .perform(
            &docker_step(DockerOp::Redeploy, &target),
            Duration::from_secs(90),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(out["after"]["args"], serde_json::json!(good), "{out}");
    assert!(
        out["after"]["version"].as_u64() > out["before"]["version"].as_u64(),
        "{out}"
    );

    // A rolling update to a new image, health-gated batch by batch: it
    // completes. Then one to an image the engine cannot run: the engine
    // rolls the service back, and the step says so.
    let v2 = format!("heal-lab-test:v2-{}", std::process::id());
    run(&["docker", "tag", image, &v2]);
    let _untag = Untag(v2.clone());
    let rollout = remediate::runbook::Rollout {
        parallelism: 1,
        monitor: remediate::Duration::from_secs(3),
        ..Default::default()
    };
    let update = |image: &str| RenderedAction::Docker {
        op: DockerOp::Update,
        target: target.clone(),
        signal: None,
        replicas: None,
        image: Some(image.to_owned()),
        rollout: Some(rollout.clone()),
    };
    let r = ex
        .perform(&update(&v2), Duration::from_secs(90), false)
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(out["after"]["image"], v2.as_str(), "{out}");
    assert_eq!(out["after"]["update"], "completed", "{out}");
    assert!(
        r.summary.starts_with(&format!("update {target} to {v2}")),
        "{r:?}"
    );
    let missing = format!("heal-lab-test:missing-{}", std::process::id());
    let r = ex
        .perform(&update(&missing), Duration::from_secs(120), false)
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    assert!(r.summary.contains("rollback_completed"), "{r:?}");
    let s = client.service(&name).await.unwrap();
    assert_eq!(s.image, v2, "rolled back to the previous image: {s:?}");

    // Drain the node: its task stops there (with no other node to take
    // it, it waits pending); activate it and the task runs again.
    let node = run(&["docker", "info", "--format", "{{.Swarm.NodeID}}"]);
    let node = node.trim().to_owned();
    let _active = ActivateOnDrop(node.clone());
    let c = client.clone();
    let n = node.clone();
    until(
        "the node to run the service's task",
        Duration::from_secs(60),
        || {
            let c = c.clone();
            let n = n.clone();
            async move {
                c.node(&n)
                    .await
                    .is_ok_and(|s| s.tasks.contains_key("running"))
            }
        },
    )
    .await;
    let r = ex
        .perform(
            &docker_step(DockerOp::Drain, &format!("node/{node}")),
            Duration::from_secs(90),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    let out = output(&r);
    assert_eq!(out["before"]["availability"], "active", "{out}");
    assert_eq!(out["after"]["availability"], "drain", "{out}");
    assert!(
        out["before"]["tasks"]["running"].as_u64() >= Some(1),
        "{out}"
    );
    assert!(out["after"]["tasks"].get("running").is_none(), "{out}");
    let s = client.service(&name).await.unwrap();
    assert!(!s.tasks.contains_key("running"), "{s:?}");
    let r = ex
        .perform(
            &docker_step(DockerOp::Activate, &format!("node/{node}")),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    assert_eq!(output(&r)["after"]["availability"], "active");
    let c = client.clone();
    until("the task runs again", Duration::from_secs(60), || {
        let c = c.clone();
        let name = name.clone();
        async move {
            c.service(&name)
                .await
                .is_ok_and(|s| s.tasks.get("running") == Some(&1))
        }
    })
    .await;
    // A node target is checked like the others, and fits node operations
    // only.
    let r = ex
        .perform(
            &docker_step(DockerOp::Drain, "node/x/../../v1.41/nodes/y"),
            Duration::from_secs(5),
            false,
        )
        .await;
    assert!(!r.ok && !r.retryable, "{r:?}");
    let r = ex
        .perform(
            &docker_step(DockerOp::Drain, &target),
            Duration::from_secs(5),
            false,
        )
        .await;
    assert!(
        !r.ok && r.summary.contains("drain takes node/NAME"),
        "{r:?}"
    );
}

/// Removes an image tag when dropped.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// Makes a drained node active again whatever happened.
struct ActivateOnDrop(String);

impl Drop for ActivateOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["node", "update", "--availability", "active", &self.0])
            .output();
    }
}

/// Docker as a source: discovery finds the labelled container with its
/// labels; the events stream reports, as they happen, its health turning
/// healthy, its death (with the exit code) when it crashes, its restart,
/// and a kernel OOM kill under a memory limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_reports_death_health_restart_and_oom_per_target() {
    use ingest::docker::{discover, run_events, DockerSignal};
    let client = engine().await;
    let ex = executors(&client);
    let pid = std::process::id();
    let name = format!("heal-t-events-{pid}");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        services: vec![],
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<DockerSignal>(64);
    let stop = tokio_util::sync::CancellationToken::new();
    let api = client.api().clone();
    let source = {
        let stop = stop.clone();
        tokio::spawn(async move { run_events(&api, tx, stop).await })
    };
    // Let the stream subscribe before anything happens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let label = format!("events-{pid}");
    // A memory limit the leak fault runs into before its own limit.
    let body = ContainerCreateBody {
        image: Some(lab_image().to_owned()),
        cmd: Some(
            [
                "service",
                "--name",
                "web",
                "--port",
                "8080",
                "--addr",
                "0.0.0.0",
                "--mem-limit-mb",
                "512",
            ]
            .map(String::from)
            .to_vec(),
        ),
        labels: Some(HashMap::from([
            ("heal.test".to_owned(), label.clone()),
            ("com.docker.compose.service".to_owned(), "web".to_owned()),
        ])),
        healthcheck: Some(health()),
        host_config: Some(bollard::models::HostConfig {
            memory: Some(48 * 1024 * 1024),
            memory_swap: Some(48 * 1024 * 1024),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    client
        .api()
        .create_container(Some(opts), body)
        .await
        .unwrap();
    client.api().start_container(&name, None).await.unwrap();

    let found = discover(client.api(), Some(&format!("heal.test={label}")))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].labels["container"], name);
    assert_eq!(found[0].labels["compose_service"], "web");
    assert_eq!(found[0].labels["state"], "running");

    let mut seen: Vec<DockerSignal> = Vec::new();
    async fn next_of(
        rx: &mut tokio::sync::mpsc::Receiver<DockerSignal>,
        seen: &mut Vec<DockerSignal>,
        name: &str,
        signal: &str,
        value: f64,
        what: &str,
    ) -> DockerSignal {
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            let left = limit.saturating_duration_since(Instant::now());
            let s = tokio::time::timeout(left, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} event within 30s; seen {seen:?}"))
                .expect("the source ended");
            let hit = s.labels.get("container").map(String::as_str) == Some(name)
                && s.signal == signal
                && s.value == value;
            seen.push(s.clone());
            if hit {
                return s;
            }
        }
    }
    macro_rules! wait_for {
        ($signal:expr, $value:expr, $what:expr) => {
            next_of(&mut rx, &mut seen, &name, $signal, $value, $what)
        };
    }
    let s = wait_for!("docker_container_up", 1.0, "start").await;
    assert_eq!(s.labels["compose_service"], "web");
    wait_for!("docker_container_healthy", 1.0, "healthy").await;
    let base = format!("http://{}:8080", ip_of(&name));
    http(reqwest::Method::POST, &format!("{base}/fault/crash"))
        .await
        .unwrap();
    let s = wait_for!("docker_container_up", 0.0, "die").await;
    assert_eq!(s.detail, "die exit_code=1");
    // heal restarts it: the start is an event too.
    let r = ex
        .perform(
            &docker_step(DockerOp::Restart, &format!("container/{name}")),
            Duration::from_secs(30),
            false,
        )
        .await;
    assert!(r.ok, "{r:?}");
    wait_for!("docker_container_up", 1.0, "start after the restart").await;
    // The kernel's OOM killer, at the container's 48 MiB.
    let base = format!("http://{}:8080", ip_of(&name));
    http(
        reqwest::Method::POST,
        &format!("{base}/fault/leak?mb_per_s=64"),
    )
    .await
    .unwrap();
    wait_for!("docker_container_oom", 1.0, "oom").await;
    let s = wait_for!("docker_container_up", 0.0, "die after the oom").await;
    assert_eq!(s.detail, "die exit_code=137");
    stop.cancel();
    source.await.unwrap().unwrap();
}
