//! The incident chart: an SVG drawn by hand.
//!
//! Why by hand: the chart is one polyline, one polygon, a few lines and
//! some text, and an SVG is text. A plotting crate would bring fonts,
//! raster back ends and a layout engine to write a hundred lines of XML
//! whose every byte a golden file can then check.
//!
//! What it shows, in the detector's terms: the series as a polyline, the
//! normal band (`level ± 3 sigma`, as the detector held it before each
//! sample) as a shaded polygon, a vertical marker at the anomaly's onset,
//! one per step (coloured by its decision: allowed, dry run, suppressed)
//! and one per verification (recovered, not recovered, worse). Every
//! marker has a `<title>`, which browsers show on hover without any
//! script. Colours are presentation attributes, not CSS, so that the SVG
//! also reads right when saved on its own.

use std::fmt::Write as _;

use super::{escape, Evidence, EvidencePoint};
use crate::engine::{Incident, Outcome};
use crate::time::{civil_from_days, rfc3339};

/// Size of the drawing and its margins, in SVG user units (pixels).
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
/// Room for three rows of step labels above the plot.
const TOP: f64 = 44.0;
/// Height of a row of marker labels.
const ROW: f64 = 12.0;
/// Rows of labels above the plot (steps) and inside its top
/// (verifications).
const ROWS: usize = 3;
/// Approximate width of a character of the 11-unit sans-serif labels.
const CHAR_W: f64 = 6.5;

/// Places marker labels in rows so that none overlaps another: each label
/// goes to the first row where it keeps 3 units from every label already
/// there (the last row when none is free).
#[derive(Default)]
struct Rows(Vec<Vec<(f64, f64)>>);

impl Rows {
    /// The row for a label spanning `left..right`.
    fn place(&mut self, left: f64, right: f64) -> usize {
        self.0.resize(ROWS, Vec::new());
        let row = (0..ROWS)
            .find(|&r| {
                self.0[r]
                    .iter()
                    .all(|&(l, rr)| right + 3.0 <= l || left >= rr + 3.0)
            })
            .unwrap_or(ROWS - 1);
        self.0[row].push((left, right));
        row
    }
}

/// Width of a label's text.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}
const BOTTOM: f64 = 36.0;

/// The colour of a step's marker, by decision class.
pub(super) fn decision_colour(class: &str) -> &'static str {
    match class {
        "allowed" => "#1a7f37",
        "dry_run" => "#bf8700",
        _ => "#6e7781",
    }
}

/// The colour of a verification's marker, by outcome.
pub(super) fn outcome_colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Recovered => "#1a7f37",
        Outcome::NotRecovered => "#cf222e",
        Outcome::Worse => "#8250df",
    }
}

/// A step's decision as one of the three classes the chart colours:
/// `allowed`, `dry_run` or `suppressed` (whatever the reason).
pub(super) fn decision_class(label: &str) -> &'static str {
    match label {
        "allowed" => "allowed",
        "dry_run" => "dry_run",
        _ => "suppressed",
    }
}

/// Maps event time and values to the drawing.
struct Scale {
    t0: i64,
    t1: i64,
    v0: f64,
    v1: f64,
}

impl Scale {
    fn x(&self, ts_ms: i64) -> f64 {
        LEFT + (ts_ms - self.t0) as f64 / (self.t1 - self.t0) as f64 * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        let y = HEIGHT - BOTTOM - (v - self.v0) / (self.v1 - self.v0) * (HEIGHT - TOP - BOTTOM);
        // A band edge far outside the value range (a detector still warming
        // up) must not draw kilometres away: clip just outside the plot.
        y.clamp(TOP - 4.0, HEIGHT - BOTTOM + 4.0)
    }
}

