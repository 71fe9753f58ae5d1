//! Incidents for machines (JSON Lines), for people (Markdown and HTML
//! post-incident reports) and for feed readers (Atom).
//!
//! Every timestamp is written twice in JSON: RFC 3339 UTC for people and
//! `jq`, milliseconds since the epoch for arithmetic.
//!
//! Every renderer here is a pure function of the incident (and its
//! [`Evidence`]): no clock, no I/O, the same input gives the same bytes, so
//! golden files can check them.
//!
//! - `mod.rs`: JSON Lines, Markdown, and what the renderers share (the
//!   status line, the timeline, escaping).
//! - `evidence.rs`: the samples around an incident ([`Evidence`]) and how
//!   they are kept while it is open.
//! - `html.rs` and `chart.rs`: the HTML report with its hand-drawn SVG chart.
//! - `atom.rs`: the Atom feed of closed incidents.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::engine::{series_selector, Incident, Outcome, PlannedAction, Verification};
use crate::time::{human, rfc3339};

mod atom;
mod chart;
mod evidence;
mod html;

pub use atom::{atom, atom_linked};
pub use evidence::{
    Evidence, EvidencePoint, EvidenceRecorder, EvidenceRing, LogEvidence, LogLine, TemplateMove,
    EVIDENCE_CAP, LOG_LINES_KEPT, LOG_LINE_CHARS, RING_LEN, TEMPLATE_MOVES_KEPT,
};
pub use html::{html, STYLE};

/// An optional timestamp as RFC 3339.
fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

impl Serialize for Incident {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Incident", 25)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field(
            "status",
            if self.resolved_ms.is_some() {
                "resolved"
            } else {
                "open"
            },
        )?;
        s.serialize_field("service", &self.service)?;
        s.serialize_field("signal", &self.signal)?;
        s.serialize_field("rule", &self.rule)?;
        s.serialize_field("severity", &self.severity)?;
        s.serialize_field("direction", if self.above { "up" } else { "down" })?;
        s.serialize_field("series", &self.series)?;
        s.serialize_field("selector", &series_selector(&self.series))?;
        s.serialize_field("onset", &rfc3339(self.onset_ms))?;
        s.serialize_field("onset_ms", &self.onset_ms)?;
        s.serialize_field("opened", &rfc3339(self.opened_ms))?;
        s.serialize_field("opened_ms", &self.opened_ms)?;
        s.serialize_field("resolved", &opt_time(self.resolved_ms))?;
        s.serialize_field("resolved_ms", &self.resolved_ms)?;
        s.serialize_field("unresolved_at", &opt_time(self.unresolved_at_ms))?;
        s.serialize_field("unresolved_at_ms", &self.unresolved_at_ms)?;
        s.serialize_field(
            "duration_ms",
            &self
                .resolved_ms
                .or(self.unresolved_at_ms)
                .map(|end| end - self.onset_ms),
        )?;
        s.serialize_field("peak_score", &self.peak_score)?;
        // Only when the peers fired it: records without it stay as they were.
        match self.peer_z {
            Some(z) => s.serialize_field("peer_z", &z)?,
            None => s.skip_field("peer_z")?,
        }
        s.serialize_field("chain_len", &self.chain_len)?;
        // Only while it waits: other records stay as they were.
        match self.waiting() {
            Some(w) => s.serialize_field("waiting", &w)?,
            None => s.skip_field("waiting")?,
        }
        s.serialize_field("description", &self.description)?;
        // Only for an incident of a group: other records stay as they were.
        match &self.diagnosis {
            Some(d) => s.serialize_field("diagnosis", d)?,
            None => s.skip_field("diagnosis")?,
        }
        s.serialize_field("actions", &self.actions)?;
        s.end()
    }
}

impl Serialize for PlannedAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("PlannedAction", 8)?;
        s.serialize_field("step", &self.step)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("summary", &self.summary)?;
        s.serialize_field("rendered", &self.rendered)?;
        s.serialize_field("decision", &self.decision)?;
        s.serialize_field("planned", &rfc3339(self.planned_ms))?;
        s.serialize_field("planned_ms", &self.planned_ms)?;
        s.serialize_field("verification", &self.verification)?;
        s.end()
    }
}

