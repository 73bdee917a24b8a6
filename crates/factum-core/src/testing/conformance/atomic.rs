//! Atomic appends across streams ([`EventStore::append_many`]): all or
//! nothing, each stream against its own expected version, idempotent
//! retries of the whole call, typed errors for bad input, and readers that
//! never see part of a call.

use super::*;
use crate::{AppendBatch, AppendResult};

fn batch(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::new(stream.clone(), expected, events)
}

async fn append_many<S: EventStore>(store: &S, batches: Vec<AppendBatch>) -> Vec<AppendResult> {
    let streams: Vec<String> = batches.iter().map(|batch| batch.stream.to_string()).collect();
    store
        .append_many(batches)
        .await
        .unwrap_or_else(|error| panic!("append_many to {streams:?} failed: {error}"))
}

async fn version<S: EventStore>(store: &S, stream: &StreamId) -> u64 {
    store
        .stream_version(stream)
        .await
        .unwrap_or_else(|error| panic!("the version of {stream} failed: {error}"))
}

#[track_caller]
fn assert_conflict_on(
    result: Result<Vec<AppendResult>, Error>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(Error::Conflict {
            stream: reported,
            expected: reported_expected,
            actual: reported_actual,
        }) => {
            assert_eq!(&reported, stream, "the conflict names the stream that moved");
            assert_eq!(
                reported_expected, expected,
                "the conflict reports the expected version"
            );
            assert_eq!(reported_actual, actual, "the conflict reports the actual version");
        }
        other => panic!("expected a conflict on {stream}, got {other:?}"),
    }
}

/// One stream not at its expected version fails the whole call: nothing is
/// written to any stream, and the conflict names that stream, wherever it
/// stands in the call.
pub async fn append_many_is_all_or_nothing<S: EventStore>(store: S) {
    let (first, moved, last) = (stream("all-a"), stream("all-moved"), stream("all-c"));
    append(&store, &moved, ExpectedVersion::NoStream, events(2)).await;
    let before = read_everything(&store).await;
    for position in 0..3 {
        let mut call = vec![
            batch(&first, ExpectedVersion::NoStream, events(2)),
            batch(&last, ExpectedVersion::Any, events(1)),
        ];
        call.insert(position, batch(&moved, ExpectedVersion::Exact(1), events(3)));
        let result = store.append_many(call).await;
        assert_conflict_on(result, &moved, ExpectedVersion::Exact(1), 2);
    }
    let stale_new = store
        .append_many(vec![
            batch(&first, ExpectedVersion::Any, events(1)),
            batch(&moved, ExpectedVersion::NoStream, events(1)),
        ])
        .await;
    assert_conflict_on(stale_new, &moved, ExpectedVersion::NoStream, 2);
    assert_eq!(
        read_everything(&store).await,
        before,
        "a refused call reached $all"
    );
    assert_eq!(
        version(&store, &first).await,
        0,
        "a refused call wrote to another stream"
    );
    assert_eq!(
        version(&store, &last).await,
        0,
        "a refused call wrote to another stream"
    );
    assert_eq!(version(&store, &moved).await, 2);
}

/// Each batch is checked against its own stream's version only, and each
/// result holds its own stream's new version.
pub async fn append_many_checks_each_stream_against_its_own_version<S: EventStore>(store: S) {
    let (fresh, at_two, at_five) = (stream("own-fresh"), stream("own-two"), stream("own-five"));
    append(&store, &at_two, ExpectedVersion::Any, events(2)).await;
    append(&store, &at_five, ExpectedVersion::Any, events(5)).await;
    let results = append_many(
        &store,
        vec![
            batch(&at_five, ExpectedVersion::Exact(5), events(1)),
            batch(&fresh, ExpectedVersion::NoStream, events(3)),
            batch(&at_two, ExpectedVersion::Exact(2), events(2)),
        ],
    )
    .await;
    let versions: Vec<u64> = results.iter().map(|result| result.stream_version).collect();
    assert_eq!(versions, [6, 3, 4], "each result holds its own stream's version");
    let counts: Vec<usize> = results.iter().map(|result| result.positions.len()).collect();
    assert_eq!(counts, [1, 3, 2]);
    let results = append_many(
        &store,
        vec![
            batch(&fresh, ExpectedVersion::Exact(3), events(1)),
            batch(&at_two, ExpectedVersion::Any, events(1)),
            batch(&at_five, ExpectedVersion::Exact(6), events(1)),
        ],
    )
    .await;
    let versions: Vec<u64> = results.iter().map(|result| result.stream_version).collect();
    assert_eq!(versions, [4, 5, 7]);
    for (stream, expected) in [(&fresh, 4), (&at_two, 5), (&at_five, 7)] {
        let stored: Vec<u64> = read_stream(&store, stream, 1)
            .await
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(stored, (1..=expected).collect::<Vec<_>>(), "versions of {stream}");
    }
}