/// The round step for about `target` ticks over `span`: 1, 2 or 5 times a
/// power of ten (the usual "nice numbers", Heckbert, Graphics Gems, 1990).
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Time steps that read well on a clock, in ms.
const TIME_STEPS: [i64; 20] = [
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// A tick label for a time: `HH:MM:SS` under a minute's step, `HH:MM`
/// otherwise, with the date in front when the chart spans days (UTC).
fn time_label(ms: i64, step: i64, span: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let clock = if step < 60_000 {
        format!("{hh:02}:{mm:02}:{ss:02}")
    } else {
        format!("{hh:02}:{mm:02}")
    };
    if span >= 86_400_000 {
        let (_, m, d) = civil_from_days(secs.div_euclid(86_400));
        format!("{m:02}-{d:02} {clock}")
    } else {
        clock
    }
}

/// A value tick label with as many decimals as the step needs. Ticks
/// 10,000 apart or more are written with an SI suffix (`2.2G`, not
/// `2200000000`), chosen from the step so that one axis uses one unit and
/// the labels fit the margin.
fn value_label(v: f64, step: f64) -> String {
    let (scale, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(s, _)| step.abs() >= 1e4 && step.abs() >= s / 10.0)
        .unwrap_or((1.0, ""));
    let (v, step) = (v / scale, step / scale);
    let decimals = (-step.log10().floor()).clamp(0.0, 9.0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_owned()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// The times a marker is drawn at, so the time axis includes them.
fn marker_times(inc: &Incident) -> impl Iterator<Item = i64> + '_ {
    let actions = inc.actions.iter().flat_map(|a| {
        std::iter::once(a.planned_ms).chain(a.verification.as_ref().map(|v| v.decided_ms))
    });
    std::iter::once(inc.onset_ms).chain(actions)
}

/// Samples of context before the onset the chart always shows (when
/// recorded), however short the incident.
const MIN_CONTEXT_SHOWN: usize = 16;

/// The points the chart draws: all from the onset on, and before it only
/// as far back as three times the incident's length (at least
/// [`MIN_CONTEXT_SHOWN`] samples). An hour of context would squeeze a
/// four-minute incident into the chart's last pixels; the evidence itself
/// keeps every point.
fn visible<'a>(inc: &Incident, points: &'a [EvidencePoint]) -> &'a [EvidencePoint] {
    let Some(last) = points.last() else {
        return points;
    };
    let end = marker_times(inc).fold(last.ts_ms, i64::max);
    let from = inc.onset_ms - 3 * (end - inc.onset_ms);
    let onset_idx = points.partition_point(|p| p.ts_ms < inc.onset_ms);
    let start = points
        .partition_point(|p| p.ts_ms < from)
        .min(onset_idx.saturating_sub(MIN_CONTEXT_SHOWN));
    &points[start..]
}

