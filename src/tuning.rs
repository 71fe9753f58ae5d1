//! What replay and the live loop both set up before the first sample: the
//! incident store opened one way, and the detector settings from outside
//! the runbooks (a `heal tune` parameter file, the learned offsets) loaded
//! and applied one way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use remediate::engine::GuardState;
use remediate::RunbookSet;
use store::{ActionRecord, ExecutionState, Store};

use crate::pipeline::Pipeline;
use crate::{Error, Result};

/// An incident store opened for writing, with what heal needs from it
/// before the first sample.
#[derive(Debug)]
pub struct OpenedStore {
    /// The store.
    pub store: Store,
    /// What a killed run left unfinished (already reported on stderr), an
    /// `exec` child still running killed and recorded as settled.
    pub interrupted: Vec<ActionRecord>,
    /// Incidents an earlier run left open, now closed (reported on stderr).
    pub closed: Vec<store::ClosedIncident>,
    /// The number the next incident gets (ids stay unique across runs).
    pub next_incident_seq: u64,
    /// Each signal's learned threshold offset.
    pub offsets: BTreeMap<String, f64>,
    /// What the guards remembered, when the store keeps them (`heal watch`
    /// without `--state`).
    pub guard_state: Option<GuardState>,
}

/// Opens the incident store at `path` for writing (creating it), reports
/// the actions a killed run left unfinished (each once: they are marked
/// and never run), and reads the numbering, the learned offsets and the
/// guard state. The one way replay and watch open it.
///
/// # Errors
///
/// The store cannot be opened or read (a newer or missing file is the
/// user's input).
pub fn open_store(path: &Path) -> Result<OpenedStore> {
    let opened = Store::open(path)?;
    let mut store = opened.store;
    let mut interrupted = opened.interrupted;
    for a in &mut interrupted {
        let note = interrupted_note(a.state);
        tracing::error!(stage = "remediate", key = %a.key, action = %a.summary, "action {note}");
        eprintln!("heal: action {} ({}) {note}", a.key, a.summary);
        settle_interrupted(&mut store, a)?;
    }
    for c in &opened.closed {
        eprintln!(
            "heal: incident {} ({} on {}) was left open by an earlier run: closed ({})",
            c.id,
            c.rule.escape_debug(),
            // A label value may hold control characters (never raw) and be
            // long (cut).
            short(&c.selector, 200).escape_debug(),
            store::CLOSED_AT_RESTART
        );
    }
    Ok(OpenedStore {
        next_incident_seq: store.next_incident_seq()?,
        offsets: store.sensitivity_offsets()?,
        guard_state: store.guard_state()?,
        interrupted,
        closed: opened.closed,
        store,
    })
}

/// `s` cut to at most `max` bytes (at a character boundary), `…` marking a cut.
fn short(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// Settles the child process of an interrupted `exec` action, when its
/// pid was recorded: its process group is killed if any of it still runs
/// (heal was killed, the child was not), and how it ended is recorded once.
/// The action is never run again either way.
fn settle_interrupted(store: &mut Store, a: &mut ActionRecord) -> Result<()> {
    let (ExecutionState::Interrupted, Some(process), None) = (a.state, a.process, &a.settled)
    else {
        return Ok(());
    };
    let settlement = executors::exec::settle(process.pid, process.start_ticks);
    let note = settlement.describe(process.pid);
    store.settle_interrupted(&a.key, &note)?;
    tracing::warn!(stage = "remediate", key = %a.key, pid = process.pid, %note, "interrupted action settled");
    eprintln!("heal: action {} settled: {note}", a.key);
    a.settled = Some(note);
    Ok(())
}

/// What an action found unfinished at open is, for a warning.
pub fn interrupted_note(state: ExecutionState) -> &'static str {
    match state {
        ExecutionState::Abandoned => {
            "was allowed by an earlier run that stopped before beginning it: marked abandoned, not run"
        }
        _ => "was begun by an earlier run that stopped before it finished: marked interrupted, not run again",
    }
}

/// Detector settings from outside the runbooks: a `heal tune` parameter
/// file and the learned threshold offsets of the incident store.
#[derive(Debug, Default)]
pub struct Tuning {
    /// The parameter file and its settings.
    pub params: Option<(PathBuf, detect::DetectorConfig)>,
    /// Learned offsets by signal.
    pub offsets: BTreeMap<String, f64>,
}

impl Tuning {
    /// Reads `params` (an error names file, line and field: a usage error)
    /// and takes the offsets read with the store.
    ///
    /// # Errors
    ///
    /// A parameter file that cannot be read or has problems.
    pub fn load(params: Option<&Path>, offsets: BTreeMap<String, f64>) -> Result<Tuning> {
        let params = params
            .map(|path| {
                remediate::runbook::load_detector_params(path)
                    .map(|cfg| (path.to_path_buf(), cfg))
                    .map_err(|e| Error::Usage(e.to_string()))
            })
            .transpose()?;
        Ok(Tuning { params, offsets })
    }

    /// Sets up a pipeline before any series is registered.
    pub fn apply(&self, pipeline: &mut Pipeline) {
        if let Some((_, cfg)) = &self.params {
            pipeline.set_default_detector(cfg.clone());
        }
        for (signal, offset) in &self.offsets {
            pipeline.set_threshold_offset(signal, *offset);
        }
    }

    /// One line each for what applies, on standard error.
    pub fn print(&self, runbooks: &RunbookSet) {
        if let Some((path, cfg)) = &self.params {
            let using: Vec<&str> = runbooks
                .signals()
                .iter()
                .filter(|s| s.detector.is_none())
                .map(|s| s.name.as_str())
                .collect();
            eprintln!(
                "detector settings from {} (threshold {}) for {} signal(s) without their own detector: {}",
                path.display(),
                cfg.threshold,
                using.len(),
                using.join(", ")
            );
        }
        if !self.offsets.is_empty() {
            let list: Vec<String> = self
                .offsets
                .iter()
                .map(|(s, o)| format!("{s} {o:+.2}"))
                .collect();
            eprintln!("learned threshold offsets: {}", list.join(", "));
        }
    }
}

/// Reads the guard state a previous run left in `path` (`--state`). A
/// missing file is a first run; an unreadable or corrupt one stops heal:
/// starting with no memory of recent actions could repeat them.
///
/// # Errors
///
/// A usage error naming the file.
pub fn load_guard_state(path: &Path) -> Result<Option<GuardState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Usage(format!(
                "--state {}: {e} (a corrupt guard state: fix or remove the file knowingly)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Usage(format!("--state {}: {e}", path.display()))),
    }
}

/// Writes the guard state to `path` atomically.
///
/// # Errors
///
/// The write failed.
pub fn save_guard_state(path: &Path, state: &GuardState) -> Result<()> {
    Ok(stdx::write_atomically(
        path,
        &serde_json::to_vec_pretty(state)?,
    )?)
}
