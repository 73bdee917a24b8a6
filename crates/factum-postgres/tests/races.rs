//! Many writers racing on one stream, by every append path (the
//! one-statement paths of a first attempt, `factum_append` after a lost race,
//! a new stream's first event): every failure is `Error::Conflict`, never a
//! unique violation of the store, and every append is stored whole or not at
//! all.

mod common;

use std::collections::HashMap;

use factum_core::{Error, EventStore, ExpectedVersion, NewEvent, Payload, RecordedEvent, StreamId};
use factum_postgres::PostgresEventStore;
use futures::TryStreamExt;
use uuid::Uuid;

const WRITERS: usize = 24;
const ROUNDS: usize = 40;

fn event(n: usize) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

/// One event on even rounds (the single-event path), a batch of 2 to 6 on
/// odd ones (the one-statement batch path).
fn events_for(writer: usize, round: usize) -> Vec<NewEvent> {
    let size = if round.is_multiple_of(2) {
        1
    } else {
        2 + (writer + round) % 5
    };
    (0..size).map(|n| event(writer * 1000 + n)).collect()
}

/// What one writer stored: the event ids of each successful append, with its
/// result's stream version.
type Stored = Vec<(u64, Vec<Uuid>)>;

/// The result of a racing append: stored, or a conflict that names the
/// stream, the expected version and an actual version that differs from it.
fn check(
    stream: &StreamId,
    expected: ExpectedVersion,
    result: Result<factum_core::AppendResult, Error>,
) -> Option<u64> {
    match result {
        Ok(appended) => Some(appended.stream_version),
        Err(Error::Conflict {
            stream: reported,
            expected: reported_expected,
            actual,
        }) => {
            assert_eq!(&reported, stream);
            assert_eq!(reported_expected, expected);
            let expected_number = match expected {
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(version) => version,
                ExpectedVersion::Any => panic!("an append with ExpectedVersion::Any conflicted"),
            };
            assert!(
                actual > expected_number,
                "a conflict at the expected version: {expected:?}, actual {actual}"
            );
            None
        }
        Err(other) => panic!("a racing append failed with something else than a conflict: {other:?}"),
    }
}

/// Every successful append is in the stream whole, at the versions its
/// result reported, and nothing else is.
async fn assert_stored_whole(store: &PostgresEventStore, stream: &StreamId, stored: Vec<Stored>) {
    let events: Vec<RecordedEvent> = store.read_stream(stream, 1).try_collect().await.unwrap();
    let by_version: HashMap<u64, Uuid> = events
        .iter()
        .map(|event| (event.version, event.event_id))
        .collect();
    let mut count = 0;
    for (last_version, ids) in stored.into_iter().flatten() {
        let first_version = last_version + 1 - ids.len() as u64;
        for (offset, id) in ids.iter().enumerate() {
            assert_eq!(
                by_version.get(&(first_version + offset as u64)),
                Some(id),
                "an append is not stored whole at the versions it reported"
            );
        }
        count += ids.len();
    }
    assert_eq!(events.len(), count, "the stream holds events no append reported");
    let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
    assert_eq!(versions, (1..=count as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_with_any_all_succeed() {
    let Some(store) = common::fresh_store_with(|options| options.pool_size(WRITERS)).await else {
        return;
    };
    let stream = StreamId::new("Counter", "hot");
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, stream) = (store.clone(), stream.clone());
        writers.push(tokio::spawn(async move {
            let mut stored = Stored::new();
            for round in 0..ROUNDS {
                let events = events_for(writer, round);
                let ids = events.iter().map(|event| event.event_id).collect();
                let result = store.append(&stream, ExpectedVersion::Any, events).await;
                let version = check(&stream, ExpectedVersion::Any, result).expect("Any never conflicts");
                stored.push((version, ids));
            }
            stored
        }));
    }
    let mut stored = Vec::new();
    for writer in writers {
        stored.push(writer.await.unwrap());
    }
    assert_stored_whole(&store, &stream, stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_with_exact_versions_store_or_conflict() {
    let Some(store) = common::fresh_store_with(|options| options.pool_size(WRITERS)).await else {
        return;
    };
    let stream = StreamId::new("Counter", "hot");
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, stream) = (store.clone(), stream.clone());
        writers.push(tokio::spawn(async move {
            let (mut stored, mut conflicts) = (Stored::new(), 0);
            for round in 0..ROUNDS {
                let expected = match store.stream_version(&stream).await.unwrap() {
                    0 => ExpectedVersion::NoStream,
                    version => ExpectedVersion::Exact(version),
                };
                let events = events_for(writer, round);
                let ids = events.iter().map(|event| event.event_id).collect();
                match check(&stream, expected, store.append(&stream, expected, events).await) {
                    Some(version) => stored.push((version, ids)),
                    None => conflicts += 1,
                }
            }
            (stored, conflicts)
        }));
    }
    let (mut stored, mut conflicts) = (Vec::new(), 0);
    for writer in writers {
        let (writer_stored, writer_conflicts) = writer.await.unwrap();
        stored.push(writer_stored);
        conflicts += writer_conflicts;
    }
    assert!(conflicts > 0, "{WRITERS} writers on one stream never conflicted");
    assert_stored_whole(&store, &stream, stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_to_create_a_stream_leave_one_winner() {
    let Some(store) = common::fresh_store_with(|options| options.pool_size(WRITERS)).await else {
        return;
    };
    for round in 0..ROUNDS {
        let stream = StreamId::new("Counter", format!("new-{round}"));
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (store, stream) = (store.clone(), stream.clone());
            writers.push(tokio::spawn(async move {
                // One event (the stream-creation path) or a batch.
                let events = events_for(writer, writer + round);
                let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
                let result = store.append(&stream, ExpectedVersion::NoStream, events).await;
                check(&stream, ExpectedVersion::NoStream, result).map(|version| (version, ids))
            }));
        }
        let mut winners = Vec::new();
        for writer in writers {
            winners.extend(writer.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "{} writers created {stream}", winners.len());
        assert_stored_whole(&store, &stream, vec![winners]).await;
    }
}

/// A writer that wins every race on `(stream, version)` (one outside factum,
/// not taking turns), played by a trigger that refuses any version past the
/// first with the unique violation a lost race raises: every append is a
/// conflict, on every path and whatever the expected version, after its
/// retries, never the server's error, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_wins_every_race_means_conflicts_not_store_errors() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let stream = StreamId::new("Counter", "taken");
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let schema = store.schema_name().trim_end_matches(".factum_").to_owned();
    raw.batch_execute(&format!(
        "CREATE FUNCTION \"{schema}\".always_taken() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.stream_id = 'taken' AND NEW.version > 1 THEN
                 RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                     CONSTRAINT = 'factum_events_stream_version',
                     MESSAGE = 'duplicate key value violates unique constraint \"factum_events_stream_version\"';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER always_taken BEFORE INSERT ON \"{schema}\".factum_events
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".always_taken();"
    ))
    .await
    .unwrap();
    for expected in [
        ExpectedVersion::Exact(1),
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
    ] {
        for size in [1, 3] {
            let events = (0..size).map(event).collect();
            match store.append(&stream, expected, events).await {
                Err(Error::Conflict {
                    stream: reported,
                    expected: reported_expected,
                    actual: 1,
                }) => assert_eq!((reported, reported_expected), (stream.clone(), expected)),
                other => panic!("{expected:?}, {size} events: {other:?}"),
            }
        }
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
}
