//! `heal incidents list|show|mark|missed|sensitivity`: the incident store
//! (written by `heal watch --db` and `heal replay --db`) in the terminal
//! (`heal::incidents`), and learning from outcomes (`heal::marks`): a mark
//! is written through `Store::open_for_marks`, which never marks anything
//! interrupted, and a running watch applies it at its next start (its API
//! applies marks at once).

use std::path::PathBuf;

use heal::incidents::ListQuery;
use heal::marks;
use stdx::Clock;
use store::Marked;

/// Read the incident store.
#[derive(Debug, clap::Subcommand)]
pub enum IncidentsCmd {
    /// List incidents, newest first, as a table.
    List(ListArgs),
    /// Show one incident: the post-incident report (summary, timeline,
    /// steps) and every execution of its actions.
    Show(ShowArgs),
    /// Mark an incident as a false alarm: its signal becomes a little less
    /// sensitive (threshold offset +0.02, bounded). A running `heal watch`
    /// picks it up at its next start (or mark through its API, POST
    /// /api/incidents/ID/false-alarm, to apply it at once).
    Mark(MarkArgs),
    /// Record an anomaly heal missed: the signal becomes a little more
    /// sensitive (threshold offset -0.02, bounded). Through a running
    /// watch's API: POST /api/missed.
    Missed(MissedArgs),
    /// Learned sensitivity: each signal's threshold offset and every
    /// adjustment (false alarms, missed anomalies, steps that did not help).
    Sensitivity(SensitivityArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The incident store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this signal.
    #[arg(long)]
    signal: Option<String>,
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Only incidents opened at or after this time: RFC 3339, `now`, or a
    /// time before now such as `-1h`.
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only incidents opened before this time (same forms as --since).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    /// Only `open` or only `resolved` incidents.
    #[arg(long)]
    status: Option<String>,
    /// Only incidents whose steps ended so: `recovered`, `not_recovered`,
    /// `worse` or `none`.
    #[arg(long)]
    outcome: Option<String>,
    /// Most incidents to show (at most 1000).
    #[arg(long, default_value_t = store::DEFAULT_LIMIT)]
    limit: usize,
    /// Go on from where an earlier list stopped (it prints the cursor).
    #[arg(long)]
    cursor: Option<String>,
    /// One JSON object for the page (`incidents`, `next_cursor`) instead of
    /// a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Incident id, such as `inc-000042`.
    id: String,
    /// The incident store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MarkArgs {
    /// Incident id, such as `inc-000042`.
    id: String,
    /// The incident was not a real problem.
    #[arg(long, required = true)]
    false_alarm: bool,
    /// Why, for the history.
    #[arg(long)]
    note: Option<String>,
    /// The incident store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MissedArgs {
    /// The signal that should have fired (runbook `signals[].name`).
    #[arg(long)]
    signal: String,
    /// When the missed anomaly happened: RFC 3339, `now`, or a time before
    /// now such as `-1h`.
    #[arg(long, allow_hyphen_values = true)]
    at: String,
    /// What was missed, for the history.
    #[arg(long)]
    note: Option<String>,
    /// The incident store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// The incident store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
    /// One JSON object (`offsets`, `history`) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: IncidentsCmd) -> anyhow::Result<()> {
    let now = stdx::SystemClock.now_ms();
    match cmd {
        IncidentsCmd::List(args) => {
            let query = ListQuery {
                service: args.service,
                signal: args.signal,
                rule: args.rule,
                since: args.since,
                until: args.until,
                status: args.status,
                outcome: args.outcome,
                limit: args.limit,
                cursor: args.cursor,
            };
            let page = heal::incidents::list(&args.db, &query.filter(now)?)?;
            if args.json {
                println!("{}", serde_json::to_string(&page)?);
                return Ok(());
            }
            print!("{}", heal::incidents::table(&page.incidents));
            if let Some(cursor) = &page.next_cursor {
                println!("more: add --cursor {cursor}");
            }
        }
        IncidentsCmd::Show(args) => print!("{}", heal::incidents::show(&args.db, &args.id)?),
        IncidentsCmd::Mark(args) => {
            debug_assert!(args.false_alarm, "clap requires --false-alarm");
            let marked = (|| {
                let mut store = marks::open(&args.db)?;
                let mark = marks::false_alarm(&store, &args.id, args.note, now)?;
                marks::record(&mut store, &mark)
            })()
            .map_err(heal::Error::from)?;
            println!("{}", marks::describe(&marked));
            if matches!(marked, Marked::Adjusted(_)) {
                println!("applies from the next start of heal watch or heal replay with --db {} (or mark through a running watch's API to apply it at once)", store::Location::of(&args.db));
            }
        }
        IncidentsCmd::Missed(args) => {
            let at = heal::text::parse_time("--at", &args.at, now)?;
            let marked = marks::missed(&args.signal, at, args.note, now)
                .and_then(|mark| marks::record(&mut marks::open(&args.db)?, &mark))
                .map_err(heal::Error::from)?;
            println!("{}", marks::describe(&marked));
        }
        IncidentsCmd::Sensitivity(args) => {
            let (offsets, history) = heal::incidents::sensitivity(&args.db)?;
            if args.json {
                let v = serde_json::json!({ "offsets": offsets, "history": history });
                println!("{v}");
            } else {
                print!("{}", heal::incidents::sensitivity_text(&offsets, &history));
            }
        }
    }
    Ok(())
}

/// `heal serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The incident store (written by `heal watch --db` or `heal replay
    /// --db`): a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: std::net::SocketAddr,
    /// Name of an environment variable holding the API token. The pages'
    /// forms ask for it; `heal serve` itself changes nothing (approving and
    /// silencing need the `heal watch` that writes the store).
    #[arg(long)]
    api_token_env: Option<String>,
}

/// Serves the store until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use super::error::{runtime, shutdown_signal, UsageError};
    // A missing or foreign file is said now, not at the first page.
    store::Store::open_read_only(&args.db)
        .map_err(|e| UsageError(format!("--db {}: {e}", store::Location::of(&args.db))))?;
    let token = super::error::api_token(args.api_token_env.as_deref())?;
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| UsageError(format!("listening on {}: {e}", args.listen)))?;
        eprintln!(
            "serving {} on http://{}/",
            store::Location::of(&args.db),
            listener.local_addr().unwrap_or(args.listen)
        );
        heal::api::serve_store(listener, args.db.clone(), token, shutdown_signal()).await;
        Ok(())
    })
}
