//! Behaviour specific to the SQLite store: files, reopening, damage,
//! snapshots, group commit.

use std::error::Error as _;
use std::time::Duration;

use factum_core::{
    AppendBatch, Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, Snapshot, SnapshotStore,
    StreamId,
};
use factum_sqlite::{Durability, SqliteError, SqliteEventStore, SqliteOptions};
use futures::StreamExt;
use uuid::Uuid;

fn event(amount: i64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::encode(&serde_json::json!({ "amount": amount })).unwrap(),
    )
}

fn sqlite_error(error: &Error) -> Option<&SqliteError> {
    error
        .source()
        .and_then(|source| source.downcast_ref::<SqliteError>())
}

async fn read(store: &SqliteEventStore, stream: &StreamId) -> Vec<Result<factum_core::RecordedEvent, Error>> {
    store.read_stream(stream, 1).collect().await
}

#[tokio::test]
async fn appends_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Counter", "1");
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with("user", "ada");
    let first = event(1).with_metadata(metadata.clone()).with_schema_version(3);
    {
        let store = SqliteEventStore::open(&path).await.unwrap();
        let result = store
            .append(&stream, ExpectedVersion::NoStream, vec![first.clone(), event(2)])
            .await
            .unwrap();
        assert_eq!(result.stream_version, 2);
        assert_eq!(result.positions, vec![1, 2]);
        store.close().await.unwrap();
    }
    let store = SqliteEventStore::open(&path).await.unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    assert_eq!(store.head_position().await.unwrap(), 2);
    let events: Vec<_> = read(&store, &stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_id, first.event_id);
    assert_eq!(
        events[0].metadata,
        metadata.with_tenant(factum_core::Tenant::DEFAULT)
    );
    assert_eq!(events[0].schema_version, 3);
    assert_eq!(events[0].occurred_at, first.occurred_at);
    assert_eq!(events[0].payload, first.payload);
    assert_eq!(events[1].version, 2);
    let result = store
        .append(&stream, ExpectedVersion::Exact(2), vec![event(3)])
        .await
        .unwrap();
    assert_eq!(result.positions, vec![3]);
}