/// The chart of `inc`'s evidence; `None` when there are no points to draw.
pub(super) fn svg(inc: &Incident, evidence: &Evidence) -> Option<String> {
    let points = visible(inc, &evidence.points);
    let first = points.first()?;
    let last = points.last()?;
    let t0 = marker_times(inc).fold(first.ts_ms, i64::min);
    let mut t1 = marker_times(inc).fold(last.ts_ms, i64::max);
    if t1 <= t0 {
        t1 = t0 + 1000;
    }
    // A series that never went below zero (bytes, rates, latencies) has no
    // normal band below zero either: the detector's `level - 3 sigma` is
    // clipped there.
    let non_negative = points.iter().all(|p| p.value >= 0.0);
    let lo_of = |p: &EvidencePoint| {
        let lo = p.lo as f64;
        if non_negative {
            lo.max(0.0)
        } else {
            lo
        }
    };
    let values = points.iter().map(|p| p.value as f64);
    let (mut v0, mut v1) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    // The band widens the range only up to twice the values' own span past
    // them: an early band (a detector with little history) can be far wider
    // than anything the series did, and would flatten the line.
    let span = (v1 - v0).max(v0.abs().max(1e-9) * 0.1);
    for p in points {
        v0 = v0.min(lo_of(p).max(v0 - 2.0 * span));
        v1 = v1.max((p.hi as f64).min(v1 + 2.0 * span));
    }
    let pad = (v1 - v0) * 0.05;
    let (v0, v1) = (v0 - pad, v1 + pad);
    let s = Scale { t0, t1, v0, v1 };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"{}\">",
        escape(&format!("{} around {}", inc.signal, inc.id))
    );
    // Plot frame.
    let (px0, px1, py0, py1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let _ = writeln!(
        out,
        "<rect class=\"frame\" x=\"{px0:.1}\" y=\"{py0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#ffffff\" stroke=\"#d0d7de\"/>",
        px1 - px0,
        py1 - py0
    );

    // Value ticks and grid.
    let vstep = nice_step(v1 - v0, 4.0);
    let mut v = (v0 / vstep).ceil() * vstep;
    while v <= v1 {
        let y = s.y(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{px0:.1}\" y1=\"{y:.1}\" x2=\"{px1:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#57606a\">{}</text>",
            px0 - 6.0,
            y + 4.0,
            value_label(v, vstep)
        );
        v += vstep;
    }
    // Time ticks.
    let tspan = t1 - t0;
    let tstep = TIME_STEPS
        .iter()
        .copied()
        .find(|st| tspan / st <= 6)
        .unwrap_or_else(|| (tspan / 6 / 86_400_000 + 1) * 86_400_000);
    let mut t = t0.div_euclid(tstep) * tstep;
    if t < t0 {
        t += tstep;
    }
    while t <= t1 {
        let x = s.x(t);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{py0:.1}\" x2=\"{x:.1}\" y2=\"{py1:.1}\" stroke=\"#eaeef2\"/><text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
            py1 + 16.0,
            time_label(t, tstep, tspan)
        );
        t += tstep;
    }
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">time (UTC)</text>",
        (px0 + px1) / 2.0,
        HEIGHT - 4.0
    );

    // The band: upper edge left to right, lower edge back.
    let mut band = String::new();
    for p in points {
        let _ = write!(band, "{:.1},{:.1} ", s.x(p.ts_ms), s.y(p.hi as f64));
    }
    for p in points.iter().rev() {
        let _ = write!(band, "{:.1},{:.1} ", s.x(p.ts_ms), s.y(lo_of(p)));
    }
    let _ = writeln!(
        out,
        "<polygon class=\"band\" points=\"{}\" fill=\"#54aeff\" fill-opacity=\"0.2\" stroke=\"none\"><title>normal band (level ± 3 sigma)</title></polygon>",
        band.trim_end()
    );
    // The series.
    let mut line = String::new();
    for p in points {
        let _ = write!(line, "{:.1},{:.1} ", s.x(p.ts_ms), s.y(p.value as f64));
    }
    let _ = writeln!(
        out,
        "<polyline class=\"series\" points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\" stroke-linejoin=\"round\"><title>{}</title></polyline>",
        line.trim_end(),
        escape(&inc.signal)
    );

    // The incident's span, onset to resolution (or the end of the data).
    if let Some(end) = inc.resolved_ms.or(inc.unresolved_at_ms) {
        let (x0, x1) = (s.x(inc.onset_ms), s.x(end.min(t1)));
        let _ = writeln!(
            out,
            "<rect class=\"span\" x=\"{x0:.1}\" y=\"{py0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#cf222e\" fill-opacity=\"0.06\"><title>incident, onset to {}</title></rect>",
            (x1 - x0).max(0.0),
            py1 - py0,
            if inc.resolved_ms.is_some() { "resolution" } else { "end of data" }
        );
    }

    // Markers, onset first, then each step and its verification. A step
    // is a solid line labelled with its number above the plot; a
    // verification a dashed line with a dot and `N✓` (recovered) or `N✗`
    // (not recovered, worse) inside the plot's top, so that a verification
    // and the next step, often planned on the same sample, stay apart.
    // Labels that would overlap go to the next row.
    let mut above = Rows::default();
    let mut inside = Rows::default();
    let mut marker = |class: &str, x: f64, colour: &str, verify: bool, tag: &str, title: String| {
        let w = text_width(tag);
        let mark = if verify {
            // Right of the line, or left of it near the plot's right edge.
            let (tx, anchor, left) = if x + 40.0 > px1 {
                (x - 6.0, "end", x - 6.0 - w)
            } else {
                (x + 6.0, "start", x + 6.0)
            };
            let row = inside.place(left.min(x - 4.0), (left + w).max(x + 4.0)) as f64;
            format!(
                " stroke-dasharray=\"5 3\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"{colour}\"",
                py0 + 8.0 + ROW * row,
                py0 + 12.0 + ROW * row
            )
        } else if class == "onset" {
            // Left of the line: the first step often follows within pixels.
            let row = above.place(x - 4.0 - w, x - 4.0) as f64;
            format!(
                "/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{colour}\"",
                x - 4.0,
                py0 - 6.0 - ROW * row
            )
        } else {
            let row = if tag.is_empty() {
                0.0
            } else {
                above.place(x - w / 2.0, x + w / 2.0) as f64
            };
            format!(
                "/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{colour}\"",
                py0 - 6.0 - ROW * row
            )
        };
        let _ = writeln!(
            out,
            "<g class=\"marker {class}\"><line x1=\"{x:.1}\" y1=\"{py0:.1}\" x2=\"{x:.1}\" y2=\"{py1:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{mark}>{}</text><title>{}</title></g>",
            escape(tag),
            escape(&title)
        );
    };
    marker(
        "onset",
        s.x(inc.onset_ms),
        "#cf222e",
        false,
        "onset",
        format!("anomaly onset at {}", rfc3339(inc.onset_ms)),
    );
    for (k, a) in inc.actions.iter().enumerate() {
        let class = decision_class(a.decision.label());
        // Steps planned on the same sample (a refused step and the next
        // one) share one label, `1,2`, and their lines sit 3 px apart so
        // that each colour shows.
        let nth = inc.actions[..k]
            .iter()
            .filter(|b| b.planned_ms == a.planned_ms)
            .count();
        let tag = if nth == 0 {
            let same: Vec<String> = inc
                .actions
                .iter()
                .filter(|b| b.planned_ms == a.planned_ms)
                .map(|b| b.step.to_string())
                .collect();
            same.join(",")
        } else {
            String::new()
        };
        marker(
            &format!("action {class}"),
            s.x(a.planned_ms) + 3.0 * nth as f64,
            decision_colour(class),
            false,
            &tag,
            format!(
                "step {} {} at {}: {}",
                a.step,
                a.decision.label(),
                rfc3339(a.planned_ms),
                a.summary
            ),
        );
        if let Some(v) = &a.verification {
            marker(
                &format!("verify {}", v.outcome.as_str()),
                s.x(v.decided_ms),
                outcome_colour(v.outcome),
                true,
                &format!(
                    "{}{}",
                    a.step,
                    if v.outcome == Outcome::Recovered {
                        '\u{2713}'
                    } else {
                        '\u{2717}'
                    }
                ),
                format!(
                    "step {} verified {} at {}: {}",
                    a.step,
                    v.outcome.as_str(),
                    rfc3339(v.decided_ms),
                    v.detail
                ),
            );
        }
    }
    out.push_str("</svg>\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_incident_is_not_squeezed_by_its_context() {
        let points: Vec<EvidencePoint> = (0..100)
            .map(|i| EvidencePoint::new(i * 1000, 1.0, (0.0, 2.0)))
            .collect();
        let inc = Incident {
            id: "inc-000001".into(),
            series: Default::default(),
            service: String::new(),
            signal: "up".into(),
            rule: "r".into(),
            description: None,
            severity: Default::default(),
            above: true,
            onset_ms: 97_000,
            opened_ms: 97_000,
            peak_score: 1.0,
            peer_z: None,
            chain_len: 0,
            actions: vec![],
            resolved_ms: Some(98_000),
            unresolved_at_ms: None,
            diagnosis: None,
        };
        // 2 s from onset to the last point: 16 samples of context (more
        // than 3 x 2 s would give), not 97.
        let v = visible(&inc, &points);
        assert_eq!(v[0].ts_ms, 81_000);
        let long = Incident {
            onset_ms: 80_000,
            ..inc.clone()
        };
        // 19 s: 57 s of context.
        assert_eq!(visible(&long, &points)[0].ts_ms, 23_000);
        assert!(visible(&inc, &[]).is_empty());
    }

    #[test]
    fn marker_labels_that_would_overlap_go_to_the_next_row() {
        use crate::engine::{Decision, PlannedAction};
        use crate::runbook::ActionKind;
        let points: Vec<EvidencePoint> = (0..60)
            .map(|i| EvidencePoint::new(i * 1000, 1.0, (0.0, 2.0)))
            .collect();
        let step = |n: usize, at: i64| PlannedAction {
            step: n,
            kind: ActionKind::Restart,
            rendered: None,
            summary: "restart x".into(),
            decision: Decision::suppressed(crate::engine::SuppressReason::Cooldown, String::new()),
            planned_ms: at,
            verification: None,
            timeout: None,
        };
        // Onset and three steps within a second of each other, and one
        // far away: five labels, the first four crowded.
        let inc = Incident {
            id: "inc-000001".into(),
            series: Default::default(),
            service: String::new(),
            signal: "up".into(),
            rule: "r".into(),
            description: None,
            severity: Default::default(),
            above: true,
            onset_ms: 10_000,
            opened_ms: 10_000,
            peak_score: 1.0,
            peer_z: None,
            chain_len: 4,
            actions: vec![
                step(1, 10_000),
                step(2, 10_500),
                step(3, 11_000),
                step(4, 50_000),
            ],
            resolved_ms: Some(59_000),
            unresolved_at_ms: None,
            diagnosis: None,
        };
        let svg = svg(
            &inc,
            &Evidence {
                points,
                context: 10,
                samples: 60,
                logs: None,
            },
        )
        .unwrap();
        // Every label above the plot, as (left, right, y).
        let mut boxes = Vec::new();
        for g in svg.split("<g class=\"marker ").skip(1) {
            let text = g.split("<text ").nth(1).unwrap();
            let num = |k: &str| -> f64 {
                text.split(&format!("{k}=\""))
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (x, y) = (num("x"), num("y"));
            let label = text.split('>').nth(1).unwrap().split('<').next().unwrap();
            let w = text_width(label);
            let anchor = text
                .split("text-anchor=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let left = match anchor {
                "end" => x - w,
                "middle" => x - w / 2.0,
                _ => x,
            };
            if !label.is_empty() {
                boxes.push((left, left + w, y, label.to_owned()));
            }
        }
        assert_eq!(boxes.len(), 5, "{boxes:?}");
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let apart = a.1 <= b.0 || b.1 <= a.0 || (a.2 - b.2).abs() >= ROW;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0, 4.0), 2.0);
        assert_eq!(nice_step(0.07, 4.0), 0.02);
        assert_eq!(nice_step(900.0, 4.0), 200.0);
        assert_eq!(nice_step(4.0, 4.0), 1.0);
    }

    #[test]
    fn tick_labels_read_like_a_clock_and_like_numbers() {
        // 2026-03-01T12:34:56Z.
        let t = 1_772_368_496_000;
        assert_eq!(time_label(t, 1000, 60_000), "12:34:56");
        assert_eq!(time_label(t, 60_000, 3_600_000), "12:34");
        assert_eq!(time_label(t, 3_600_000, 3 * 86_400_000), "03-01 12:34");
        assert_eq!(value_label(0.25, 0.05), "0.25");
        assert_eq!(value_label(1200.0, 200.0), "1200");
        assert_eq!(value_label(2_200_000_000.0, 200_000_000.0), "2.2G");
        assert_eq!(value_label(0.0, 200_000_000.0), "0.0G");
        assert_eq!(value_label(3_000_000.0, 1_000_000.0), "3M");
        assert_eq!(value_label(150_000.0, 50_000.0), "150k");
        assert_eq!(value_label(-0.0001, 0.1), "0.0");
    }
}
