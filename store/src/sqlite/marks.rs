//! The SQLite side of learning from outcomes (see `crate::sensitivity`):
//! each signal's offset and the history of every adjustment.

use std::collections::BTreeMap;

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{sql, Store};
use crate::{step_offset, Adjustment, Mark, Marked, SensitivityReason as Reason, StoreError};

impl Store {
    /// Records a mark: reads the signal's offset, steps it, writes the new
    /// offset and the history row, in one transaction.
    pub fn mark_sensitivity(&mut self, mark: &Mark) -> Result<Marked, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, "starting a sensitivity mark"))?;
        let marked = put_mark(&tx, &path, mark)?;
        tx.commit()
            .map_err(sql(&path, "committing a sensitivity mark"))?;
        Ok(marked)
    }

    /// The current offset of every signal that has one.
    pub fn sensitivity_offsets(&self) -> Result<BTreeMap<String, f64>, StoreError> {
        self.conn
            .prepare_cached("SELECT signal, offset FROM sensitivity ORDER BY signal")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(sql(&self.path, "reading sensitivity offsets"))
    }

    /// Every adjustment, oldest first.
    pub fn sensitivity_history(&self) -> Result<Vec<Adjustment>, StoreError> {
        let rows: Vec<RawAdjustment> = self
            .conn
            .prepare_cached(&format!("{SELECT_HISTORY} ORDER BY seq"))
            .and_then(|mut s| {
                s.query_map([], row_to_adjustment)?
                    .collect::<Result<_, _>>()
            })
            .map_err(sql(&self.path, "reading the sensitivity history"))?;
        rows.into_iter().map(|r| decode(&self.path, r)).collect()
    }
}

/// [`Store::mark_sensitivity`] inside the caller's transaction (the
/// writer thread's batch, or the method's own).
pub(crate) fn put_mark(conn: &Connection, path: &Path, mark: &Mark) -> Result<Marked, StoreError> {
    if let Some(incident) = &mark.incident {
        let earlier = conn
            .query_row(
                &format!("{SELECT_HISTORY} WHERE incident = ?1 AND reason = ?2"),
                params![incident, mark.reason.as_str()],
                row_to_adjustment,
            )
            .optional()
            .map_err(sql(path, "reading earlier marks"))?;
        if let Some(earlier) = earlier {
            return Ok(Marked::AlreadyMarked(decode(path, earlier)?));
        }
    }
    let old: f64 = conn
        .query_row(
            "SELECT offset FROM sensitivity WHERE signal = ?1",
            [&mark.signal],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path, "reading a signal's offset"))?
        .unwrap_or(0.0);
    let new = step_offset(old, mark.reason);
    conn.execute(
        "INSERT INTO sensitivity (signal, offset, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (signal) DO UPDATE SET offset = excluded.offset,
             updated_ms = excluded.updated_ms",
        params![mark.signal, new, mark.at_ms],
    )
    .map_err(sql(path, "writing a signal's offset"))?;
    conn.execute(
        "INSERT INTO sensitivity_history
             (signal, old_offset, new_offset, reason, incident, missed_at_ms, note, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            mark.signal,
            old,
            new,
            mark.reason.as_str(),
            mark.incident,
            mark.missed_at_ms,
            mark.note,
            mark.at_ms
        ],
    )
    .map_err(sql(path, "recording an adjustment"))?;
    Ok(Marked::Adjusted(Adjustment {
        seq: conn.last_insert_rowid(),
        signal: mark.signal.clone(),
        old,
        new,
        reason: mark.reason,
        incident: mark.incident.clone(),
        missed_at_ms: mark.missed_at_ms,
        note: mark.note.clone(),
        at_ms: mark.at_ms,
    }))
}

const SELECT_HISTORY: &str = "SELECT seq, signal, old_offset, new_offset, reason, incident,
     missed_at_ms, note, at_ms FROM sensitivity_history";

/// A history row with its reason still text.
type RawAdjustment = (Adjustment, String);

fn row_to_adjustment(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAdjustment> {
    Ok((
        Adjustment {
            seq: r.get(0)?,
            signal: r.get(1)?,
            old: r.get(2)?,
            new: r.get(3)?,
            reason: Reason::FalseAlarm,
            incident: r.get(5)?,
            missed_at_ms: r.get(6)?,
            note: r.get(7)?,
            at_ms: r.get(8)?,
        },
        r.get(4)?,
    ))
}

fn decode(
    path: &std::path::Path,
    (mut a, reason): RawAdjustment,
) -> Result<Adjustment, StoreError> {
    a.reason = Reason::parse(&reason).ok_or_else(|| StoreError::Corrupt {
        path: path.to_path_buf(),
        table: "sensitivity_history",
        row: a.seq.to_string(),
        message: format!("reason: unknown {reason:?}"),
    })?;
    Ok(a)
}