/// A batch without events writes nothing but checks its stream's version:
/// a guard on an aggregate the call does not change.
pub async fn append_many_batch_without_events_checks_its_version<S: EventStore>(store: S) {
    let (guarded, written) = (stream("guard"), stream("guard-written"));
    append(&store, &guarded, ExpectedVersion::Any, events(2)).await;
    let stale = store
        .append_many(vec![
            batch(&written, ExpectedVersion::NoStream, events(2)),
            batch(&guarded, ExpectedVersion::Exact(1), Vec::new()),
        ])
        .await;
    assert_conflict_on(stale, &guarded, ExpectedVersion::Exact(1), 2);
    assert_eq!(
        version(&store, &written).await,
        0,
        "a failed guard let a batch through"
    );
    let results = append_many(
        &store,
        vec![
            batch(&written, ExpectedVersion::NoStream, events(2)),
            batch(&guarded, ExpectedVersion::Exact(2), Vec::new()),
        ],
    )
    .await;
    assert_eq!(results[0].stream_version, 2);
    assert_eq!(
        results[1],
        AppendResult {
            stream_version: 2,
            positions: Vec::new()
        }
    );
    assert_eq!(read_everything(&store).await.len(), 4);
}

/// The positions a call returns are where `read_all` finds its events, in
/// batch order, each with its stream and version.
pub async fn append_many_positions_match_read_all<S: EventStore>(store: S) {
    let (first, second) = (stream("positions-a"), stream("positions-b"));
    append(&store, &first, ExpectedVersion::Any, events(1)).await;
    let call = vec![
        batch(&second, ExpectedVersion::NoStream, events(2)),
        batch(&first, ExpectedVersion::Exact(1), events(3)),
    ];
    let expected: Vec<(StreamId, u64, Uuid)> = call
        .iter()
        .flat_map(|batch| {
            let first_version = if batch.stream == first { 2 } else { 1 };
            (first_version..)
                .zip(&batch.events)
                .map(|(version, event)| (batch.stream.clone(), version, event.event_id))
        })
        .collect();
    let results = append_many(&store, call).await;
    let positions: Vec<u64> = results
        .iter()
        .flat_map(|result| result.positions.clone())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "positions follow batch order: {positions:?}"
    );
    let log: HashMap<u64, RecordedEvent> = read_everything(&store)
        .await
        .into_iter()
        .map(|event| (event.position, event))
        .collect();
    for (position, (stream, version, event_id)) in positions.iter().zip(expected) {
        let event = log
            .get(position)
            .unwrap_or_else(|| panic!("no event at returned position {position}"));
        assert_eq!(
            (&event.stream, event.version, event.event_id),
            (&stream, version, event_id)
        );
    }
}

/// Retrying a call whose events are stored (an answer lost on the way)
/// returns the original results for every batch and writes nothing, with
/// the first attempt's expected versions or any others; a call that mixes
/// stored batches with a new one is refused and writes nothing.
pub async fn append_many_retry_returns_the_original_positions<S: EventStore>(store: S) {
    let (first, second, guarded) = (stream("retry-a"), stream("retry-b"), stream("retry-guard"));
    append(&store, &second, ExpectedVersion::Any, events(1)).await;
    let call = vec![
        batch(&first, ExpectedVersion::NoStream, events(2)),
        batch(&second, ExpectedVersion::Exact(1), events(1)),
        batch(&guarded, ExpectedVersion::NoStream, Vec::new()),
    ];
    let original = append_many(&store, call.clone()).await;
    let log = read_everything(&store).await;
    assert_eq!(
        append_many(&store, call.clone()).await,
        original,
        "a retry of the same call"
    );
    let mut any = call.clone();
    for batch in &mut any {
        batch.expected = ExpectedVersion::Any;
    }
    assert_eq!(
        append_many(&store, any).await,
        original,
        "a retry with ExpectedVersion::Any"
    );
    assert_eq!(read_everything(&store).await, log, "a retry wrote to $all");

    let mut mixed = call;
    mixed[1] = batch(&second, ExpectedVersion::Any, events(1));
    let result = store.append_many(mixed).await;
    assert!(
        matches!(&result, Err(Error::InvalidRequest { stream, .. }) if *stream == second),
        "stored batches beside a new one: expected InvalidRequest naming {second}, got {result:?}"
    );
    assert_eq!(read_everything(&store).await, log, "a mixed call wrote to $all");
}