#[tokio::test]
async fn conflicts_write_nothing_and_retries_return_the_original_positions() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    let stream = StreamId::new("Counter", "1");
    let batch = vec![event(1), event(2)];
    let first = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();

    let conflict = store
        .append(&stream, ExpectedVersion::Exact(1), vec![event(3)])
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, Error::Conflict { actual: 2, .. }),
        "{conflict}"
    );

    // The same batch again, with the expectation it had: a retry.
    let retried = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(retried, first);
    let retried = store
        .append(&stream, ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(retried, first);

    // The same id with other content is a reused id.
    let reused = batch[0].clone().with_schema_version(9);
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![reused])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DuplicateEventId { .. }), "{error}");

    // An id twice in one batch.
    let twice = event(5);
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![twice.clone(), twice])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error}");

    // Stored ids mixed with new ones.
    let error = store
        .append(&stream, ExpectedVersion::Any, vec![batch[0].clone(), event(6)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error}");

    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    assert_eq!(store.head_position().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_commit_in_position_order_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open_with(
        dir.path().join("events.db"),
        SqliteOptions::new().durability(Durability::Normal),
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("Counter", writer.to_string());
            let mut failures = 0;
            for round in 0..25u64 {
                // Every third append expects the wrong version: it must fail
                // alone while the appends committed with it succeed.
                let expected = if round % 3 == 2 {
                    ExpectedVersion::Exact(10_000)
                } else {
                    ExpectedVersion::Any
                };
                match store.append(&stream, expected, vec![event(1), event(2)]).await {
                    Ok(result) => assert_eq!(result.positions.len(), 2),
                    Err(Error::Conflict { .. }) => failures += 1,
                    Err(other) => panic!("{other}"),
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await.unwrap();
    }
    assert_eq!(failures, 16 * 8);
    let committed = (16 * 25 - failures) * 2;
    let all = store.read_all(0, 100_000).await.unwrap();
    assert_eq!(all.len(), committed);
    for (index, event) in all.iter().enumerate() {
        assert_eq!(
            event.position,
            index as u64 + 1,
            "positions have no holes and keep order"
        );
    }
    for writer in 0..16 {
        let stream = StreamId::new("Counter", writer.to_string());
        let versions: Vec<u64> = read(&store, &stream)
            .await
            .into_iter()
            .map(|event| event.unwrap().version)
            .collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
}

/// Atomic calls across streams share groups with single appends: a call
/// that fails (on a version, or on an event id found only once its first
/// batches are inserted) is undone alone, and its neighbours commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atomic_calls_fail_alone_inside_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let taken = event(0);
    let holder = StreamId::new("Counter", "holder");
    store
        .append(&holder, ExpectedVersion::NoStream, vec![taken.clone()])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let (store, taken) = (store.clone(), taken.clone());
        tasks.push(tokio::spawn(async move {
            let streams = [0, 1].map(|n| StreamId::new("Counter", format!("{writer}-{n}")));
            let mut committed = Vec::new();
            for round in 0..24 {
                let mut second = vec![event(2)];
                let mut expected = ExpectedVersion::Any;
                match round % 4 {
                    1 => expected = ExpectedVersion::Exact(10_000),
                    // An id stored elsewhere with other content, after an event
                    // of the same call the insert has already written.
                    3 => second.push(NewEvent {
                        payload: event(9).payload,
                        ..taken.clone()
                    }),
                    _ => {}
                }
                let call = vec![
                    AppendBatch::new(streams[0].clone(), ExpectedVersion::Any, vec![event(1)]),
                    AppendBatch::new(streams[1].clone(), expected, second),
                ];
                match store.append_many(call).await {
                    Ok(results) => committed.push(results),
                    Err(Error::Conflict { .. } | Error::DuplicateEventId { .. }) => {}
                    Err(other) => panic!("{other}"),
                }
                if round % 2 == 0 {
                    let single = StreamId::new("Counter", format!("{writer}-single"));
                    store
                        .append(&single, ExpectedVersion::Any, vec![event(3)])
                        .await
                        .unwrap();
                }
            }
            committed
        }));
    }
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.unwrap());
    }
    assert_eq!(
        calls.len(),
        16 * 12,
        "every good call committed, every bad one failed"
    );
    let all = store.read_all(0, 100_000).await.unwrap();
    assert_eq!(
        all.len(),
        1 + 16 * 12 * 2 + 16 * 12,
        "failed calls left events behind"
    );
    for (index, event) in all.iter().enumerate() {
        assert_eq!(event.position, index as u64 + 1, "positions have no holes");
    }
    for results in calls {
        let positions: Vec<u64> = results
            .iter()
            .flat_map(|result| result.positions.clone())
            .collect();
        assert_eq!(
            positions,
            [positions[0], positions[0] + 1],
            "a call's positions are contiguous"
        );
    }
}

#[tokio::test]
async fn long_streams_are_read_in_pages() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    let stream = StreamId::new("Counter", "long");
    for _ in 0..3 {
        let batch: Vec<_> = (0..2000).map(event).collect();
        store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
    }
    let versions: Vec<u64> = read(&store, &stream)
        .await
        .into_iter()
        .map(|event| event.unwrap().version)
        .collect();
    assert_eq!(versions, (1..=6000).collect::<Vec<_>>());
    let tail: Vec<_> = store.read_stream(&stream, 5999).collect().await;
    assert_eq!(tail.len(), 2);
    assert!(read(&store, &StreamId::new("Counter", "none")).await.is_empty());
}

#[tokio::test]
async fn replay_gets_the_pages_as_read() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    let stream = StreamId::new("Counter", "paged");
    for _ in 0..5 {
        let batch: Vec<_> = (0..1000).map(event).collect();
        store.append(&stream, ExpectedVersion::Any, batch).await.unwrap();
    }
    let pages: Vec<Vec<_>> = store
        .read_stream_pages(&stream, 1)
        .map(Result::unwrap)
        .collect()
        .await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4096, 904], "whole pages of 4,096 events, not re-chunked");
    let from_middle: Vec<usize> = store
        .read_stream_pages(&stream, 4000)
        .map(|page| page.unwrap().len())
        .collect()
        .await;
    assert_eq!(from_middle, [1001]);
}

