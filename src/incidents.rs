//! The incident store for people: `heal incidents list`, `show` and
//! `sensitivity` as text (and the filter the CLI and the API share).
//!
//! Every reader opens the store read-only: it never migrates it and never
//! marks a running action interrupted, so it is safe while `heal watch`
//! writes. Marks (learning from outcomes) are `crate::marks`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use store::{
    ActionRecord, Adjustment, ExecutionState, IncidentFilter, IncidentOutcome, IncidentPage,
    IncidentStatus, IncidentSummary, Store,
};

use crate::text::{fmt_duration, fmt_second, parse_time};
use crate::{Context, Error, Result};

/// Opens the store read-only. A store that is missing, too old or too new
/// is the user's input ([`Error::is_usage`]).
///
/// # Errors
///
/// The store's error.
pub fn open(db: &Path) -> Result<Store> {
    Ok(Store::open_read_only(db)?)
}

/// Which incidents to list, as a person writes it (times as `heal record`
/// takes them, status and outcome by name).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this service.
    pub service: Option<String>,
    /// Only this signal.
    pub signal: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Opened at or after (RFC 3339, `now`, `-1h`).
    pub since: Option<String>,
    /// Opened before.
    pub until: Option<String>,
    /// `open` or `resolved`.
    pub status: Option<String>,
    /// `recovered`, `not_recovered`, `worse` or `none`.
    pub outcome: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Where an earlier page stopped.
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The store's filter, times relative to `now_ms`.
    ///
    /// # Errors
    ///
    /// The first value that does not parse, as a usage error naming its
    /// flag.
    pub fn filter(&self, now_ms: i64) -> Result<IncidentFilter> {
        let time = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_time(flag, s, now_ms))
                .transpose()
        };
        Ok(IncidentFilter {
            service: self.service.clone(),
            signal: self.signal.clone(),
            rule: self.rule.clone(),
            since_ms: time("--since", &self.since)?,
            until_ms: time("--until", &self.until)?,
            status: self
                .status
                .as_deref()
                .map(|s| {
                    IncidentStatus::parse(s).ok_or_else(|| {
                        Error::Usage(format!("--status {s:?}: expected open, resolved or closed"))
                    })
                })
                .transpose()?,
            outcome: self
                .outcome
                .as_deref()
                .map(|s| {
                    IncidentOutcome::parse(s).ok_or_else(|| {
                        Error::Usage(format!(
                            "--outcome {s:?}: expected recovered, not_recovered, worse or none"
                        ))
                    })
                })
                .transpose()?,
            limit: self.limit.max(1),
            cursor: self.cursor.clone(),
        })
    }
}

/// One page of the store at `db`.
///
/// # Errors
///
/// The store's error (a bad cursor is the user's input).
pub fn list(db: &Path, filter: &IncidentFilter) -> Result<IncidentPage> {
    Ok(open(db)?.list(filter)?)
}

