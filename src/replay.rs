//! Replay (`heal replay`): detection and rules over a recorded dataset in
//! event time, through the very [`Pipeline`] the live loop runs, every
//! action in dry-run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};

use crate::Context;
use ingest::log_source::PreparedLogSource;
use ingest::{Dataset, Labels, LogDataset, Sample};
use remediate::engine::EngineEvent;
use remediate::report::Evidence;
use remediate::{EngineOptions, Incident, RunbookSet};

use stdx::write_atomically;

use crate::evaluate::{evaluate, Evaluation};
use crate::pipeline::{Pipeline, SeriesHandle};
use crate::text::{fmt_duration, fmt_minute};
use crate::tuning::{open_store, Tuning};
use crate::{Error, Result};

/// What to replay and where its records go (`heal replay`'s arguments).
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// A dataset: a Parquet file in heal's long form, with its optional
    /// ground truth `<stem>.truth.json` beside it (`None`: logs only).
    pub dataset: Option<PathBuf>,
    /// Log datasets (`heal record --log-source`), replayed with the series
    /// in event time through the runbooks' `logs:` signals.
    pub logs: Vec<PathBuf>,
    /// The log signals' slot (as `heal watch --interval`): lines are
    /// counted per slot of this length, by their event time.
    pub interval_ms: i64,
    /// Directory of YAML runbooks.
    pub runbooks: PathBuf,
    /// Directory to write `incidents.jsonl`, one Markdown and one HTML
    /// report (with the signal's chart) per incident, and `feed.atom` (the
    /// closed incidents) into (created if missing).
    pub report: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
    /// Also write every incident and engine event to this incident store
    /// (SQLite, created if missing; read it with `heal incidents`). Incident
    /// ids go on from the store's highest, so they stay unique.
    pub db: Option<PathBuf>,
    /// Detector settings from a parameter file (as `heal tune -o` writes):
    /// they replace the detector settings of every signal that does not set
    /// its own `detector:` in its runbook. Learned sensitivity offsets come
    /// from --db (`heal incidents sensitivity`) and apply on top.
    pub params: Option<PathBuf>,
}

