//! The on-disk layout, and recognising a factum database when opening one.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::SqliteOptions;
use crate::error::SqliteError;

/// `PRAGMA application_id` of a factum database: "fctm" in ASCII.
pub(crate) const APPLICATION_ID: i64 = 0x6663_746d;

/// The schema version this crate writes (`PRAGMA user_version`): the
/// number of [`MIGRATIONS`].
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The migrations, in order: the one at index `i` takes a database from
/// schema version `i` to `i + 1`. A new file runs them all; an older file
/// runs the ones it lacks, in one transaction, keeping its events. Never
/// edit a published migration: add one.
const MIGRATIONS: [&str; 5] = [
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    SCHEMA_SNAPSHOT_SHAPE,
    SCHEMA_OUTBOX_ENTRIES,
];

/// Schema version 1.
///
/// - `streams` maps each stream key (aggregate type and id) to a small
///   integer, so the events table and its index stay narrow.
/// - `events.position` is the rowid: with one writer, commit order is
///   position order, and reading `$all` walks the table in storage order.
/// - `occurred_at` is nanoseconds since the Unix epoch (UTC):
///   `datetime(occurred_at / 1e9, 'unixepoch')` shows it in the `sqlite3` shell.
/// - `metadata` is NULL when the event has none.
/// - `snapshots` keeps the latest snapshot of each aggregate.
const SCHEMA_V1: &str = "
CREATE TABLE streams (
    stream_key     INTEGER PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    UNIQUE (aggregate_type, aggregate_id)
);
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream_key     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT,
    occurred_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON events (stream_key, version);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE TABLE snapshots (
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT NOT NULL,
    taken_at       INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;
";

/// Schema version 2: projections' state beside the events, so a read model
/// in the same file commits with its checkpoint.
///
/// - `factum_checkpoints`: how far each projection has got in `$all`.
/// - `factum_dead_letters`: events a projection failed on, with the whole
///   envelope (they are replayed from here, not from `events`), the last
///   error, the number of attempts and when it last failed (nanoseconds
///   since the Unix epoch).
/// - `factum_leases`: which instance runs each projection, until when
///   (milliseconds since the Unix epoch, wall clock: instances may be
///   different processes).
const SCHEMA_V2: &str = "
CREATE TABLE factum_checkpoints (
    projection TEXT PRIMARY KEY,
    position   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE factum_dead_letters (
    projection     TEXT NOT NULL,
    position       INTEGER NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT,
    occurred_at    INTEGER NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    failed_at      INTEGER NOT NULL,
    PRIMARY KEY (projection, position)
) WITHOUT ROWID;
CREATE TABLE factum_leases (
    projection TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Schema version 3: tenants. A tenant is part of where an event lives.
///
/// - `streams` is keyed by tenant, aggregate type and id (rebuilt, keeping
///   every stream key, so the events still point at their streams); the
///   streams of older versions are the `default` tenant's.
/// - `events.tenant` repeats the stream's tenant so that a tenant's log is
///   read by position through `events_tenant_position`. The default
///   tenant's events keep it NULL (no bytes in the row), and the index is
///   partial (`tenant IS NOT NULL`), so a store with one tenant writes no
///   more than before; a view of the default tenant walks the log by
///   position.
/// - `snapshots` is keyed by tenant too (existing ones are the `default`
///   tenant's).
/// - `factum_checkpoints`, `factum_dead_letters` and `factum_leases` are
///   keyed by `tenant`, the scope of the projection's state: a tenant's
///   name, or `$all` for the unscoped store's projections, which read every
///   tenant's events. Existing rows were written by the unscoped store, so
///   they are `$all`'s and its projections go on from their checkpoints. A
///   dead letter also keeps the tenant its event lives in (`event_tenant`).
const SCHEMA_V3: &str = "
CREATE TABLE streams_v3 (
    stream_key     INTEGER PRIMARY KEY,
    tenant         TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    UNIQUE (tenant, aggregate_type, aggregate_id)
);
INSERT INTO streams_v3 (stream_key, tenant, aggregate_type, aggregate_id)
    SELECT stream_key, 'default', aggregate_type, aggregate_id FROM streams;
DROP TABLE streams;
ALTER TABLE streams_v3 RENAME TO streams;
ALTER TABLE events ADD COLUMN tenant TEXT;
CREATE INDEX events_tenant_position ON events (tenant, position) WHERE tenant IS NOT NULL;

CREATE TABLE snapshots_v3 (
    tenant         TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT NOT NULL,
    taken_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, aggregate_type, aggregate_id)
) WITHOUT ROWID;
INSERT INTO snapshots_v3 SELECT 'default', aggregate_type, aggregate_id, version, state, taken_at FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_v3 RENAME TO snapshots;

CREATE TABLE factum_checkpoints_v3 (
    tenant     TEXT NOT NULL,
    projection TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (tenant, projection)
) WITHOUT ROWID;
INSERT INTO factum_checkpoints_v3 SELECT '$all', projection, position FROM factum_checkpoints;
DROP TABLE factum_checkpoints;
ALTER TABLE factum_checkpoints_v3 RENAME TO factum_checkpoints;

CREATE TABLE factum_dead_letters_v3 (
    tenant         TEXT NOT NULL,
    projection     TEXT NOT NULL,
    position       INTEGER NOT NULL,
    event_tenant   TEXT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT,
    occurred_at    INTEGER NOT NULL,
    error          TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    failed_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, projection, position)
) WITHOUT ROWID;
INSERT INTO factum_dead_letters_v3 SELECT '$all', projection, position, 'default', aggregate_type, aggregate_id,
    version, event_id, event_type, schema_version, payload, metadata, occurred_at, error, attempts, failed_at
    FROM factum_dead_letters;
DROP TABLE factum_dead_letters;
ALTER TABLE factum_dead_letters_v3 RENAME TO factum_dead_letters;

CREATE TABLE factum_leases_v3 (
    tenant     TEXT NOT NULL,
    projection TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, projection)
) WITHOUT ROWID;
INSERT INTO factum_leases_v3 SELECT '$all', projection, holder, expires_at FROM factum_leases;
DROP TABLE factum_leases;
ALTER TABLE factum_leases_v3 RENAME TO factum_leases;
";

