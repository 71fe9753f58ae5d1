//! Log sources as series: files tailed, lines read by their format, messages
//! mined into templates, and the `logs:` signals counted per slot.
//!
//! At every slot (a multiple of the interval) each source's input is polled
//! (its files' tailer, or its Kafka consumer: [`super::kafka`]),
//! each new line (or multi-line event) is parsed ([`logs::LineFormat`]) and
//! mined ([`logs::TemplateMiner`]), and every signal over the source counts
//! what its selector keeps. The signals' evaluations go down the same channel
//! as the Prometheus, probe and Docker sources': the decider cannot tell them
//! apart. A line counts in the slot it was read in (its arrival).
//!
//! After a slot's evaluations are handed on, the sources' checkpoints (file
//! offsets, the line counters, each Kafka partition's count, the miner's
//! templates and ids) are written to the state file in one atomic write,
//! then Kafka inputs commit their offsets (only once the checkpoint is
//! written: a committed offset is never ahead of it). A restart resumes from
//! there: no line is lost, the counters match the offsets exactly, and
//! template ids stay the same. Lines read after the last write are read again after a
//! crash (at least once, never lost).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use logs::{Change, LineFormat, MinerConfig, MinerState, TemplateId, TemplateMiner};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::file::{FileCheckpoint, TailConfig, TailStats, Tailer};
use super::kafka::{KafkaConfig, KafkaInput, KafkaStats, PartitionStart};
use super::prometheus::{Evaluation, SourceEvent, Timer};
use crate::dataset::{LogDataset, LogLine};
use crate::series::{Labels, METRIC_NAME_LABEL};

/// Version of the state file this build writes and reads.
pub const LOG_STATE_VERSION: u32 = 1;
/// Most per-template series one `templates` signal reports (the least
/// recently seen are dropped first).
pub const MAX_TEMPLATE_SERIES: usize = 1_000;
/// Example lines kept per signal and slot, for an incident's evidence.
pub const EXAMPLES_PER_SLOT: usize = 3;

/// One log source: where its lines come from and how they read.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// Its name (signals refer to it).
    pub name: String,
    /// Where its lines come from.
    pub input: LogInput,
    /// How a line reads.
    pub format: logs::FormatConfig,
    /// How messages become templates.
    pub miner: MinerConfig,
    /// Labels of every series of this source (`service`, `instance`
    /// default to the source's name).
    pub labels: Vec<(String, String)>,
    /// A line whose event time is older than this before the start of the
    /// slot it is read in is late: mined, counted in no signal.
    pub late_after_ms: i64,
}

impl LogSource {
    /// The labels of its series: its own, with `service` and `instance`
    /// defaulting to its name.
    pub fn series_labels(&self) -> Labels {
        let mut labels = Labels::from_pairs(self.labels.iter().cloned());
        if labels.get("service").is_none() {
            labels = labels.with("service", self.name.clone());
        }
        if labels.get("instance").is_none() {
            let service = labels.get("service").unwrap_or(&self.name).to_owned();
            labels = labels.with("instance", service);
        }
        labels
    }
}

/// Where a log source's lines come from.
#[derive(Debug, Clone)]
pub enum LogInput {
    /// Files, tailed.
    Files(TailConfig),
    /// Kafka topics, as a member of a consumer group.
    Kafka(KafkaConfig),
    /// Lines handed in by the caller ([`PreparedLogSource::feed`]): a
    /// replay of a recording, through the same counting as live.
    Recorded,
}

/// A running input.
#[derive(Debug)]
enum Input {
    Files(Tailer),
    Kafka(Box<KafkaInput>, usize),
    /// Lines fed since the last slot.
    Recorded(Vec<String>),
}

/// What a `logs:` signal counts per slot.
#[derive(Debug, Clone, PartialEq)]
pub enum LogCount {
    /// Lines the selector keeps.
    Lines,
    /// Those lines per template: one series per template (label
    /// `template_id`).
    Templates,
    /// Those lines whose template is new (never seen before).
    NewTemplates,
    /// A numeric field of those lines, aggregated.
    Field {
        /// The field's name (as the format names it).
        name: String,
        /// How the slot's values become one.
        agg: FieldAgg,
    },
}

/// How the values of a field within one slot become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAgg {
    /// Their mean.
    Mean,
    /// The largest.
    Max,
    /// Their sum.
    Sum,
}

/// A `logs:` signal: which lines of which source, and what to count.
#[derive(Debug, Clone)]
pub struct LogWatch {
    /// The signal's name.
    pub name: String,
    /// The source's name.
    pub source: String,
    /// Keep lines whose level field (`level`, any case) is one of these
    /// (any case); empty: any level.
    pub levels: Vec<String>,
    /// Keep lines whose message matches.
    pub pattern: Option<regex::Regex>,
    /// Keep lines whose template is this text.
    pub template: Option<String>,
    /// What to count.
    pub count: LogCount,
}

/// A source's counters, after each slot (for heal's `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogSourceStats {
    /// The source.
    pub source: String,
    /// Lines (events) read, over every run: persisted with the offsets.
    pub lines: u64,
    /// Of those, lines the format could not read (mined whole).
    pub unparsed: u64,
    /// Templates now.
    pub templates: usize,
    /// Bytes of the templates now (estimate).
    pub template_bytes: usize,
    /// Lines counted in no signal because their event time was too old
    /// (this run).
    pub late: u64,
    /// Templates evicted by the cap, over every run.
    pub evicted: u64,
    /// The tailer's counters (this run; zero for a Kafka source).
    pub tail: TailStats,
    /// The Kafka input's counters and lag, for a Kafka source.
    pub kafka: Option<KafkaStats>,
    /// Files followed now.
    pub files: usize,
}

