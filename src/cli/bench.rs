//! `heal bench nab|lab|loghub|docker|storm|churn|chaos|agent|supervise`: the benchmarks (`heal::bench`).

use std::path::PathBuf;

use heal::bench::nab::NabConfig;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Score every series of a NAB-layout directory (`data/<category>/*.csv`
    /// and `labels/combined_windows.json`) online and print the NAB scores.
    Nab(NabArgs),
    /// Time to recovery on the real lab (crash, hang, errors, leak), heal
    /// against monit; actions on a clean run; heal's CPU per evaluation per
    /// 1,000 series. Takes about 25 minutes with the defaults.
    Lab(super::bench_lab::LabArgs),
    /// The log template miner on every system of a Loghub-2k directory
    /// (laid out as `shared/datasets/loghub-dev`), one configuration for
    /// all: GA, PA and FGA against the corrected ground truth, per system
    /// and mean, and lines per second.
    Loghub {
        /// The directory.
        dir: PathBuf,
        /// Timed repetitions per system (the best is kept).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Also leave each system out in turn: every rule and threshold of
        /// the miner chosen again on the other systems, scored on it.
        #[arg(long)]
        cv: bool,
        /// Also flip each rule and threshold in turn: the change of GA and
        /// PA per system.
        #[arg(long)]
        ablation: bool,
        /// Also fill a miner to its caps and print its memory (what one log
        /// source costs at most).
        #[arg(long)]
        memory: bool,
    },
    /// Time to recovery of lab services in containers on the real Docker
    /// Engine (crash, hang, errors, leak), heal against Docker's restart
    /// policy and a Swarm service, same seeded phases; actions on heal's
    /// clean run. About 15 minutes with the defaults.
    Docker(DockerArgs),
    /// An action storm against the guardrails: 10,000 anomalies across 500
    /// services within one minute; checks the limits held and every
    /// suppression has a reason, and measures the decision latency.
    Storm(super::bench_storm::StormArgs),
    /// heal watch's memory while series churn: a test server answering
    /// Prometheus' query API with `--rate` new series every second; prints
    /// heal's resident memory and live/evicted/refused series over time.
    Churn(ChurnArgs),
    /// heal watch --execute against the lab while a seeded fault script
    /// SIGKILLs heal and Prometheus, breaks lab services, churns series and
    /// feeds hostile label values; prints incidents, actions, duplicates,
    /// lost incidents, peak RSS and panics (the last three must be 0).
    Chaos(ChaosArgs),
    /// Root-cause ranking on every fault-injection case of a directory laid
    /// out as `shared/datasets/rca-dev`: AC@1, AC@3, AC@5 and Avg@5 overall,
    /// per system and per fault type, and the time per case.
    Rca(RcaArgs),
    /// The shared action journal on a real PostgreSQL (started by the
    /// bench): members racing to begin the same actions; attempts a
    /// second, begin latency, and keys begun more than once (must be 0).
    Journal {
        /// Member counts, one round each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        members: Vec<usize>,
        /// Keys a round.
        #[arg(long, default_value_t = 2_000)]
        keys: usize,
    },
    /// Scale-out through a real broker (tansu, started by the bench):
    /// `--series` x `--steps` synthetic samples to 1, 2 and 4 `heal detect`
    /// workers; samples a second end to end, each worker's share and CPU
    /// time per sample, consumer lag, the takeover time after a SIGKILL
    /// (`--kill`), duplicates and lost samples (must be 0).
    Scale {
        /// Worker counts, one round each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        workers: Vec<usize>,
        #[arg(long, default_value_t = 100_000)]
        series: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Partitions of each topic.
        #[arg(long, default_value_t = 8)]
        partitions: u32,
        /// The workers' `--checkpoint-every`.
        #[arg(long, default_value = "1s")]
        checkpoint_every: String,
        /// Two more rounds of two workers, one SIGKILLed a quarter of the
        /// way: with the changelog, and without it.
        #[arg(long)]
        kill: bool,
        /// Workers keep no changelog (a takeover re-warms from nothing).
        #[arg(long)]
        no_changelog: bool,
    },
    /// Scores out (`heal watch --remote-write`) into a real Prometheus: the
    /// sink's scores and samples a second end to end at `--series` watched
    /// series, what encoding alone costs, drops (must be 0), and every
    /// series and sample queried back.
    RemoteWrite(RemoteWriteArgs),
    /// Latency of a real `heal agent` on loopback: sequential signed
    /// requests that run `touch`, then as many refused for a bad signature;
    /// prints p50 and p99 of each.
    Agent {
        /// Requests of each kind.
        #[arg(long, default_value_t = 300)]
        requests: usize,
    },
    /// Recovery times of a real `heal supervise` running three lab services
    /// in a dependency chain: `kill -9` of one child to serving again, and
    /// a power cut (every child killed) to the last of the chain serving;
    /// prints median and max. Needs `heal-lab` beside `heal`.
    Supervise {
        /// Rounds of each.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
}

/// Settings shared by `heal bench rca` and `heal diagnose`.
#[derive(Debug, clap::Args)]
pub struct RcaSettingsArgs {
    /// Where the onset comes from: `given` (the case's fault start, as the
    /// papers report) or `detected` (heal finds it in the case's last ten
    /// minutes, as in production).
    #[arg(long, default_value = "given")]
    pub onset: heal::bench::rca::OnsetMode,
    /// Ignore the call graphs of `DIR/topology/`.
    #[arg(long)]
    pub no_topology: bool,
    /// Override a ranking setting, `field=value` (`weights.host=0.5`,
    /// `sides=harmful`, `onset.level_samples=8`); repeatable. For tuning:
    /// report what it changes beside `--cv`.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
}

impl RcaSettingsArgs {
    pub fn settings(&self) -> anyhow::Result<heal::bench::rca::RcaSettings> {
        let mut s = heal::bench::rca::RcaSettings::new();
        s.topology = !self.no_topology;
        for kv in &self.set {
            s.set(kv)?;
        }
        Ok(s)
    }
}

#[derive(Debug, clap::Args)]
pub struct RcaArgs {
    /// The cases' directory.
    pub dir: PathBuf,
    #[command(flatten)]
    pub settings: RcaSettingsArgs,
    /// Write `OUT/<case>.json` (`{"ranking": [...]}`) for
    /// `shared/tools/rca_score.py`.
    #[arg(long, value_name = "OUT")]
    pub results: Option<PathBuf>,
    /// Also leave one system out: a grid of settings chosen on one system,
    /// scored on the other.
    #[arg(long)]
    pub cv: bool,
    /// Also one line per case: its rank of the truth and the top three.
    #[arg(long)]
    pub per_case: bool,
}

#[derive(Debug, clap::Args)]
pub struct DockerArgs {
    /// Injections of each fault kind per side.
    #[arg(long, default_value_t = 5)]
    injections: u32,
    /// Seed of the injection phases (the same for every side).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A fault not recovered from within this long counts as not recovered.
    #[arg(long, default_value = "30s")]
    limit: String,
    /// Length of heal's clean run (no fault).
    #[arg(long, default_value = "60s")]
    clean: String,
    /// Leave out the Swarm round.
    #[arg(long)]
    no_swarm: bool,
    /// The Docker Engine's socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    socket: String,
    /// Write heal's whole log (`HEAL_LOG=info`) to this file after its round.
    #[arg(long)]
    heal_log: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// How long the fault script runs (`3m`).
    #[arg(long, default_value = "3m")]
    duration: String,
    /// Seed of the fault script.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Series the chaos exporter renames every 10 s.
    #[arg(long, default_value_t = 200)]
    churn: u32,
    /// The Prometheus executable.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RemoteWriteArgs {
    /// Watched series: each slot carries one score (three samples) each.
    #[arg(long, default_value_t = 1_000)]
    series: usize,
    /// Slots (evaluations) sent.
    #[arg(long, default_value_t = 600)]
    slots: usize,
    /// A remote-write receiver of one's own; by default the bench starts a
    /// Prometheus with its receiver on and queries the scores back.
    #[arg(long)]
    url: Option<String>,
    /// The Prometheus executable.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ChurnArgs {
    /// New series per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// How long heal watches (`5m`).
    #[arg(long, default_value = "5m")]
    duration: String,
    /// How often memory is sampled.
    #[arg(long, default_value = "10s")]
    sample_every: String,
    /// heal watch's `--series-stale`.
    #[arg(long, default_value = "10s")]
    series_stale: String,
    /// heal watch's `--max-series`.
    #[arg(long, default_value_t = 100_000)]
    max_series: usize,
}

#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// The corpus directory, such as `../shared/datasets/nab-dev`.
    dir: PathBuf,
    /// Which detector to run: `adaptive` (the default settings, threshold
    /// 0.4: no alarm on 100,000 samples of stationary noise), `sensitive`
    /// (the sensitive preset, threshold 0.17), `changepoint` (Bayesian
    /// online changepoint detection), `seasonal` (the residual against a
    /// periodically refitted MSTL decomposition), `ensemble` (adaptive and
    /// changepoint combined), `novelty` (seven calibrated statistics, the
    /// sensitive preset's settings), `nab` (the NAB configuration: novelty
    /// at 0.19), or `all`, every one side by side.
    #[arg(long, default_value = "adaptive")]
    detector: heal::bench::nab::DetectorName,

    /// Also print each file's result at the best standard threshold.
    #[arg(long)]
    per_file: bool,

    /// Also cross-validate: leave one category out, the threshold chosen on
    /// the other categories and scored on the left-out one; printed per
    /// category, pooled and as the mean, beside the in-sample figure.
    #[arg(long)]
    cv: bool,

    /// Write every series' per-row output at the best standard threshold in
    /// NAB's results layout, `OUT/<category>/<file>.csv` with
    /// `timestamp,value,anomaly_score` (`OUT/<detector>/...` with
    /// `--detector all`), for NAB's own scorer to check; with `--cv` also
    /// the held-out detections under `held-out/`.
    #[arg(long, value_name = "OUT")]
    results: Option<PathBuf>,
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Nab(args) => Ok(heal::bench::nab::run(NabConfig {
            dir: args.dir,
            detector: args.detector,
            per_file: args.per_file,
            cv: args.cv,
            results: args.results,
        })?),
        BenchCmd::Lab(args) => super::bench_lab::run(args),
        BenchCmd::Rca(args) => Ok(heal::bench::rca::run(&heal::bench::rca::RcaBenchConfig {
            settings: args.settings.settings()?,
            dir: args.dir,
            onset: args.settings.onset,
            results: args.results,
            cv: args.cv,
            per_case: args.per_case,
        })?),
        BenchCmd::Loghub {
            dir,
            reps,
            cv,
            ablation,
            memory,
        } => {
            heal::bench::loghub::run(&dir, reps)?;
            if memory {
                heal::bench::loghub::memory_at_cap(&logs::MinerConfig::default());
            }
            heal::bench::loghub::checks(&dir, ablation, cv)?;
            Ok(())
        }
        BenchCmd::Docker(args) => Ok(heal::bench::docker::run(
            heal::bench::docker::DockerBenchConfig {
                injections: args.injections,
                seed: args.seed,
                limit: super::error::duration_arg("limit", &args.limit)?,
                clean: super::error::duration_arg("clean", &args.clean)?,
                no_swarm: args.no_swarm,
                socket: args.socket,
                heal_log: args.heal_log,
                path_env: std::env::var_os("PATH"),
            },
        )?),
        BenchCmd::Storm(args) => super::bench_storm::run(args),
        BenchCmd::Chaos(args) => Ok(heal::bench::chaos::run(heal::bench::chaos::ChaosConfig {
            duration: super::error::duration_arg("duration", &args.duration)?,
            seed: args.seed,
            prometheus_bin: args.prometheus_bin,
            path_env: std::env::var_os("PATH"),
            churn: args.churn,
        })?),
        BenchCmd::Churn(args) => Ok(heal::bench::churn::run(heal::bench::churn::ChurnConfig {
            rate: args.rate,
            duration: super::error::duration_arg("duration", &args.duration)?,
            sample_every: super::error::duration_arg("sample-every", &args.sample_every)?,
            series_stale: args.series_stale,
            max_series: args.max_series,
        })?),
        BenchCmd::RemoteWrite(args) => Ok(heal::bench::remote_write::run(
            &heal::bench::remote_write::RemoteWriteConfig {
                series: args.series,
                slots: args.slots,
                url: args.url,
                prometheus_bin: args.prometheus_bin,
            },
        )?),
        BenchCmd::Journal { members, keys } => Ok(heal::bench::journal::run(
            &heal::bench::journal::JournalConfig { members, keys },
        )?),
        BenchCmd::Scale {
            workers,
            series,
            steps,
            partitions,
            checkpoint_every,
            kill,
            no_changelog,
        } => {
            let table = heal::bench::scale::run(&heal::bench::scale::ScaleConfig {
                heal: std::env::current_exe()?,
                series,
                steps,
                workers,
                partitions,
                checkpoint_every,
                kill,
                no_changelog,
            })?;
            print!("{table}");
            Ok(())
        }
        BenchCmd::Agent { requests } => Ok(heal::bench::daemons::agent(requests)?),
        BenchCmd::Supervise { rounds } => Ok(heal::bench::daemons::supervise(rounds)?),
    }
}
