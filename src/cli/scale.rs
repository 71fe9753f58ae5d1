//! `heal ingest` and `heal detect`: the scale-out roles (see
//! `heal::scale`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use heal::scale::detect;
use heal::scale::ingest as publish;

use super::error::{duration_arg, shutdown_signal, UsageError};

/// `heal ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Brokers, `host:port[,host:port...]`.
    #[arg(long)]
    brokers: String,
    /// The samples topic.
    #[arg(long, default_value = "heal-samples")]
    topic: String,
    /// Directory of YAML runbooks: which signals are watched, and each
    /// one's service label (the key).
    #[arg(long)]
    runbooks: PathBuf,
    /// Replay this recorded dataset (Parquet) in event time.
    #[arg(long, conflicts_with = "synth_series")]
    dataset: Option<PathBuf>,
    /// Or produce synthetic load: this many series of the runbooks' first
    /// signal (`heal bench scale`'s load).
    #[arg(long)]
    synth_series: Option<usize>,
    /// Synthetic load: timestamps per series.
    #[arg(long, default_value_t = 100)]
    synth_steps: usize,
    /// Synthetic load: series per service.
    #[arg(long, default_value_t = 4)]
    synth_replicas: usize,
    /// Synthetic load: seed of the noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// At most this many samples per second (default: as fast as the
    /// broker takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Live: Prometheus base URL, for the runbooks' `query:` and `probe:`
    /// signals. Without --dataset or --synth-series, heal ingest runs the
    /// live sources (the ones heal watch runs) until SIGINT/SIGTERM.
    #[arg(long, conflicts_with_all = ["dataset", "synth_series"])]
    prometheus: Option<String>,
    /// Live: address of heal ingest's `/metrics`, `/healthz`, remote write
    /// in (`POST /api/v1/write`) and Alertmanager's webhook.
    #[arg(long, conflicts_with_all = ["dataset", "synth_series"])]
    listen: Option<std::net::SocketAddr>,
    /// Live: evaluation interval; evaluations happen at multiples of it.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// Live: how far back to back-fill the `query:` signals at start
    /// (produced to the topic first).
    #[arg(long, default_value = "0s")]
    backfill: String,
    /// Live: timeout of one Prometheus query.
    #[arg(long, default_value = "5s")]
    query_timeout: String,
    /// Live: name of an environment variable holding a bearer token for
    /// Prometheus.
    #[arg(long)]
    bearer_token_env: Option<String>,
    /// Live: basic auth for Prometheus (the password from
    /// `HEAL_PROMETHEUS_PASSWORD`).
    #[arg(long)]
    basic_auth_user: Option<String>,
    /// Live: file where the log sources keep their offsets.
    #[arg(long, value_name = "FILE")]
    log_state: Option<PathBuf>,
    /// Live: name of an environment variable holding the bearer token that
    /// remote write and Alertmanager must send.
    #[arg(long)]
    api_token_env: Option<String>,
    /// Live: stop after this long (for demos and tests).
    #[arg(long)]
    run_for: Option<String>,
}

/// `heal detect`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Brokers, `host:port[,host:port...]`.
    #[arg(long)]
    brokers: String,
    /// Directory of YAML runbooks: the signals and their detectors.
    #[arg(long)]
    runbooks: PathBuf,
    /// The consumer group the workers share.
    #[arg(long, default_value = "heal-detect")]
    group: String,
    /// The samples topic.
    #[arg(long, default_value = "heal-samples")]
    samples: String,
    /// The scores topic (keyed by group of services, for `heal remediate`).
    #[arg(long, default_value = "heal-scores")]
    scores: String,
    /// The changelog topic (as many partitions as the samples topic).
    #[arg(long, default_value = "heal-detect-changelog")]
    changelog: String,
    /// Keep no changelog: a worker taking a partition over re-warms its
    /// detectors from nothing.
    #[arg(long)]
    no_changelog: bool,
    /// This worker's name (default: host name and process id).
    #[arg(long)]
    member: Option<String>,
    /// Longest time between checkpoints (states written, offsets
    /// committed).
    #[arg(long, default_value = "1s")]
    checkpoint_every: String,
    /// The group session: a worker silent this long loses its partitions.
    #[arg(long, default_value = "10s")]
    session_timeout: String,
    /// Share the partitions by leases in this PostgreSQL database
    /// (`postgres://...`) instead of the broker's consumer group: for a
    /// broker whose group coordinator does not reassign a dead member's
    /// partitions (tansu 0.6). The lease lasts `--session-timeout`.
    #[arg(long, value_name = "URL")]
    leases: Option<String>,
}

