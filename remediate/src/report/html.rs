//! The post-incident report as one self-contained HTML page: what
//! `GET /incidents/ID` serves and `heal replay --report` writes.
//!
//! Self-contained because a report is read during or after an outage, maybe
//! saved and attached to a ticket: inline CSS, an inline SVG chart, no
//! JavaScript, no font, image or stylesheet fetched from anywhere. Every
//! piece of text that comes from a runbook, a label or an executor goes
//! through [`escape`]: a label value is attacker-controlled as far as a
//! report is concerned (`<script>` in an `instance` label must stay text).
//!
//! The page is also well-formed XML (void elements closed with `/>`), so
//! tests can parse it and count what the chart drew.

use std::fmt::Write as _;

use super::chart::{self, decision_class, decision_colour, outcome_colour};
use super::{escape, offset, status, steps, timeline, title, Evidence, LogEvidence, Steps};
use crate::engine::{series_selector, Incident, Outcome};
use crate::time::{human, rfc3339};

/// The reports' style sheet; heal's web pages (`GET /`) share it.
pub const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328; max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.45rem; margin-bottom: 0.4rem; }
h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 1.8rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f6f8fa; }
table.fields th { width: 11rem; }
code { overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, 'SFMono-Regular', Menlo, monospace; font-size: 0.85rem; }
pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.status { padding: 0.5rem 0.8rem; border-radius: 6px; border: 1px solid; }
.status.resolved { background: #dafbe1; border-color: #4ac26b; }
.status.open { background: #ffebe9; border-color: #ff8182; }
blockquote { margin: 0.8rem 0; padding: 0 0.8rem; color: #57606a; border-left: 0.25rem solid #d0d7de; }
.chart { max-width: 100%; height: auto; }
.legend { font-size: 0.85rem; color: #57606a; }
.legend span { display: inline-block; margin-right: 1rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; vertical-align: middle; margin-right: 0.25rem; }
.decision { font-weight: 600; }
.muted { color: #57606a; }
";

/// A post-incident report as a self-contained HTML page: header, summary,
/// the signal's chart with its normal band and markers (when `evidence` has
/// points), the timeline, the steps with their decisions and
/// verifications, and a summary of the evidence.
pub fn html(incident: &Incident, evidence: Option<&Evidence>) -> String {
    let inc = incident;
    let mut out = String::new();
    let head = title(inc, evidence);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<meta name=\"generator\" content=\"heal\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&head)
    );

    // Header: the one thing to know at 3 a.m. first.
    let (word, rest) = status(inc);
    let open = if inc.resolved_ms.is_some() {
        "resolved"
    } else {
        "open"
    };
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"status {open}\"><strong>{}</strong> {}</p>",
        escape(&head),
        escape(word),
        escape(&rest)
    );
    if let Some(description) = &inc.description {
        let _ = writeln!(
            out,
            "<blockquote><p>{}</p></blockquote>",
            escape(description.trim())
        );
    }
    out.push_str("</header>\n");

    // Summary.
    let kind = super::anomaly_kind(inc, evidence);
    let Steps {
        performed,
        dry,
        suppressed,
    } = steps(inc);
    let mut rows: Vec<(&str, String)> = vec![
        ("Incident", escape(&inc.id)),
        ("Status", open.to_owned()),
        (
            "Service",
            if inc.service.is_empty() {
                "<span class=\"muted\">(no service label)</span>".to_owned()
            } else {
                escape(&inc.service)
            },
        ),
        (
            "Series",
            format!("<code>{}</code>", escape(&series_selector(&inc.series))),
        ),
        ("Signal", format!("{} ({kind})", escape(&inc.signal))),
        ("Rule", escape(&inc.rule)),
        ("Severity", escape(inc.severity.as_str())),
        ("Onset", rfc3339(inc.onset_ms)),
        (
            "Opened",
            format!(
                "{} ({} after onset)",
                rfc3339(inc.opened_ms),
                human(inc.opened_ms - inc.onset_ms)
            ),
        ),
    ];
    rows.push((
        "Resolved",
        match (inc.resolved_ms, inc.unresolved_at_ms) {
            (Some(t), _) => rfc3339(t),
            (None, Some(t)) => format!("not resolved (still open at {})", rfc3339(t)),
            (None, None) => "not resolved".to_owned(),
        },
    ));
    rows.push((
        "Duration",
        match (inc.resolved_ms, inc.unresolved_at_ms) {
            (Some(t), _) => human(t - inc.onset_ms),
            (None, Some(t)) => format!("at least {}", human(t - inc.onset_ms)),
            (None, None) => "unknown".to_owned(),
        },
    ));
    rows.push(("Peak score", crate::units::format_score(inc.peak_score)));
    if let Some(cause) = super::peer_cause(inc) {
        rows.push(("Cause", escape(&cause)));
    }
    rows.push((
        "Steps",
        format!(
            "{} of {} planned: {performed} performed, {dry} dry-run, {suppressed} suppressed",
            inc.actions.len(),
            inc.chain_len
        ),
    ));
    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<table class=\"fields\">\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    out.push_str("</table>\n</section>\n");

    // The chart.
    out.push_str("<section id=\"signal\">\n<h2>Signal</h2>\n");
    match evidence.and_then(|e| chart::svg(inc, e)) {
        Some(svg) => {
            out.push_str(&svg);
            out.push_str(&legend(inc));
        }
        None => out.push_str(
            "<p class=\"muted\">No samples were recorded for this incident, so there is no chart.</p>\n",
        ),
    }
    out.push_str("</section>\n");

    // Timeline.
    out.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n<table>\n<tr><th>Time (UTC)</th><th>Since onset</th><th>Event</th></tr>\n");
    for (t, what) in timeline(inc) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>+{}</td><td>{}</td></tr>",
            rfc3339(t),
            human(t - inc.onset_ms),
            escape(&what)
        );
    }
    out.push_str("</table>\n</section>\n");

    // Actions.
    out.push_str("<section id=\"actions\">\n<h2>Actions</h2>\n");
    if inc.actions.is_empty() {
        out.push_str("<p>No step was planned.</p>\n");
    } else {
        out.push_str("<table>\n<tr><th>Step</th><th>Action</th><th>Decision</th><th>Reason and detail</th><th>Verification</th></tr>\n");
        for a in &inc.actions {
            let class = decision_class(a.decision.label());
            let rendered = a.rendered.as_ref().map_or_else(String::new, |r| {
                let json =
                    serde_json::to_string_pretty(r).expect("a rendered action serializes to JSON");
                format!(
                    "<details><summary>rendered</summary><pre>{}</pre></details>",
                    escape(&json)
                )
            });
            let verification = match &a.verification {
                Some(v) => format!(
                    "<span class=\"decision\" style=\"color: {}\">{}</span> at {} (+{}): {}",
                    outcome_colour(v.outcome),
                    v.outcome.as_str(),
                    rfc3339(v.decided_ms),
                    human(v.decided_ms - inc.onset_ms),
                    escape(&v.detail)
                ),
                None if a.decision.counts_as_performed() => {
                    "pending when the data ended".to_owned()
                }
                None => "<span class=\"muted\">none (the step did not run)</span>".to_owned(),
            };
            let _ = writeln!(
                out,
                "<tr class=\"step {class}\"><td>{} of {}<br/><span class=\"muted\">{} (+{})</span></td><td>{}{}{rendered}</td><td><span class=\"decision\" style=\"color: {}\">{}</span></td><td>{}</td><td>{verification}</td></tr>",
                a.step,
                inc.chain_len,
                rfc3339(a.planned_ms),
                human(a.planned_ms - inc.onset_ms),
                // The summary names the action (`exec /bin/x`, `restart
                // deployment/web`); the kind only when it does not.
                if a.summary.starts_with(a.kind.as_str()) {
                    String::new()
                } else {
                    format!("<code>{}</code> ", escape(a.kind.as_str()))
                },
                escape(&a.summary),
                decision_colour(class),
                escape(a.decision.label()),
                escape(&a.decision.detail),
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");

    // Evidence.
    out.push_str("<section id=\"evidence\">\n<h2>Evidence</h2>\n");
    match evidence.filter(|e| !e.points.is_empty()) {
        None => out.push_str("<p class=\"muted\">No samples were recorded.</p>\n"),
        Some(e) => out.push_str(&evidence_summary(inc, e)),
    }
    out.push_str("</section>\n");
    if let Some(d) = &inc.diagnosis {
        out.push_str(&diagnosis_html(inc, d));
    }
    if let Some(logs) = evidence.and_then(|e| e.logs.as_ref()) {
        out.push_str(&log_html(inc, logs));
    }
    let _ = writeln!(
        out,
        "<footer><p class=\"muted\">Written by heal from event time only; every value and band as the detector saw it.</p></footer>\n</body>\n</html>"
    );
    out
}

/// The section of an incident's group diagnosis: the group, the role of
/// this incident's service, and the ranking with what moved.
fn diagnosis_html(inc: &Incident, d: &crate::engine::IncidentDiagnosis) -> String {
    let mut out = String::from("<section id=\"diagnosis\">\n<h2>Diagnosis</h2>\n");
    let role = if d.is_root_cause {
        "the ranked <strong>root cause</strong>".to_owned()
    } else {
        format!(
            "a <strong>symptom</strong>; the ranked root cause is <code>{}</code>",
            escape(&d.root_cause)
        )
    };
    let _ = writeln!(
        out,
        "<p>This incident is one of group <code>{}</code> ({}), which began at {}; its service is {role} (ranked at {}).</p>",
        escape(&d.group),
        escape(&d.services.join(", ")),
        rfc3339(d.onset_ms),
        rfc3339(d.ts_ms)
    );
    out.push_str("<table>\n<tr><th>Rank</th><th>Service</th><th>Score</th><th>What moved</th><th>Path</th></tr>\n");
    for (i, row) in super::rank_rows(inc, d).iter().enumerate() {
        let s = row.suspect;
        let what: Vec<String> = row.moved.iter().map(|m| escape(m)).collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(&s.service),
            s.score,
            what.join("<br/>"),
            escape(&s.path.join(" \u{2192} "))
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

/// The section of a log signal's evidence: the templates that moved, then
/// the example lines, every byte of them escaped.
fn log_html(inc: &Incident, logs: &LogEvidence) -> String {
    let mut out = String::from("<section id=\"logs\">\n<h2>What the log said</h2>\n");
    if !logs.templates.is_empty() {
        out.push_str("<p>Templates of the source whose rate moved most (lines per evaluation):</p>\n<table>\n<tr><th>Template</th><th>Id</th><th>Before</th><th>During</th></tr>\n");
        for t in &logs.templates {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(&t.template),
                escape(&t.template_id),
                t.before,
                t.during
            );
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(
        out,
        "<p>{} of the {} lines the signal counted{}:</p>\n<pre>",
        logs.lines.len(),
        logs.counted,
        logs.lines
            .first()
            .map(|l| format!(" from {} on", escape(&offset(inc, l.ts_ms))))
            .unwrap_or_default()
    );
    for l in &logs.lines {
        out.push_str(&escape(&l.text));
        out.push('\n');
    }
    out.push_str("</pre>\n</section>\n");
    out
}

/// What the chart's colours mean, limited to what this chart shows.
fn legend(inc: &Incident) -> String {
    let mut items = vec![
        ("#0969da", "series".to_owned()),
        ("#54aeff", "normal band (level \u{b1} 3 sigma)".to_owned()),
        ("#cf222e", "onset".to_owned()),
    ];
    let mut seen: Vec<&str> = Vec::new();
    for a in &inc.actions {
        let class = decision_class(a.decision.label());
        if !seen.contains(&class) {
            seen.push(class);
            items.push((decision_colour(class), format!("step: {class}")));
        }
    }
    for outcome in [Outcome::Recovered, Outcome::NotRecovered, Outcome::Worse] {
        if inc.actions.iter().any(|a| {
            a.verification
                .as_ref()
                .is_some_and(|v| v.outcome == outcome)
        }) {
            items.push((
                outcome_colour(outcome),
                format!("verified: {} (dashed)", outcome.as_str()),
            ));
        }
    }
    let mut out = String::from("<p class=\"legend\">");
    for (colour, text) in items {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background: {colour}\"></span>{}</span>",
            escape(&text)
        );
    }
    out.push_str("</p>\n");
    out
}

/// Numbers about the recorded samples: how many, over what span, the range
/// of values, how far out of the band the series went.
fn evidence_summary(inc: &Incident, e: &Evidence) -> String {
    let first = e.points[0];
    let last = e.points[e.points.len() - 1];
    let (min, max) = e
        .points
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.value), hi.max(p.value))
        });
    let v = |x: f32| crate::units::format_value(f64::from(x), &inc.signal);
    let outside = e
        .points
        .iter()
        .filter(|p| p.value < p.lo || p.value > p.hi)
        .count();
    let at_onset = e
        .points
        .iter()
        .rev()
        .find(|p| p.ts_ms <= inc.onset_ms)
        .unwrap_or(&first);
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Points",
            if e.samples > e.points.len() as u64 {
                format!(
                    "{} standing for {} samples (decimated: each point after the context is the most outlying of its run)",
                    e.points.len(),
                    e.samples
                )
            } else {
                format!("{}, one per sample", e.points.len())
            },
        ),
        (
            "Context",
            format!(
                "{} samples up to the opening, from the series' recent history",
                e.context
            ),
        ),
        (
            "From",
            format!("{} to {}", rfc3339(first.ts_ms), rfc3339(last.ts_ms)),
        ),
        (
            "Values",
            format!("min {}, max {}, last {}", v(min), v(max), v(last.value)),
        ),
        (
            "Band at onset",
            format!(
                "{} to {} (value {})",
                v(at_onset.lo),
                v(at_onset.hi),
                v(at_onset.value)
            ),
        ),
        (
            "Outside the band",
            format!("{outside} of {} points", e.points.len()),
        ),
    ];
    rows.push(("Peak score", crate::units::format_score(inc.peak_score)));
    let mut out = String::from("<table class=\"fields\">\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    out.push_str("</table>\n");
    out
}
