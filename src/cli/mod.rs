//! Subcommands of `heal`, one file each: the arguments (clap), what the
//! environment holds, a call into the `heal` library and what it prints.
//! Each `run` returns `anyhow::Result`; `main` maps errors to exit codes.

mod agent;
mod bench;
mod bench_lab;
mod bench_storm;
mod control;
mod dataset;
mod demo;
mod error;
mod incidents;
mod logs;
mod record;
mod replay;
mod runbooks;
mod scale;
mod score;
mod supervise;
mod tune;
mod watch;

use clap::{Parser, Subcommand};

pub use error::{Unavailable, UsageError};

/// heal keeps services healthy: it watches their metrics, detects anomalies,
/// and remediates them from YAML runbooks.
#[derive(Debug, Parser)]
#[command(name = "heal", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a NAB-style CSV (`timestamp,value`) online, row by row: the default
    /// detector, a named one (`--detector`) or a parameter file (`--params`).
    Score(score::ScoreArgs),
    /// Benchmarks: `heal bench nab DIR` scores a NAB-layout corpus; `heal
    /// bench lab` measures time to recovery on the real lab, heal against monit.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Watch a live Prometheus: evaluate the runbooks' signals, detect, and act.
    Watch(Box<watch::WatchArgs>),
    /// Tune the detector's settings on labelled data (a NAB-layout directory
    /// or heal datasets with ground truth), cross-validated, and write them
    /// as a parameter file for `replay --params` and `watch --params`.
    Tune(tune::TuneArgs),
    /// Replay a recorded dataset through detection and runbooks, every action in dry-run.
    Replay(replay::ReplayArgs),
    /// Record a period of a live Prometheus, or log sources as they arrive, as a dataset for replay and tuning.
    Record(record::RecordArgs),
    /// Import, inspect and synthesise datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// Start the lab, a real Prometheus and `heal watch --execute`, break a
    /// service, and show heal healing it (about 1 to 3 minutes).
    Demo(demo::DemoArgs),
    /// Rank the services of one fault-injection case (laid out as
    /// `shared/datasets/rca-dev/<case>`) as its root cause, with the evidence.
    Diagnose(DiagnoseArgs),
    /// The call graph of the runbooks' `diagnosis:` block: its services and,
    /// with `--prometheus`, the edges its queries find now.
    Topology(TopologyArgs),
    /// Log lines into templates (`heal logs templates FILE --log-format FMT`).
    #[command(subcommand)]
    Logs(logs::LogsCmd),
    /// Validate runbooks and print their JSON Schema.
    #[command(subcommand)]
    Runbooks(runbooks::RunbooksCmd),
    /// Read the incident store (`heal incidents list`, `heal incidents show
    /// ID`) and teach heal from outcomes (`mark ID --false-alarm`, `missed`,
    /// `sensitivity`).
    #[command(subcommand)]
    Incidents(incidents::IncidentsCmd),
    /// Serve an incident store's pages (`/`: incidents with filters, each
    /// one's report; `/silences`; `/approvals`), its JSON API and Atom feed,
    /// with no watch running: `heal serve --db heal.db`.
    Serve(incidents::ServeArgs),
    /// Silences and maintenance windows of a running `heal watch`.
    #[command(subcommand)]
    Silence(control::SilenceCmd),
    /// Approve an incident's step parked by `require_approval`.
    Approve(control::ApproveArgs),
    /// Run allowlisted local actions for a remote heal: signed requests
    /// only (HMAC-SHA256, replay window), every request audited.
    Agent(agent::AgentArgs),
    /// Scale-out: produce samples to a Kafka topic, keyed by (signal,
    /// service), for `heal detect` workers: the live sources (Prometheus,
    /// probes, logs, remote write and Alertmanager pushed to it), a
    /// recorded dataset or synthetic load.
    Ingest(scale::IngestArgs),
    /// Scale-out: a detect worker, one member of a Kafka consumer group on
    /// the samples topic; scores every sample of its partitions into the
    /// scores topic, checkpoints its detectors to a changelog topic and
    /// restores them when it takes a partition over.
    Detect(scale::DetectArgs),
    /// Scale-out: a remediate member: consumes the scores topic (keyed by
    /// group of services), runs the rules and guards, and begins each step
    /// through the action journal in PostgreSQL (once, fenced) before it
    /// runs.
    Remediate(scale::RemediateArgs),
    /// Run and watch services (dependency order, restarts with backoff,
    /// scale, deploy, rollback) and serve their control API.
    Supervise(supervise::SuperviseArgs),
    /// Print a shell completion script: `heal completions bash >
    /// /etc/bash_completion.d/heal` (zsh: into a `$fpath` directory as
    /// `_heal`; fish: `~/.config/fish/completions/heal.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print heal's man page (roff): `heal man > heal.1; man ./heal.1`.
    /// Every subcommand is in it, as `heal COMMAND --help` gives it.
    Man,
}