/// `heal remediate`.
#[derive(Debug, clap::Args)]
pub struct RemediateArgs {
    /// Brokers, `host:port[,host:port...]`.
    #[arg(long)]
    brokers: String,
    /// Directory of YAML runbooks: the rules and their guards.
    #[arg(long)]
    runbooks: PathBuf,
    /// PostgreSQL (`postgres://...`): the leases, the fences and the
    /// action journal the members share.
    #[arg(long, value_name = "URL")]
    db: String,
    /// The group the members share.
    #[arg(long, default_value = "heal-remediate")]
    group: String,
    /// The scores topic.
    #[arg(long, default_value = "heal-scores")]
    scores: String,
    /// This member's name (default: host name and process id).
    #[arg(long)]
    member: Option<String>,
    /// A member silent this long loses its partitions (its leases).
    #[arg(long, default_value = "10s")]
    session_timeout: String,
    /// Longest time between commits of the offsets read.
    #[arg(long, default_value = "1s")]
    commit_every: String,
    /// Perform the steps the guards allow. Without it every step is
    /// planned in dry-run and nothing begins.
    #[arg(long)]
    execute: bool,
}

fn member_name(member: &Option<String>) -> String {
    member.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// One JSON line per event, for people and for the tests.
fn print_event(event: &impl serde::Serialize) {
    if let Ok(line) = serde_json::to_string(event) {
        println!("{line}");
    }
}

/// A flag set by SIGINT/SIGTERM, for the roles' synchronous loops.
fn shutdown_flag() -> Arc<AtomicBool> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a signal runtime");
        rt.block_on(shutdown_signal());
        flag.store(true, Ordering::Relaxed);
    });
    shutdown
}

pub fn run_remediate(a: RemediateArgs) -> anyhow::Result<()> {
    let runbooks = load_runbooks(&a.runbooks)?;
    let opts = heal::scale::remediate::RemediateOptions {
        brokers: a.brokers.clone(),
        group: a.group.clone(),
        scores: a.scores.clone(),
        member: member_name(&a.member),
        db: a.db.clone(),
        session_timeout: duration_arg("session-timeout", &a.session_timeout)?,
        commit_every: duration_arg("commit-every", &a.commit_every)?,
        execute: a.execute,
    };
    let clock: Arc<dyn stdx::Clock> = Arc::new(stdx::SystemClock);
    // Webhook secrets and the programs' PATH come from heal's environment.
    let env: executors::EnvLookup = Arc::new(|name: &str| std::env::var(name).ok());
    let executors = executors::Executors::new(env, clock.clone());
    let shutdown = shutdown_flag();
    let stats =
        heal::scale::remediate::run(opts, runbooks, executors, clock, &shutdown, print_event)?;
    print_event(&serde_json::json!({ "event": "stopped", "stats": stats }));
    Ok(())
}

fn load_runbooks(dir: &PathBuf) -> anyhow::Result<remediate::RunbookSet> {
    remediate::RunbookSet::load_dir(dir).map_err(|e| UsageError(e.to_string()).into())
}