/// Probe signals without a series of their name in the dataset: a probe
/// runs only live, so a replay sees it only if it was recorded under that
/// name (`heal record --query NAME=...`).
fn unrecorded_probes(runbooks: &RunbookSet, dataset: &Dataset) -> Vec<String> {
    runbooks
        .signals()
        .iter()
        .filter(|s| s.probe.is_some())
        .filter(|s| {
            !dataset
                .series
                .iter()
                .any(|d| d.labels.name() == Some(s.name.as_str()))
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Replays the dataset, prints the incidents and their evaluation against
/// the ground truth, and writes the reports and the store.
///
/// # Errors
///
/// Bad runbooks or dataset (usage errors), a store or report that cannot
/// be written.
pub fn run(args: ReplayConfig) -> Result<()> {
    let runbooks = RunbookSet::load_dir(&args.runbooks).map_err(|e| Error::Usage(e.to_string()))?;
    if args.dataset.is_none() && args.logs.is_empty() {
        return Err(Error::Usage(
            "nothing to replay: give a DATASET, --logs FILE, or both".into(),
        ));
    }
    if args.interval_ms <= 0 {
        return Err(Error::Usage(format!(
            "--interval must be positive, got {} ms",
            args.interval_ms
        )));
    }
    let dataset = match &args.dataset {
        Some(path) => Dataset::read(path).map_err(|e| Error::Usage(e.to_string()))?,
        None => Dataset::default(),
    };
    let logs = read_logs(&args.logs)?;
    let shown = args.dataset.as_ref().map_or_else(
        || "the log datasets".to_owned(),
        |p| p.display().to_string(),
    );
    for name in unrecorded_probes(&runbooks, &dataset) {
        eprintln!(
            "note: signal {name:?} is a probe heal runs live; {shown} has no series named {name:?}, so it is not replayed",
        );
    }
    if let Some(logs) = &logs {
        for note in log_notes(&runbooks, logs) {
            eprintln!("note: {note}");
        }
    }
    // Incident store (--db): opened before the replay so a bad path fails fast.
    let opened = args.db.as_deref().map(open_store).transpose()?;
    let first_seq = opened.as_ref().map_or(1, |o| o.next_incident_seq);
    let offsets = opened
        .as_ref()
        .map(|o| o.offsets.clone())
        .unwrap_or_default();
    let mut store = opened.map(|o| o.store);
    let tuning = Tuning::load(args.params.as_deref(), offsets)?;
    tuning.print(&runbooks);
    let outcome = replay_with_logs(
        &dataset,
        logs.as_ref().map(|l| (l, args.interval_ms)),
        runbooks,
        !args.quiet,
        first_seq,
        &tuning,
    );
    print_summary(&outcome.incidents);
    let s = &outcome.stats;
    println!();
    if let Some(l) = &outcome.log_stats {
        println!(
            "replayed {} log lines of {} sources in {} slots of {} ({} lines of sources no signal reads)",
            l.lines,
            l.sources,
            l.slots,
            fmt_duration(args.interval_ms),
            l.unread
        );
    }
    println!(
        "replayed {} samples of {} series ({} not watched by any signal); {} anomalies, {} incidents",
        s.samples,
        dataset.series.len() + outcome.log_series,
        s.unwatched_series,
        s.anomalies,
        outcome.incidents.len()
    );
    if !s.dropped.is_empty() {
        let d: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("samples dropped by the sample policy: {}", d.join(", "));
    }
    let windows: Vec<&ingest::TruthWindow> = dataset
        .truth
        .iter()
        .chain(logs.iter().flat_map(|l| &l.truth))
        .collect();
    if !windows.is_empty() {
        let truth: Vec<_> = windows
            .iter()
            .map(|w| {
                (
                    w.series
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    w.start_ms,
                    w.end_ms,
                )
            })
            .collect();
        print_evaluation(&evaluate(&outcome.incidents, &truth));
    }
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomically(
            &dir.join("incidents.jsonl"),
            remediate::report::json_lines(&outcome.incidents).as_bytes(),
        )?;
        for inc in &outcome.incidents {
            write_atomically(
                &dir.join(format!("{}.md", inc.id)),
                remediate::report::markdown_with(inc, outcome.evidence.get(&inc.id)).as_bytes(),
            )?;
            write_atomically(
                &dir.join(format!("{}.html", inc.id)),
                remediate::report::html(inc, outcome.evidence.get(&inc.id)).as_bytes(),
            )?;
        }
        // The feed's entries link to the HTML reports beside it; its id is
        // the file's own URL. Its `updated` is the last event time of the
        // data, not the clock: the same replay writes the same feed.
        let feed_url = file_url(&dir.join("feed.atom"));
        write_atomically(
            &dir.join("feed.atom"),
            remediate::report::atom_linked(
                &outcome.incidents,
                &feed_url,
                outcome.end_ms,
                &|inc: &Incident| format!("{}.html", inc.id),
            )
            .as_bytes(),
        )?;
        println!(
            "wrote incidents.jsonl, feed.atom and {} reports (Markdown and HTML) to {}",
            outcome.incidents.len(),
            dir.display()
        );
    }
    if let (Some(store), Some(db)) = (&mut store, &args.db) {
        store.record_batch(&outcome.incidents, &outcome.events)?;
        for (id, evidence) in &outcome.evidence {
            store.record_evidence(id, evidence)?;
        }
        println!(
            "stored {} incidents and {} engine events in {}",
            outcome.incidents.len(),
            outcome.events.len(),
            store::Location::of(db)
        );
    }
    Ok(())
}

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Every incident, in order of opening.
    pub incidents: Vec<Incident>,
    /// Pipeline counters.
    pub stats: crate::pipeline::PipelineStats,
    /// Each incident's evidence (the samples around it), by incident id.
    pub evidence: BTreeMap<String, Evidence>,
    /// Event time of the last sample (0 for an empty dataset).
    pub end_ms: i64,
    /// Every engine event, in order.
    pub events: Vec<remediate::engine::EngineEvent>,
    /// What the log replay did, when there were logs.
    pub log_stats: Option<LogReplayStats>,
    /// Series the log signals made.
    pub log_series: usize,
}

/// Counters of a log replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReplayStats {
    /// Lines replayed.
    pub lines: usize,
    /// Sources they came from.
    pub sources: usize,
    /// Lines of sources that no `logs:` signal reads (not counted).
    pub unread: usize,
    /// Slots counted.
    pub slots: usize,
}