impl Serialize for Verification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Verification", 4)?;
        s.serialize_field("outcome", &self.outcome)?;
        s.serialize_field("decided", &rfc3339(self.decided_ms))?;
        s.serialize_field("decided_ms", &self.decided_ms)?;
        s.serialize_field("detail", &self.detail)?;
        s.end()
    }
}

/// The cause of an incident that the series' peers fired, in words:
/// `differs from its siblings (robust z 8.1)`; `None` when its own
/// detector fired it.
pub fn peer_cause(inc: &Incident) -> Option<String> {
    inc.peer_z
        .map(|z| format!("differs from its siblings (robust z {z:.1})"))
}

/// One incident as one line of JSON (no trailing newline).
pub fn json_line(incident: &Incident) -> String {
    // Only strings, numbers and maps with string keys: cannot fail.
    serde_json::to_string(incident).expect("an incident serializes to JSON")
}

/// Incidents as JSON Lines: one object per line, each line ended.
pub fn json_lines(incidents: &[Incident]) -> String {
    incidents.iter().map(|i| json_line(i) + "\n").collect()
}

/// The status of an incident as a headline word and the sentence after it:
/// `("Resolved", "at ... after 8m, following step 1 (...).")`. "Resolved"
/// only when a step was verified as recovering the series; an incident
/// whose series came back without that "Ended".
fn status(inc: &Incident) -> (&'static str, String) {
    let recovered_by = inc.actions.iter().find(|a| {
        a.verification
            .as_ref()
            .is_some_and(|v| v.outcome == Outcome::Recovered)
    });
    let last = inc.actions.last();
    let exhausted = last.is_some_and(|a| {
        a.step == inc.chain_len && (a.verification.is_some() || !a.decision.counts_as_performed())
    });
    let verifying =
        last.is_some_and(|a| a.decision.counts_as_performed() && a.verification.is_none());
    match (inc.resolved_ms, inc.unresolved_at_ms) {
        (Some(end), _) => match recovered_by {
            Some(a) => (
                "Resolved",
                format!(
                    "at {} after {}, following step {} ({}).",
                    rfc3339(end),
                    human(end - inc.onset_ms),
                    a.step,
                    a.summary
                ),
            ),
            None => (
                "Ended",
                format!(
                    "at {} after {}: the series came back to its band from before the incident \
                     without a step verified as recovering it.",
                    rfc3339(end),
                    human(end - inc.onset_ms),
                ),
            ),
        },
        (None, end) => {
            let end = end.map_or_else(|| "now".to_owned(), rfc3339);
            let next = if let Some(waiting) = inc.waiting() {
                waiting
            } else if verifying {
                format!("step {} is being verified", last.map_or(0, |a| a.step))
            } else if recovered_by.is_some() {
                "a step met the recovery condition but the series is not back in its band \
                 from before the incident; watch it"
                    .to_owned()
            } else if exhausted {
                "every step of the chain has been tried and none recovered the signal: a human \
                 must take over"
                    .to_owned()
            } else {
                "the series is not back in its band from before the incident".to_owned()
            };
            ("STILL OPEN", format!("at {end}: {next}."))
        }
    }
}

/// How the planned steps were decided.
struct Steps {
    performed: usize,
    dry: usize,
    suppressed: usize,
}

fn steps(inc: &Incident) -> Steps {
    let performed = inc.actions.iter().filter(|a| a.decision.allowed).count();
    let dry = inc
        .actions
        .iter()
        .filter(|a| a.decision.label() == "dry_run")
        .count();
    Steps {
        performed,
        dry,
        suppressed: inc.actions.len() - performed - dry,
    }
}

