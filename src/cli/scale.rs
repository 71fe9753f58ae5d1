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
    /// The scores topic (as many partitions as the samples topic).
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
        _ => return Err(UsageError("give --dataset FILE or --synth-series N".into()).into()),
    };
    println!("{}", serde_json::to_string(&published)?);
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
    let member = a.member.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
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
    let stats = detect::run(opts, runbooks, &shutdown, |event| {
        // One JSON line per event, for people and for the tests.
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
    })?;
    println!(
        "{}",
        serde_json::json!({ "event": "stopped", "stats": stats })
    );
    Ok(())
}
