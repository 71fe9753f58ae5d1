//! Learning from outcomes (see `crate::sensitivity`), in the SQL both
//! backends run: each signal's offset and the history of every adjustment.

use std::collections::BTreeMap;

use crate::db::{decoded, in_transaction, vals, ColumnError, Db, Row};
use crate::{
    step_offset, Adjustment, Mark, Marked, SensitivityReason as Reason, Store, StoreError,
};

impl Store {
    /// Records a mark: reads the signal's offset, steps it, writes the new
    /// offset and the history row, in one transaction.
    pub fn mark_sensitivity(&mut self, mark: &Mark) -> Result<Marked, StoreError> {
        in_transaction(self.db(), "recording a sensitivity mark", |db| {
            put_mark(db, mark)
        })
    }

    /// The current offset of every signal that has one.
    pub fn sensitivity_offsets(&self) -> Result<BTreeMap<String, f64>, StoreError> {
        Ok(decoded(
            self.db(),
            "reading sensitivity offsets",
            "sensitivity",
            r#"SELECT signal, "offset" FROM sensitivity ORDER BY signal"#,
            &[],
            |r| Ok((r.text(0)?, r.f64(1)?)),
        )?
        .into_iter()
        .collect())
    }

    /// Every adjustment, oldest first.
    pub fn sensitivity_history(&self) -> Result<Vec<Adjustment>, StoreError> {
        decoded(
            self.db(),
            "reading the sensitivity history",
            "sensitivity_history",
            &format!("{SELECT_HISTORY} ORDER BY seq"),
            &[],
            adjustment,
        )
    }
}

/// [`Store::mark_sensitivity`] inside the caller's transaction (the
/// writer thread's batch, or the method's own).
pub(crate) fn put_mark(db: &dyn Db, mark: &Mark) -> Result<Marked, StoreError> {
    if let Some(incident) = &mark.incident {
        let earlier = decoded(
            db,
            "reading earlier marks",
            "sensitivity_history",
            &format!("{SELECT_HISTORY} WHERE incident = ?1 AND reason = ?2"),
            vals![incident, mark.reason.as_str()],
            adjustment,
        )?;
        if let Some(earlier) = earlier.into_iter().next() {
            return Ok(Marked::AlreadyMarked(earlier));
        }
    }
    let old = decoded(
        db,
        "reading a signal's offset",
        "sensitivity",
        r#"SELECT signal, "offset" FROM sensitivity WHERE signal = ?1"#,
        vals![&mark.signal],
        |r| r.f64(1),
    )?
    .into_iter()
    .next()
    .unwrap_or(0.0);
    let new = step_offset(old, mark.reason);
    db.exec(
        "writing a signal's offset",
        r#"INSERT INTO sensitivity (signal, "offset", updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (signal) DO UPDATE SET "offset" = excluded."offset",
             updated_ms = excluded.updated_ms"#,
        vals![&mark.signal, new, mark.at_ms],
    )?;
    let seq = decoded(
        db,
        "recording an adjustment",
        "sensitivity_history",
        "INSERT INTO sensitivity_history
             (signal, old_offset, new_offset, reason, incident, missed_at_ms, note, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         RETURNING seq",
        vals![
            &mark.signal,
            old,
            new,
            mark.reason.as_str(),
            mark.incident.clone(),
            mark.missed_at_ms,
            mark.note.clone(),
            mark.at_ms
        ],
        |r| r.i64(0),
    )?
    .into_iter()
    .next()
    .unwrap_or_default();
    Ok(Marked::Adjusted(Adjustment {
        seq,
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

fn adjustment(r: &Row) -> Result<Adjustment, ColumnError> {
    let reason = r.text(4)?;
    Ok(Adjustment {
        seq: r.i64(0)?,
        signal: r.text(1)?,
        old: r.f64(2)?,
        new: r.f64(3)?,
        reason: Reason::parse(&reason).ok_or_else(|| format!("reason: unknown {reason:?}"))?,
        incident: r.opt_text(5)?,
        missed_at_ms: r.opt_i64(6)?,
        note: r.opt_text(7)?,
        at_ms: r.i64(8)?,
    })
}