/// Reads and merges the log datasets (`None` without any).
fn read_logs(paths: &[PathBuf]) -> Result<Option<LogDataset>> {
    let mut merged: Option<LogDataset> = None;
    for path in paths {
        let d = LogDataset::read(path).map_err(|e| Error::Usage(e.to_string()))?;
        let Some(m) = merged.as_mut() else {
            merged = Some(d);
            continue;
        };
        let map: Vec<usize> = d
            .streams
            .iter()
            .map(|s| m.stream(&s.source, &s.labels))
            .collect();
        m.lines.extend(d.lines.into_iter().map(|mut l| {
            l.stream = map[l.stream];
            l
        }));
        m.start_ms = match (m.start_ms, d.start_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        m.end_ms = match (m.end_ms, d.end_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        m.truth.extend(d.truth);
    }
    if let Some(m) = merged.as_mut() {
        m.sort();
    }
    Ok(merged)
}

/// What a user should know before a log replay: recorded sources no
/// signal reads, and log signals whose source was not recorded.
fn log_notes(runbooks: &RunbookSet, logs: &LogDataset) -> Vec<String> {
    let recorded = logs.lines_per_source();
    let watches = crate::log_sources::watches(runbooks);
    let mut notes = Vec::new();
    for (source, n) in &recorded {
        if !watches.iter().any(|w| w.source == *source) {
            notes.push(format!(
                "{n} recorded lines of log source {source:?} are not replayed: no `logs:` signal of the runbooks reads it"
            ));
        }
    }
    for w in &watches {
        if !recorded.contains_key(w.source.as_str()) {
            notes.push(format!(
                "signal {:?} reads log source {:?}, which the log datasets do not hold: it counts nothing",
                w.name, w.source
            ));
        }
    }
    notes
}

/// The end of the slot `ts_ms` counts in: slots end on multiples of the
/// interval and hold `(end - interval, end]`, as live.
fn slot_end(ts_ms: i64, interval_ms: i64) -> i64 {
    if ts_ms.rem_euclid(interval_ms) == 0 {
        ts_ms
    } else {
        (ts_ms.div_euclid(interval_ms) + 1) * interval_ms
    }
}

/// A log dataset being replayed: the runbooks' log sources fed its lines
/// slot by slot.
struct LogReplay<'a> {
    logs: &'a LogDataset,
    prepared: PreparedLogSource,
    interval_ms: i64,
    next_line: usize,
    /// The next slot, while there is one.
    next_slot: Option<i64>,
    last_slot: i64,
    handles: std::collections::HashMap<Labels, Option<SeriesHandle>>,
    /// Per stream of the dataset: whether a `logs:` signal reads its
    /// source (decided once, not per line).
    read: Vec<bool>,
    stats: LogReplayStats,
}

impl<'a> LogReplay<'a> {
    fn new(runbooks: &RunbookSet, logs: &'a LogDataset, interval_ms: i64) -> Option<Self> {
        let watches = crate::log_sources::watches(runbooks);
        if watches.is_empty() {
            return None;
        }
        let sources = crate::log_sources::sources(runbooks, crate::log_sources::Inputs::Recorded);
        // The runbooks were validated: their sources compile.
        let prepared =
            match ingest::log_source::prepare_log_source(sources, watches, interval_ms, None) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("note: the log datasets are not replayed: {e}");
                    return None;
                }
            };
        let (start, end) = logs.window()?;
        let read = logs
            .streams
            .iter()
            .map(|s| prepared.watches(&s.source))
            .collect();
        Some(LogReplay {
            read,
            logs,
            prepared,
            interval_ms,
            next_line: 0,
            next_slot: Some(slot_end(start, interval_ms)),
            last_slot: slot_end(end, interval_ms),
            handles: Default::default(),
            stats: LogReplayStats {
                sources: logs.lines_per_source().len(),
                ..Default::default()
            },
        })
    }

    /// Counts the slot ending at `end`: its lines fed, its evaluations and
    /// evidence made by the same code as live.
    fn slot(
        &mut self,
        end: i64,
    ) -> (
        Vec<ingest::Evaluation>,
        Vec<ingest::log_source::LogExamples>,
    ) {
        while let Some(l) = self.logs.lines.get(self.next_line) {
            if l.ts_ms > end {
                break;
            }
            let source = &self.logs.streams[l.stream].source;
            if self.read[l.stream] && self.prepared.feed(source, l.line.clone()) {
                self.stats.lines += 1;
            } else {
                self.stats.unread += 1;
            }
            self.next_line += 1;
        }
        self.stats.slots += 1;
        self.next_slot = (end < self.last_slot).then_some(end + self.interval_ms);
        self.prepared.end_slot(end)
    }
}

/// `file://` URL of a path (made absolute; bytes outside the unreserved
/// set and `/` percent-encoded), for the feed's id.
fn file_url(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    format!(
        "file://{}",
        stdx::text::percent_encode(&abs.to_string_lossy(), b"/")
    )
}

