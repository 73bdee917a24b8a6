//! The store's lifecycle: open, ensure_schema, close; and what a closed
//! store answers.

use std::error::Error as _;

use factum_core::{
    CheckpointStore, Error, EventStore, ExpectedVersion, NewEvent, Payload, ProjectionStore, Snapshot,
    SnapshotStore, StreamId,
};
use factum_sqlite::{SqliteError, SqliteEventStore, SqliteProjectionStore};
use futures::StreamExt;

fn event() -> NewEvent {
    NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap())
}

fn sqlite_error(error: &Error) -> Option<&SqliteError> {
    error
        .source()
        .and_then(|source| source.downcast_ref::<SqliteError>())
}

fn is_closed<T: std::fmt::Debug>(result: Result<T, Error>, call: &str) {
    match result {
        Err(error) => assert!(
            matches!(sqlite_error(&error), Some(SqliteError::Closed)),
            "{call}: expected SqliteError::Closed, got {error}"
        ),
        Ok(value) => panic!("{call} succeeded on a closed store: {value:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_on_a_closed_store_says_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let stream = StreamId::new("Counter", "1");
    store
        .append(&stream, ExpectedVersion::Any, vec![event()])
        .await
        .unwrap();
    let clone = store.clone();
    let projections = SqliteProjectionStore::new(&store);
    assert!(!clone.is_closed());
    store.close().await.unwrap();
    assert!(clone.is_closed(), "closing one clone closes them all");
    store.close().await.unwrap();
    clone.close().await.unwrap();

    is_closed(
        clone.append(&stream, ExpectedVersion::Any, vec![event()]).await,
        "append",
    );
    is_closed(clone.read_stream(&stream, 1).next().await.unwrap(), "read_stream");
    is_closed(
        clone.read_stream_pages(&stream, 1).next().await.unwrap(),
        "read_stream_pages",
    );
    is_closed(clone.read_all(0, 10).await, "read_all");
    is_closed(clone.subscribe_all(0).next().await.unwrap(), "subscribe_all");
    is_closed(
        clone.subscribe_stream(&stream, 0).next().await.unwrap(),
        "subscribe_stream",
    );
    is_closed(clone.stream_version(&stream).await, "stream_version");
    is_closed(clone.head_position().await, "head_position");
    is_closed(clone.ensure_schema().await, "ensure_schema");
    is_closed(clone.load_snapshot(&stream).await, "load_snapshot");
    let snapshot = Snapshot {
        stream: stream.clone(),
        version: 1,
        schema_version: 1,
        state: Payload::parse("{}").unwrap(),
        taken_at: time::OffsetDateTime::now_utc(),
    };
    is_closed(clone.save_snapshot(snapshot).await, "save_snapshot");
    is_closed(projections.execute_batch("SELECT 1").await, "execute_batch");
    is_closed(
        projections
            .query("SELECT 1", (), |row| row.get::<_, i64>(0))
            .await,
        "query",
    );
    is_closed(projections.checkpoint("p").await, "checkpoint");
    is_closed(projections.save("p", 1).await, "save checkpoint");
    is_closed(projections.begin("p").await.map(drop), "begin");
    let error = clone.head_position().await.unwrap_err();
    assert_eq!(error.to_string(), "sqlite event store: the store is closed");
}

#[tokio::test]
async fn an_in_memory_store_closes_the_same_way() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    store.ensure_schema().await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    is_closed(store.head_position().await, "head_position");
    is_closed(store.ensure_schema().await, "ensure_schema");
}

#[tokio::test]
async fn ensure_schema_confirms_the_schema_and_notices_a_change_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteEventStore::open(&path).await.unwrap();
    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();
    assert_eq!(SqliteEventStore::schema_version(), 5);

    let other = rusqlite::Connection::open(&path).unwrap();
    other.pragma_update(None, "user_version", 1).unwrap();
    let error = store.ensure_schema().await.unwrap_err();
    match sqlite_error(&error) {
        Some(SqliteError::SchemaChanged { found, expected, .. }) => {
            assert_eq!((*found, *expected), (1, SqliteEventStore::schema_version()))
        }
        _ => panic!("expected SchemaChanged, got {error}"),
    }

    other.pragma_update(None, "user_version", 7).unwrap();
    let error = store.ensure_schema().await.unwrap_err();
    match sqlite_error(&error) {
        Some(SqliteError::SchemaTooNew { found, supported, .. }) => {
            assert_eq!((*found, *supported), (7, SqliteEventStore::schema_version()))
        }
        _ => panic!("expected SchemaTooNew, got {error}"),
    }

    other
        .pragma_update(None, "user_version", SqliteEventStore::schema_version())
        .unwrap();
    store.ensure_schema().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_maps_rows_of_a_read_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let projections = SqliteProjectionStore::new(&store);
    projections
        .execute_batch(
            "CREATE TABLE totals (name TEXT PRIMARY KEY, total INTEGER NOT NULL); \
             INSERT INTO totals VALUES ('a', 1), ('b', 2), ('c', 3);",
        )
        .await
        .unwrap();
    let totals: Vec<(String, i64)> = projections
        .query(
            "SELECT name, total FROM totals WHERE total >= ?1 ORDER BY name",
            (2,),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .await
        .unwrap();
    assert_eq!(totals, [("b".to_owned(), 2), ("c".to_owned(), 3)]);
    let error = projections
        .query("SELECT nothing FROM nowhere", (), |row| row.get::<_, i64>(0))
        .await
        .unwrap_err();
    assert!(sqlite_error(&error).is_some(), "{error}");
    let count: i64 = projections
        .with_connection(|connection| {
            connection.query_row("SELECT count(*) FROM totals", [], |row| row.get(0))
        })
        .await
        .unwrap();
    assert_eq!(count, 3);
    store.close().await.unwrap();
}