/// Called after each slot with every source's counters.
pub type LogObserver = Arc<dyn Fn(&[LogSourceStats]) + Send + Sync>;

/// Evidence of one signal at one slot, sent just before its evaluation:
/// example lines it counted and the templates of its source whose rate
/// moved most.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExamples {
    /// The signal.
    pub signal: String,
    /// The slot.
    pub ts_ms: i64,
    /// Lines the signal's selector matched in this slot.
    pub matched: u64,
    /// Up to [`EXAMPLES_PER_SLOT`] of them, as read (cut at 1,000
    /// characters).
    pub lines: Vec<String>,
    /// Up to [`MOVES_PER_SLOT`] templates of the source whose count in
    /// this slot departed most from their moving average.
    pub moves: Vec<LogMove>,
}

/// A template whose count in a slot departed from its moving average.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMove {
    /// Its id, as the `template_id` label gives it.
    pub template_id: String,
    /// Its text now.
    pub template: String,
    /// Lines per slot before this slot (exponential moving average).
    pub before: f64,
    /// Lines in this slot.
    pub now: f64,
}

/// Templates a slot's evidence names.
pub const MOVES_PER_SLOT: usize = 5;
/// Weight of a slot in a template's moving average (about the last ten
/// slots).
const RATE_ALPHA: f64 = 0.2;

/// Why a log source could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogSourceError {
    /// A source's format or miner settings do not compile.
    #[error("log source {source_name:?}: {message}")]
    Config {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The state file exists and cannot be used.
    #[error("log state {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A non-positive interval.
    #[error("evaluation interval must be positive, got {0} ms")]
    Interval(i64),
}

/// The state file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    sources: Vec<SourceStateFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceStateFile {
    name: String,
    files: Vec<FileCheckpoint>,
    /// A Kafka source's first offset per partition (its count's origin).
    #[serde(default)]
    kafka: Vec<PartitionStart>,
    lines: u64,
    unparsed: u64,
    #[serde(default)]
    miner: Option<MinerState>,
}