pub fn run_ingest(a: IngestArgs) -> anyhow::Result<()> {
    let runbooks = load_runbooks(&a.runbooks)?;
    let published = match (&a.dataset, a.synth_series) {
        (Some(path), None) => {
            let ds = ingest::Dataset::read(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut samples: Vec<(ingest::Labels, i64, f64)> = ds
                .series
                .iter()
                .flat_map(|s| {
                    s.samples
                        .iter()
                        .map(|x| (s.labels.clone(), x.ts_ms, x.value))
                })
                .collect();
            // Event time; a series' samples stay in order (stable sort).
            samples.sort_by_key(|s| s.1);
            ingest_samples(&a, &runbooks, samples)?
        }
        (None, Some(series)) => {
            let signal = runbooks
                .signals()
                .first()
                .map(|s| s.name.clone())
                .ok_or_else(|| {
                    UsageError(format!(
                        "the runbooks in {} watch no signal",
                        a.runbooks.display()
                    ))
                })?;
            let synth = publish::Synthetic {
                signal,
                series,
                replicas: a.synth_replicas,
                steps: a.synth_steps,
                start_ms: ingest::SYNTH_START_MS,
                step_ms: 10_000,
                seed: a.seed,
            };
            ingest_samples(&a, &runbooks, synth.samples())?
        }
        (None, None) => return run_live(a, runbooks),
        (Some(_), Some(_)) => unreachable!("clap refuses --dataset with --synth-series"),
    };
    println!("{}", serde_json::to_string(&published)?);
    Ok(())
}

/// `heal ingest` from the live sources until SIGINT/SIGTERM (or
/// `--run-for`).
fn run_live(a: IngestArgs, runbooks: remediate::RunbookSet) -> anyhow::Result<()> {
    let interval = duration_arg("interval", &a.interval)?;
    if interval.is_zero() {
        return Err(UsageError("--interval must be more than 0s".into()).into());
    }
    let prometheus = a
        .prometheus
        .as_deref()
        .map(|url| {
            super::watch::prometheus_config(
                url,
                duration_arg("query-timeout", &a.query_timeout)?,
                a.bearer_token_env.as_deref(),
                a.basic_auth_user.as_deref(),
            )
        })
        .transpose()?;
    let run_for = a
        .run_for
        .as_deref()
        .map(|v| duration_arg("run-for", v))
        .transpose()?;
    let cfg = publish::LiveIngest {
        brokers: a.brokers.clone(),
        topic: a.topic.clone(),
        runbooks,
        prometheus,
        interval,
        backfill: duration_arg("backfill", &a.backfill)?,
        log_state: a.log_state.clone(),
        api_token: super::error::api_token(a.api_token_env.as_deref())?,
        clock: Arc::new(stdx::SystemClock),
    };
    let stats = super::error::runtime()?.block_on(async {
        let listener = match a.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| UsageError(format!("listening on {addr}: {e}")))?,
            ),
            None => None,
        };
        if let Some(l) = &listener {
            eprintln!(
                "heal ingest: producing to {} on {}; metrics and remote write on http://{}",
                a.topic,
                a.brokers,
                l.local_addr()?
            );
        }
        let stop = super::error::shutdown_or_after(run_for);
        anyhow::Ok(publish::run_live(cfg, listener, stop).await?)
    })?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

fn ingest_samples(
    a: &IngestArgs,
    runbooks: &remediate::RunbookSet,
    samples: impl IntoIterator<Item = (ingest::Labels, i64, f64)>,
) -> anyhow::Result<publish::Published> {
    Ok(publish::publish(
        &a.brokers, &a.topic, runbooks, samples, a.rate,
    )?)
}

pub fn run_detect(a: DetectArgs) -> anyhow::Result<()> {
    let runbooks = load_runbooks(&a.runbooks)?;
    // Said at start rather than found out: a worker scores each sample as
    // it comes, so a signal's replicas are not compared with each other.
    for s in runbooks.signals().iter().filter(|s| s.peer.is_some()) {
        eprintln!(
            "heal detect: signal {:?} has `peer:`, which the scale-out workers do not do yet: its series are scored each on its own (heal watch compares them)",
            s.name
        );
    }
    let member = member_name(&a.member);
    let opts = detect::DetectOptions {
        brokers: a.brokers.clone(),
        group: a.group.clone(),
        samples: a.samples.clone(),
        scores: a.scores.clone(),
        changelog: (!a.no_changelog).then(|| a.changelog.clone()),
        member,
        checkpoint_every: duration_arg("checkpoint-every", &a.checkpoint_every)?,
        session_timeout: duration_arg("session-timeout", &a.session_timeout)?,
        membership: match &a.leases {
            Some(url) => detect::Membership::Leases { url: url.clone() },
            None => detect::Membership::Group,
        },
    };
    let shutdown = shutdown_flag();
    let stats = detect::run(opts, runbooks, &shutdown, print_event)?;
    print_event(&serde_json::json!({ "event": "stopped", "stats": stats }));
    Ok(())
}