/// Exit code for an error: 64 for bad usage or configuration, 69 for a
/// missing program, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let app = || e.chain().filter_map(|c| c.downcast_ref::<heal::Error>());
    if e.chain()
        .any(|c| c.is::<UsageError>() || c.is::<runbooks::CheckFailed>())
        || app().any(heal::Error::is_usage)
    {
        64
    } else if e.chain().any(|c| c.is::<Unavailable>()) || app().any(heal::Error::is_unavailable) {
        69
    } else {
        1
    }
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Score(a) => score::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Watch(a) => watch::run(*a),
        Command::Replay(a) => replay::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Record(a) => record::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Runbooks(c) => runbooks::run(c),
        Command::Logs(c) => logs::run(c),
        Command::Demo(a) => demo::run(a),
        Command::Incidents(c) => incidents::run(c),
        Command::Serve(a) => incidents::serve(a),
        Command::Silence(c) => control::run_silence(c),
        Command::Approve(a) => control::run_approve(a),
        Command::Agent(a) => agent::run(a),
        Command::Supervise(a) => supervise::run(a),
        Command::Ingest(a) => scale::run_ingest(a),
        Command::Detect(a) => scale::run_detect(a),
        Command::Remediate(a) => scale::run_remediate(a),
        Command::Topology(a) => topology(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "heal", &mut script);
            print_bytes(&script)
        }
        Command::Man => print_bytes(&man_page()?),
        Command::Diagnose(a) => {
            let settings = a.settings.settings()?;
            print!(
                "{}",
                heal::bench::rca::diagnose_dir(&a.case, a.settings.onset, &settings, a.json)?
            );
            Ok(())
        }
    }
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is
/// not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// heal's man page: the top command's, then a section per subcommand
/// (nested ones too), each with its options, from the CLI definition.
fn man_page() -> anyhow::Result<Vec<u8>> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    fn sub(out: &mut Vec<u8>, cmd: &clap::Command, path: &str) -> anyhow::Result<()> {
        for c in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            let name = format!("{path} {}", c.get_name());
            out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
            let man = clap_mangen::Man::new(c.clone());
            man.render_description_section(out)?;
            man.render_options_section(out)?;
            sub(out, c, &name)?;
        }
        Ok(())
    }
    sub(&mut out, &cmd, "heal")?;
    Ok(out)
}

/// `heal topology`.
#[derive(Debug, clap::Args)]
struct TopologyArgs {
    /// Directory of YAML runbooks.
    #[arg(long)]
    runbooks: std::path::PathBuf,
    /// Also run the `edges:` queries against this Prometheus now.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
}

fn topology(a: TopologyArgs) -> anyhow::Result<()> {
    let runbooks =
        remediate::RunbookSet::load_dir(&a.runbooks).map_err(|e| UsageError(e.to_string()))?;
    let Some(cfg) = runbooks.diagnosis() else {
        return Err(UsageError(format!(
            "the runbooks in {} have no `diagnosis:` block: no call graph",
            a.runbooks.display()
        ))
        .into());
    };
    let discovered = match &a.prometheus {
        Some(url) => {
            let client = ingest::PrometheusClient::new(ingest::PrometheusConfig::new(url))
                .map_err(|e| UsageError(e.to_string()))?;
            let now = stdx::Clock::now_ms(&stdx::SystemClock);
            let rt = error::runtime()?;
            let edges = rt
                .block_on(heal::topology::query_edges(&client, &cfg.edges, now))
                .map_err(|(i, e)| anyhow::anyhow!("edge query {} failed: {e}", i + 1))?;
            Some(edges)
        }
        None => None,
    };
    print!("{}", heal::topology::describe(cfg, discovered.as_deref()));
    Ok(())
}

/// `heal diagnose CASE_DIR`.
#[derive(Debug, clap::Args)]
struct DiagnoseArgs {
    /// The case's directory (`metrics.csv`, `slo.csv`, `truth.json`; the
    /// call graph in `../topology/`).
    case: std::path::PathBuf,
    #[command(flatten)]
    settings: bench::RcaSettingsArgs,
    /// One JSON document (the case's truth and the diagnosis: onset,
    /// suspects with scores, evidence and call paths) instead of text.
    #[arg(long)]
    json: bool,
}