/// The anomaly described by its kind, as far as the incident and its
/// evidence tell: `apart from its siblings` (its peers fired it);
/// `noisier: spread N times its usual` (a variance change: from the onset
/// on the samples spread at least three times as widely as before it,
/// with no shift of their mean as large as that spread); else `above its
/// normal band` or `below its normal band`.
pub fn anomaly_kind(inc: &Incident, evidence: Option<&Evidence>) -> String {
    if inc.peer_z.is_some() {
        return "apart from its siblings".to_owned();
    }
    if let Some(e) = evidence {
        let end = inc.resolved_ms.or(inc.unresolved_at_ms).unwrap_or(i64::MAX);
        let (m0, sd0, n0) = mean_sd(e.points.iter().filter(|p| p.ts_ms < inc.onset_ms));
        let (m1, sd1, n1) = mean_sd(
            e.points
                .iter()
                .filter(|p| p.ts_ms >= inc.onset_ms && p.ts_ms <= end),
        );
        if n0 >= 8 && n1 >= 8 && sd0 > 0.0 && sd1 >= 3.0 * sd0 && (m1 - m0).abs() < sd1 {
            return format!("noisier: spread {:.0} times its usual", sd1 / sd0);
        }
    }
    if inc.above {
        "above its normal band".to_owned()
    } else {
        "below its normal band".to_owned()
    }
}

/// Mean, standard deviation and count of the points' values.
fn mean_sd<'a>(points: impl Iterator<Item = &'a EvidencePoint>) -> (f64, f64, usize) {
    let v: Vec<f64> = points.map(|p| f64::from(p.value)).collect();
    if v.is_empty() {
        return (0.0, 0.0, 0);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt(), v.len())
}

/// The headline: `inc-000001: payments http_error_ratio above its normal
/// band (critical)`.
fn title(inc: &Incident, evidence: Option<&Evidence>) -> String {
    let service = if inc.service.is_empty() {
        "(no service label)"
    } else {
        inc.service.as_str()
    };
    format!(
        "{}: {} {} {} ({})",
        inc.id,
        service,
        inc.signal,
        anomaly_kind(inc, evidence),
        inc.severity
    )
}

/// The events of an incident in time order: onset, opening, each step's
/// decision and verification, and the end. Same-time events keep their
/// causal order.
fn timeline(inc: &Incident) -> Vec<(i64, String)> {
    let side = if inc.above { "above" } else { "below" };
    let mut timeline: Vec<(i64, String)> = vec![
        (
            inc.onset_ms,
            format!("anomaly onset: {} {side} its normal band", inc.signal),
        ),
        (
            inc.opened_ms,
            format!("incident opened by rule {}", inc.rule),
        ),
    ];
    for a in &inc.actions {
        timeline.push((
            a.planned_ms,
            format!("step {} {}: {}", a.step, a.decision.label(), a.summary),
        ));
        if let Some(v) = &a.verification {
            timeline.push((
                v.decided_ms,
                format!(
                    "step {} verified: {} ({})",
                    a.step,
                    v.outcome.as_str(),
                    v.detail
                ),
            ));
        }
    }
    if let Some(t) = inc.resolved_ms {
        timeline.push((
            t,
            "series back in its band from before the incident: incident resolved".to_owned(),
        ));
    } else if let Some(t) = inc.unresolved_at_ms {
        timeline.push((t, "end of data: incident still open".to_owned()));
    }
    // Stable: same-time events keep their causal order.
    timeline.sort_by_key(|(t, _)| *t);
    timeline
}

/// Escapes text for HTML and XML, in element content and in quoted
/// attribute values alike. Characters XML 1.0 forbids (most C0 controls)
/// become U+FFFD, so that a label value can never make a report or the feed
/// ill-formed.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown heading, table cell or list item: label
/// values come from the exporter, and neither `<script>`, nor a newline
/// (which would end a heading or a table row), nor `|` or `[...](...)` may
/// act as markup.
fn cell(text: &str) -> String {
    stdx::text::markdown(text).into_owned()
}

/// A log line in an indented Markdown code block: every physical line of it
/// indented (a multi-line event cannot end the block), control characters
/// but tabs shown as U+FFFD, so nothing in it acts as markup.
fn code_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' => c,
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect();
    format!("    {}", clean.replace('\n', "\n    "))
}

/// A rate in lines per slot, for the templates table.
fn per_slot(v: f64) -> String {
    if v >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The Markdown section of a log signal's evidence.
fn log_markdown(out: &mut String, inc: &Incident, logs: &LogEvidence) {
    let _ = writeln!(out, "\n## What the log said\n");
    if !logs.templates.is_empty() {
        let _ = writeln!(
            out,
            "Templates of the source whose rate moved most (lines per evaluation):\n"
        );
        let _ = writeln!(
            out,
            "| Template | Id | Before | During |\n|---|---|---|---|"
        );
        for t in &logs.templates {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&t.template),
                cell(&t.template_id),
                per_slot(t.before),
                per_slot(t.during)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} of the {} lines the signal counted from {} on:\n",
        logs.lines.len(),
        logs.counted,
        logs.lines
            .first()
            .map_or_else(|| "the opening".to_owned(), |l| offset(inc, l.ts_ms))
    );
    for l in &logs.lines {
        let _ = writeln!(out, "{}", code_line(&l.text));
    }
}

