//! `heal incidents list` and `heal incidents show ID`: the incident store
//! (written by `heal watch --db` and `heal replay --db`) in the terminal.
//!
//! Both open the store read-only: they never migrate it and never mark a
//! running action interrupted, so they are safe while `heal watch` writes.
//!
//! `heal incidents mark ID --false-alarm`, `heal incidents missed` and
//! `heal incidents sensitivity` are learning from outcomes (see
//! `store` sensitivity): a mark is written through
//! `Store::open_for_marks`, which never marks anything interrupted either,
//! and a running watch applies it at its next start (its API applies marks
//! at once).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use store::{
    ActionRecord, ExecutionState, IncidentFilter, IncidentOutcome, IncidentStatus, IncidentSummary,
    Mark, Marked, SensitivityReason, Store, StoreError,
};

use super::record::parse_time;
use super::replay::fmt_duration;
use super::UsageError;

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
    /// The incident store.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only incidents opened at or after this time: RFC 3339, `now`, or a
    /// time before now such as `-1h`.
    #[arg(long)]
    since: Option<String>,
    /// Only incidents opened before this time (same forms as --since).
    #[arg(long)]
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
    /// The incident store.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
}

pub fn run(cmd: IncidentsCmd) -> anyhow::Result<()> {
    match cmd {
        IncidentsCmd::List(args) => list(args),
        IncidentsCmd::Show(args) => show(args),
        IncidentsCmd::Mark(args) => mark(args),
        IncidentsCmd::Missed(args) => missed(args),
        IncidentsCmd::Sensitivity(args) => sensitivity(args),
    }
}

/// A store that is missing, too old or too new is the user's input: 64.
fn open(db: &std::path::Path) -> anyhow::Result<Store> {
    Store::open_read_only(db).map_err(|e| match e {
        StoreError::Missing(_) | StoreError::TooNew { .. } | StoreError::TooOld { .. } => {
            UsageError(e.to_string()).into()
        }
        other => anyhow::Error::new(other),
    })
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let filter = IncidentFilter {
        service: args.service.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|s| parse_time("--since", s, now))
            .transpose()?,
        until_ms: args
            .until
            .as_deref()
            .map(|s| parse_time("--until", s, now))
            .transpose()?,
        status: args
            .status
            .as_deref()
            .map(|s| {
                IncidentStatus::parse(s)
                    .ok_or_else(|| UsageError(format!("--status {s:?}: expected open or resolved")))
            })
            .transpose()?,
        outcome: args
            .outcome
            .as_deref()
            .map(|s| {
                IncidentOutcome::parse(s).ok_or_else(|| {
                    UsageError(format!(
                        "--outcome {s:?}: expected recovered, not_recovered, worse or none"
                    ))
                })
            })
            .transpose()?,
        limit: args.limit.max(1),
        cursor: args.cursor.clone(),
    };
    let store = open(&args.db)?;
    let page = store.list(&filter).map_err(|e| match e {
        StoreError::BadCursor(_) => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&page)?);
        return Ok(());
    }
    print!("{}", table(&page.incidents));
    if let Some(cursor) = &page.next_cursor {
        println!("more: add --cursor {cursor}");
    }
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The list as an aligned table, one incident a line.
fn table(incidents: &[IncidentSummary]) -> String {
    if incidents.is_empty() {
        return "no incidents\n".to_owned();
    }
    let rows: Vec<[String; 10]> = incidents
        .iter()
        .map(|i| {
            let duration = match (i.resolved_ms, i.unresolved_at_ms) {
                (Some(end), _) => fmt_duration(end - i.onset_ms),
                (None, Some(end)) => format!(">{}", fmt_duration(end - i.onset_ms)),
                (None, None) => "-".to_owned(),
            };
            [
                i.id.clone(),
                fmt_ms(i.opened_ms),
                if i.service.is_empty() {
                    "-".to_owned()
                } else {
                    i.service.clone()
                },
                i.rule.clone(),
                i.severity.as_str().to_owned(),
                i.status.as_str().to_owned(),
                i.outcome.as_str().to_owned(),
                format!("{}/{}/{}", i.performed, i.steps, i.chain_len),
                duration,
                format!("{:.3}", i.peak_score),
            ]
        })
        .collect();
    let header = [
        "incident",
        "opened (UTC)",
        "service",
        "rule",
        "severity",
        "status",
        "outcome",
        "steps",
        "duration",
        "peak",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out.push_str("steps: performed/planned/chain length\n");
    out
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let store = open(&args.db)?;
    let record = store
        .incident(&args.id)
        .with_context(|| format!("reading {}", args.id))?
        .ok_or_else(|| {
            UsageError(format!(
                "no incident {:?} in {}",
                args.id,
                args.db.display()
            ))
        })?;
    let mut out = remediate::report::markdown(&record.incident);
    let _ = writeln!(
        out,
        "\n## Executions\n\nStatus {}, outcome {}.",
        record.status.as_str(),
        record.outcome.as_str()
    );
    if record.executions.is_empty() {
        let _ = writeln!(out, "\nNo action was performed.");
    }
    for e in &record.executions {
        out.push_str(&execution(e));
    }
    print!("{out}");
    Ok(())
}

/// One execution as a Markdown section.
fn execution(e: &ActionRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Step {} attempt {}: {}\n",
        e.key.step, e.key.attempt, e.summary
    );
    let _ = writeln!(out, "- Key: `{}`", e.key);
    if e.state != ExecutionState::Abandoned {
        let _ = writeln!(out, "- Started: {}", rfc3339(e.started_ms));
    }
    match e.state {
        ExecutionState::Started => {
            let _ = writeln!(out, "- State: **started**: running now (no result yet)");
        }
        ExecutionState::Interrupted => {
            let _ = writeln!(
                out,
                "- State: **interrupted**: heal stopped while it ran; it may or may not have taken effect, and it was not run again"
            );
        }
        ExecutionState::Abandoned => {
            let _ = writeln!(
                out,
                "- State: **abandoned**: allowed, but heal stopped before beginning it; it did not run, and it was not run later"
            );
        }
        ExecutionState::Finished => {
            if let Some(finished) = e.finished_ms {
                let _ = writeln!(out, "- Finished: {}", rfc3339(finished));
            }
        }
    }
    if let Some(r) = &e.result {
        let _ = writeln!(
            out,
            "- Result: **{}** ({}), {} ms{}",
            if r.ok { "ok" } else { "failed" },
            r.summary,
            r.duration.as_millis(),
            if r.retryable { ", retryable" } else { "" }
        );
        if !r.output.is_empty() {
            let _ = writeln!(
                out,
                "- Output:\n\n  ```\n  {}\n  ```",
                r.output.trim_end().replace('\n', "\n  ")
            );
        }
    }
    out
}

