//! The guarantees every [`EventStore`] must keep, one async check each.
//!
//! Run them all with [`conformance_suite!`](crate::conformance_suite); each
//! check takes a fresh, empty store and panics with a message on failure.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Tally;
use crate::{
    Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent, Repository, StreamId,
};

mod idempotency;
mod snapshots;

pub use idempotency::{
    mixed_batch_of_stored_and_new_events_is_invalid, stored_id_with_other_content_is_a_duplicate,
};
pub use snapshots::{
    application_loads_from_its_snapshots, latest_snapshot_wins, snapshot_ahead_of_its_stream_is_never_loaded,
    undeserializable_snapshot_means_a_full_replay,
};

fn stream(name: &str) -> StreamId {
    StreamId::new("Tally", format!("{name}-{}", Uuid::now_v7()))
}

fn added(amount: i64) -> NewEvent {
    NewEvent::new("added", Payload::from(json!({ "amount": amount })))
}

fn created(stream: &StreamId) -> NewEvent {
    NewEvent::new(
        "created",
        Payload::from(json!({ "id": stream.aggregate_id(), "total": 0 })),
    )
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count).map(|amount| added(amount as i64)).collect()
}

async fn read_stream<S: EventStore>(store: &S, stream: &StreamId, from_version: u64) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, from_version)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("reading {stream} failed: {error}"))
}

async fn read_everything<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_all(after, 500)
            .await
            .unwrap_or_else(|error| panic!("reading $all failed: {error}"));
        let Some(last) = page.last() else {
            return all;
        };
        after = last.position;
        all.extend(page);
    }
}

async fn append<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> crate::AppendResult {
    store
        .append(stream, expected, events)
        .await
        .unwrap_or_else(|error| panic!("append to {stream} with {expected} failed: {error}"))
}

#[track_caller]
fn assert_conflict(result: Result<crate::AppendResult, Error>, expected: ExpectedVersion, actual: u64) {
    match result {
        Err(Error::Conflict {
            expected: reported_expected,
            actual: reported_actual,
            ..
        }) => {
            assert_eq!(
                reported_expected, expected,
                "conflict reports the expected version"
            );
            assert_eq!(reported_actual, actual, "conflict reports the actual version");
        }
        other => panic!("expected a conflict ({expected}, actual {actual}), got {other:?}"),
    }
}

/// `Any` appends to a fresh stream and to an existing one.
pub async fn any_on_fresh_and_existing_streams<S: EventStore>(store: S) {
    let stream = stream("any");
    let first = append(&store, &stream, ExpectedVersion::Any, events(2)).await;
    assert_eq!(first.stream_version, 2);
    let second = append(&store, &stream, ExpectedVersion::Any, events(3)).await;
    assert_eq!(second.stream_version, 5);
    assert_eq!(second.positions.len(), 3);
}

/// `NoStream` admits a fresh stream and rejects an existing one.
pub async fn no_stream_admits_only_a_fresh_stream<S: EventStore>(store: S) {
    let stream = stream("no-stream");
    append(&store, &stream, ExpectedVersion::NoStream, events(2)).await;
    let again = store.append(&stream, ExpectedVersion::NoStream, events(1)).await;
    assert_conflict(again, ExpectedVersion::NoStream, 2);
}

/// `Exact(n)` admits a stream at `n` only; `Exact(0)` means a fresh stream.
pub async fn exact_version_admits_only_that_version<S: EventStore>(store: S) {
    let stream = stream("exact");
    let ahead = store.append(&stream, ExpectedVersion::Exact(3), events(1)).await;
    assert_conflict(ahead, ExpectedVersion::Exact(3), 0);
    append(&store, &stream, ExpectedVersion::Exact(0), events(2)).await;
    append(&store, &stream, ExpectedVersion::Exact(2), events(1)).await;
    let stale = store.append(&stream, ExpectedVersion::Exact(2), events(1)).await;
    assert_conflict(stale, ExpectedVersion::Exact(2), 3);
    let behind = store.append(&stream, ExpectedVersion::Exact(4), events(1)).await;
    assert_conflict(behind, ExpectedVersion::Exact(4), 3);
    assert_eq!(store.stream_version(&stream).await.ok(), Some(3));
}