// ---- Migration: snapshot shape versions (issue 11) -------------------------
// One self-contained step; at a merge with other new steps, only its place
// in `MIGRATIONS` (and so its number) changes.

/// Schema version 4: each snapshot records the version of the aggregate's
/// shape it was written in (`Snapshot::schema_version`). Snapshots taken
/// before it read as shape version 1. It follows the tenants rebuild of
/// `snapshots` (version 3), which would otherwise drop the column.
const SCHEMA_SNAPSHOT_SHAPE: &str = "
ALTER TABLE snapshots ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;
";
// ---- end of migration: snapshot shape versions ----------------------------

/// Schema version 5: the outbox keeps one entry per append instead of one
/// row per event, and the writer writes it instead of a row trigger.
///
/// - An entry is one append's events to one stream: positions `position`
///   (its key and its order) to `last_position`, contiguous because the
///   writer hands positions out. A save of 100 events writes one entry.
/// - `factum_outbox` holds the entries not yet sent (waiting or parked)
///   and `factum_outbox_sent` those sent, until the retention prunes them.
///   An append's entry then touches one b-tree: no index holds waiting
///   entries, since the table is in position order and holds few else; a
///   partial index of them cost a 1-event save another page (measured:
///   the outbox's cost on such a save from 1.29× to 1.15× without it).
/// - `factum_outbox_state` holds the switch: its row exists once the outbox
///   was switched on, and `enabled` says whether appends write entries. A
///   file whose trigger was there is switched on; its rows become entries
///   of one event each, their state kept.
/// - The tables exist in every file, so that the append's one statement
///   (`INSERT … SELECT … FROM factum_outbox_state WHERE enabled = 1`)
///   always prepares; the old trigger is dropped, since a release that
///   still writes through it cannot open a file of this version.
const SCHEMA_OUTBOX_ENTRIES: &str = "
CREATE TABLE factum_outbox_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    enabled INTEGER NOT NULL
);
INSERT INTO factum_outbox_state (id, enabled)
    SELECT 1, EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = 'factum_outbox_capture')
     WHERE EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'factum_outbox');
DROP TRIGGER IF EXISTS factum_outbox_capture;
CREATE TABLE IF NOT EXISTS factum_outbox (
    position      INTEGER PRIMARY KEY,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    parked_at     INTEGER,
    sent_at       INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER
);
DROP INDEX IF EXISTS factum_outbox_pending;
DROP INDEX IF EXISTS factum_outbox_parked;
DROP INDEX IF EXISTS factum_outbox_sent;
CREATE TABLE factum_outbox_v5 (
    position      INTEGER PRIMARY KEY,
    last_position INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    parked_at     INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER,
    CHECK (last_position >= position)
);
CREATE TABLE factum_outbox_sent (
    position      INTEGER PRIMARY KEY,
    last_position INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    CHECK (last_position >= position)
);
INSERT INTO factum_outbox_v5
    SELECT position, position, attempts, last_error, parked_at, claimed_by, claimed_until
      FROM factum_outbox WHERE sent_at IS NULL;
INSERT INTO factum_outbox_sent
    SELECT position, position, attempts, sent_at FROM factum_outbox WHERE sent_at IS NOT NULL;
DROP TABLE factum_outbox;
ALTER TABLE factum_outbox_v5 RENAME TO factum_outbox;
CREATE INDEX factum_outbox_parked ON factum_outbox (position) WHERE parked_at IS NOT NULL;
CREATE INDEX factum_outbox_sent_at ON factum_outbox_sent (sent_at);
";

/// Where the store lives.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    File(PathBuf),
    /// A private in-memory database: one connection, used by the writer
    /// thread for reads too.
    Memory,
}