/// Bad input is a typed error and writes nothing: no batches, a stream in
/// two batches, an event id twice in one call.
pub async fn append_many_refuses_bad_input<S: EventStore>(store: S) {
    let (first, twice) = (stream("bad-a"), stream("bad-twice"));
    let empty = store.append_many(Vec::new()).await;
    assert!(
        matches!(empty, Err(Error::EmptyBatchList)),
        "no batches: got {empty:?}"
    );

    let duplicate = store
        .append_many(vec![
            batch(&twice, ExpectedVersion::Any, events(1)),
            batch(&first, ExpectedVersion::Any, events(1)),
            batch(&twice, ExpectedVersion::Any, events(1)),
        ])
        .await;
    match duplicate {
        Err(Error::DuplicateStream { stream }) => assert_eq!(stream, twice),
        other => panic!("a stream twice: expected DuplicateStream naming {twice}, got {other:?}"),
    }
    let error = Error::DuplicateStream {
        stream: twice.clone(),
    };
    assert!(error.to_string().contains(&twice.to_string()), "{error}");

    let repeated = added(1);
    let result = store
        .append_many(vec![
            batch(&first, ExpectedVersion::Any, vec![repeated.clone()]),
            batch(&twice, ExpectedVersion::Any, vec![added(2), repeated]),
        ])
        .await;
    assert!(
        matches!(&result, Err(Error::InvalidRequest { stream, .. }) if *stream == twice),
        "an event id in two batches: expected InvalidRequest naming {twice}, got {result:?}"
    );
    assert!(read_everything(&store).await.is_empty(), "bad input reached $all");
    assert_eq!(version(&store, &first).await, 0);
    assert_eq!(version(&store, &twice).await, 0);
    let later = append_many(&store, vec![batch(&first, ExpectedVersion::NoStream, events(1))]).await;
    assert_eq!(
        later[0].stream_version, 1,
        "a refused call left its events' ids taken"
    );
}

/// Concurrent atomic writers (on private and shared streams, in varying
/// stream order) against two readers: a `read_all` loop that, each time it
/// catches up, has seen every call it has seen at all whole, and a live
/// subscription. Both deliver every call whole, in batch order, once.
pub async fn readers_never_see_half_of_an_atomic_append<S: EventStore + Clone>(store: S) {
    let log = atomic_workload(&store).await;
    for call in calls(&log).values() {
        let positions: Vec<u64> = call.iter().map(|event| event.position).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    }
}

/// For stores that promise it (in memory, SQLite): the positions of one
/// call are contiguous in `$all`, under the same concurrent workload as
/// [`readers_never_see_half_of_an_atomic_append`]. Listed by
/// [`contiguous_append_suite!`](crate::contiguous_append_suite), not by the
/// suite every store runs: PostgreSQL keeps the global order exact, and
/// concurrent calls may interleave there.
pub async fn atomic_appends_are_contiguous<S: EventStore + Clone>(store: S) {
    let log = atomic_workload(&store).await;
    for (call, events) in calls(&log) {
        let first = events[0].position;
        let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
        let contiguous: Vec<u64> = (first..first + events.len() as u64).collect();
        assert_eq!(positions, contiguous, "the positions of call {call}");
    }
}

const WRITERS: usize = 4;
const CALLS_EACH: usize = 40;
const SHARED_STREAMS: usize = 3;
/// Events per call, by call number: 2 to 4 over 2 streams.
const SIZES: [usize; 3] = [2, 3, 4];
const TOTAL: usize = total_events();

const fn total_events() -> usize {
    let (mut total, mut call) = (0, 0);
    while call < CALLS_EACH {
        total += SIZES[call % SIZES.len()];
        call += 1;
    }
    total * WRITERS
}

/// The user metadata keys that tie an event to its call.
const CALL: &str = "call";
const CALL_SIZE: &str = "call_size";