/// A conflicting append writes nothing, to the stream or to `$all`.
pub async fn conflict_writes_nothing<S: EventStore>(store: S) {
    let stream = stream("conflict");
    append(&store, &stream, ExpectedVersion::NoStream, events(2)).await;
    let before = read_everything(&store).await;
    let rejected = store.append(&stream, ExpectedVersion::Exact(1), events(5)).await;
    assert_conflict(rejected, ExpectedVersion::Exact(1), 2);
    assert_eq!(
        read_everything(&store).await,
        before,
        "$all changed after a conflict"
    );
    assert_eq!(read_stream(&store, &stream, 1).await.len(), 2);
}

/// An empty append writes nothing but still checks the expected version.
pub async fn empty_append_checks_the_expected_version<S: EventStore>(store: S) {
    let stream = stream("empty");
    append(&store, &stream, ExpectedVersion::Any, events(2)).await;
    let empty = append(&store, &stream, ExpectedVersion::Exact(2), Vec::new()).await;
    assert_eq!(empty.stream_version, 2);
    assert!(empty.positions.is_empty());
    let stale = store.append(&stream, ExpectedVersion::Exact(1), Vec::new()).await;
    assert_conflict(stale, ExpectedVersion::Exact(1), 2);
    assert_eq!(read_everything(&store).await.len(), 2);
}

/// A batch that cannot be stored whole leaves nothing behind.
pub async fn batch_is_atomic<S: EventStore>(store: S) {
    let stream = stream("atomic");
    let other = self::stream("atomic-other");
    let taken = added(1);
    append(&store, &other, ExpectedVersion::Any, vec![taken.clone()]).await;

    // The last event of the batch reuses an id stored elsewhere.
    let mut batch = events(4);
    batch.push(taken);
    let rejected = store.append(&stream, ExpectedVersion::NoStream, batch).await;
    assert!(
        rejected.is_err(),
        "a batch reusing a stored event id was accepted"
    );

    // The same id twice inside one batch.
    let twice = added(7);
    let rejected = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![added(1), twice.clone(), twice],
        )
        .await;
    assert!(
        matches!(rejected, Err(Error::InvalidRequest { .. })),
        "a batch with one id twice: {rejected:?}"
    );

    assert!(
        read_stream(&store, &stream, 1).await.is_empty(),
        "part of a rejected batch is visible"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
    assert_eq!(store.stream_version(&stream).await.ok(), Some(0));
}

/// Appending the same events again returns the original result and writes nothing.
pub async fn idempotent_retry_returns_original_positions<S: EventStore>(store: S) {
    let stream = stream("retry");
    let batch = events(3);
    let original = append(&store, &stream, ExpectedVersion::NoStream, batch.clone()).await;
    append(&store, &stream, ExpectedVersion::Any, events(2)).await;

    // The retry carries the expectation of the first attempt, now stale.
    let retried = append(&store, &stream, ExpectedVersion::NoStream, batch.clone()).await;
    assert_eq!(retried, original, "a retry must return the original positions");
    let retried_any = append(&store, &stream, ExpectedVersion::Any, batch).await;
    assert_eq!(retried_any, original);
    assert_eq!(
        read_stream(&store, &stream, 1).await.len(),
        5,
        "a retry wrote events again"
    );
    assert_eq!(read_everything(&store).await.len(), 5);
}

