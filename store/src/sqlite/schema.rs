//! The store's schema as an ordered list of migrations.
//!
//! `PRAGMA user_version` holds how many migrations a file has had. Opening a
//! file for writing applies the missing ones in order, each in its own
//! transaction together with the `user_version` bump, so a crash mid-way
//! leaves the file at a whole version, never between two. A file whose
//! version is above `MIGRATIONS.len()` came from a newer heal and is refused
//! rather than guessed at.
//!
//! Rule for the future: never edit a migration that has shipped; append one.

/// Every migration, oldest first; the schema version of a file is the
/// number of these it has had.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12];

/// The schema version this heal writes.
pub(crate) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Version 1: incidents, anomalies, planned actions, verification outcomes,
/// executions (the two-phase action journal) and the engine event log.
///
/// Why columns rather than one JSON blob per incident: the report feed
/// filters and pages on service, time, status and outcome, which wants
/// indexes. Free-form parts (labels, a rendered action, evidence, an event)
/// are JSON text.
const V1: &str = r#"
CREATE TABLE incidents (
    pk               INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    -- The number in `inc-000042`, for numbering across restarts.
    seq              INTEGER,
    service          TEXT    NOT NULL,
    signal           TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    description      TEXT,
    severity         TEXT    NOT NULL,
    above            INTEGER NOT NULL,
    -- Labels of the series, a JSON object.
    series           TEXT    NOT NULL,
    selector         TEXT    NOT NULL,
    onset_ms         INTEGER NOT NULL,
    opened_ms        INTEGER NOT NULL,
    peak_score       REAL    NOT NULL,
    chain_len        INTEGER NOT NULL,
    resolved_ms      INTEGER,
    unresolved_at_ms INTEGER,
    -- open | resolved
    status           TEXT    NOT NULL,
    -- recovered | worse | not_recovered | none: see `IncidentOutcome`.
    outcome          TEXT    NOT NULL
);
CREATE INDEX incidents_newest ON incidents (opened_ms DESC, pk DESC);
CREATE INDEX incidents_service ON incidents (service, opened_ms DESC, pk DESC);

CREATE TABLE anomalies (
    pk          INTEGER PRIMARY KEY,
    -- NULL for an anomaly no rule turned into an incident. Unique otherwise:
    -- an incident is one anomaly of one series.
    incident_id TEXT UNIQUE REFERENCES incidents (id) ON DELETE CASCADE,
    selector    TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    score       REAL    NOT NULL,
    onset_ms    INTEGER NOT NULL,
    above       INTEGER NOT NULL,
    evidence    TEXT    NOT NULL
);
CREATE INDEX anomalies_onset ON anomalies (onset_ms);

CREATE TABLE actions (
    incident_id TEXT    NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    -- The action with its templates filled in, JSON; NULL when a label
    -- value was refused.
    rendered    TEXT,
    allowed     INTEGER NOT NULL,
    -- Suppression reason when not allowed.
    reason      TEXT,
    detail      TEXT    NOT NULL,
    planned_ms  INTEGER NOT NULL,
    -- The step's own timeout (`30s`), when the runbook sets one.
    timeout     TEXT,
    PRIMARY KEY (incident_id, step)
) WITHOUT ROWID;

CREATE TABLE outcomes (
    incident_id TEXT    NOT NULL,
    step        INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    decided_ms  INTEGER NOT NULL,
    detail      TEXT    NOT NULL,
    PRIMARY KEY (incident_id, step),
    FOREIGN KEY (incident_id, step) REFERENCES actions (incident_id, step) ON DELETE CASCADE
) WITHOUT ROWID;

-- The two-phase journal of performed actions. No foreign key: a begin must
-- be recorded whatever else is, it is what prevents a second run.
CREATE TABLE executions (
    key         TEXT    PRIMARY KEY,
    incident_id TEXT    NOT NULL,
    step        INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    summary     TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('started', 'finished', 'interrupted', 'abandoned')),
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    ok          INTEGER,
    retryable   INTEGER,
    result      TEXT,
    output      TEXT,
    -- Wall time the executor took, microseconds.
    duration_us INTEGER
) WITHOUT ROWID;
CREATE INDEX executions_incident ON executions (incident_id, step, attempt);
CREATE INDEX executions_in_flight ON executions (state) WHERE state = 'started';

