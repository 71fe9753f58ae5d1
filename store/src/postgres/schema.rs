//! The store's schema in PostgreSQL's dialect: the same migrations as
//! [`crate::sqlite`]'s, one for one, in the same order, with the same
//! tables and columns in the same order (`tests/postgres.rs` compares the
//! two catalogues on real databases). What differs is only what the
//! dialects need: `BIGINT` for SQLite's `INTEGER`, `DOUBLE PRECISION` for
//! `REAL`, `BOOLEAN` for the 0/1 flags, identity columns for SQLite's
//! rowid keys, no `WITHOUT ROWID`.
//!
//! Where SQLite keeps the version in `PRAGMA user_version`, PostgreSQL
//! keeps it in `heal_schema` (one row). Each migration runs in its own
//! transaction with the version bump, under a transaction-scoped advisory
//! lock, so members that start together migrate once, one after the
//! other, and a crash leaves the database at a whole version.
//!
//! Rule for the future, as for SQLite: never edit a migration that has
//! shipped; append one, to both lists.

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12];

/// Key of the advisory lock the migrations take (`heal` in ASCII).
pub(crate) const MIGRATION_LOCK: i64 = 0x6865_616c;

/// The version table, created before the first migration.
pub(crate) const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS heal_schema (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO heal_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
";

const V1: &str = r#"
CREATE TABLE incidents (
    pk               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    seq              BIGINT,
    service          TEXT    NOT NULL,
    signal           TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    description      TEXT,
    severity         TEXT    NOT NULL,
    above            BOOLEAN NOT NULL,
    series           TEXT    NOT NULL,
    selector         TEXT    NOT NULL,
    onset_ms         BIGINT  NOT NULL,
    opened_ms        BIGINT  NOT NULL,
    peak_score       DOUBLE PRECISION NOT NULL,
    chain_len        BIGINT  NOT NULL,
    resolved_ms      BIGINT,
    unresolved_at_ms BIGINT,
    status           TEXT    NOT NULL,
    outcome          TEXT    NOT NULL
);
CREATE INDEX incidents_newest ON incidents (opened_ms DESC, pk DESC);
CREATE INDEX incidents_service ON incidents (service, opened_ms DESC, pk DESC);

CREATE TABLE anomalies (
    pk          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id TEXT UNIQUE REFERENCES incidents (id) ON DELETE CASCADE,
    selector    TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    onset_ms    BIGINT  NOT NULL,
    above       BOOLEAN NOT NULL,
    evidence    TEXT    NOT NULL
);
CREATE INDEX anomalies_onset ON anomalies (onset_ms);

CREATE TABLE actions (
    incident_id TEXT    NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    step        BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    rendered    TEXT,
    allowed     BOOLEAN NOT NULL,
    reason      TEXT,
    detail      TEXT    NOT NULL,
    planned_ms  BIGINT  NOT NULL,
    timeout     TEXT,
    PRIMARY KEY (incident_id, step)
);

CREATE TABLE outcomes (
    incident_id TEXT    NOT NULL,
    step        BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL,
    decided_ms  BIGINT  NOT NULL,
    detail      TEXT    NOT NULL,
    PRIMARY KEY (incident_id, step),
    FOREIGN KEY (incident_id, step) REFERENCES actions (incident_id, step) ON DELETE CASCADE
);

-- The two-phase journal of performed actions: its primary key is what
-- makes a begin happen once, whoever asks and however many at once.
CREATE TABLE executions (
    key         TEXT    PRIMARY KEY,
    incident_id TEXT    NOT NULL,
    step        BIGINT  NOT NULL,
    attempt     BIGINT  NOT NULL,
    summary     TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('started', 'finished', 'interrupted', 'abandoned')),
    started_ms  BIGINT  NOT NULL,
    finished_ms BIGINT,
    ok          BOOLEAN,
    retryable   BOOLEAN,
    result      TEXT,
    output      TEXT,
    duration_us BIGINT
);
CREATE INDEX executions_incident ON executions (incident_id, step, attempt);
CREATE INDEX executions_in_flight ON executions (state) WHERE state = 'started';

CREATE TABLE events (
    pk          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    ts_ms       BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX events_incident ON events (incident_id, pk);
"#;

const V2: &str = r#"
CREATE TABLE evidence (
    incident_id TEXT PRIMARY KEY REFERENCES incidents (id),
    points      TEXT NOT NULL
);
"#;

const V3: &str = r#"
CREATE TABLE guard_state (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
"#;

const V4: &str = r#"
CREATE TABLE sensitivity (
    signal     TEXT PRIMARY KEY,
    "offset"   DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE sensitivity_history (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signal       TEXT    NOT NULL,
    old_offset   DOUBLE PRECISION NOT NULL,
    new_offset   DOUBLE PRECISION NOT NULL,
    reason       TEXT    NOT NULL,
    incident     TEXT,
    missed_at_ms BIGINT,
    note         TEXT,
    at_ms        BIGINT  NOT NULL
);
CREATE INDEX sensitivity_history_incident ON sensitivity_history (incident, reason);
"#;

const V5: &str = r#"
ALTER TABLE incidents ADD COLUMN peer_z DOUBLE PRECISION;
"#;

const V6: &str = r#"
ALTER TABLE incidents ADD COLUMN closed_reason TEXT;
ALTER TABLE executions ADD COLUMN pid BIGINT;
ALTER TABLE executions ADD COLUMN pid_start BIGINT;
ALTER TABLE executions ADD COLUMN settled TEXT;
"#;

const V7: &str = r#"
ALTER TABLE incidents ADD COLUMN diagnosis TEXT;
"#;

/// Version 8 (both dialects): who owns a group key, and since which epoch
/// (see [`super::PgStore::claim`]).
const V8: &str = r#"
CREATE TABLE owners (
    group_key  TEXT   PRIMARY KEY,
    epoch      BIGINT NOT NULL,
    owner      TEXT   NOT NULL,
    claimed_ms BIGINT NOT NULL
);
"#;

/// Version 9 (both dialects): who recorded a begin (`member/pid/n`), so a
/// member that lost its connection after the begin committed, and tries
/// again, knows the begin for its own rather than a duplicate. (SQLite's
/// single writer never needs it and leaves it empty.)
const V9: &str = r#"
ALTER TABLE executions ADD COLUMN begun_by TEXT;
"#;

/// Version 10 (both dialects): leases (see `super::lease`): who holds a
/// key (a member's liveness, a partition of the samples topic) until when,
/// by the database's clock, and since which epoch.
const V10: &str = r#"
CREATE TABLE leases (
    lease_key  TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#;

/// Version 11 (both dialects): which writer wrote an incident (see
/// `crate::backend`): a writer that opens the store settles only its own
/// incidents and begins, so a shared PostgreSQL database can hold several.
/// SQLite's one writer leaves it empty.
const V11: &str = r#"
ALTER TABLE incidents ADD COLUMN writer TEXT;
"#;

/// Version 12 (both dialects): what a remediate member remembers of a
/// partition it holds (its guards' memory: attempts, cooldowns, rate
/// limits), saved under the partition's fence so its next holder goes on
/// from it; a holder whose fence is stale saves nothing. Only PostgreSQL's
/// members write it.
const V12: &str = r#"
CREATE TABLE member_state (
    state_key TEXT    PRIMARY KEY,
    state     TEXT    NOT NULL,
    epoch     BIGINT NOT NULL,
    saved_ms  BIGINT NOT NULL
);
"#;