/// The same event id with another payload is an error, not a retry.
pub async fn same_event_id_with_other_content_is_rejected<S: EventStore>(store: S) {
    let stream = stream("reused-id");
    let original = added(1);
    append(&store, &stream, ExpectedVersion::NoStream, vec![original.clone()]).await;
    let mut changed = original;
    changed.payload = Payload::from(json!({ "amount": 2 }));
    let rejected = store.append(&stream, ExpectedVersion::Any, vec![changed]).await;
    assert!(
        matches!(rejected, Err(Error::DuplicateEventId { .. })),
        "same id, other payload: {rejected:?}"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
}

/// Versions start at 1 and have no gaps, in every stream.
pub async fn versions_are_gapless_from_one<S: EventStore>(store: S) {
    let streams: Vec<StreamId> = (0..3).map(|index| stream(&format!("gapless-{index}"))).collect();
    for round in 1..=4 {
        for stream in &streams {
            append(&store, stream, ExpectedVersion::Any, events(round)).await;
        }
    }
    for stream in &streams {
        let versions: Vec<u64> = read_stream(&store, stream, 1)
            .await
            .iter()
            .map(|event| event.version)
            .collect();
        assert_eq!(versions, (1..=10).collect::<Vec<_>>(), "versions of {stream}");
        assert_eq!(store.stream_version(stream).await.ok(), Some(10));
    }
}

/// Positions in `$all` strictly increase and are the ones appends returned.
pub async fn positions_strictly_increase_and_match_append_results<S: EventStore>(store: S) {
    let mut returned = HashMap::new();
    for index in 0..10 {
        let stream = stream(&format!("positions-{}", index % 3));
        let batch = events(index % 4 + 1);
        let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
        let result = append(&store, &stream, ExpectedVersion::Any, batch).await;
        assert_eq!(result.positions.len(), ids.len());
        assert!(result.positions.windows(2).all(|pair| pair[0] < pair[1]));
        returned.extend(ids.into_iter().zip(result.positions));
    }
    let all = read_everything(&store).await;
    assert_eq!(all.len(), returned.len());
    assert!(
        all.windows(2).all(|pair| pair[0].position < pair[1].position),
        "positions not increasing"
    );
    for event in &all {
        assert_eq!(
            Some(&event.position),
            returned.get(&event.event_id),
            "position of {}",
            event.event_id
        );
    }
}

/// `read_stream` starts at the requested version; beyond the end it is empty.
pub async fn read_stream_from_a_version<S: EventStore>(store: S) {
    let stream = stream("from-version");
    append(&store, &stream, ExpectedVersion::NoStream, events(6)).await;
    let from_four: Vec<u64> = read_stream(&store, &stream, 4)
        .await
        .iter()
        .map(|event| event.version)
        .collect();
    assert_eq!(from_four, vec![4, 5, 6]);
    assert_eq!(
        read_stream(&store, &stream, 0).await.len(),
        6,
        "version 0 reads from the start"
    );
    assert!(read_stream(&store, &stream, 7).await.is_empty());
    assert!(read_stream(&store, &self::stream("unknown"), 1).await.is_empty());
}

/// `read_all(after, ..)` returns only events after `after`, so a reader can
/// resume from its last position without a duplicate.
pub async fn read_all_resumes_after_a_position_exclusively<S: EventStore>(store: S) {
    let stream = stream("resume");
    append(&store, &stream, ExpectedVersion::Any, events(10)).await;
    let all = read_everything(&store).await;
    let middle = all[4].position;
    let rest = store
        .read_all(middle, 100)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(rest, all[5..].to_vec());
    let last = all[9].position;
    assert!(
        store
            .read_all(last, 100)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty()
    );
}

/// `read_all` returns at most `limit` events, in order.
pub async fn read_all_honours_limits<S: EventStore>(store: S) {
    let stream = stream("limits");
    append(&store, &stream, ExpectedVersion::Any, events(7)).await;
    let all = read_everything(&store).await;
    let first_three = store
        .read_all(0, 3)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(first_three, all[..3].to_vec());
    assert!(
        store
            .read_all(0, 0)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty()
    );
    let many = store
        .read_all(0, 1000)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(many, all);
}

/// Every field of the envelope comes back as written.
pub async fn envelope_round_trips<S: EventStore>(store: S) {
    let stream = stream("envelope");
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_tenant("acme")
        .with("user", "ada")
        .with("attempt", 3);
    // Stores keep microseconds at least.
    let occurred_at = OffsetDateTime::from_unix_timestamp(1_700_000_000)
        .unwrap_or_else(|error| panic!("{error}"))
        + time::Duration::microseconds(123_456);
    let mut event = NewEvent::new(
        "added",
        Payload::from(json!({ "amount": 5, "note": "é ☃ \"q\"" })),
    )
    .with_metadata(metadata.clone())
    .with_schema_version(3);
    event.occurred_at = occurred_at;
    let plain = added(9);
    let result = append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![event.clone(), plain.clone()],
    )
    .await;

    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.len(), 2);
    let first = &stored[0];
    assert_eq!(first.event_id, event.event_id);
    assert_eq!(first.stream, stream);
    assert_eq!(first.aggregate_type(), "Tally");
    assert_eq!(first.version, 1);
    assert_eq!(first.position, result.positions[0]);
    assert_eq!(&*first.event_type, "added");
    assert_eq!(first.schema_version, 3);
    assert_eq!(first.payload.to_value().ok(), event.payload.to_value().ok());
    assert_eq!(first.metadata, metadata);
    assert_eq!(first.occurred_at, occurred_at);
    assert_eq!(first.occurred_at.offset(), time::UtcOffset::UTC);
    assert_eq!(stored[1].metadata, Metadata::default());
    assert_eq!(stored[1].schema_version, 1);
    let via_all = read_everything(&store).await;
    assert_eq!(via_all, stored, "$all and the stream disagree");
}

