//! The incident store on PostgreSQL, for when one heal is not enough: the
//! same schema as the SQLite store (`schema.rs`), shared by several
//! remediate members.
//!
//! What is here so far is the part that makes sharing safe: the schema
//! and its migrations, the two-phase action journal, and ownership
//! fencing.
//!
//! - **A begin happens once.** [`PgStore::begin_action`] inserts the
//!   execution's key; the table's primary key decides, inside PostgreSQL,
//!   which of any number of members asking at once wins. The others get
//!   [`StoreError::DuplicateAction`] with the state the winner recorded,
//!   as with SQLite, and must not run the action.
//! - **A zombie is fenced.** A member that takes over a group key (after a
//!   rebalance gave it the key's partition) [`claims`](PgStore::claim) it,
//!   which raises the key's epoch. A begin carries the member's
//!   [`Fence`] (the group key and the epoch its claim returned) and is
//!   recorded only while that epoch is still the key's: a member cut off
//!   from the network that still believes it owns the key gets
//!   [`StoreError::Fenced`] and begins nothing. The check and the insert
//!   are one statement; the owner row is read `FOR SHARE`, so a claim and
//!   a begin of the same key are ordered by PostgreSQL's row lock, never
//!   interleaved.
//!
//! - **Leases** (`lease.rs`): a key held until a time by the database's
//!   clock, renewed while its member lives, taken over (epoch raised) once
//!   it expires: the scale-out detect workers' partitions.
//!
//! Incidents, events, evidence, guard state and sensitivity are the
//! store's own statements, run here by [`Pg`] (`db.rs`), the same copy
//! SQLite runs.
//!
//! The client is `postgres` (synchronous, like the SQLite store: both run
//! on the store's own thread, never on the async loop). A connection that
//! fails returns [`StoreError::Postgres`]; reconnecting (with backoff) is
//! the caller's choice, and is safe: a begin whose answer was lost is
//! found again as [`StoreError::DuplicateAction`] with state `started`.

mod db;
mod lease;
mod schema;

use std::time::Duration;

use postgres::{Client, NoTls, Row};
use remediate::action::ActionResult;

use crate::{ActionKey, ActionRecord, ChildProcess, ExecutionState, StoreError};

pub(crate) use db::Pg;
pub(crate) use schema::MIGRATIONS;

/// The store's error for `source`, which sets `broken` when it means the
/// connection is gone, so that the next statement connects again first.
pub(crate) fn failed(
    url: &str,
    broken: &std::cell::Cell<bool>,
    doing: &'static str,
    source: postgres::Error,
) -> StoreError {
    if means_gone(&source) {
        broken.set(true);
    }
    StoreError::Postgres {
        url: url.to_owned(),
        doing,
        source,
    }
}

/// Whether `e` means the connection is gone, even when the client has not
/// noticed yet. A server going down tells its clients first: a backend
/// whose postmaster died, or that is told to shut down, sends a FATAL
/// error (SQLSTATE class 57P, or 08 for connection trouble) and only then
/// closes the socket, and the client returns that error before it reads
/// the end of the stream. Such an error is a lost connection, to connect
/// again and retry, not an answer to the statement.
pub(crate) fn means_gone(e: &postgres::Error) -> bool {
    use std::error::Error as _;
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            matches!(db.severity(), "FATAL" | "PANIC")
                || code.starts_with("57P")
                || code.starts_with("08")
        }
        None => e.source().is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// An execution's columns in the order [`PgStore::record`] reads them.
const EXECUTION_COLUMNS: &str = "SELECT key, incident_id, step, attempt, summary, state, started_ms,
    finished_ms, ok, retryable, result, output, duration_us, pid, pid_start, settled FROM executions";

/// A member's claim on a group key: present it with each begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The group key (a service, or a diagnosis group).
    pub group_key: String,
    /// The epoch [`PgStore::claim`] returned.
    pub epoch: i64,
}