-- Every engine event as it happened, JSON.
CREATE TABLE events (
    pk          INTEGER PRIMARY KEY,
    incident_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    ts_ms       INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX events_incident ON events (incident_id, pk);
"#;

/// Version 2: the evidence of an incident (its series around it, with the
/// detector's band), which the HTML report charts. One JSON document per
/// incident, written when the incident resolves.
const V2: &str = r#"
CREATE TABLE evidence (
    incident_id TEXT PRIMARY KEY REFERENCES incidents (id),
    points      TEXT NOT NULL
);
"#;

/// Version 3: what the guards remember (`remediate::engine::GuardState`:
/// attempts, the last minute's steps, openings, silences, incident
/// numbering), one JSON document, so that a heal with a store keeps its
/// cooldowns and limits across restarts.
const V3: &str = r#"
CREATE TABLE guard_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
"#;

/// Version 4: learning from outcomes (`sensitivity.rs`): the current
/// threshold offset of each signal, and every adjustment with its reason,
/// its incident (or the time of a missed anomaly) and a person's note.
const V4: &str = r#"
CREATE TABLE sensitivity (
    signal     TEXT PRIMARY KEY,
    offset     REAL NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sensitivity_history (
    seq          INTEGER PRIMARY KEY,
    signal       TEXT    NOT NULL,
    old_offset   REAL    NOT NULL,
    new_offset   REAL    NOT NULL,
    -- false_alarm | not_helped | missed
    reason       TEXT    NOT NULL,
    -- No foreign key: a mark may name an incident of a replay that did not
    -- write to this store, and history outlives incidents.
    incident     TEXT,
    missed_at_ms INTEGER,
    note         TEXT,
    at_ms        INTEGER NOT NULL
);
CREATE INDEX sensitivity_history_incident ON sensitivity_history (incident, reason);
"#;

/// Version 5: an incident that a service's peers fired (the replica was
/// apart from its siblings) keeps the robust z-score that says so.
const V5: &str = r#"
ALTER TABLE incidents ADD COLUMN peer_z REAL;
"#;

/// Version 6: what a restart after a crash settles. An incident an earlier
/// run left open is closed with a reason (status `closed`); an `exec`
/// action's child process is recorded right after its spawn (pid, which is
/// also its process group, and its start time), and how the restart
/// settled an interrupted one.
const V6: &str = r#"
ALTER TABLE incidents ADD COLUMN closed_reason TEXT;
ALTER TABLE executions ADD COLUMN pid INTEGER;
ALTER TABLE executions ADD COLUMN pid_start INTEGER;
ALTER TABLE executions ADD COLUMN settled TEXT;
"#;

/// Version 7: an incident of a group of services keeps its group's latest
/// diagnosis (JSON: group, services, onset, root cause, ranking with
/// evidence).
const V7: &str = r#"
ALTER TABLE incidents ADD COLUMN diagnosis TEXT;
"#;

/// Version 8: who owns a group key and since which epoch. One heal with
/// SQLite owns every key and never reads it; with PostgreSQL, remediate
/// members claim keys and a stale claim is fenced
/// (`crate::postgres::PgStore::claim`). Kept in both dialects so the
/// schemas stay one.
const V8: &str = r#"
CREATE TABLE owners (
    group_key  TEXT    PRIMARY KEY,
    epoch      INTEGER NOT NULL,
    owner      TEXT    NOT NULL,
    claimed_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 9 (both dialects): who recorded a begin (`member/pid/n`), so a
/// member that lost its connection after the begin committed, and tries
/// again, knows the begin for its own rather than a duplicate. (SQLite's
/// single writer never needs it and leaves it empty.)
const V9: &str = r#"
ALTER TABLE executions ADD COLUMN begun_by TEXT;
"#;

/// Version 10 (both dialects): leases. Only PostgreSQL's members hold any
/// (the scale-out detect workers' partitions); kept here so the schemas
/// stay one.
const V10: &str = r#"
CREATE TABLE leases (
    lease_key  TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
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
    epoch     INTEGER NOT NULL,
    saved_ms  INTEGER NOT NULL
) WITHOUT ROWID;
"#;