// ---- Learning from outcomes: marks and the sensitivity history ----

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
    /// The incident store.
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
    #[arg(long)]
    at: String,
    /// What was missed, for the history.
    #[arg(long)]
    note: Option<String>,
    /// The incident store.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// The incident store.
    #[arg(long, default_value = "heal.db")]
    db: PathBuf,
    /// One JSON object (`offsets`, `history`) instead of tables.
    #[arg(long)]
    json: bool,
}

/// A mark refused because of what the user gave (unknown incident, bad
/// signal name): the API answers it with 404 or 400, the CLI with exit 64.
#[derive(Debug)]
pub enum MarkError {
    /// No incident with this id in the store.
    NoSuchIncident(String),
    /// Anything the user gave that is wrong.
    Invalid(String),
    /// The store failed.
    Store(anyhow::Error),
}

impl std::fmt::Display for MarkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MarkError::NoSuchIncident(id) => write!(f, "no incident {id:?} in the store"),
            MarkError::Invalid(m) => f.write_str(m),
            MarkError::Store(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<MarkError> for anyhow::Error {
    fn from(e: MarkError) -> anyhow::Error {
        match e {
            MarkError::Store(e) => e,
            other => UsageError(other.to_string()).into(),
        }
    }
}

fn open_for_marks(db: &std::path::Path) -> Result<Store, MarkError> {
    Store::open_for_marks(db).map_err(|e| match e {
        StoreError::Missing(_) | StoreError::TooNew { .. } => MarkError::Invalid(e.to_string()),
        other => MarkError::Store(other.into()),
    })
}

/// Records `id` as a false alarm in the store at `db` (wall time `now_ms`):
/// what `heal incidents mark` and watch's API both do.
pub fn mark_false_alarm(
    db: &std::path::Path,
    id: &str,
    note: Option<String>,
    now_ms: i64,
) -> Result<Marked, MarkError> {
    let mut store = open_for_marks(db)?;
    let record = store
        .incident(id)
        .map_err(|e| MarkError::Store(e.into()))?
        .ok_or_else(|| MarkError::NoSuchIncident(id.to_owned()))?;
    store
        .mark_sensitivity(&Mark {
            signal: record.incident.signal,
            reason: SensitivityReason::FalseAlarm,
            incident: Some(id.to_owned()),
            missed_at_ms: None,
            note,
            at_ms: now_ms,
        })
        .map_err(|e| MarkError::Store(e.into()))
}

/// Records an anomaly of `signal` at `at_ms` that heal missed.
pub fn mark_missed(
    db: &std::path::Path,
    signal: &str,
    at_ms: i64,
    note: Option<String>,
    now_ms: i64,
) -> Result<Marked, MarkError> {
    let valid = !signal.is_empty()
        && signal.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid {
        return Err(MarkError::Invalid(format!(
            "signal {signal:?}: expected a signal name (a Prometheus metric name)"
        )));
    }
    let mut store = open_for_marks(db)?;
    store
        .mark_sensitivity(&Mark {
            signal: signal.to_owned(),
            reason: SensitivityReason::Missed,
            incident: None,
            missed_at_ms: Some(at_ms),
            note,
            at_ms: now_ms,
        })
        .map_err(|e| MarkError::Store(e.into()))
}

/// One line about a mark, for people.
pub fn describe_mark(marked: &Marked) -> String {
    match marked {
        Marked::Adjusted(a) => {
            let bound = if a.old == a.new {
                " (at its bound)"
            } else {
                ""
            };
            format!(
                "{}: threshold offset {:+.2} -> {:+.2}{bound} ({}{})",
                a.signal,
                a.old,
                a.new,
                a.reason.as_str(),
                a.incident
                    .as_deref()
                    .map(|i| format!(", {i}"))
                    .unwrap_or_default()
            )
        }
        Marked::AlreadyMarked(a) => format!(
            "{}: already marked {} at {}; offset unchanged",
            a.incident.as_deref().unwrap_or(&a.signal),
            a.reason.as_str(),
            rfc3339(a.at_ms)
        ),
    }
}

fn mark(args: MarkArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    debug_assert!(args.false_alarm, "clap requires --false-alarm");
    let marked = mark_false_alarm(&args.db, &args.id, args.note, now)?;
    println!("{}", describe_mark(&marked));
    if matches!(marked, Marked::Adjusted(_)) {
        println!("applies from the next start of heal watch or heal replay with --db {} (or mark through a running watch's API to apply it at once)", args.db.display());
    }
    Ok(())
}

fn missed(args: MissedArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let at = parse_time("--at", &args.at, now)?;
    let marked = mark_missed(&args.db, &args.signal, at, args.note, now)?;
    println!("{}", describe_mark(&marked));
    Ok(())
}

fn sensitivity(args: SensitivityArgs) -> anyhow::Result<()> {
    let store = open(&args.db)?;
    let offsets = store.sensitivity_offsets()?;
    let history = store.sensitivity_history()?;
    if args.json {
        let v = serde_json::json!({ "offsets": offsets, "history": history });
        println!("{v}");
        return Ok(());
    }
    if offsets.is_empty() {
        println!("no learned offsets: every signal fires at its configured threshold");
    } else {
        println!("{:<32} {:>7}", "signal", "offset");
        for (signal, offset) in &offsets {
            println!("{signal:<32} {offset:>+7.2}");
        }
    }
    if !history.is_empty() {
        println!();
        println!(
            "{:<24} {:<24} {:>6} {:>6}  {:<11} {:<24} note",
            "time", "signal", "old", "new", "reason", "incident / missed at"
        );
        for a in &history {
            let what = match (&a.incident, a.missed_at_ms) {
                (Some(i), _) => i.clone(),
                (None, Some(at)) => rfc3339(at),
                (None, None) => "-".to_owned(),
            };
            println!(
                "{:<24} {:<24} {:>+6.2} {:>+6.2}  {:<11} {:<24} {}",
                rfc3339(a.at_ms),
                a.signal,
                a.old,
                a.new,
                a.reason.as_str(),
                what,
                a.note.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_now_and_relative() {
        let now = 1_767_571_200_000; // 2026-01-05T00:00:00Z
        assert_eq!(parse_time("--since", "now", now).unwrap(), now);
        assert_eq!(parse_time("--since", "-2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("--since", "2026-01-05T01:00:00+01:00", 0).unwrap(),
            now
        );
        assert!(parse_time("--since", "yesterday", now)
            .unwrap_err()
            .0
            .starts_with("--since \"yesterday\": expected RFC 3339"));
    }
}