/// Feeds every sample of `dataset` through one pipeline in event-time order
/// (ties broken by series order, so the result is deterministic).
/// Incidents are numbered from `first_seq` (`inc-000042` for 42; 1 without
/// an incident store).
pub fn replay(
    dataset: &Dataset,
    runbooks: RunbookSet,
    progress: bool,
    first_seq: u64,
    tuning: &Tuning,
) -> ReplayOutcome {
    replay_with_logs(dataset, None, runbooks, progress, first_seq, tuning)
}

/// [`replay`], with a log dataset's lines counted slot by slot (slots of
/// `interval_ms`, by event time) through the runbooks' `logs:` signals, in
/// event time with the series: a log slot ending at `t` goes before the
/// samples at `t`.
pub fn replay_with_logs(
    dataset: &Dataset,
    logs: Option<(&LogDataset, i64)>,
    runbooks: RunbookSet,
    progress: bool,
    first_seq: u64,
    tuning: &Tuning,
) -> ReplayOutcome {
    let mut log_replay = logs.and_then(|(l, interval)| LogReplay::new(&runbooks, l, interval));
    let _span = tracing::info_span!("replay", series = dataset.series.len()).entered();
    let mut pipeline = Pipeline::new(
        runbooks,
        EngineOptions {
            dry_run: true,
            await_actions: false,
        },
    );
    tuning.apply(&mut pipeline);
    pipeline.engine_mut().continue_numbering_from(first_seq);
    let mut events = Vec::new();
    let handles: Vec<_> = dataset
        .series
        .iter()
        .map(|s| pipeline.register(&s.labels))
        .collect();
    // A k-way merge of the per-series sample lists (each in time order)
    // keeps memory at one cursor per series instead of one sorted copy of
    // every sample.
    let mut heap: BinaryHeap<Reverse<(i64, usize, usize)>> = dataset
        .series
        .iter()
        .enumerate()
        .filter(|(i, s)| handles[*i].is_some() && !s.samples.is_empty())
        .map(|(i, s)| Reverse((s.samples[0].ts_ms, i, 0)))
        .collect();
    let total: usize = dataset
        .series
        .iter()
        .enumerate()
        .filter(|(i, _)| handles[*i].is_some())
        .map(|(_, s)| s.samples.len())
        .sum();
    let bar = if progress {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replay [{bar:40}] {pos}/{len} samples ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let mut end_ms = i64::MIN;
    let mut done = 0u64;
    let mut evidence = BTreeMap::new();
    // One timestamp at a time: the samples that series share a timestamp
    // with go to the pipeline together (`push_slot`), so that a signal with
    // `peer:` compares the instances of a service recorded on a common
    // slot grid. The pop order is the merge's (series order within a
    // timestamp), so signals without `peer:` see exactly what one push per
    // sample gave; a sample alone at its timestamp gets no peer verdict.
    let mut slot: Vec<(usize, Sample)> = Vec::new();
    let mut batch: Vec<(SeriesHandle, f64)> = Vec::new();
    loop {
        let next_metric = heap.peek().map(|r| r.0 .0);
        if let Some(lr) = log_replay.as_mut() {
            if let Some(end) = lr.next_slot.filter(|&e| next_metric.is_none_or(|m| e <= m)) {
                let (evaluations, examples) = lr.slot(end);
                // Evidence first, as live: an incident its evaluation opens
                // finds it.
                for ex in examples {
                    pipeline.log_examples(ex);
                }
                for ev in evaluations {
                    let Ok(series) = ev.outcome else { continue };
                    batch.clear();
                    for (labels, value) in &series {
                        let handle = *lr
                            .handles
                            .entry(labels.clone())
                            .or_insert_with(|| pipeline.register(labels));
                        if let Some(h) = handle {
                            batch.push((h, *value));
                        }
                    }
                    for pushed in pipeline.push_slot(end, &batch) {
                        if pushed
                            .events
                            .iter()
                            .any(|e| matches!(e, EngineEvent::Resolved { .. }))
                        {
                            evidence.extend(pipeline.take_resolved_evidence());
                        }
                        events.extend(pushed.events);
                    }
                }
                end_ms = end_ms.max(end);
                continue;
            }
        }
        let Some(Reverse((ts, i, k))) = heap.pop() else {
            break;
        };
        slot.clear();
        let mut next = Some((i, k));
        while let Some((i, k)) = next {
            slot.push((i, dataset.series[i].samples[k]));
            if let Some(s) = dataset.series[i].samples.get(k + 1) {
                heap.push(Reverse((s.ts_ms, i, k + 1)));
            }
            next = match heap.peek() {
                Some(&Reverse((t, i, k))) if t == ts => {
                    heap.pop();
                    Some((i, k))
                }
                _ => None,
            };
        }
        batch.clear();
        batch.extend(slot.iter().map(|&(i, sample)| {
            let handle = handles[i].expect("only watched series are queued");
            (handle, sample.value)
        }));
        let pushed_all = pipeline.push_slot(ts, &batch);
        for (&(i, sample), pushed) in slot.iter().zip(pushed_all) {
            for event in &pushed.events {
                tracing::debug!(stage = "remediate", ?event, "engine event");
            }
            if pushed
                .events
                .iter()
                .any(|e| matches!(e, EngineEvent::Resolved { .. }))
            {
                evidence.extend(pipeline.take_resolved_evidence());
            }
            events.extend(pushed.events.iter().cloned());
            if let Some(reason) = pushed.dropped {
                tracing::trace!(
                    stage = "ingest",
                    series = i,
                    ts_ms = sample.ts_ms,
                    reason = reason.as_str(),
                    "sample dropped"
                );
            }
            if let Some(scored) = pushed
                .scored
                .filter(|s| s.excursion.is_some_and(|e| e.first))
            {
                tracing::debug!(
                    stage = "detect",
                    series = i,
                    ts_ms = sample.ts_ms,
                    score = scored.score,
                    "anomaly fired"
                );
            }
            done += 1;
            if done % 4096 == 0 {
                bar.set_position(done);
            }
        }
        end_ms = end_ms.max(ts);
    }
    bar.finish_and_clear();
    let incidents = pipeline.finish(end_ms.max(0));
    evidence.extend(pipeline.take_resolved_evidence());
    for inc in &incidents {
        if !evidence.contains_key(&inc.id) {
            if let Some(e) = pipeline.evidence(&inc.id) {
                evidence.insert(inc.id.clone(), e.clone());
            }
        }
    }
    let log_series = log_replay
        .as_ref()
        .map_or(0, |l| l.handles.values().filter(|h| h.is_some()).count());
    ReplayOutcome {
        incidents,
        stats: pipeline.stats().clone(),
        evidence,
        end_ms: end_ms.max(0),
        events,
        log_stats: log_replay.map(|l| l.stats),
        log_series,
    }
}

fn print_summary(incidents: &[Incident]) {
    print!("{}", summary_table(incidents));
}

/// The replay's table of incidents, one a line.
fn summary_table(incidents: &[Incident]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if incidents.is_empty() {
        return "no incidents\n".to_owned();
    }
    let _ = writeln!(
        out,
        "{:<11} {:<10} {:<26} {:<26} {:<8} {:<16} {:>8} {:>6}  steps",
        "incident", "service", "signal", "rule", "severity", "onset", "duration", "peak"
    );
    for inc in incidents {
        let end = inc
            .resolved_ms
            .or(inc.unresolved_at_ms)
            .unwrap_or(inc.onset_ms);
        let duration = if inc.resolved_ms.is_some() {
            fmt_duration(end - inc.onset_ms)
        } else {
            format!(">{}", fmt_duration(end - inc.onset_ms))
        };
        let steps: Vec<String> = inc
            .actions
            .iter()
            .map(|a| {
                let outcome = a
                    .verification
                    .as_ref()
                    .map(|v| v.outcome.as_str())
                    .unwrap_or("-");
                format!("{}:{}:{}", a.kind.as_str(), a.decision.label(), outcome)
            })
            .collect();
        // The service is the exporter's label value: no control character
        // reaches the terminal raw.
        let _ = writeln!(
            out,
            "{:<11} {:<10} {:<26} {:<26} {:<8} {:<16} {:>8} {:>6.3}  {}",
            inc.id,
            stdx::text::terminal(&inc.service),
            stdx::text::terminal(&inc.signal),
            stdx::text::terminal(&inc.rule),
            inc.severity.as_str(),
            fmt_minute(inc.onset_ms),
            duration,
            inc.peak_score,
            steps.join(" -> ")
        );
        if let Some(cause) = remediate::report::peer_cause(inc) {
            let _ = writeln!(out, "{:<11} ^ {}", "", stdx::text::terminal(&cause));
        }
    }
    out
}

fn print_evaluation(e: &Evaluation) {
    println!();
    println!("against ground truth ({} labelled windows):", e.windows);
    println!(
        "  incidents: {} matching a window, {} not; windows detected: {} of {}",
        e.true_incidents, e.false_incidents, e.detected_windows, e.windows
    );
    println!(
        "  precision {:.3}  recall {:.3}  F1 {:.3}",
        e.precision, e.recall, e.f1
    );
    if let (Some(mean), Some(max)) = (e.mean_delay_ms, e.max_delay_ms) {
        println!(
            "  detection delay (window start to incident onset): mean {}, max {}",
            fmt_duration(mean),
            fmt_duration(max)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::{Sample, SeriesData};

    #[test]
    fn probes_without_recorded_series_are_named() {
        let text = r#"signals:
  - {name: probe_success, probe: {targets: up, url: "http://{{instance}}/"}}
  - {name: recorded_probe, probe: {targets: up, url: "http://{{instance}}/"}}
  - {name: lab_up, query: up}
"#;
        let runbooks = RunbookSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap();
        let dataset = Dataset {
            series: vec![SeriesData {
                labels: r#"recorded_probe{instance="a"}"#.parse().unwrap(),
                samples: vec![Sample::new(0, 1.0)],
            }],
            ..Dataset::default()
        };
        assert_eq!(unrecorded_probes(&runbooks, &dataset), ["probe_success"]);
    }

    #[test]
    fn a_line_counts_in_the_slot_that_ends_at_or_after_it() {
        assert_eq!(slot_end(15_000, 15_000), 15_000);
        assert_eq!(slot_end(15_001, 15_000), 30_000);
        assert_eq!(slot_end(1, 15_000), 15_000);
        assert_eq!(slot_end(0, 15_000), 0);
        assert_eq!(slot_end(-1, 15_000), 0);
        assert_eq!(slot_end(-15_001, 15_000), -15_000);
    }

    #[test]
    fn log_datasets_merge_and_notes_name_what_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, source: &str, ts: &[i64], window: (i64, i64)| {
            let mut d = LogDataset {
                start_ms: Some(window.0),
                end_ms: Some(window.1),
                ..LogDataset::default()
            };
            let s = d.stream(source, &Labels::from_pairs([("service", source)]));
            for &t in ts {
                d.lines.push(ingest::LogLine {
                    ts_ms: t,
                    stream: s,
                    line: format!("{source} at {t}"),
                });
            }
            let p = dir.path().join(name);
            d.write(&p).unwrap();
            p
        };
        let a = write("a.parquet", "api", &[5_000, 20_000], (0, 30_000));
        let b = write("b.parquet", "db", &[1_000, 25_000], (1_000, 60_000));
        let merged = read_logs(&[a, b]).unwrap().unwrap();
        let order: Vec<&str> = merged.lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            order,
            ["db at 1000", "api at 5000", "api at 20000", "db at 25000"]
        );
        assert_eq!(merged.window(), Some((0, 60_000)));
        let text = "log_sources:\n  - {name: api, files: [/x.log]}\n  - {name: web, files: [/y.log]}\nsignals:\n  - {name: web_lines, logs: {source: web}}\n";
        let runbooks = RunbookSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap();
        let notes = log_notes(&runbooks, &merged);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].starts_with("2 recorded lines of log source \"api\" are not replayed"));
        assert!(notes[1].starts_with("2 recorded lines of log source \"db\""));
        assert!(notes[2].contains(
            "signal \"web_lines\" reads log source \"web\", which the log datasets do not hold"
        ));
    }

    #[test]
    fn the_table_escapes_control_characters_in_labels() {
        // Issue 10, 5: raw newlines and carriage returns reached the terminal.
        let incident = Incident {
            id: "inc-000001".into(),
            series: Default::default(),
            service: "pay\r\u{1b}[2Jments\nX".into(),
            signal: "sig".into(),
            rule: "r".into(),
            description: None,
            severity: remediate::runbook::Severity::Warning,
            above: true,
            onset_ms: 0,
            opened_ms: 0,
            peak_score: 0.5,
            peer_z: None,
            chain_len: 0,
            actions: vec![],
            resolved_ms: Some(60_000),
            unresolved_at_ms: None,
            diagnosis: None,
        };
        let table = summary_table(&[incident]);
        assert!(
            !table.contains('\r') && !table.contains('\u{1b}'),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 2, "{table:?}");
        assert!(table.contains(r"pay\r\u{1b}[2Jments\nX"), "{table:?}");
    }
}