/// Stream ids, event types and payloads that would break string-built SQL
/// round-trip unchanged.
pub async fn unusual_names_and_payloads_round_trip<S: EventStore>(store: S) {
    let hostile = StreamId::new("Tally'; DROP TABLE events; --", "ïd \"with\" quotes\\ and ☃");
    let event = NewEvent::new(
        "odd.type-name 'quoted'",
        Payload::from(
            json!({ "nested": { "list": [1, null, "x"] }, "empty": {}, "big": 9_007_199_254_740_993_u64 }),
        ),
    );
    append(&store, &hostile, ExpectedVersion::NoStream, vec![event.clone()]).await;
    let stored = read_stream(&store, &hostile, 1).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stream, hostile);
    assert_eq!(stored[0].event_type, event.event_type);
    assert_eq!(stored[0].payload.to_value().ok(), event.payload.to_value().ok());
}

/// A batch of a thousand events lands whole, with consecutive versions.
pub async fn large_batch_is_atomic_and_ordered<S: EventStore>(store: S) {
    let stream = stream("large");
    let batch = events(1000);
    let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
    let result = append(&store, &stream, ExpectedVersion::NoStream, batch).await;
    assert_eq!(result.stream_version, 1000);
    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.iter().map(|event| event.event_id).collect::<Vec<_>>(), ids);
}

/// A stream longer than any page reads back whole and in order.
pub async fn long_stream_reads_in_order<S: EventStore>(store: S) {
    let stream = stream("long");
    for _ in 0..5 {
        append(&store, &stream, ExpectedVersion::Any, events(1000)).await;
    }
    let mut versions = store
        .read_stream(&stream, 1)
        .map(|event| event.map(|event| event.version));
    let mut expected = 1;
    while let Some(version) = versions.next().await {
        assert_eq!(version.unwrap_or_else(|error| panic!("{error}")), expected);
        expected += 1;
    }
    assert_eq!(expected, 5001);
}

/// `read_stream_pages` yields exactly what `read_stream` does, page by page.
pub async fn stream_pages_match_the_stream<S: EventStore>(store: S) {
    let stream = stream("pages");
    for _ in 0..5 {
        append(&store, &stream, ExpectedVersion::Any, events(500)).await;
    }
    for from_version in [0, 1, 1000, 1025, 2500, 2501] {
        let paged: Vec<RecordedEvent> = store
            .read_stream_pages(&stream, from_version)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_or_else(|error| panic!("reading pages of {stream} failed: {error}"))
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            paged,
            read_stream(&store, &stream, from_version).await,
            "pages from version {from_version}"
        );
    }
    let unknown = self::stream("unknown");
    assert!(store.read_stream_pages(&unknown, 1).next().await.is_none());
}