/// Suspects a report lists, and metrics per suspect.
const REPORT_SUSPECTS: usize = 5;
const REPORT_EVIDENCE: usize = 4;

/// One row of a report's ranking: the suspect, and what moved in words.
struct RankRow<'a> {
    suspect: &'a detect::diagnose::Suspect,
    moved: Vec<String>,
}

/// The rows of a report's ranking, as the Markdown and HTML reports show
/// them.
fn rank_rows<'a>(inc: &Incident, d: &'a crate::engine::IncidentDiagnosis) -> Vec<RankRow<'a>> {
    d.ranking
        .iter()
        .take(REPORT_SUSPECTS)
        .map(|suspect| RankRow {
            suspect,
            moved: suspect
                .evidence
                .iter()
                .take(REPORT_EVIDENCE)
                .map(|e| moved(inc, e))
                .collect(),
        })
        .collect()
}

/// One moved metric in words: `cpu up 25.7 -> 99.6 (z 14.2, from +1m)`.
pub fn moved(inc: &Incident, e: &detect::diagnose::MetricEvidence) -> String {
    let mut s = format!(
        "{} {} {} -> {} (z {:.1}",
        e.metric,
        if e.above { "up" } else { "down" },
        crate::units::format_value(e.baseline, &e.metric),
        crate::units::format_value(e.value, &e.metric),
        e.z
    );
    if let Some(t) = e.onset_ms {
        let _ = write!(s, ", from {}", signed_offset(inc, t));
    }
    s.push(')');
    s
}

/// `+2m` or `-30s` relative to the onset.
fn signed_offset(incident: &Incident, ms: i64) -> String {
    let d = ms - incident.onset_ms;
    if d < 0 {
        format!("-{}", human(-d))
    } else {
        format!("+{}", human(d))
    }
}

/// The Markdown section of an incident's group diagnosis.
fn diagnosis_markdown(out: &mut String, inc: &Incident, d: &crate::engine::IncidentDiagnosis) {
    let _ = writeln!(out, "\n## Diagnosis\n");
    let role = if d.is_root_cause {
        "the ranked **root cause**".to_owned()
    } else {
        format!(
            "a **symptom**; the ranked root cause is {}",
            cell(&d.root_cause)
        )
    };
    let _ = writeln!(
        out,
        "This incident is one of group {} ({}), which began at {}; its service is {role} (ranked at {}).\n",
        cell(&d.group),
        cell(&d.services.join(", ")),
        rfc3339(d.onset_ms),
        rfc3339(d.ts_ms)
    );
    let _ = writeln!(
        out,
        "| Rank | Service | Score | What moved | Path |\n|---|---|---|---|---|"
    );
    for (i, row) in rank_rows(inc, d).iter().enumerate() {
        let s = row.suspect;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {} | {} |",
            i + 1,
            cell(&s.service),
            s.score,
            cell(&row.moved.join("; ")),
            cell(&s.path.join(" -> "))
        );
    }
}

/// `+2m` relative to the onset.
fn offset(incident: &Incident, ms: i64) -> String {
    format!("+{}", human(ms - incident.onset_ms))
}

/// A post-incident report for the person on call: what happened, what heal
/// did or would have done and why, and what is left for a human.
pub fn markdown(incident: &Incident) -> String {
    markdown_with(incident, None)
}