#[tokio::test]
async fn a_damaged_row_ends_the_pages_after_the_good_events() {
    let (_dir, store) = damaged("UPDATE events SET version = 7 WHERE version = 3").await;
    let pages: Vec<_> = store
        .read_stream_pages(&StreamId::new("Counter", "1"), 1)
        .collect()
        .await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[0].as_ref().map(Vec::len).ok(), Some(2));
    assert!(
        matches!(pages[1], Err(Error::Corrupt { version: 3, .. })),
        "{pages:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn subscriptions_wake_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    // No polling: only the writer's wake-up can deliver the live event.
    let options = SqliteOptions::new().watch_other_processes(false);
    let store = SqliteEventStore::open_with(dir.path().join("events.db"), options)
        .await
        .unwrap();
    let stream = StreamId::new("Counter", "1");
    store
        .append(&stream, ExpectedVersion::Any, vec![event(1)])
        .await
        .unwrap();
    let mut subscription = store.subscribe_all(0);
    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!(first.position, 1);
    let writer = store.clone();
    let stream_for_writer = stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer
            .append(&stream_for_writer, ExpectedVersion::Any, vec![event(2)])
            .await
            .unwrap();
    });
    let second = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("woken by the commit")
        .unwrap()
        .unwrap();
    assert_eq!((second.position, second.version), (2, 2));
}

#[tokio::test]
async fn subscriptions_see_appends_of_another_store_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let options = SqliteOptions::new().poll_interval(Duration::from_millis(20));
    let reader = SqliteEventStore::open_with(&path, options).await.unwrap();
    let writer = SqliteEventStore::open(&path).await.unwrap();
    let mut subscription = reader.subscribe_all(0);
    writer
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event(1)],
        )
        .await
        .unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("found by polling")
        .unwrap()
        .unwrap();
    assert_eq!(delivered.position, 1);
}