/// A stored payload that no longer matches the event is an error naming the
/// event, never skipped.
pub async fn undecodable_payload_is_an_error_not_a_skip<S: EventStore>(store: S) {
    let id = format!("bad-payload-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let bad = NewEvent::new("added", Payload::from(json!({ "amount": "twelve" })));
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), added(1), bad],
    )
    .await;
    let repository = Repository::<Tally, _>::new(store);
    match repository.load(&id).await {
        Err(Error::Serialization {
            stream: reported,
            version,
            event_type,
            ..
        }) => {
            assert_eq!(reported, stream);
            assert_eq!(version, 3);
            assert_eq!(event_type, "added");
        }
        other => panic!("expected a serialization error at version 3, got {other:?}"),
    }
}

/// A stored event type the aggregate does not know is an error, never skipped.
pub async fn unknown_event_type_is_an_error_not_a_skip<S: EventStore>(store: S) {
    let id = format!("unknown-type-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let unknown = NewEvent::new("renamed", Payload::from(json!({})));
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), unknown],
    )
    .await;
    let repository = Repository::<Tally, _>::new(store);
    match repository.load(&id).await {
        Err(Error::UnknownEventType {
            version, event_type, ..
        }) => {
            assert_eq!(version, 2);
            assert_eq!(event_type, "renamed");
        }
        other => panic!("expected an unknown event type at version 2, got {other:?}"),
    }
}

/// Writers racing on one stream: exactly one wins each version, the losers
/// get conflicts, and every winning event is stored once.
pub async fn concurrent_writers_on_one_stream<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const APPENDS_EACH: usize = 20;
    let stream = stream("race");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0_usize;
            while won.len() < APPENDS_EACH {
                let version = store
                    .stream_version(&stream)
                    .await
                    .unwrap_or_else(|error| panic!("{error}"));
                let event = added(1);
                let event_id = event.event_id;
                match store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event])
                    .await
                {
                    Ok(result) => {
                        assert_eq!(result.stream_version, version + 1);
                        won.push((result.stream_version, event_id));
                    }
                    Err(Error::Conflict { actual, .. }) => {
                        assert_ne!(actual, version, "a conflict must report another version");
                        conflicts += 1;
                    }
                    Err(error) => panic!("unexpected error in a race: {error}"),
                }
            }
            (won, conflicts)
        }));
    }
    let mut winners = HashMap::new();
    for task in tasks {
        let (won, _conflicts) = task
            .await
            .unwrap_or_else(|error| panic!("writer panicked: {error}"));
        for (version, event_id) in won {
            assert!(
                winners.insert(version, event_id).is_none(),
                "two writers won version {version}"
            );
        }
    }
    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.len(), WRITERS * APPENDS_EACH, "events lost or duplicated");
    for event in stored {
        assert_eq!(
            winners.get(&event.version),
            Some(&event.event_id),
            "version {}",
            event.version
        );
    }
}