/// Runs the workload and checks what every store promises; returns the log.
async fn atomic_workload<S: EventStore + Clone>(store: &S) -> Vec<RecordedEvent> {
    let shared: Vec<StreamId> = (0..SHARED_STREAMS)
        .map(|n| stream(&format!("shared-{n}")))
        .collect();
    let subscriber = tokio::spawn(subscribe(store.subscribe_all(0)));
    let poller = tokio::spawn(poll_whole_calls(store.clone()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| tokio::spawn(write_calls(store.clone(), writer, shared.clone())))
        .collect();
    let mut returned = HashMap::new();
    for writer in writers {
        let positions = writer
            .await
            .unwrap_or_else(|error| panic!("writer panicked: {error}"));
        returned.extend(positions);
    }
    let log = read_everything(store).await;
    assert_eq!(log.len(), TOTAL, "events lost or duplicated");
    for event in &log {
        assert_eq!(
            returned.get(&event.event_id),
            Some(&event.position),
            "returned positions"
        );
    }
    for (reader, task) in [("subscription", subscriber), ("read_all loop", poller)] {
        let seen = task
            .await
            .unwrap_or_else(|error| panic!("{reader} panicked: {error}"));
        assert_eq!(seen, log, "the {reader} differs from the log");
    }
    log
}

/// One writer's calls, each over its private stream and a shared one (the
/// order alternating), with `ExpectedVersion::Any`; the position of every
/// event by id.
async fn write_calls<S: EventStore>(store: S, writer: usize, shared: Vec<StreamId>) -> HashMap<Uuid, u64> {
    let private = stream(&format!("private-{writer}"));
    let mut positions = HashMap::new();
    for number in 0..CALLS_EACH {
        let call = Uuid::now_v7().to_string();
        let size = SIZES[number % SIZES.len()];
        let tagged = |count: usize| -> Vec<NewEvent> {
            let metadata = Metadata::default()
                .with(CALL, call.as_str())
                .with(CALL_SIZE, size);
            events(count)
                .into_iter()
                .map(|event| event.with_metadata(metadata.clone()))
                .collect()
        };
        let mut batches = vec![
            batch(&private, ExpectedVersion::Any, tagged(size / 2)),
            batch(
                &shared[(writer + number) % shared.len()],
                ExpectedVersion::Any,
                tagged(size - size / 2),
            ),
        ];
        if number % 2 == 1 {
            batches.reverse();
        }
        let ids: Vec<Uuid> = batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.event_id))
            .collect();
        let results = append_many(&store, batches).await;
        let returned = results.iter().flat_map(|result| result.positions.iter().copied());
        positions.extend(ids.into_iter().zip(returned));
        tokio::task::yield_now().await;
    }
    positions
}

/// The events of each call, in log order, by call id.
fn calls(log: &[RecordedEvent]) -> HashMap<String, Vec<&RecordedEvent>> {
    let mut calls: HashMap<String, Vec<&RecordedEvent>> = HashMap::new();
    for event in log {
        calls.entry(call_of(event).0).or_default().push(event);
    }
    for (call, events) in &calls {
        assert_eq!(events.len(), call_of(events[0]).1, "call {call} is stored whole");
    }
    calls
}

/// The call an event belongs to and the number of events of that call.
fn call_of(event: &RecordedEvent) -> (String, usize) {
    let user = &event.metadata.user;
    let call = user.get(CALL).and_then(|value| value.as_str());
    let size = user.get(CALL_SIZE).and_then(serde_json::Value::as_u64);
    match (call, size) {
        (Some(call), Some(size)) => (call.to_owned(), size as usize),
        _ => panic!("event at position {} lost its call metadata", event.position),
    }
}

/// A live subscription's first [`TOTAL`] events.
async fn subscribe(mut subscription: crate::EventStream<'static>) -> Vec<RecordedEvent> {
    let mut seen = Vec::with_capacity(TOTAL);
    while seen.len() < TOTAL {
        match subscription.next().await {
            Some(Ok(event)) => seen.push(event),
            Some(Err(error)) => panic!("subscription failed: {error}"),
            None => panic!("subscription ended on its own"),
        }
    }
    seen
}

/// Reads `$all` in small pages until [`TOTAL`] events; whenever a page
/// comes back short (the reader caught up with what is readable), every
/// call seen so far must be whole.
async fn poll_whole_calls<S: EventStore>(store: S) -> Vec<RecordedEvent> {
    const PAGE: usize = 7;
    let mut seen: Vec<RecordedEvent> = Vec::with_capacity(TOTAL);
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    while seen.len() < TOTAL {
        let after = seen.last().map_or(0, |event| event.position);
        let page = store
            .read_all(after, PAGE)
            .await
            .unwrap_or_else(|error| panic!("reading $all failed: {error}"));
        let short = page.len() < PAGE;
        for event in page {
            let (call, size) = call_of(&event);
            counts.entry(call).or_insert((0, size)).0 += 1;
            seen.push(event);
        }
        if short {
            for (call, (count, size)) in &counts {
                assert_eq!(count, size, "a reader caught up with part of call {call}");
            }
            tokio::task::yield_now().await;
        }
    }
    seen
}