/// How long a begin or finish keeps trying through a lost connection by
/// default ([`PgStore::set_retry_for`]).
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// The store on one PostgreSQL connection.
pub struct PgStore {
    client: Client,
    /// How to connect again after the connection is lost.
    config: postgres::Config,
    /// The URL without its password, for messages.
    url: String,
    /// What tells this store's begins apart from every other's, its own
    /// earlier lives included (a restarted member may get the same pid,
    /// pid 1 in a container): `member/pid/nanoseconds at open`.
    instance: String,
    /// Begins made through this store.
    begins: u64,
    retry_for: Duration,
    reconnects: u64,
    /// A statement failed in a way that means the connection is gone
    /// before the client noticed ([`means_gone`]): connect again first.
    broken: std::cell::Cell<bool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

/// `url` with any password replaced by `***`: in the authority
/// (`user:password@`) and as a `password=` parameter (of a URL's query or
/// of a `key=value` connection string).
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| from + i) {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// Connects to `url` (`postgres://user[:password]@host[:port]/db`); returns
/// the client, its configuration (to connect again) and the URL without
/// its password.
pub(crate) fn connect(url: &str) -> Result<(Client, postgres::Config, String), StoreError> {
    let shown = redact(url);
    let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Postgres {
        url: shown.clone(),
        doing: "reading the connection URL",
        source,
    })?;
    // A connection whose peer went silent (a cut network: no reset
    // ever comes) fails within seconds instead of hanging a member's
    // loop until the kernel gives up (about 15 minutes): unacknowledged
    // data for 10 s, or an idle link that stops answering keepalives.
    config
        .application_name("heal")
        .connect_timeout(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    let client = config
        .connect(NoTls)
        .map_err(|source| StoreError::Postgres {
            url: shown.clone(),
            doing: "connecting",
            source,
        })?;
    Ok((client, config, shown))
}

/// Applies the missing migrations, each in its own transaction under
/// the migration lock, re-reading the version under it (another
/// member may have migrated meanwhile).
pub(crate) fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let url = url.to_owned();
    let pg = |doing: &'static str| {
        let url = url.clone();
        move |source| StoreError::Postgres { url, doing, source }
    };
    let supported = MIGRATIONS.len() as i64;
    {
        let mut tx = client.transaction().map_err(pg("migrating"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )
        .map_err(pg("taking the migration lock"))?;
        tx.batch_execute(schema::VERSION_TABLE)
            .map_err(pg("creating the version table"))?;
        tx.commit().map_err(pg("creating the version table"))?;
    }
    loop {
        let mut tx = client.transaction().map_err(pg("migrating"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )
        .map_err(pg("taking the migration lock"))?;
        let found: i64 = tx
            .query_one("SELECT version FROM heal_schema WHERE id = 1", &[])
            .map_err(pg("reading the schema version"))?
            .get(0);
        if found > supported {
            return Err(StoreError::PostgresTooNew {
                url: url.clone(),
                found,
                supported,
            });
        }
        if found == supported {
            return tx.commit().map_err(pg("migrating"));
        }
        tx.batch_execute(MIGRATIONS[found as usize])
            .map_err(pg("applying a migration"))?;
        tx.execute(
            "UPDATE heal_schema SET version = $1 WHERE id = 1",
            &[&(found + 1)],
        )
        .map_err(pg("recording the schema version"))?;
        tx.commit().map_err(pg("applying a migration"))?;
        tracing::info!(
            stage = "store",
            version = found + 1,
            "incident store: PostgreSQL schema migrated"
        );
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`),
    /// applies the missing migrations, and returns the store.
    ///
    /// # Errors
    ///
    /// The connection failed, a migration failed, or the database was
    /// migrated by a newer heal ([`StoreError::PostgresTooNew`]).
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_as(url, &format!("heal-{}", std::process::id()))
    }

    /// [`PgStore::open`] for the member called `member` (its begins are
    /// recorded as `member/pid/nanoseconds-at-open/n`).
    ///
    /// # Errors
    ///
    /// As [`PgStore::open`].
    pub fn open_as(url: &str, member: &str) -> Result<PgStore, StoreError> {
        let (mut client, config, url) = connect(url)?;
        migrate(&mut client, &url)?;
        Ok(PgStore {
            client,
            config,
            url,
            instance: format!(
                "{member}/{}/{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
            begins: 0,
            retry_for: RETRY_FOR,
            reconnects: 0,
            broken: std::cell::Cell::new(false),
        })
    }

    /// How long [`PgStore::begin_action`] and [`PgStore::finish_action`]
    /// keep trying through a lost connection (reconnecting with backoff,
    /// 100 ms doubling to 2 s) before they return the error; zero: never.
    pub fn set_retry_for(&mut self, retry_for: Duration) {
        self.retry_for = retry_for;
    }

    /// How many times this store has connected again after losing its
    /// connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Runs `op` and, while it fails because the connection is gone and
    /// `retry_for` has not passed, connects again (with backoff) and runs
    /// it again; `op` learns whether it is a retry.
    fn retrying<T>(
        &mut self,
        mut op: impl FnMut(&mut PgStore, bool) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = std::time::Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(100);
        let mut retry = false;
        loop {
            match op(self, retry) {
                Err(StoreError::Postgres { ref source, .. })
                    if (self.client.is_closed() || means_gone(source))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    retry = true;
                    match self.config.connect(NoTls) {
                        Ok(client) => {
                            self.client = client;
                            self.broken.set(false);
                            self.reconnects += 1;
                            tracing::warn!(stage = "store", url = %self.url, "incident store: connected again to PostgreSQL");
                        }
                        Err(e) => {
                            tracing::warn!(stage = "store", url = %self.url, error = %e, "incident store: PostgreSQL still unreachable; retrying");
                        }
                    }
                }
                other => return other,
            }
        }
    }

    fn err(&self, doing: &'static str) -> impl FnOnce(postgres::Error) -> StoreError + '_ {
        move |source| failed(&self.url, &self.broken, doing, source)
    }

    /// The schema version of the database.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn version(&mut self) -> Result<i64, StoreError> {
        let row = self
            .client
            .query_one("SELECT version FROM heal_schema WHERE id = 1", &[])
            .map_err(self.err("reading the schema version"))?;
        Ok(row.get(0))
    }

    /// Takes `group_key` over for `owner` at `now_ms`: the key's epoch goes
    /// up by one (to 1 for a key never claimed), and every fence of an
    /// earlier epoch stops working. Returns the new fence.
    ///
    /// # Errors
    ///
    /// The statement failed.
    pub fn claim(
        &mut self,
        group_key: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Fence, StoreError> {
        let row = self
            .client
            .query_one(
                "INSERT INTO owners (group_key, epoch, owner, claimed_ms) VALUES ($1, 1, $2, $3)
                 ON CONFLICT (group_key) DO UPDATE
                   SET epoch = owners.epoch + 1, owner = EXCLUDED.owner, claimed_ms = EXCLUDED.claimed_ms
                 RETURNING epoch",
                &[&group_key, &owner, &now_ms],
            )
            .map_err(self.err("claiming a group key"))?;
        Ok(Fence {
            group_key: group_key.to_owned(),
            epoch: row.get(0),
        })
    }

    /// Records that the action `key` begins, once: see the module's docs.
    /// With a `fence`, only while the fence's epoch is still its group
    /// key's.
    ///
    /// # Errors
    ///
    /// [`StoreError::DuplicateAction`] when the key was begun before (by
    /// anyone), [`StoreError::Fenced`] when the fence is stale, or the
    /// statement failed.
    pub fn begin_action(
        &mut self,
        key: &ActionKey,
        summary: &str,
        started_ms: i64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.begins += 1;
        let token = format!("{}/{}", self.instance, self.begins);
        self.retrying(|s, _| s.try_begin(key, summary, started_ms, fence, &token))
    }

    /// One try of a begin recorded as `token`. A key already recorded with
    /// this very token is this begin, whose answer a lost connection ate:
    /// it succeeded.
    fn try_begin(
        &mut self,
        key: &ActionKey,
        summary: &str,
        started_ms: i64,
        fence: Option<&Fence>,
        token: &str,
    ) -> Result<(), StoreError> {
        let k = key.to_string();
        let step = key.step as i64;
        let attempt = i64::from(key.attempt);
        // One statement with or without a fence: without one, the owner
        // check is skipped (`$8` is NULL).
        let (group, epoch) = fence.map_or((None, None), |f| {
            (Some(f.group_key.as_str()), Some(f.epoch))
        });
        let inserted = self
            .client
            .execute(
                "WITH owner AS (
                     SELECT 1 FROM owners WHERE group_key = $8 AND epoch = $9 FOR SHARE
                 )
                 INSERT INTO executions (key, incident_id, step, attempt, summary, state, started_ms, begun_by)
                 SELECT $1, $2, $3, $4, $5, 'started', $6, $7
                 WHERE $8::text IS NULL OR EXISTS (SELECT 1 FROM owner)
                 ON CONFLICT (key) DO NOTHING",
                &[
                    &k,
                    &key.incident,
                    &step,
                    &attempt,
                    &summary,
                    &started_ms,
                    &token,
                    &group,
                    &epoch,
                ],
            )
        .map_err(self.err("recording an action begin"))?;
        if inserted == 1 {
            return Ok(());
        }
        let recorded = self
            .client
            .query_opt(
                "SELECT state, begun_by FROM executions WHERE key = $1",
                &[&k],
            )
            .map_err(self.err("reading an action"))?;
        if let Some(row) = recorded {
            if row.get::<_, Option<String>>(1).as_deref() == Some(token) {
                return Ok(());
            }
            return Err(StoreError::DuplicateAction {
                key: key.clone(),
                state: row.get(0),
            });
        }
        // Not recorded, and not begun by anyone: only a stale fence says no.
        let f = fence.expect("an unfenced insert either inserts or conflicts");
        let current = self
            .client
            .query_opt(
                "SELECT epoch, owner FROM owners WHERE group_key = $1",
                &[&f.group_key],
            )
            .map_err(self.err("reading a group key's owner"))?;
        Err(StoreError::Fenced {
            key: key.clone(),
            group_key: f.group_key.clone(),
            epoch: f.epoch,
            current: current.as_ref().map(|r| r.get(0)),
            owner: current.map(|r| r.get(1)),
        })
    }

    /// Records the result of the action `key`, which must be `started`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotInFlight`] when it was never begun or is already
    /// finished (or settled), or the statement failed.
    pub fn finish_action(
        &mut self,
        key: &ActionKey,
        result: &ActionResult,
        finished_ms: i64,
    ) -> Result<(), StoreError> {
        self.retrying(|s, retry| s.try_finish(key, result, finished_ms, retry))
    }

    /// One try of a finish. On a retry, a row already finished with this
    /// very result is this finish, whose answer a lost connection ate.
    fn try_finish(
        &mut self,
        key: &ActionKey,
        result: &ActionResult,
        finished_ms: i64,
        retry: bool,
    ) -> Result<(), StoreError> {
        let duration_us = i64::try_from(result.duration.as_micros()).unwrap_or(i64::MAX);
        let updated = self
            .client
            .execute(
                "UPDATE executions SET state = 'finished', finished_ms = $2, ok = $3,
                     retryable = $4, result = $5, output = $6, duration_us = $7
                 WHERE key = $1 AND state = 'started'",
                &[
                    &key.to_string(),
                    &finished_ms,
                    &result.ok,
                    &result.retryable,
                    &result.summary,
                    &result.output,
                    &duration_us,
                ],
            )
            .map_err(self.err("recording an action result"))?;
        if updated == 1 {
            return Ok(());
        }
        let why = match self.action(key)? {
            None => "it was never begun".to_owned(),
            Some(rec)
                if retry
                    && rec.state == ExecutionState::Finished
                    && rec.finished_ms == Some(finished_ms)
                    && rec.result.as_ref() == Some(result) =>
            {
                return Ok(());
            }
            Some(rec) => format!("it is already {}", rec.state.as_str()),
        };
        Err(StoreError::NotInFlight {
            key: key.clone(),
            why,
        })
    }

    /// Saves `state`, what the holder of the fence's group key remembers of
    /// it, for its next holder; only while the fence is current (as a
    /// begin). Returns whether it was saved (`false`: fenced).
    ///
    /// # Errors
    ///
    /// The statement failed.
    pub fn save_state(
        &mut self,
        fence: &Fence,
        state: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let saved = self
            .client
            .execute(
                "WITH owner AS (
                     SELECT 1 FROM owners WHERE group_key = $1 AND epoch = $3 FOR SHARE
                 )
                 INSERT INTO member_state (state_key, state, epoch, saved_ms)
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM owner)
                 ON CONFLICT (state_key) DO UPDATE
                   SET state = EXCLUDED.state, epoch = EXCLUDED.epoch, saved_ms = EXCLUDED.saved_ms",
                &[&fence.group_key, &state, &fence.epoch, &now_ms],
            )
            .map_err(self.err("saving a member's state"))?;
        Ok(saved == 1)
    }

    /// The state last saved for `group_key` ([`PgStore::save_state`]).
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn load_state(&mut self, group_key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client
            .query_opt(
                "SELECT state FROM member_state WHERE state_key = $1",
                &[&group_key],
            )
            .map_err(self.err("reading a member's state"))?
            .map(|r| r.get(0)))
    }

    /// The execution recorded for `key`, if any.
    ///
    /// # Errors
    ///
    /// The query failed, or the row does not decode.
    pub fn action(&mut self, key: &ActionKey) -> Result<Option<ActionRecord>, StoreError> {
        let row = self
            .client
            .query_opt(
                &format!("{EXECUTION_COLUMNS} WHERE key = $1"),
                &[&key.to_string()],
            )
            .map_err(self.err("reading an action"))?;
        row.map(|r| self.record(&r)).transpose()
    }

    /// Every execution of `incident`, by step and attempt.
    ///
    /// # Errors
    ///
    /// As [`PgStore::action`].
    pub fn actions_of(&mut self, incident: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = self
            .client
            .query(
                &format!("{EXECUTION_COLUMNS} WHERE incident_id = $1 ORDER BY step, attempt"),
                &[&incident],
            )
            .map_err(self.err("reading actions"))?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    fn record(&self, r: &Row) -> Result<ActionRecord, StoreError> {
        let key: String = r.get(0);
        let corrupt = |message: String| StoreError::PostgresCorrupt {
            url: self.url.clone(),
            table: "executions",
            row: key.clone(),
            message,
        };
        let state: String = r.get(5);
        let state = ExecutionState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
        let step: i64 = r.get(2);
        let attempt: i64 = r.get(3);
        let result = match (r.get::<_, Option<bool>>(8), r.get::<_, Option<String>>(10)) {
            (Some(ok), Some(summary)) => Some(ActionResult {
                ok,
                retryable: r.get::<_, Option<bool>>(9).unwrap_or(false),
                summary,
                output: r.get::<_, Option<String>>(11).unwrap_or_default(),
                duration: Duration::from_micros(
                    u64::try_from(r.get::<_, Option<i64>>(12).unwrap_or(0)).unwrap_or(0),
                ),
            }),
            _ => None,
        };
        let process = r.get::<_, Option<i64>>(13).map(|pid| ChildProcess {
            pid: u32::try_from(pid).unwrap_or(0),
            start_ticks: r
                .get::<_, Option<i64>>(14)
                .and_then(|t| u64::try_from(t).ok()),
        });
        Ok(ActionRecord {
            key: ActionKey {
                incident: r.get(1),
                step: usize::try_from(step).map_err(|_| corrupt(format!("bad step {step}")))?,
                attempt: u32::try_from(attempt)
                    .map_err(|_| corrupt(format!("bad attempt {attempt}")))?,
            },
            summary: r.get(4),
            state,
            started_ms: r.get(6),
            finished_ms: r.get(7),
            result,
            process,
            settled: r.get(15),
        })
    }

    /// The tables and their columns in order, as the catalogue says
    /// (`heal_schema` left out): what `tests/postgres.rs` compares with
    /// the SQLite store's.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn columns(&mut self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> 'heal_schema'
                 ORDER BY table_name, ordinal_position",
                &[],
            )
            .map_err(self.err("reading the catalogue"))?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let (t, c): (String, String) = (r.get(0), r.get(1));
            match out.last_mut() {
                Some((last, cols)) if *last == t => cols.push(c),
                _ => out.push((t, vec![c])),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgres://heal:s3cret@db:5432/heal"),
            "postgres://heal:***@db:5432/heal"
        );
        assert_eq!(redact("postgres://heal@db/heal"), "postgres://heal@db/heal");
        assert_eq!(redact("host=db user=heal"), "host=db user=heal");
        // An @ in the password: the host is after the last one.
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert_eq!(
            redact("postgres://h/d?user=u&password=x&sslmode=disable"),
            "postgres://h/d?user=u&password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn both_dialects_have_every_migration() {
        assert_eq!(MIGRATIONS.len(), crate::sqlite::schema::MIGRATIONS.len());
    }
}
