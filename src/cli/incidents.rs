//! `heal incidents list` and `heal incidents show ID`: the incident store
//! (written by `heal watch --db` and `heal replay --db`) in the terminal.
//!
//! Both open the store read-only: they never migrate it and never mark a
//! running action interrupted, so they are safe while `heal watch` writes.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use remediate::store::{
    ActionRecord, ExecutionState, IncidentFilter, IncidentOutcome, IncidentStatus, IncidentSummary,
    Store, StoreError,
};

use super::record::parse_time;
use super::UsageError;

/// Read the incident store.
#[derive(Debug, clap::Subcommand)]
pub enum IncidentsCmd {
    /// List incidents, newest first, as a table.
    List(ListArgs),
    /// Show one incident: the post-incident report (summary, timeline,
    /// steps) and every execution of its actions.
    Show(ShowArgs),
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
    #[arg(long, default_value_t = remediate::store::DEFAULT_LIMIT)]
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

fn fmt_duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if s < 7200 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
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