/// Eight writers on their own streams and two live readers: the readers see
/// every event once, in position order, with each stream's versions in order.
pub async fn writers_and_readers_lose_nothing<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const EVENTS_EACH: usize = 250;
    const TOTAL: usize = WRITERS * EVENTS_EACH;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut subscription = store.subscribe_all(0);
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(TOTAL);
                while seen.len() < TOTAL {
                    match subscription.next().await {
                        Some(Ok(event)) => seen.push(event),
                        Some(Err(error)) => panic!("subscription failed: {error}"),
                        None => panic!("subscription ended on its own"),
                    }
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = stream(&format!("writer-{writer}"));
                let mut written = 0;
                let mut batch_size = 1;
                while written < EVENTS_EACH {
                    let count = batch_size.min(EVENTS_EACH - written);
                    append(
                        &store,
                        &stream,
                        ExpectedVersion::Exact(written as u64),
                        events(count),
                    )
                    .await;
                    written += count;
                    batch_size = batch_size % 5 + 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap_or_else(|error| panic!("writer panicked: {error}"));
    }
    let log = read_everything(&store).await;
    assert_eq!(log.len(), TOTAL);
    for reader in readers {
        let seen = reader
            .await
            .unwrap_or_else(|error| panic!("reader panicked: {error}"));
        assert_eq!(seen.len(), TOTAL);
        let ids: HashSet<Uuid> = seen.iter().map(|event| event.event_id).collect();
        assert_eq!(ids.len(), TOTAL, "a reader saw an event twice");
        assert!(
            seen.windows(2).all(|pair| pair[0].position < pair[1].position),
            "a reader saw events out of order"
        );
        let mut last_version: HashMap<&StreamId, u64> = HashMap::new();
        for event in &seen {
            let last = last_version.entry(&event.stream).or_default();
            assert_eq!(
                event.version,
                *last + 1,
                "versions of {} out of order",
                event.stream
            );
            *last = event.version;
        }
        assert_eq!(seen, log, "a reader's view differs from the log");
    }
}

/// A subscription catches up on stored events and goes live while writes
/// continue, with no gap and no duplicate at the hand-over.
pub async fn catch_up_hands_over_to_live<S: EventStore + Clone>(store: S) {
    const BEFORE: usize = 300;
    const DURING: usize = 300;
    let stream = stream("handover");
    for _ in 0..BEFORE / 50 {
        append(&store, &stream, ExpectedVersion::Any, events(50)).await;
    }
    let mut subscription = store.subscribe_all(0);
    let writer = {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for _ in 0..DURING {
                append(&store, &stream, ExpectedVersion::Any, events(1)).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < BEFORE + DURING {
        match subscription.next().await {
            Some(Ok(event)) => seen.push(event),
            Some(Err(error)) => panic!("subscription failed: {error}"),
            None => panic!("subscription ended on its own"),
        }
    }
    writer
        .await
        .unwrap_or_else(|error| panic!("writer panicked: {error}"));
    assert_eq!(
        seen,
        read_everything(&store).await,
        "the subscription differs from the log"
    );
    let versions: Vec<u64> = seen.iter().map(|event| event.version).collect();
    assert_eq!(versions, (1..=(BEFORE + DURING) as u64).collect::<Vec<_>>());

    // Live: one more event arrives without a new subscription.
    let late = added(42);
    let late_id = late.event_id;
    append(&store, &stream, ExpectedVersion::Any, vec![late]).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), subscription.next()).await;
    match next {
        Ok(Some(Ok(event))) => assert_eq!(event.event_id, late_id),
        other => panic!("the live event did not arrive: {other:?}"),
    }
}

/// A subscription from position `p` starts with the first event after `p`.
pub async fn subscription_starts_after_its_position<S: EventStore + Clone>(store: S) {
    let stream = stream("subscribe-after");
    append(&store, &stream, ExpectedVersion::Any, events(5)).await;
    let all = read_everything(&store).await;
    let mut subscription = store.subscribe_all(all[2].position);
    let mut seen = Vec::new();
    for _ in 0..2 {
        match subscription.next().await {
            Some(Ok(event)) => seen.push(event),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(seen, all[3..].to_vec());
    // Nothing more until something is written.
    let idle = tokio::time::timeout(std::time::Duration::from_millis(200), subscription.next()).await;
    assert!(
        idle.is_err(),
        "the subscription yielded an event that was never written: {idle:?}"
    );
}

/// `head_position` is 0 on an empty store and then the last appended position.
pub async fn head_position_follows_appends<S: EventStore>(store: S) {
    assert_eq!(store.head_position().await.ok(), Some(0));
    let stream = stream("head");
    let result = append(&store, &stream, ExpectedVersion::Any, events(3)).await;
    assert_eq!(store.head_position().await.ok(), result.positions.last().copied());
    assert_eq!(store.stream_version(&self::stream("nothing")).await.ok(), Some(0));
}