/// [`markdown`], with the incident's evidence when there is some: it tells
/// the kind of anomaly ([`anomaly_kind`]).
pub fn markdown_with(incident: &Incident, evidence: Option<&Evidence>) -> String {
    let mut out = String::new();
    let inc = incident;
    let selector = series_selector(&inc.series);
    let service = if inc.service.is_empty() {
        "(no service label)"
    } else {
        inc.service.as_str()
    };
    let kind = anomaly_kind(inc, evidence);
    let _ = writeln!(out, "# {}", cell(&title(inc, evidence)));
    out.push('\n');

    // Status line first: the one thing to know at 3 a.m.
    let (word, rest) = status(inc);
    let status = format!("**{word}** {rest}");
    let Steps {
        performed,
        dry,
        suppressed,
    } = steps(inc);
    let _ = writeln!(out, "{status}");
    if let Some(description) = &inc.description {
        let _ = writeln!(out, "\n> {}", description.trim().replace('\n', "\n> "));
    }

    let _ = writeln!(out, "\n## Summary\n");
    let _ = writeln!(out, "| Field | Value |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {} |", cell(&v));
    };
    row("Service", service.to_owned());
    // Not a code span: inside one no escape works, and a backtick in a
    // label value would end it.
    row("Series", selector);
    row("Signal", format!("{} ({kind})", inc.signal));
    if let Some(cause) = peer_cause(inc) {
        row("Cause", cause);
    }
    row("Rule", inc.rule.clone());
    row("Severity", inc.severity.to_string());
    row("Onset", rfc3339(inc.onset_ms));
    row(
        "Opened",
        format!(
            "{} ({} after onset)",
            rfc3339(inc.opened_ms),
            human(inc.opened_ms - inc.onset_ms)
        ),
    );
    row(
        "Resolved",
        match (inc.resolved_ms, inc.unresolved_at_ms) {
            (Some(t), _) => rfc3339(t),
            (None, Some(t)) => format!("not resolved (still open at {})", rfc3339(t)),
            (None, None) => "not resolved".to_owned(),
        },
    );
    row(
        "Duration",
        match (inc.resolved_ms, inc.unresolved_at_ms) {
            (Some(t), _) => human(t - inc.onset_ms),
            (None, Some(t)) => format!("at least {}", human(t - inc.onset_ms)),
            (None, None) => "unknown".to_owned(),
        },
    );
    row("Peak score", crate::units::format_score(inc.peak_score));
    row(
        "Steps",
        format!(
            "{} of {} planned: {performed} performed, {dry} dry-run, {suppressed} suppressed",
            inc.actions.len(),
            inc.chain_len
        ),
    );

    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| Time (UTC) | Since onset | Event |\n|---|---|---|");
    for (t, what) in timeline(inc) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            rfc3339(t),
            offset(inc, t),
            cell(&what)
        );
    }

    if let Some(d) = &inc.diagnosis {
        diagnosis_markdown(&mut out, inc, d);
    }

    if let Some(logs) = evidence.and_then(|e| e.logs.as_ref()) {
        log_markdown(&mut out, inc, logs);
    }

    let _ = writeln!(out, "\n## Actions");
    if inc.actions.is_empty() {
        let _ = writeln!(out, "\nNo step was planned.");
    }
    for a in &inc.actions {
        let _ = writeln!(
            out,
            "\n### Step {} of {}: {}\n",
            a.step,
            inc.chain_len,
            cell(&a.summary)
        );
        let _ = writeln!(
            out,
            "- Decision: **{}**: {}",
            a.decision.label(),
            cell(&a.decision.detail)
        );
        let _ = writeln!(
            out,
            "- Planned: {} ({})",
            rfc3339(a.planned_ms),
            offset(inc, a.planned_ms)
        );
        match &a.verification {
            Some(v) => {
                let _ = writeln!(
                    out,
                    "- Verification: **{}** at {} ({}): {}",
                    v.outcome.as_str(),
                    rfc3339(v.decided_ms),
                    offset(inc, v.decided_ms),
                    cell(&v.detail)
                );
            }
            None if a.decision.counts_as_performed() => {
                let _ = writeln!(out, "- Verification: pending when the data ended");
            }
            None => {
                let _ = writeln!(out, "- Verification: none (the step did not run)");
            }
        }
        if let Some(rendered) = &a.rendered {
            let json = serde_json::to_string_pretty(rendered)
                .expect("a rendered action serializes to JSON");
            let _ = writeln!(
                out,
                "- Rendered:\n\n  ```json\n  {}\n  ```",
                json.replace('\n', "\n  ")
            );
        }
    }
    out
}
