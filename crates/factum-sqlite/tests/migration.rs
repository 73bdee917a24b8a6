//! Files of older schema versions open with this version and keep what
//! they hold: version 1 gains the projection tables; version 2 gains
//! tenants, its data landing in the default tenant (events, snapshots) and
//! with the unscoped store (projection state); every version before 4
//! gains the snapshots' shape version, its snapshots reading as shape
//! version 1.

use std::time::Duration;

use factum_core::{
    CheckpointStore, DeadLetterStore, EventStore, Lease, ProjectionStore, Snapshot, SnapshotStore, StreamId,
    Tenancy, Tenant,
};
use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};
use futures::TryStreamExt;

/// Schema version 1 exactly as factum-sqlite 0.1 wrote it (frozen: a fixture,
/// not a copy of the current code).
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

fn write_v1_file(path: &std::path::Path) -> rusqlite::Result<()> {
    let connection = rusqlite::Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.execute_batch(SCHEMA_V1)?;
    connection.pragma_update(None, "application_id", 0x6663_746d)?;
    connection.pragma_update(None, "user_version", 1)?;
    connection.execute("INSERT INTO streams VALUES (1, 'Counter', 'c-1')", [])?;
    for version in 1..=3_i64 {
        let event_id = uuid::Uuid::now_v7();
        connection.execute(
            "INSERT INTO events VALUES (?1, 1, ?1, ?2, 'incremented', 1, ?3, NULL, 1700000000000000000)",
            (
                version,
                &event_id.as_bytes()[..],
                format!(r#"{{"amount":{version}}}"#),
            ),
        )?;
    }
    connection.execute(
        "INSERT INTO snapshots VALUES ('Counter', 'c-1', 2, '{\"value\":3}', 1700000000000000000)",
        [],
    )?;
    Ok(())
}

fn schema_of(path: &std::path::Path) -> rusqlite::Result<(i64, Vec<String>)> {
    let connection = rusqlite::Connection::open(path)?;
    let version = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let mut statement = connection.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'factum_%' ORDER BY name",
    )?;
    let tables = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((version, tables))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_gains_the_projection_tables_and_keeps_its_events()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v1.db");
    write_v1_file(&path)?;
    assert_eq!(schema_of(&path)?, (1, vec![]));

    let events = SqliteEventStore::open(&path).await?;
    let stream = StreamId::new("Counter", "c-1");
    let stored: Vec<_> = events.read_stream(&stream, 1).try_collect().await?;
    let payloads: Vec<&str> = stored.iter().map(|event| event.payload.as_str()).collect();
    assert_eq!(
        payloads,
        [r#"{"amount":1}"#, r#"{"amount":2}"#, r#"{"amount":3}"#]
    );
    assert_eq!(events.head_position().await?, 3);
    let snapshot = events
        .load_snapshot(&stream)
        .await?
        .expect("the version 1 snapshot");
    assert_eq!(
        (snapshot.version, snapshot.schema_version, snapshot.state.as_str()),
        (2, 1, r#"{"value":3}"#),
        "a snapshot from before shape versions reads as shape version 1"
    );

    let projections = SqliteProjectionStore::new(&events);
    let mut transaction = projections.begin("p").await?;
    projections.save_checkpoint(&mut transaction, "p", 0, 3).await?;
    projections.commit(transaction).await?;
    assert_eq!(projections.checkpoint("p").await?, 3);
    events.close().await?;

    let tables = [
        "factum_checkpoints",
        "factum_dead_letters",
        "factum_leases",
        "factum_outbox",
        "factum_outbox_sent",
        "factum_outbox_state",
    ]
    .map(String::from);
    let current = i64::from(SqliteEventStore::schema_version());
    assert_eq!(schema_of(&path)?, (current, tables.to_vec()));

    // Opening it again migrates nothing and keeps the checkpoint.
    let events = SqliteEventStore::open(&path).await?;
    assert_eq!(SqliteProjectionStore::new(&events).checkpoint("p").await?, 3);
    events.close().await?;
    Ok(())
}

/// Schema version 2 exactly as factum-sqlite wrote it before tenants
/// (frozen, like [`SCHEMA_V1`]).
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

/// A version 2 file: the version 1 events and snapshot, a checkpoint, a
/// dead letter of the second event and a lease held for a long time.
fn write_v2_file(path: &std::path::Path) -> rusqlite::Result<()> {
    write_v1_file(path)?;
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(SCHEMA_V2)?;
    connection.pragma_update(None, "user_version", 2)?;
    connection.execute("INSERT INTO factum_checkpoints VALUES ('sales', 3)", [])?;
    connection.execute(
        "INSERT INTO factum_dead_letters SELECT 'sales', e.position, 'Counter', 'c-1', e.version, e.event_id, \
         e.event_type, e.schema_version, e.payload, '{\"tenant\":\"Acme Corp\"}', e.occurred_at, 'boom', 3, \
         1700000000000000000 FROM events e WHERE e.position = 2",
        [],
    )?;
    connection.execute(
        "INSERT INTO factum_leases VALUES ('sales', 'host-a', 253402300799000)",
        [],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_file_puts_its_data_in_the_default_tenant() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v2.db");
    write_v2_file(&path)?;
    assert_eq!(schema_of(&path)?.0, 2);

    let events = SqliteEventStore::open(&path).await?;
    assert_eq!(schema_of(&path)?.0, i64::from(SqliteEventStore::schema_version()));
    let stream = StreamId::new("Counter", "c-1");
    for view in [events.clone(), events.for_tenant("default")?] {
        let stored: Vec<_> = view.read_stream(&stream, 1).try_collect().await?;
        assert_eq!(stored.len(), 3, "the default tenant holds the old stream");
        assert!(
            stored
                .iter()
                .all(|event| event.metadata.tenant == Some(Tenant::DEFAULT))
        );
        assert_eq!(view.read_all(0, 10).await?.len(), 3);
        assert_eq!(view.head_position().await?, 3);
        assert_eq!(
            view.load_snapshot(&stream)
                .await?
                .map(|snapshot| (snapshot.version, snapshot.schema_version)),
            Some((2, 1))
        );
    }
    let acme = events.for_tenant("acme")?;
    assert_eq!(acme.stream_version(&stream).await?, 0);
    assert!(acme.read_all(0, 10).await?.is_empty());
    assert_eq!(acme.load_snapshot(&stream).await?, None);

    // The projection state was the unscoped store's, and stays so.
    let projections = SqliteProjectionStore::new(&events);
    assert_eq!(projections.checkpoint("sales").await?, 3);
    let letters = projections.list("sales").await?;
    assert_eq!(
        letters.iter().map(|letter| letter.position()).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(
        letters[0].event.metadata.tenant,
        Some(Tenant::DEFAULT),
        "the old tenant text is not where it lives"
    );
    assert!(
        !projections
            .acquire("sales", "host-b", Duration::from_secs(5))
            .await?,
        "the lease is still held"
    );
    let default = projections.for_tenant("default")?;
    assert_eq!(CheckpointStore::load(&default, "sales").await?, 0);
    assert!(default.list("sales").await?.is_empty());

    // The log goes on: a new event of the default tenant follows the old ones.
    let appended = events
        .append(
            &stream,
            factum_core::ExpectedVersion::Exact(3),
            vec![factum_core::NewEvent::new(
                "incremented",
                factum_core::Payload::parse("{}")?,
            )],
        )
        .await?;
    assert_eq!((appended.stream_version, appended.positions), (4, vec![4]));
    events.close().await?;
    Ok(())
}

/// Schema version 3 exactly as factum-sqlite wrote it with tenants, before
/// snapshot shape versions (frozen, like [`SCHEMA_V1`]): the version 2 file
/// after this migration.
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

/// A version 3 file: the version 2 data moved to the default tenant, and a
/// snapshot of the same stream id in the `acme` tenant.
fn write_v3_file(path: &std::path::Path) -> rusqlite::Result<()> {
    write_v2_file(path)?;
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(SCHEMA_V3)?;
    connection.pragma_update(None, "user_version", 3)?;
    connection.execute(
        "INSERT INTO snapshots VALUES ('acme', 'Counter', 'c-1', 7, '{\"value\":9}', 1700000000000000000)",
        [],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_file_keeps_each_tenants_snapshot_at_shape_version_1()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v3.db");
    write_v3_file(&path)?;
    assert_eq!(schema_of(&path)?.0, 3);

    let events = SqliteEventStore::open(&path).await?;
    assert_eq!(schema_of(&path)?.0, i64::from(SqliteEventStore::schema_version()));
    let stream = StreamId::new("Counter", "c-1");
    let acme = events.for_tenant("acme")?;
    let shapes =
        |snapshot: Option<Snapshot>| snapshot.map(|snapshot| (snapshot.version, snapshot.schema_version));
    assert_eq!(shapes(events.load_snapshot(&stream).await?), Some((2, 1)));
    assert_eq!(shapes(acme.load_snapshot(&stream).await?), Some((7, 1)));

    // A later save of one tenant keeps its shape version and leaves the
    // other tenant's snapshot alone.
    let newer = Snapshot {
        stream: stream.clone(),
        version: 8,
        schema_version: 2,
        state: factum_core::Payload::parse(r#"{"total":9}"#)?,
        taken_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000)?,
    };
    acme.save_snapshot(newer.clone()).await?;
    assert_eq!(acme.load_snapshot(&stream).await?, Some(newer));
    assert_eq!(shapes(events.load_snapshot(&stream).await?), Some((2, 1)));
    events.close().await?;
    Ok(())
}

/// Schema version 4 (frozen): the snapshots' shape version.
const SCHEMA_V4: &str = "ALTER TABLE snapshots ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;";

/// The outbox as `enable_outbox` created it before schema version 5
/// (frozen): one row per event, written by a row trigger.
const OUTBOX_BEFORE_V5: &str = "
CREATE TABLE factum_outbox (
    position      INTEGER PRIMARY KEY,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    parked_at     INTEGER,
    sent_at       INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX factum_outbox_pending ON factum_outbox (position) WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX factum_outbox_parked ON factum_outbox (position) WHERE parked_at IS NOT NULL;
CREATE INDEX factum_outbox_sent ON factum_outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE TRIGGER factum_outbox_capture AFTER INSERT ON events
BEGIN
    INSERT INTO factum_outbox (position) VALUES (NEW.position);
END;
";

/// A version 4 file, with the outbox of that version when `outbox`: its
/// trigger on, and events 4 to 7 of `c-1` in it, 4 sent, 5 parked, 6 and 7
/// waiting (6 tried twice).
fn write_v4_file(path: &std::path::Path, outbox: bool) -> rusqlite::Result<()> {
    write_v3_file(path)?;
    let connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(SCHEMA_V4)?;
    connection.pragma_update(None, "user_version", 4)?;
    if !outbox {
        return Ok(());
    }
    connection.execute_batch(OUTBOX_BEFORE_V5)?;
    for version in 4..=7_i64 {
        connection.execute(
            "INSERT INTO events VALUES (?1, 1, ?1, ?2, 'incremented', 1, '{\"amount\":1}', NULL, 1700000000000000000, NULL)",
            (version, &uuid::Uuid::now_v7().as_bytes()[..]),
        )?;
    }
    connection.execute_batch(
        "UPDATE factum_outbox SET sent_at = 1700000000000000000 WHERE position = 4;
         UPDATE factum_outbox SET parked_at = 1700000000000000000, attempts = 3, last_error = 'too large' WHERE position = 5;
         UPDATE factum_outbox SET attempts = 2, last_error = 'broker down' WHERE position = 6;",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_outbox_becomes_entries_and_keeps_every_rows_state()
-> Result<(), Box<dyn std::error::Error>> {
    use factum_core::{ExpectedVersion, NewEvent, Outbox, OutboxClaim, Outcome, Payload};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v4.db");
    write_v4_file(&path, true)?;
    let events = SqliteEventStore::open(&path).await?;
    assert_eq!(schema_of(&path)?.0, i64::from(SqliteEventStore::schema_version()));
    assert!(
        events.outbox_enabled().await?,
        "the trigger's file keeps its outbox on"
    );
    let outbox = events.outbox();
    assert_eq!(
        outbox.pending().await?,
        3,
        "5 parked, 6 and 7 waiting; 4 was sent"
    );
    let parked = outbox.parked(10).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].0.id, parked[0].0.attempts, parked[0].1.as_str()),
        (5, 3, "too large")
    );

    // One append of two events after the upgrade: one entry, written once
    // (the old trigger is gone), claimed after the rows from before.
    let more = (0..2).map(|_| NewEvent::new("incremented", Payload::parse("{}").unwrap()));
    let stream = StreamId::new("Counter", "c-1");
    events
        .append(&stream, ExpectedVersion::Exact(7), more.collect())
        .await?;
    assert_eq!(outbox.pending().await?, 5);
    let claim = outbox.claim(10).await?;
    let claimed: Vec<(u64, u32)> = claim
        .entries()
        .iter()
        .map(|entry| (entry.id, entry.attempts))
        .collect();
    assert_eq!(claimed, [(6, 2), (7, 0), (8, 0), (9, 0)]);
    claim.finish(vec![Outcome::Sent; 4]).await?;
    assert_eq!(outbox.pending().await?, 1, "only the parked event is left");
    let connection = rusqlite::Connection::open(&path)?;
    let count = |table: &str| -> rusqlite::Result<i64> {
        connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
    };
    assert_eq!(count("factum_outbox")?, 1, "the parked 5");
    assert_eq!(
        count("factum_outbox_sent")?,
        4,
        "4, 6 and 7 as they were, and one entry for 8 and 9"
    );
    events.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_file_without_an_outbox_stays_without_one() -> Result<(), Box<dyn std::error::Error>> {
    use factum_core::{ExpectedVersion, NewEvent, Outbox, Payload};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v4.db");
    write_v4_file(&path, false)?;
    let events = SqliteEventStore::open(&path).await?;
    assert!(!events.outbox_enabled().await?);
    let event = NewEvent::new("incremented", Payload::parse("{}").unwrap());
    events
        .append(
            &StreamId::new("Counter", "c-1"),
            ExpectedVersion::Exact(3),
            vec![event],
        )
        .await?;
    let error = events.outbox().pending().await.unwrap_err();
    assert!(error.to_string().contains("enable_outbox"), "{error}");
    events.enable_outbox().await?;
    assert_eq!(
        events.outbox().pending().await?,
        0,
        "events from before the switch have no entries"
    );
    events.close().await?;
    Ok(())
}