/// Opens the writer's connection: checks the file is a factum database of a
/// known schema version (creating the schema in a new file) and applies the
/// connection settings.
pub(crate) fn open_writer(location: &Location, options: &SqliteOptions) -> Result<Connection, SqliteError> {
    let mut connection = match location {
        Location::Memory => Connection::open_in_memory()?,
        Location::File(path) => {
            let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            if options.create_if_missing {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
            Connection::open_with_flags(path, flags)?
        }
    };
    connection.busy_timeout(options.busy_timeout)?;
    let path = match location {
        Location::File(path) => path.clone(),
        Location::Memory => PathBuf::from(":memory:"),
    };
    let fresh = inspect(&connection, &path)?;
    if fresh && matches!(location, Location::File(_)) {
        // Larger pages suit an append-only log of small rows read in order;
        // the page size can only be chosen before the first table exists.
        connection.pragma_update(None, "page_size", 8192)?;
    }
    if let Location::File(_) = location {
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %path.display(), "SQLite refused write-ahead logging; appends will be slower");
        }
        // The writer never checkpoints inside a commit; a background thread
        // does (see `writer::Checkpointer`).
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    connection.pragma_update(None, "synchronous", options.durability.pragma())?;
    configure(&connection, options)?;
    connection.pragma_update(None, "cache_size", -i64::from(options.writer_cache_size_kib))?;
    migrate(&mut connection, &path)?;
    Ok(connection)
}

/// Settings every connection of the store uses.
pub(crate) fn configure(connection: &Connection, options: &SqliteOptions) -> Result<(), SqliteError> {
    connection.busy_timeout(options.busy_timeout)?;
    connection.pragma_update(None, "cache_size", -i64::from(options.cache_size_kib))?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens one more connection to an existing store, for reads or checkpoints.
pub(crate) fn open_secondary(path: &Path, options: &SqliteOptions) -> Result<Connection, SqliteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    configure(&connection, options)?;
    Ok(connection)
}

/// True when the database is empty (a new file); an error when it is not a
/// factum database this crate can open (an older schema version can).
fn inspect(connection: &Connection, path: &Path) -> Result<bool, SqliteError> {
    let not_factum = |reason: &str| SqliteError::NotAFactumDatabase {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let header = connection.query_row("PRAGMA application_id", [], |row| row.get::<_, i64>(0));
    let application_id = match header {
        Ok(id) => id,
        Err(rusqlite::Error::SqliteFailure(failure, _)) if failure.code == ErrorCode::NotADatabase => {
            return Err(not_factum("the file is not a SQLite database"));
        }
        Err(error) => return Err(error.into()),
    };
    let user_version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let objects: i64 = connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    if application_id == 0 && user_version == 0 && objects == 0 {
        return Ok(true);
    }
    if application_id != APPLICATION_ID {
        return Err(not_factum(&format!(
            "its application id is {application_id:#x}, not factum's {APPLICATION_ID:#x}"
        )));
    }
    check_version(user_version, path)?;
    Ok(false)
}

/// The schema version of a factum file; an error for one this crate
/// cannot open (newer, or not a factum version at all).
fn check_version(user_version: i64, path: &Path) -> Result<u32, SqliteError> {
    let version = u32::try_from(user_version).ok().filter(|version| *version >= 1);
    let Some(version) = version else {
        return Err(SqliteError::NotAFactumDatabase {
            path: path.to_path_buf(),
            reason: format!("it carries factum's application id but schema version {user_version}"),
        });
    };
    if version > SCHEMA_VERSION {
        return Err(SqliteError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Confirms that the file still holds what [`open_writer`] left in it: a
/// factum database at [`SCHEMA_VERSION`].
pub(crate) fn confirm(connection: &Connection, path: &Path) -> Result<(), SqliteError> {
    let application_id: i64 = connection.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    if application_id != APPLICATION_ID {
        return Err(SqliteError::NotAFactumDatabase {
            path: path.to_path_buf(),
            reason: format!("its application id changed to {application_id:#x} while the store was open"),
        });
    }
    let user_version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let found = check_version(user_version, path)?;
    if found != SCHEMA_VERSION {
        return Err(SqliteError::SchemaChanged {
            path: path.to_path_buf(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Creates the schema in a new database, or brings an older one up to
/// [`SCHEMA_VERSION`]. Two processes may race to do it on the same file: the
/// immediate transaction makes the second one wait, then find the work done.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let user_version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if user_version == i64::from(SCHEMA_VERSION) {
        return Ok(());
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let objects: i64 = transaction.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    let from = if objects == 0 {
        transaction.pragma_update(None, "application_id", APPLICATION_ID)?;
        0
    } else {
        let application_id: i64 = transaction.query_row("PRAGMA application_id", [], |row| row.get(0))?;
        if application_id != APPLICATION_ID {
            return Err(SqliteError::NotAFactumDatabase {
                path: path.to_path_buf(),
                reason: "another program created tables in it while factum was opening it".to_owned(),
            });
        }
        let user_version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        check_version(user_version, path)?
    };
    // `from` is within 1..=SCHEMA_VERSION here (check_version), or 0 for a new file.
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        transaction.execute_batch(migration)?;
        if from > 0 {
            tracing::info!(path = %path.display(), from = version, to = version + 1, "migrated the factum schema");
        }
    }
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    transaction.commit()?;
    Ok(())
}
