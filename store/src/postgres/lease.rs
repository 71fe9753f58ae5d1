//! Leases: a key held by one member until a time, renewed while the member
//! lives, taken over by another once it expires. Time is the database's
//! (`clock_timestamp()`), so members on hosts whose clocks disagree still
//! agree on who holds what.
//!
//! Each take-over raises the key's epoch (a member renewing its own lease
//! keeps it). A member must stop acting on a key once it cannot show that
//! it still holds it: a renewal that does not return the key, or no
//! successful renewal for a lease's length by its own monotonic clock
//! (it may be the zombie of a network cut). The scale-out detect workers
//! hold the samples topic's partitions this way (`heal::scale`).

use postgres::error::SqlState;

use super::PgStore;
use crate::StoreError;

/// The database's clock in ms since the epoch, as SQL.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

impl PgStore {
    /// Reconnects once when the connection was lost (a lease call must be
    /// quick; the caller calls again at its next renewal).
    fn reconnect_if_closed(&mut self) {
        if self.client.is_closed() || self.broken.get() {
            if let Ok(client) = self.config.connect(postgres::NoTls) {
                self.client = client;
                self.broken.set(false);
                self.reconnects += 1;
            }
        }
    }

    /// Renews `member`'s liveness in `group` for `ttl_ms` and returns the
    /// group's live members, sorted (every member computes the same list).
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the database cannot be reached.
    pub fn lease_members(
        &mut self,
        group: &str,
        member: &str,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.reconnect_if_closed();
        let key = format!("member/{group}/{member}");
        let upsert = format!(
            "INSERT INTO leases (lease_key, owner, epoch, expires_ms) VALUES ($1, $2, 1, {NOW_MS} + $3)
             ON CONFLICT (lease_key) DO UPDATE SET owner = EXCLUDED.owner, expires_ms = EXCLUDED.expires_ms"
        );
        self.client
            .execute(&upsert, &[&key, &member, &ttl_ms])
            .map_err(self.err("renewing a member's lease"))?;
        let live = format!(
            "SELECT owner FROM leases WHERE lease_key LIKE $1 AND expires_ms > {NOW_MS} ORDER BY owner"
        );
        let prefix = format!("member/{}/%", like_escape(group));
        let rows = self
            .client
            .query(&live, &[&prefix])
            .map_err(self.err("listing a group's members"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes `key` for `member` for `ttl_ms` if it is free, expired or
    /// already `member`'s; its epoch when taken, `None` when another member
    /// holds it.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the database cannot be reached.
    pub fn lease_acquire(
        &mut self,
        key: &str,
        member: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.reconnect_if_closed();
        let sql = format!(
            "INSERT INTO leases (lease_key, owner, epoch, expires_ms) VALUES ($1, $2, 1, {NOW_MS} + $3)
             ON CONFLICT (lease_key) DO UPDATE
               SET epoch = CASE WHEN leases.owner = EXCLUDED.owner THEN leases.epoch ELSE leases.epoch + 1 END,
                   owner = EXCLUDED.owner, expires_ms = EXCLUDED.expires_ms
               WHERE leases.owner = EXCLUDED.owner OR leases.expires_ms <= {NOW_MS}
             RETURNING epoch"
        );
        match self.client.query_opt(&sql, &[&key, &member, &ttl_ms]) {
            Ok(row) => Ok(row.map(|r| r.get(0))),
            // Two members inserting the same new key at once: the loser
            // simply does not hold it.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
            Err(e) => Err(self.err("taking a lease")(e)),
        }
    }

    /// Renews the leases of `keys` that `member` still holds, for
    /// `ttl_ms`; returns those (a key missing from the answer was taken
    /// over: stop acting on it).
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the database cannot be reached.
    pub fn lease_renew(
        &mut self,
        keys: &[String],
        member: &str,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.reconnect_if_closed();
        let sql = format!(
            "UPDATE leases SET expires_ms = {NOW_MS} + $3
             WHERE owner = $2 AND lease_key = ANY($1) AND expires_ms > {NOW_MS}
             RETURNING lease_key"
        );
        let rows = self
            .client
            .query(&sql, &[&keys, &member, &ttl_ms])
            .map_err(self.err("renewing leases"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Gives `key` up (it expires now) if `member` holds it.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the database cannot be reached.
    pub fn lease_release(&mut self, key: &str, member: &str) -> Result<(), StoreError> {
        self.reconnect_if_closed();
        self.client
            .execute(
                "UPDATE leases SET expires_ms = 0 WHERE lease_key = $1 AND owner = $2",
                &[&key, &member],
            )
            .map_err(self.err("releasing a lease"))?;
        Ok(())
    }
}

/// `s` with LIKE's wildcards escaped (`\` is the default escape).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