/// The list as an aligned table, one incident a line.
pub fn table(incidents: &[IncidentSummary]) -> String {
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
                fmt_second(i.opened_ms),
                if i.service.is_empty() {
                    "-".to_owned()
                } else {
                    // The exporter's value: no control character reaches
                    // the terminal raw.
                    stdx::text::terminal(&i.service).into_owned()
                },
                stdx::text::terminal(&i.rule).into_owned(),
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
            // Padded by hand: `{cell:<w$}` panics once a label makes `w`
            // exceed 65,535.
            l.push_str(&stdx::text::pad_right(cell, *w));
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

/// One incident as the post-incident report (Markdown) with every
/// execution of its actions.
///
/// # Errors
///
/// A store that cannot be opened or read; no such incident (a usage error).
pub fn show(db: &Path, id: &str) -> Result<String> {
    let store = open(db)?;
    let record = store
        .incident(id)
        .with_context(|| format!("reading {id}"))?
        .ok_or_else(|| {
            Error::Usage(format!("no incident {id:?} in {}", store::Location::of(db)))
        })?;
    // The evidence tells the kind of anomaly; a report without it still reads.
    let evidence = store.evidence(id).ok().flatten();
    let mut out = remediate::report::markdown_with(&record.incident, evidence.as_ref());
    let _ = writeln!(
        out,
        "\n## Executions\n\nStatus {}, outcome {}.",
        record.status.as_str(),
        record.outcome.as_str()
    );
    if let Some(reason) = &record.closed_reason {
        let _ = writeln!(out, "\nClosed by heal: {reason}.");
    }
    if record.executions.is_empty() {
        let _ = writeln!(out, "\nNo action was performed.");
    }
    for e in &record.executions {
        out.push_str(&execution(e));
    }
    Ok(out)
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
        let _ = writeln!(out, "- Started: {}", remediate::time::rfc3339(e.started_ms));
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
            if let Some(process) = e.process {
                let _ = writeln!(
                    out,
                    "- Process: pid {} (its own process group)",
                    process.pid
                );
            }
            if let Some(settled) = &e.settled {
                let _ = writeln!(out, "- Settled at restart: {settled}");
            }
        }
        ExecutionState::Abandoned => {
            let _ = writeln!(
                out,
                "- State: **abandoned**: allowed, but heal stopped before beginning it; it did not run, and it was not run later"
            );
        }
        ExecutionState::Finished => {
            if let Some(finished) = e.finished_ms {
                let _ = writeln!(out, "- Finished: {}", remediate::time::rfc3339(finished));
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

/// Each signal's learned threshold offset and every adjustment.
///
/// # Errors
///
/// The store's error.
pub fn sensitivity(db: &Path) -> Result<(BTreeMap<String, f64>, Vec<Adjustment>)> {
    let store = open(db)?;
    Ok((store.sensitivity_offsets()?, store.sensitivity_history()?))
}

/// The offsets and the history as tables.
pub fn sensitivity_text(offsets: &BTreeMap<String, f64>, history: &[Adjustment]) -> String {
    let mut out = String::new();
    if offsets.is_empty() {
        out.push_str("no learned offsets: every signal fires at its configured threshold\n");
    } else {
        let _ = writeln!(out, "{:<32} {:>7}", "signal", "offset");
        for (signal, offset) in offsets {
            let _ = writeln!(out, "{signal:<32} {offset:>+7.2}");
        }
    }
    if !history.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:>6} {:>6}  {:<11} {:<24} note",
            "time", "signal", "old", "new", "reason", "incident / missed at"
        );
        for a in history {
            let what = match (&a.incident, a.missed_at_ms) {
                (Some(i), _) => i.clone(),
                (None, Some(at)) => remediate::time::rfc3339(at),
                (None, None) => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<24} {:<24} {:>+6.2} {:>+6.2}  {:<11} {:<24} {}",
                remediate::time::rfc3339(a.at_ms),
                a.signal,
                a.old,
                a.new,
                a.reason.as_str(),
                what,
                a.note.as_deref().unwrap_or("")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(service: &str) -> IncidentSummary {
        IncidentSummary {
            id: "inc-000001".to_owned(),
            service: service.to_owned(),
            signal: "sig".to_owned(),
            rule: "r".to_owned(),
            severity: remediate::runbook::Severity::Critical,
            selector: "sig".to_owned(),
            status: IncidentStatus::Open,
            outcome: IncidentOutcome::None,
            onset_ms: 0,
            opened_ms: 60_000,
            resolved_ms: None,
            unresolved_at_ms: None,
            peak_score: 0.9,
            steps: 0,
            performed: 0,
            chain_len: 1,
        }
    }

    #[test]
    fn the_table_takes_a_70_kb_service_and_escapes_control_characters() {
        // A 70 kB service label made `{cell:<w$}` panic (issue 10, 2).
        let long = "s".repeat(70_000);
        let text = table(&[summary(&long), summary("a\nb\r\u{1b}[31mc")]);
        assert!(text.contains(&long));
        assert!(
            text.contains(r"a\nb\r\u{1b}[31mc"),
            "escaped service missing"
        );
        assert!(
            !text.contains('\r') && !text.contains('\u{1b}'),
            "raw control in the table"
        );
        // Header, two rows, the legend: no label broke a line.
        assert_eq!(text.lines().count(), 4);
    }
}