/// Reads the state file (`None` when it does not exist yet).
///
/// # Errors
///
/// It exists and cannot be read, or is not a state this build writes.
fn read_state(path: &std::path::Path) -> Result<Option<StateFile>, LogSourceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LogSourceError::State {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    let state: StateFile = serde_json::from_str(&text).map_err(|e| LogSourceError::State {
        path: path.to_path_buf(),
        message: format!("{e} (move it away to start over: every file is then read from its end)"),
    })?;
    if state.version != LOG_STATE_VERSION {
        return Err(LogSourceError::State {
            path: path.to_path_buf(),
            message: format!(
                "version {} (this build reads {LOG_STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// A running source.
#[derive(Debug)]
struct Running {
    name: String,
    input: Input,
    format: LineFormat,
    miner: TemplateMiner,
    labels: Labels,
    lines: u64,
    unparsed: u64,
    /// See [`LogSource::late_after_ms`].
    late_after_ms: i64,
    /// Late lines, this run, and in the current slot.
    late: u64,
    late_in_slot: u64,
    /// The miner's state as last written, and the counters it was at.
    miner_json: String,
    miner_mark: (u64, u64, u64, u64),
    /// Lines per template in the current slot, and each template's moving
    /// average of lines per slot (bounded by the miner's templates: ids it
    /// no longer holds are dropped).
    slot_counts: HashMap<TemplateId, f64>,
    rates: HashMap<TemplateId, f64>,
}

/// One signal's counts within a slot.
#[derive(Debug, Default)]
struct Tally {
    lines: f64,
    per_template: HashMap<TemplateId, f64>,
    new_templates: f64,
    values: Vec<f64>,
    matched: u64,
    examples: Vec<String>,
}

/// A compiled signal.
#[derive(Debug)]
struct Signal {
    watch: LogWatch,
    /// Index of its source.
    source: usize,
    /// Templates it reported, with the slot it last saw each.
    seen: HashMap<TemplateId, i64>,
}

impl Running {
    /// Ends the slot's per-template counts: the templates whose count
    /// departed most from their moving average (by at least one line), then
    /// the averages updated.
    fn moves(&mut self) -> Vec<LogMove> {
        let counts = std::mem::take(&mut self.slot_counts);
        let mut now: HashMap<TemplateId, f64> = HashMap::new();
        for (id, n) in counts {
            if let Some(id) = self.miner.resolve(id) {
                *now.entry(id).or_default() += n;
            }
        }
        let mut merged: HashMap<TemplateId, f64> = HashMap::new();
        for (id, r) in std::mem::take(&mut self.rates) {
            if let Some(id) = self.miner.resolve(id) {
                *merged.entry(id).or_default() += r;
            }
        }
        let mut moves: Vec<(f64, TemplateId, f64, f64)> = Vec::new();
        for id in merged
            .keys()
            .chain(now.keys().filter(|id| !merged.contains_key(id)))
        {
            let before = merged.get(id).copied().unwrap_or(0.0);
            let n = now.get(id).copied().unwrap_or(0.0);
            let change = (n - before).abs();
            if change >= 1.0 {
                moves.push((change, *id, before, n));
            }
        }
        moves.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        moves.truncate(MOVES_PER_SLOT);
        for (id, before) in merged {
            let r = before + RATE_ALPHA * (now.get(&id).copied().unwrap_or(0.0) - before);
            if r >= 0.01 {
                self.rates.insert(id, r);
            }
        }
        for (id, n) in &now {
            self.rates.entry(*id).or_insert(RATE_ALPHA * n);
        }
        moves
            .into_iter()
            .map(|(_, id, before, now)| LogMove {
                template_id: id.to_string(),
                template: self
                    .miner
                    .template(id)
                    .map(|t| t.text.chars().take(1_000).collect())
                    .unwrap_or_default(),
                before,
                now,
            })
            .collect()
    }

    fn mark(&self) -> (u64, u64, u64, u64) {
        let s = self.miner.stats();
        (s.created, s.generalized, s.merged, s.evicted)
    }

    fn stats(&self) -> LogSourceStats {
        let (tail, kafka, files) = match &self.input {
            Input::Files(t) => (t.stats(), None, t.files()),
            Input::Kafka(k, _) => (TailStats::default(), Some(k.stats()), 0),
            Input::Recorded(_) => (TailStats::default(), None, 0),
        };
        LogSourceStats {
            source: self.name.clone(),
            lines: self.lines,
            unparsed: self.unparsed,
            templates: self.miner.len(),
            template_bytes: self.miner.memory_bytes(),
            late: self.late,
            evicted: self.miner.stats().evicted,
            tail,
            kafka,
            files,
        }
    }
}

/// Whether `record`'s level is one of `levels`.
fn level_matches(record: &logs::Record<'_>, levels: &[String]) -> bool {
    levels.is_empty()
        || record
            .fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("level"))
            .is_some_and(|(_, v)| levels.iter().any(|l| l.eq_ignore_ascii_case(v.trim())))
}

/// Polls one source and counts its new lines into `tallies` (indexed like
/// `signals`; only this source's signals are touched).
///
/// A line whose event time is older than the slot's start by more than
/// the source's `late_after_ms` is mined but counted nowhere (late).
fn poll_source(
    index: usize,
    source: &mut Running,
    signals: &[Signal],
    tallies: &mut [Tally],
    late_before_ms: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    let problems = match &mut source.input {
        Input::Files(t) => t.poll(&mut lines),
        Input::Kafka(k, max) => k.poll(&mut lines, *max),
        Input::Recorded(fed) => {
            lines = std::mem::take(fed);
            Vec::new()
        }
    };
    let mine: Vec<usize> = signals
        .iter()
        .enumerate()
        .filter(|(_, s)| s.source == index)
        .map(|(i, _)| i)
        .collect();
    for line in &lines {
        source.lines += 1;
        let record = match source.format.parse(line) {
            Ok(record) => record,
            Err(_) => {
                source.unparsed += 1;
                logs::Record {
                    message: std::borrow::Cow::Borrowed(line.as_str()),
                    ts_ms: None,
                    fields: Vec::new(),
                }
            }
        };
        let outcome = source.miner.add(&record.message);
        if record.ts_ms.is_some_and(|t| t < late_before_ms) {
            source.late += 1;
            source.late_in_slot += 1;
            continue;
        }
        *source.slot_counts.entry(outcome.id).or_default() += 1.0;
        for &i in &mine {
            let w = &signals[i].watch;
            if !level_matches(&record, &w.levels) {
                continue;
            }
            if w.pattern
                .as_ref()
                .is_some_and(|p| !p.is_match(&record.message))
            {
                continue;
            }
            if let Some(t) = &w.template {
                let text = source.miner.template(outcome.id).map(|v| v.text);
                if text != Some(t.as_str()) {
                    continue;
                }
            }
            let tally = &mut tallies[i];
            match &w.count {
                LogCount::Lines => tally.lines += 1.0,
                LogCount::Templates => *tally.per_template.entry(outcome.id).or_default() += 1.0,
                LogCount::NewTemplates => {
                    if outcome.change == Change::Created {
                        tally.new_templates += 1.0;
                    }
                }
                LogCount::Field { name, .. } => {
                    match record
                        .field(name)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                    {
                        Some(v) if v.is_finite() => tally.values.push(v),
                        _ => continue,
                    }
                }
            }
            tally.matched += 1;
            if tally.examples.len() < EXAMPLES_PER_SLOT {
                tally.examples.push(line.chars().take(1_000).collect());
            }
        }
    }
    // A Kafka source's count is made of offsets: a message read again
    // after a crash is not counted twice.
    if let Input::Kafka(k, _) = &source.input {
        source.lines = k.lines();
    }
    problems
}

/// The evaluation of one signal at `ts_ms` from its tally.
fn evaluate(signal: &mut Signal, source: &Running, tally: Tally, ts_ms: i64) -> Evaluation {
    let base = source
        .labels
        .clone()
        .with(METRIC_NAME_LABEL, signal.watch.name.clone());
    let series = match &signal.watch.count {
        LogCount::Lines => vec![(base, tally.lines)],
        LogCount::NewTemplates => vec![(base, tally.new_templates)],
        LogCount::Field { agg, .. } => {
            if tally.values.is_empty() {
                Vec::new()
            } else {
                let v = match agg {
                    FieldAgg::Sum => tally.values.iter().sum(),
                    FieldAgg::Mean => tally.values.iter().sum::<f64>() / tally.values.len() as f64,
                    FieldAgg::Max => tally.values.iter().copied().fold(f64::MIN, f64::max),
                };
                vec![(base, v)]
            }
        }
        LogCount::Templates => {
            // Merged templates count under the id they merged into.
            let mut counts: HashMap<TemplateId, f64> = HashMap::new();
            for (id, n) in tally.per_template {
                let id = source.miner.resolve(id).unwrap_or(id);
                *counts.entry(id).or_default() += n;
            }
            for id in counts.keys() {
                signal.seen.insert(*id, ts_ms);
            }
            let stale: Vec<TemplateId> = signal
                .seen
                .keys()
                .filter(|id| source.miner.resolve(**id) != Some(**id))
                .copied()
                .collect();
            for id in stale {
                signal.seen.remove(&id);
            }
            if signal.seen.len() > MAX_TEMPLATE_SERIES {
                let mut by_age: Vec<(i64, TemplateId)> =
                    signal.seen.iter().map(|(id, t)| (*t, *id)).collect();
                by_age.sort();
                for (_, id) in by_age.iter().take(signal.seen.len() - MAX_TEMPLATE_SERIES) {
                    signal.seen.remove(id);
                }
            }
            let mut series: Vec<(Labels, f64)> = signal
                .seen
                .keys()
                .map(|id| {
                    (
                        base.clone().with("template_id", id.to_string()),
                        counts.get(id).copied().unwrap_or(0.0),
                    )
                })
                .collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            series
        }
    };
    Evaluation::of(signal.watch.name.clone(), ts_ms, series)
}

/// The state file's text for `sources` (the miners' parts re-serialised
/// only when their templates changed).
fn state_text(sources: &mut [Running]) -> String {
    let mut text = format!("{{\"version\":{LOG_STATE_VERSION},\"sources\":[");
    for (i, s) in sources.iter_mut().enumerate() {
        let mark = s.mark();
        if mark != s.miner_mark || s.miner_json.is_empty() {
            s.miner_json = serde_json::to_string(&s.miner.state()).unwrap_or_default();
            s.miner_mark = mark;
        }
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(
            "{{\"name\":{},\"files\":{},\"kafka\":{},\"lines\":{},\"unparsed\":{},\"miner\":{}}}",
            serde_json::Value::String(s.name.clone()),
            match &s.input {
                Input::Files(t) =>
                    serde_json::to_string(&t.checkpoints()).unwrap_or_else(|_| "[]".into()),
                // Its offsets are in Kafka.
                Input::Kafka(..) | Input::Recorded(_) => "[]".into(),
            },
            match &s.input {
                Input::Files(_) | Input::Recorded(_) => "[]".into(),
                Input::Kafka(k, _) =>
                    serde_json::to_string(&k.starts()).unwrap_or_else(|_| "[]".into()),
            },
            s.lines,
            s.unparsed,
            if s.miner_json.is_empty() {
                "null"
            } else {
                &s.miner_json
            },
        ));
    }
    text.push_str("]}");
    text
}

/// Everything the log source needs.
#[derive(Clone)]
pub struct LogSourceOptions {
    /// Slots are multiples of this.
    pub interval_ms: i64,
    /// Where checkpoints are kept (`None`: not kept; a restart starts
    /// every file from its end).
    pub state: Option<PathBuf>,
    /// Called after each slot with every source's counters.
    pub observer: Option<LogObserver>,
}

impl std::fmt::Debug for LogSourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSourceOptions")
            .field("interval_ms", &self.interval_ms)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Compiles the sources and signals and reads the state file: what
/// [`run_log_source`] runs. Separate so that the caller reports a bad
/// configuration or state before anything starts.
///
/// # Errors
///
/// A format or miner setting that does not compile, a signal naming no
/// source, a state file that cannot be used.
pub fn prepare_log_source(
    sources: Vec<LogSource>,
    watches: Vec<LogWatch>,
    interval_ms: i64,
    state: Option<&std::path::Path>,
) -> Result<PreparedLogSource, LogSourceError> {
    if interval_ms <= 0 {
        return Err(LogSourceError::Interval(interval_ms));
    }
    let mut saved: BTreeMap<String, SourceStateFile> = match state {
        Some(path) => read_state(path)?
            .map(|s| s.sources.into_iter().map(|s| (s.name.clone(), s)).collect())
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut running = Vec::new();
    for source in sources {
        let err = |message: String| LogSourceError::Config {
            source_name: source.name.clone(),
            message,
        };
        let format = LineFormat::new(&source.format).map_err(|e| err(e.to_string()))?;
        let prior = saved.remove(&source.name);
        let miner = match prior.as_ref().and_then(|p| p.miner.clone()) {
            Some(m) => match TemplateMiner::from_state(source.miner.clone(), m) {
                Ok(miner) => miner,
                Err(e) => {
                    // Another mask configuration: ids start over, offsets
                    // are kept.
                    tracing::warn!(source = %source.name, error = %e, "log source: saved templates not used");
                    TemplateMiner::new(source.miner.clone()).map_err(|e| err(e.to_string()))?
                }
            },
            None => TemplateMiner::new(source.miner.clone()).map_err(|e| err(e.to_string()))?,
        };
        let labels = source.series_labels();
        let (files, starts, mut lines, unparsed) = prior
            .map(|p| (p.files, p.kafka, p.lines, p.unparsed))
            .unwrap_or_default();
        let input = match source.input {
            LogInput::Files(tail) => Input::Files(Tailer::new(tail, files)),
            LogInput::Kafka(config) => {
                // The count is made of offsets (see `kafka`): it comes back
                // from the partitions' ranges at the first slot.
                lines = 0;
                let max = config.max_per_poll.max(1);
                Input::Kafka(
                    Box::new(KafkaInput::new(&config, &starts).map_err(|e| err(e.to_string()))?),
                    max,
                )
            }
            LogInput::Recorded => Input::Recorded(Vec::new()),
        };
        let mut r = Running {
            name: source.name,
            input,
            format,
            miner,
            labels,
            lines,
            unparsed,
            late_after_ms: source.late_after_ms.max(0),
            late: 0,
            late_in_slot: 0,
            miner_json: String::new(),
            miner_mark: (0, 0, 0, 0),
            slot_counts: HashMap::new(),
            rates: HashMap::new(),
        };
        r.miner_mark = r.mark();
        running.push(r);
    }
    let mut signals = Vec::new();
    for watch in watches {
        let Some(source) = running.iter().position(|r| r.name == watch.source) else {
            return Err(LogSourceError::Config {
                source_name: watch.source.clone(),
                message: format!("signal {:?} names it; no such source", watch.name),
            });
        };
        signals.push(Signal {
            watch,
            source,
            seen: HashMap::new(),
        });
    }
    Ok(PreparedLogSource {
        sources: running,
        signals,
        state: state.map(std::path::Path::to_path_buf),
        interval_ms,
    })
}

/// Sources and signals ready to run.
#[derive(Debug)]
pub struct PreparedLogSource {
    sources: Vec<Running>,
    signals: Vec<Signal>,
    state: Option<PathBuf>,
    interval_ms: i64,
}

impl PreparedLogSource {
    /// Counters as restored (before the first slot).
    pub fn stats(&self) -> Vec<LogSourceStats> {
        self.sources.iter().map(Running::stats).collect()
    }

    /// Hands a recorded line to `source` for the next [`Self::end_slot`]
    /// (a replay). False when no source of that name reads recorded lines
    /// (the runbooks do not declare it, or it was not prepared with
    /// [`LogInput::Recorded`]); the line is then dropped.
    pub fn feed(&mut self, source: &str, line: String) -> bool {
        match self.sources.iter_mut().find(|s| s.name == source) {
            Some(Running {
                input: Input::Recorded(fed),
                ..
            }) => {
                fed.push(line);
                true
            }
            _ => false,
        }
    }

    /// Whether a `logs:` signal reads `source`.
    pub fn watches(&self, source: &str) -> bool {
        self.signals
            .iter()
            .any(|s| self.sources[s.source].name == source)
    }

    /// Ends the slot at `ts_ms`: every source's new lines (read, or fed)
    /// parsed, mined and counted, and each signal's evaluation and evidence.
    /// What the live loop runs at each slot, and a replay at each of its.
    pub fn end_slot(&mut self, ts_ms: i64) -> (Vec<Evaluation>, Vec<LogExamples>) {
        slot_counts(self, ts_ms)
    }
}

/// One slot's work, on a blocking thread: poll, parse, mine, count.
fn slot(
    mut prepared: PreparedLogSource,
    ts_ms: i64,
) -> (PreparedLogSource, Vec<Evaluation>, Vec<LogExamples>) {
    let (evaluations, examples) = slot_counts(&mut prepared, ts_ms);
    (prepared, evaluations, examples)
}

fn slot_counts(
    prepared: &mut PreparedLogSource,
    ts_ms: i64,
) -> (Vec<Evaluation>, Vec<LogExamples>) {
    let mut tallies: Vec<Tally> = prepared.signals.iter().map(|_| Tally::default()).collect();
    let slot_start = ts_ms - prepared.interval_ms;
    for (i, source) in prepared.sources.iter_mut().enumerate() {
        let was_late = source.late_in_slot > 0;
        source.late_in_slot = 0;
        let late_before = slot_start.saturating_sub(source.late_after_ms);
        for problem in poll_source(i, source, &prepared.signals, &mut tallies, late_before) {
            tracing::warn!(source = %source.name, %problem, "log source: file not read");
        }
        match (was_late, source.late_in_slot > 0) {
            (false, true) => tracing::warn!(
                source = %source.name,
                late = source.late_in_slot,
                late_after_ms = source.late_after_ms,
                "log source: lines with an old event time arrived (a backlog, or a clock behind): counted in no signal until they stop"
            ),
            (true, false) => {
                tracing::info!(source = %source.name, "log source: late lines stopped")
            }
            _ => {}
        }
    }
    let moves: Vec<Vec<LogMove>> = prepared.sources.iter_mut().map(Running::moves).collect();
    let mut evaluations = Vec::new();
    let mut examples = Vec::new();
    for (signal, mut tally) in prepared.signals.iter_mut().zip(tallies) {
        let moved = &moves[signal.source];
        if tally.matched > 0 || !moved.is_empty() {
            examples.push(LogExamples {
                signal: signal.watch.name.clone(),
                ts_ms,
                matched: tally.matched,
                lines: std::mem::take(&mut tally.examples),
                moves: moved.clone(),
            });
        }
        let source = &prepared.sources[signal.source];
        evaluations.push(evaluate(signal, source, tally, ts_ms));
    }
    (evaluations, examples)
}

/// Reads log sources to record them (`heal record --log-source`): each
/// line with its event time (from the line when the source's format gives
/// one, otherwise the time it was read) and its source's labels. Nothing
/// is mined or counted, no state file is written and no Kafka offset is
/// committed: a recording does not disturb a running heal.
#[derive(Debug)]
pub struct LogRecorder {
    sources: Vec<Recording>,
}

#[derive(Debug)]
struct Recording {
    name: String,
    input: Input,
    format: LineFormat,
    labels: Labels,
    lines: u64,
    stamped: u64,
}

/// What [`LogRecorder::poll`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordPoll {
    /// Lines added to the dataset.
    pub lines: usize,
    /// Problems the inputs reported (a file that could not be read).
    pub problems: Vec<String>,
}

impl LogRecorder {
    /// Opens the sources' inputs (files from their configured position,
    /// Kafka as configured: give it a group of its own).
    ///
    /// # Errors
    ///
    /// A format that does not compile, a Kafka client that cannot be made,
    /// a source with [`LogInput::Recorded`].
    pub fn new(sources: Vec<LogSource>) -> Result<Self, LogSourceError> {
        let mut out = Vec::new();
        for source in sources {
            let err = |message: String| LogSourceError::Config {
                source_name: source.name.clone(),
                message,
            };
            let format = LineFormat::new(&source.format).map_err(|e| err(e.to_string()))?;
            let labels = source.series_labels();
            let input = match source.input {
                LogInput::Files(tail) => Input::Files(Tailer::new(tail, Vec::new())),
                LogInput::Kafka(config) => {
                    let max = config.max_per_poll.max(1);
                    Input::Kafka(
                        Box::new(KafkaInput::new(&config, &[]).map_err(|e| err(e.to_string()))?),
                        max,
                    )
                }
                LogInput::Recorded => {
                    return Err(err("a recorded source cannot be recorded".into()))
                }
            };
            out.push(Recording {
                name: source.name,
                input,
                format,
                labels,
                lines: 0,
                stamped: 0,
            });
        }
        Ok(LogRecorder { sources: out })
    }

    /// Reads what is new in every source into `into`, lines without an
    /// event time of their own stamped `now_ms`.
    pub fn poll(&mut self, now_ms: i64, into: &mut LogDataset) -> RecordPoll {
        let mut out = RecordPoll::default();
        let mut lines = Vec::new();
        for r in &mut self.sources {
            lines.clear();
            let problems = match &mut r.input {
                Input::Files(t) => t.poll(&mut lines),
                Input::Kafka(k, max) => k.poll(&mut lines, *max),
                Input::Recorded(_) => Vec::new(),
            };
            out.problems
                .extend(problems.into_iter().map(|p| format!("{}: {p}", r.name)));
            let stream = into.stream(&r.name, &r.labels);
            for line in lines.drain(..) {
                let ts_ms = match r.format.parse(&line).ok().and_then(|rec| rec.ts_ms) {
                    Some(ts) => {
                        r.stamped += 1;
                        ts
                    }
                    None => now_ms,
                };
                r.lines += 1;
                into.lines.push(LogLine {
                    ts_ms,
                    stream,
                    line,
                });
                out.lines += 1;
            }
        }
        out
    }

    /// Per source: its name, lines read, and how many of them carried their
    /// own event time.
    pub fn counts(&self) -> Vec<(String, u64, u64)> {
        self.sources
            .iter()
            .map(|r| (r.name.clone(), r.lines, r.stamped))
            .collect()
    }
}

/// Runs the log source until `stop` is cancelled or `tx` closes: at every
/// slot (multiples of the interval on `clock`) the files are read, one
/// [`SourceEvent::Evaluation`] per signal is sent, then the state is written.
pub async fn run_log_source<C: Timer>(
    prepared: PreparedLogSource,
    options: LogSourceOptions,
    tx: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    clock: C,
) {
    let interval_ms = options.interval_ms.max(1);
    let mut next = (clock.now_ms() / interval_ms + 1) * interval_ms;
    let mut prepared = Some(prepared);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(next) => {}
        }
        let Some(p) = prepared.take() else { return };
        let Ok((mut p, evaluations, examples)) =
            tokio::task::spawn_blocking(move || slot(p, next)).await
        else {
            tracing::error!("log source: a slot panicked; the log source stops");
            return;
        };
        // Evidence first: an incident its evaluation opens finds it.
        for e in examples {
            if tx.send(SourceEvent::Logs(e)).await.is_err() {
                return;
            }
        }
        for ev in evaluations {
            if tx.send(SourceEvent::Evaluation(ev)).await.is_err() {
                return;
            }
        }
        // The slot's evaluations are handed on: the checkpoint first, then
        // the Kafka offsets. In that order a crash between the two re-reads
        // lines the checkpoint already counted (the count knows them: no
        // double count), and an offset beyond the checkpoint's can only be
        // another consumer's (the count does not take it). A checkpoint not
        // written holds the commit back: lines are read again after a
        // crash, never lost nor counted twice.
        let mut checkpointed = true;
        if let Some(path) = p.state.clone() {
            let text = state_text(&mut p.sources);
            let written =
                tokio::task::spawn_blocking(move || stdx::write_atomically(&path, text.as_bytes()))
                    .await;
            checkpointed = matches!(written, Ok(Ok(())));
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "log source: checkpoint not written (nor Kafka offsets committed); retried at the next slot");
                }
                Err(e) => tracing::warn!(error = %e, "log source: checkpoint write panicked"),
            }
        }
        if checkpointed
            && p.sources
                .iter()
                .any(|s| matches!(s.input, Input::Kafka(..)))
        {
            let Ok(back) = tokio::task::spawn_blocking(move || {
                for s in &mut p.sources {
                    if let Input::Kafka(k, _) = &mut s.input {
                        if let Err(e) = k.commit() {
                            tracing::warn!(source = %s.name, error = %e, "log source: offsets not committed; retried at the next slot (lines since are read again after a crash)");
                        }
                    }
                }
                p
            })
            .await
            else {
                tracing::error!("log source: a commit panicked; the log source stops");
                return;
            };
            p = back;
        }
        if let Some(observer) = &options.observer {
            observer(&p.stats());
        }
        prepared = Some(p);
        next += interval_ms;
        let now = clock.now_ms();
        if next <= now {
            next = (now / interval_ms + 1) * interval_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn source(dir: &std::path::Path) -> LogSource {
        let mut tail = TailConfig::new(vec![dir.join("app.log").display().to_string()]);
        tail.read_from = super::super::file::ReadFrom::Beginning;
        LogSource {
            name: "web".into(),
            input: LogInput::Files(tail),
            format: logs::FormatConfig::LogFormat(logs::LoghubFormatConfig::new(
                "<Level> <Content>",
            )),
            miner: MinerConfig::default(),
            labels: vec![("service".into(), "web".into())],
            late_after_ms: 60_000,
        }
    }

    /// [`source`] whose lines begin with their event time in ms.
    fn timed_source(dir: &std::path::Path) -> LogSource {
        let mut s = source(dir);
        s.format = logs::FormatConfig::LogFormat(logs::LoghubFormatConfig {
            time: Some(logs::TimeField {
                field: "Time".into(),
                format: "unix_ms".into(),
            }),
            ..logs::LoghubFormatConfig::new("<Time> <Level> <Content>")
        });
        s
    }

    fn watch(name: &str, count: LogCount) -> LogWatch {
        LogWatch {
            name: name.into(),
            source: "web".into(),
            levels: vec![],
            pattern: None,
            template: None,
            count,
        }
    }

    fn append(path: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn values(evs: &[Evaluation], signal: &str) -> Vec<(String, f64)> {
        let ev = evs.iter().find(|e| e.signal == signal).unwrap();
        ev.outcome
            .as_ref()
            .unwrap()
            .iter()
            .map(|(l, v)| (l.get("template_id").unwrap_or("").to_owned(), *v))
            .collect()
    }

    #[test]
    fn signals_count_what_their_selectors_keep() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(
            &log,
            "ERROR connection to 10.0.0.7:5432 refused\n\
             INFO request took 12 ms\n\
             ERROR connection to 10.0.0.9:5432 refused\n\
             INFO request took 30 ms\n",
        );
        let mut errors = watch("errors", LogCount::Lines);
        errors.levels = vec!["error".into()];
        let mut refused = watch("refused", LogCount::Lines);
        refused.pattern = Some(regex::Regex::new("refused").unwrap());
        let mut by_template = watch("by_template", LogCount::Templates);
        by_template.template = Some("connection to <*> refused".into());
        let p = prepare_log_source(
            vec![source(dir.path())],
            vec![
                errors,
                refused,
                by_template,
                watch("new", LogCount::NewTemplates),
            ],
            1000,
            None,
        )
        .unwrap();
        let (p, evs, examples) = slot(p, 1000);
        assert_eq!(values(&evs, "errors"), [(String::new(), 2.0)]);
        assert_eq!(values(&evs, "refused"), [(String::new(), 2.0)]);
        let t = values(&evs, "by_template");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1, 2.0);
        assert_eq!(values(&evs, "new"), [(String::new(), 2.0)]);
        assert_eq!(examples.len(), 4);
        let ev = &evs[0];
        let labels = &ev.outcome.as_ref().unwrap()[0].0;
        assert_eq!(labels.get("service"), Some("web"));
        assert_eq!(labels.get("instance"), Some("web"));
        // Nothing new: zeros (and the template's series stays, at 0).
        let (_, evs, _) = slot(p, 2000);
        assert_eq!(values(&evs, "errors"), [(String::new(), 0.0)]);
        assert_eq!(values(&evs, "by_template")[0].1, 0.0);
        assert_eq!(values(&evs, "new"), [(String::new(), 0.0)]);
    }

    #[test]
    fn a_numeric_field_is_aggregated_and_absent_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "{\"msg\":\"req\",\"ms\":10}\n{\"msg\":\"req\",\"ms\":30}\n{\"msg\":\"req\",\"ms\":\"x\"}\n");
        let mut s = source(dir.path());
        s.format = logs::FormatConfig::Json(logs::JsonFormatConfig {
            message: "msg".into(),
            fields: vec!["ms".into()],
            time: None,
        });
        let field = |agg| LogCount::Field {
            name: "ms".into(),
            agg,
        };
        let p = prepare_log_source(
            vec![s],
            vec![
                watch("mean", field(FieldAgg::Mean)),
                watch("max", field(FieldAgg::Max)),
                watch("sum", field(FieldAgg::Sum)),
            ],
            1000,
            None,
        )
        .unwrap();
        let (p, evs, _) = slot(p, 1000);
        assert_eq!(values(&evs, "mean"), [(String::new(), 20.0)]);
        assert_eq!(values(&evs, "max"), [(String::new(), 30.0)]);
        assert_eq!(values(&evs, "sum"), [(String::new(), 40.0)]);
        let (_, evs, _) = slot(p, 2000);
        assert!(values(&evs, "mean").is_empty());
    }

    #[test]
    fn the_state_file_restores_offsets_counters_and_template_ids() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let state = dir.path().join("logs.json");
        append(&log, "ERROR request 17 failed\nERROR request 23 failed\n");
        let p = prepare_log_source(
            vec![source(dir.path())],
            vec![watch("t", LogCount::Templates)],
            1000,
            Some(&state),
        )
        .unwrap();
        let (mut p, evs, _) = slot(p, 1000);
        let id = values(&evs, "t")[0].0.clone();
        std::fs::write(&state, state_text(&mut p.sources)).unwrap();
        drop(p);
        append(&log, "ERROR request 99 failed\n");
        let p = prepare_log_source(
            vec![source(dir.path())],
            vec![watch("t", LogCount::Templates)],
            1000,
            Some(&state),
        )
        .unwrap();
        assert_eq!(p.stats()[0].lines, 2);
        let (p, evs, _) = slot(p, 2000);
        assert_eq!(values(&evs, "t"), [(id, 1.0)]);
        assert_eq!(p.stats()[0].lines, 3);
        // A state this build does not read is refused with its path.
        std::fs::write(&state, "{\"version\": 9, \"sources\": []}").unwrap();
        let e = prepare_log_source(vec![source(dir.path())], vec![], 1000, Some(&state))
            .unwrap_err()
            .to_string();
        assert!(e.contains("logs.json") && e.contains("version 9"), "{e}");
    }

    #[test]
    fn recorded_lines_fed_in_count_as_the_same_lines_read_from_a_file() {
        // The replay's path and the live one are one: the same lines in the
        // same slots give the same evaluations and evidence.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let watches = || {
            vec![
                watch("lines", LogCount::Lines),
                watch("t", LogCount::Templates),
                watch("new", LogCount::NewTemplates),
            ]
        };
        let slots: [&[&str]; 3] = [
            &["ERROR request 17 failed", "INFO GET /a 200"],
            &[],
            &[
                "ERROR request 23 failed",
                "WARN disk 91% full",
                "INFO GET /b 200",
            ],
        ];
        let mut live = prepare_log_source(vec![source(dir.path())], watches(), 1000, None).unwrap();
        let mut recorded = source(dir.path());
        recorded.input = LogInput::Recorded;
        let mut replay = prepare_log_source(vec![recorded], watches(), 1000, None).unwrap();
        assert!(
            !live.feed("web", "x".into()),
            "a tailed source takes no fed lines"
        );
        assert!(!replay.feed("db", "x".into()));
        for (i, lines) in slots.iter().enumerate() {
            let ts = 1000 * (i as i64 + 1);
            for l in *lines {
                append(&log, &format!("{l}\n"));
                assert!(replay.feed("web", (*l).to_owned()));
            }
            let (a, ax) = live.end_slot(ts);
            let (b, bx) = replay.end_slot(ts);
            let outcome = |evs: &[Evaluation]| -> Vec<(String, Vec<(Labels, f64)>)> {
                evs.iter()
                    .map(|e| (e.signal.clone(), e.outcome.clone().unwrap()))
                    .collect()
            };
            assert_eq!(outcome(&a), outcome(&b), "slot {ts}");
            assert_eq!(ax, bx, "slot {ts}");
        }
        assert_eq!(live.stats()[0].lines, 5);
        assert_eq!(replay.stats()[0].lines, 5);
    }

    #[test]
    fn a_backlog_of_old_lines_is_mined_but_counted_in_no_signal() {
        // A consumer catching up delivers ten minutes of lines at once: by
        // arrival they would be a burst in one slot.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let s = timed_source(dir.path());
        let mut p =
            prepare_log_source(vec![s], vec![watch("lines", LogCount::Lines)], 15_000, None)
                .unwrap();
        let slot_end = 3_600_000;
        let mut text = String::new();
        // Old: more than late_after (60 s) before the slot's start.
        for t in (0..3_500_000).step_by(10_000) {
            text.push_str(&format!("{t} INFO request served\n"));
        }
        // Within it, and in the slot itself, and a clock a little ahead.
        for t in [3_530_000, 3_590_000, 3_600_500] {
            text.push_str(&format!("{t} INFO request served\n"));
        }
        text.push_str("no time here\n");
        append(&log, &text);
        let (evs, _) = p.end_slot(slot_end);
        assert_eq!(values(&evs, "lines"), [(String::new(), 4.0)]);
        let stats = &p.stats()[0];
        assert_eq!(stats.late, 350);
        assert_eq!(stats.lines, 354);
        // The late lines were mined: their template is known.
        assert_eq!(stats.templates, 2);
    }

    #[test]
    fn a_recorder_stamps_lines_with_their_own_time_or_the_read_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let s = timed_source(dir.path());
        let mut recorder = LogRecorder::new(vec![s]).unwrap();
        append(&log, "5000 ERROR boom\nnot a header line\n");
        let mut d = LogDataset::default();
        let read = recorder.poll(9_000, &mut d);
        assert_eq!(read.lines, 2);
        let got: Vec<(i64, &str)> = d.lines.iter().map(|l| (l.ts_ms, l.line.as_str())).collect();
        assert_eq!(
            got,
            [(5_000, "5000 ERROR boom"), (9_000, "not a header line")]
        );
        assert_eq!(d.streams[0].labels.get("instance"), Some("web"));
        assert_eq!(recorder.counts(), [("web".to_owned(), 2, 1)]);
        let mut fed = source(dir.path());
        fed.input = LogInput::Recorded;
        assert!(LogRecorder::new(vec![fed]).is_err());
    }

    #[test]
    fn evidence_names_the_lines_and_the_templates_that_moved() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let p = prepare_log_source(
            vec![source(dir.path())],
            vec![LogWatch {
                levels: vec!["ERROR".into()],
                ..watch("errors", LogCount::Lines)
            }],
            1000,
            None,
        )
        .unwrap();
        // A steady access log for a while: nothing moves.
        let mut p = p;
        for k in 0..20 {
            append(&log, &"INFO GET / 200 in 3 ms\n".repeat(10));
            let (next, _, ex) = slot(p, 1000 * (k + 1));
            p = next;
            if k >= 12 {
                assert!(ex.is_empty(), "slot {k}: {ex:?}");
            }
        }
        // Errors appear and access lines halve.
        let mut text = "INFO GET / 200 in 3 ms\n".repeat(5);
        for a in 0..8 {
            text.push_str(&format!(
                "ERROR connection to 10.0.0.7:5432 refused (attempt {a})\n"
            ));
        }
        append(&log, &text);
        let (_, _, ex) = slot(p, 21_000);
        assert_eq!(ex.len(), 1);
        let e = &ex[0];
        assert_eq!(
            (e.signal.as_str(), e.ts_ms, e.matched),
            ("errors", 21_000, 8)
        );
        assert_eq!(e.lines.len(), EXAMPLES_PER_SLOT);
        assert!(e.lines[0].contains("refused (attempt 0)"), "{e:?}");
        assert_eq!(e.moves.len(), 2, "{e:?}");
        assert!(e.moves[0].template.contains("refused"), "{e:?}");
        assert_eq!((e.moves[0].before, e.moves[0].now), (0.0, 8.0));
        assert!(e.moves[1].template.contains("GET"), "{e:?}");
        assert!((e.moves[1].before - 10.0).abs() < 0.2, "{e:?}");
        assert_eq!(e.moves[1].now, 5.0);
    }
}