fn snapshot(stream: &StreamId, version: u64, state: &str) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version: 1,
        state: Payload::parse(state).unwrap(),
        taken_at: time::OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn snapshots_keep_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Counter", "1");
    let store = SqliteEventStore::open(&path).await.unwrap();
    assert!(store.load_snapshot(&stream).await.unwrap().is_none());
    store
        .append(&stream, ExpectedVersion::Any, (0..5).map(event).collect())
        .await
        .unwrap();
    let newest = snapshot(&stream, 4, r#"{"value":4}"#);
    store.save_snapshot(newest.clone()).await.unwrap();
    store
        .save_snapshot(snapshot(&stream, 2, r#"{"value":2}"#))
        .await
        .unwrap();
    store.close().await.unwrap();
    let store = SqliteEventStore::open(&path).await.unwrap();
    let loaded = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(loaded, newest, "an older snapshot does not replace a newer one");
    assert!(
        store
            .load_snapshot(&StreamId::new("Counter", "2"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_damaged_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Counter", "1");
    let store = SqliteEventStore::open(&path).await.unwrap();
    store.save_snapshot(snapshot(&stream, 4, "{}")).await.unwrap();
    store.close().await.unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute("UPDATE snapshots SET taken_at = 'noon'", [])
        .unwrap();
    drop(connection);
    let store = SqliteEventStore::open(&path).await.unwrap();
    let error = store.load_snapshot(&stream).await.unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_not_a_factum_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the events you are looking for\n".repeat(200),
    )
    .unwrap();
    let error = SqliteEventStore::open(&path).await.unwrap_err();
    assert!(
        matches!(sqlite_error(&error), Some(SqliteError::NotAFactumDatabase { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("not a factum database"), "{error}");
}

#[tokio::test]
async fn another_programs_sqlite_file_is_not_a_factum_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("CREATE TABLE users (name TEXT)").unwrap();
    drop(other);
    let error = SqliteEventStore::open(&path).await.unwrap_err();
    assert!(
        matches!(sqlite_error(&error), Some(SqliteError::NotAFactumDatabase { .. })),
        "{error}"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    SqliteEventStore::open(&path)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = SqliteEventStore::open(&path).await.unwrap_err();
    match sqlite_error(&error) {
        Some(SqliteError::SchemaTooNew { found, supported, .. }) => {
            assert_eq!((*found, *supported), (99, SqliteEventStore::schema_version()))
        }
        _ => panic!("expected SchemaTooNew, got {error}"),
    }
    assert!(error.to_string().contains("upgrade factum-sqlite"), "{error}");
}

#[tokio::test]
async fn a_missing_file_is_not_created_when_asked_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let options = SqliteOptions::new().create_if_missing(false);
    assert!(SqliteEventStore::open_with(&path, options).await.is_err());
    assert!(!path.exists());
}

/// A file holding versions 1 to 3 of `Counter-1`, changed by `sql` while
/// the store was closed, and the store opened on it again.
async fn damaged(sql: &str) -> (tempfile::TempDir, SqliteEventStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Counter", "1");
    let store = SqliteEventStore::open(&path).await.unwrap();
    store
        .append(&stream, ExpectedVersion::Any, (0..3).map(event).collect())
        .await
        .unwrap();
    store.close().await.unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute(sql, []).unwrap();
    drop(connection);
    let store = SqliteEventStore::open(&path).await.unwrap();
    (dir, store)
}

/// Damages one column of the event at version 2 of `Counter-1` and returns
/// what reading the stream gives.
async fn read_after_damage(column_update: &str) -> Vec<Result<factum_core::RecordedEvent, Error>> {
    let (_dir, store) = damaged(&format!("UPDATE events SET {column_update} WHERE version = 2")).await;
    let events = read(&store, &StreamId::new("Counter", "1")).await;
    // The global log reports the same damage.
    let all = store.read_all(0, 10).await;
    assert!(matches!(all, Err(Error::Corrupt { version: 2, .. })), "{all:?}");
    events
}

#[tokio::test]
async fn damaged_rows_are_typed_errors_naming_stream_and_version() {
    for damage in [
        "event_id = x'0102'",
        "event_id = 'not a uuid'",
        "occurred_at = 'yesterday'",
        "occurred_at = 1.5",
        "metadata = '{not json'",
        "metadata = '{\"user\": 5}'",
        "payload = x'ff00'",
        "event_type = x'00ff'",
        "event_type = CAST(x'ff' AS TEXT)",
        "schema_version = -1",
    ] {
        let events = read_after_damage(damage).await;
        assert_eq!(events.len(), 2, "{damage}: the good event, then the error");
        assert!(events[0].is_ok(), "{damage}");
        match &events[1] {
            Err(Error::Corrupt {
                stream,
                version,
                reason,
            }) => {
                assert_eq!(stream, &StreamId::new("Counter", "1"), "{damage}");
                assert_eq!(*version, 2, "{damage}: {reason}");
            }
            other => panic!("{damage}: expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_version_is_reported() {
    let (_dir, store) = damaged("DELETE FROM events WHERE version = 2").await;
    let events = read(&store, &StreamId::new("Counter", "1")).await;
    assert!(
        matches!(events[1], Err(Error::Corrupt { version: 2, .. })),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_truncated_file_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let stream = StreamId::new("Counter", "1");
    let store = SqliteEventStore::open(&path).await.unwrap();
    for _ in 0..20 {
        store
            .append(&stream, ExpectedVersion::Any, (0..500).map(event).collect())
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);
    let Ok(store) = SqliteEventStore::open(&path).await else {
        return;
    };
    let events = read(&store, &stream).await;
    assert!(events.iter().any(Result::is_err), "half the file is gone");
    assert!(store.read_all(0, 100_000).await.is_err());
}

#[tokio::test]
async fn a_closed_store_refuses_work() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    store.close().await.unwrap();
    let error = store
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event(1)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(sqlite_error(&error), Some(SqliteError::Closed)),
        "{error}"
    );
    assert!(store.head_position().await.is_err());
}

#[tokio::test]
async fn times_outside_the_storable_range_are_refused() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    let mut ancient = event(1);
    ancient.occurred_at = time::OffsetDateTime::from_unix_timestamp(-30_000_000_000).unwrap();
    let error = store
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![ancient],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error}");
}
