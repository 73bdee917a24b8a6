//! A file written by factum-sqlite 0.1 (schema version 1) opens with this
//! version: it gains the projection tables and the snapshots' shape
//! version, and keeps its events and snapshots.

use factum_core::{EventStore, ProjectionStore, SnapshotStore, StreamId};
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

    let tables = ["factum_checkpoints", "factum_dead_letters", "factum_leases"].map(String::from);
    let current = i64::from(SqliteEventStore::schema_version());
    assert_eq!(schema_of(&path)?, (current, tables.to_vec()));

    // Opening it again migrates nothing and keeps the checkpoint.
    let events = SqliteEventStore::open(&path).await?;
    assert_eq!(SqliteProjectionStore::new(&events).checkpoint("p").await?, 3);
    events.close().await?;
    Ok(())
}
