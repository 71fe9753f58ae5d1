//! Learning from outcomes: one path for every mark, whoever gives it.
//!
//! A mark is evidence about one signal's sensitivity (`store::Mark`): an
//! incident a person calls a false alarm, an anomaly a person says was
//! missed, or a performed step whose verification said it did not help.
//! Marks reach heal four ways: `heal incidents mark|missed` (the store
//! directly), `heal watch`'s API (`POST /api/incidents/ID/false-alarm`,
//! `POST /api/missed`), the live loop itself (steps that did not help), and
//! `heal replay --db` / `heal watch --db` reading the offsets back at start
//! (`crate::tuning`). Every mark is built and checked here, so the CLI and
//! the API accept and refuse the same marks with the same words; the live
//! loop adds one check only it can make (the signal is one of its runbooks').

use std::path::Path;

use store::{Mark, Marked, SensitivityReason, Store, StoreError};

use crate::pipeline::NotHelped;

/// Why a mark was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// No incident with this id in the store.
    #[error("no incident {0:?} in the store")]
    NoSuchIncident(String),
    /// What the user gave is wrong (a malformed or unknown signal).
    #[error("{0}")]
    Invalid(String),
    /// Marks are recorded in the incident store, and there is none.
    #[error("marks are recorded in the incident store: start heal watch with --db FILE")]
    NeedsStore,
    /// The store failed (or is missing, too new or too old).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MarkError {
    /// Whether the mark was refused because of what the user gave (exit
    /// code 64 at the command line; a 4xx from the API).
    pub fn is_usage(&self) -> bool {
        match self {
            MarkError::NoSuchIncident(_) | MarkError::Invalid(_) | MarkError::NeedsStore => true,
            MarkError::Store(e) => matches!(
                e,
                StoreError::Missing(_) | StoreError::TooNew { .. } | StoreError::TooOld { .. }
            ),
        }
    }
}

/// Incident `id` marked as a false alarm at wall time `at_ms`: its signal
/// is read from the store (the engine forgets resolved incidents after an
/// hour; the store keeps them).
///
/// # Errors
///
/// No such incident, or the store failed.
pub fn false_alarm(
    store: &Store,
    id: &str,
    note: Option<String>,
    at_ms: i64,
) -> Result<Mark, MarkError> {
    let record = store
        .incident(id)?
        .ok_or_else(|| MarkError::NoSuchIncident(id.to_owned()))?;
    Ok(Mark {
        signal: record.incident.signal,
        reason: SensitivityReason::FalseAlarm,
        incident: Some(id.to_owned()),
        missed_at_ms: None,
        note,
        at_ms,
    })
}

/// An anomaly of `signal` at `missed_at_ms` that heal missed, marked at wall
/// time `at_ms`.
///
/// # Errors
///
/// `signal` is not a signal name (a Prometheus metric name).
pub fn missed(
    signal: &str,
    missed_at_ms: i64,
    note: Option<String>,
    at_ms: i64,
) -> Result<Mark, MarkError> {
    let valid = !signal.is_empty()
        && signal.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid {
        return Err(MarkError::Invalid(format!(
            "signal {signal:?}: expected a signal name (a Prometheus metric name)"
        )));
    }
    Ok(Mark {
        signal: signal.to_owned(),
        reason: SensitivityReason::Missed,
        incident: None,
        missed_at_ms: Some(missed_at_ms),
        note,
        at_ms,
    })
}

/// A performed step that did not help (`Pipeline::take_not_helped`), as a
/// mark at wall time `at_ms`.
pub fn not_helped(nh: NotHelped, at_ms: i64) -> Mark {
    Mark {
        signal: nh.signal,
        reason: SensitivityReason::NotHelped,
        incident: Some(nh.incident),
        missed_at_ms: None,
        note: Some(format!("step {} verified as not having helped", nh.step)),
        at_ms,
    }
}

/// The live loop's own check: `mark`'s signal is one of the runbooks'.
///
/// # Errors
///
/// [`MarkError::Invalid`] naming the signal.
pub fn check_watched(mark: &Mark, watched: bool) -> Result<(), MarkError> {
    if watched {
        Ok(())
    } else {
        Err(MarkError::Invalid(format!(
            "no signal {:?} in the runbooks",
            mark.signal
        )))
    }
}

/// Opens the store at `db` for marks (safe while a `heal watch` writes it:
/// nothing is marked interrupted).
///
/// # Errors
///
/// The store is missing, too new, or cannot be opened.
pub fn open(db: &Path) -> Result<Store, MarkError> {
    Ok(Store::open_for_marks(db)?)
}

/// Records `mark` in `store` (offline: a running watch applies it at its
/// next start; its API applies marks at once).
///
/// # Errors
///
/// The store failed.
pub fn record(store: &mut Store, mark: &Mark) -> Result<Marked, MarkError> {
    Ok(store.mark_sensitivity(mark)?)
}

/// One line about a mark, for people.
pub fn describe(marked: &Marked) -> String {
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
            remediate::time::rfc3339(a.at_ms)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_marks_need_a_signal_name_and_say_why_not() {
        let m = missed("latency_p99", 1_000, None, 2_000).unwrap();
        assert_eq!(
            (m.reason, m.missed_at_ms, m.at_ms),
            (SensitivityReason::Missed, Some(1_000), 2_000)
        );
        let e = missed("9lives", 0, None, 0).unwrap_err();
        assert!(e.is_usage());
        assert_eq!(
            e.to_string(),
            "signal \"9lives\": expected a signal name (a Prometheus metric name)"
        );
        assert_eq!(
            check_watched(&m, false).unwrap_err().to_string(),
            "no signal \"latency_p99\" in the runbooks"
        );
        assert!(check_watched(&m, true).is_ok());
        assert!(MarkError::NeedsStore.is_usage());
        assert!(!MarkError::Store(StoreError::WriterGone).is_usage());
    }
}
