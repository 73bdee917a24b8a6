//! Subscriptions to one stream, and to the global log from a [`Start`].

use std::time::Duration;

use futures::StreamExt;

use super::{added, append, events, read_everything, read_stream, stream};
use crate::{EventStore, EventStream, ExpectedVersion, RecordedEvent, Start, StreamId};

/// How long a live event may take to arrive before the check fails.
const LIVE: Duration = Duration::from_secs(10);

/// The next `count` events of `subscription`; fails on an error, an end,
/// or a wait longer than [`LIVE`] for one event.
async fn take(subscription: &mut EventStream<'static>, count: usize) -> Vec<RecordedEvent> {
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        match tokio::time::timeout(LIVE, subscription.next()).await {
            Ok(Some(Ok(event))) => taken.push(event),
            Ok(Some(Err(error))) => panic!("the subscription failed: {error}"),
            Ok(None) => panic!("the subscription ended on its own"),
            Err(_) => panic!(
                "no event within {LIVE:?}; got {} of {count}: {taken:?}",
                taken.len()
            ),
        }
    }
    taken
}

/// Polls `subscription` while nothing is written for it, so it is waiting
/// (not reading) when the next event comes; fails if it hands anything out.
async fn idle(subscription: &mut EventStream<'static>) {
    let early = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
    assert!(
        early.is_err(),
        "the subscription handed out an event nobody wrote for it: {early:?}"
    );
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.version).collect()
}

async fn subscribe<S: EventStore>(store: &S, start: Start) -> EventStream<'static> {
    store
        .subscribe(start)
        .await
        .unwrap_or_else(|error| panic!("subscribing from {start:?} failed: {error}"))
}

/// `subscribe_stream` hands out the stored events from its version, then
/// the new ones while writers go on, with no gap and no duplicate at the
/// hand-over, and keeps going without a new subscription.
pub async fn subscribe_stream_catches_up_then_goes_live<S: EventStore + Clone>(store: S) {
    const BEFORE: u64 = 120;
    const DURING: u64 = 120;
    let followed = stream("followed");
    let other = stream("other");
    for _ in 0..BEFORE / 20 {
        append(&store, &followed, ExpectedVersion::Any, events(20)).await;
        append(&store, &other, ExpectedVersion::Any, events(3)).await;
    }
    let mut subscription = store.subscribe_stream(&followed, 3);
    let writer = {
        let store = store.clone();
        let (followed, other) = (followed.clone(), other.clone());
        tokio::spawn(async move {
            for _ in 0..DURING {
                append(&store, &followed, ExpectedVersion::Any, events(1)).await;
                append(&store, &other, ExpectedVersion::Any, events(1)).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let seen = take(&mut subscription, (BEFORE + DURING - 2) as usize).await;
    writer
        .await
        .unwrap_or_else(|error| panic!("the writer panicked: {error}"));
    assert_eq!(
        seen,
        read_stream(&store, &followed, 3).await,
        "the subscription differs from the stream read from version 3"
    );
    assert_eq!(versions(&seen), (3..=BEFORE + DURING).collect::<Vec<_>>());

    // Waiting: another stream's event does not count; the next one of its
    // own stream wakes it.
    let late = added(42);
    let late_id = late.event_id;
    append(&store, &other, ExpectedVersion::Any, events(1)).await;
    idle(&mut subscription).await;
    append(&store, &followed, ExpectedVersion::Any, vec![late]).await;
    let next = take(&mut subscription, 1).await;
    assert_eq!(
        next[0].event_id, late_id,
        "the live event is not the stream's next"
    );
}

/// `subscribe_stream` hands out only its stream's events: not those of
/// another stream, even one with the same aggregate id under another
/// aggregate type, or the same type with a longer id.
pub async fn subscribe_stream_ignores_other_streams<S: EventStore>(store: S) {
    let followed = stream("only");
    let neighbours = [
        StreamId::new("Other", followed.aggregate_id()),
        StreamId::new(followed.aggregate_type(), format!("{}0", followed.aggregate_id())),
    ];
    append(&store, &neighbours[0], ExpectedVersion::Any, events(2)).await;
    append(&store, &followed, ExpectedVersion::Any, events(1)).await;
    append(&store, &neighbours[1], ExpectedVersion::Any, events(2)).await;
    let mut subscription = store.subscribe_stream(&followed, 0);
    let caught_up = take(&mut subscription, 1).await;
    for neighbour in &neighbours {
        append(&store, neighbour, ExpectedVersion::Any, events(3)).await;
    }
    append(&store, &followed, ExpectedVersion::Any, events(1)).await;
    let live = take(&mut subscription, 1).await;
    for event in caught_up.iter().chain(&live) {
        assert_eq!(event.stream, followed, "an event of another stream: {event:?}");
    }
    assert_eq!(versions(&caught_up), [1]);
    assert_eq!(versions(&live), [2]);
}

/// `subscribe_stream(stream, v)` starts at version `v`; 0 and 1 both mean
/// the first event, and a version beyond the end waits for that version.
pub async fn subscribe_stream_starts_at_its_version<S: EventStore>(store: S) {
    let followed = stream("from-version");
    append(&store, &followed, ExpectedVersion::Any, events(5)).await;
    for (from_version, first) in [(0, 1), (1, 1), (4, 4), (5, 5)] {
        let mut subscription = store.subscribe_stream(&followed, from_version);
        let taken = take(&mut subscription, (6 - first) as usize).await;
        assert_eq!(
            versions(&taken),
            (first..=5).collect::<Vec<_>>(),
            "subscribed from version {from_version}"
        );
    }
    let mut ahead = store.subscribe_stream(&followed, 8);
    append(&store, &followed, ExpectedVersion::Exact(5), events(4)).await;
    assert_eq!(versions(&take(&mut ahead, 2).await), [8, 9]);
}

/// A subscription to a stream that does not exist yet hands out its first
/// event once it is written.
pub async fn subscribe_stream_follows_a_stream_created_later<S: EventStore>(store: S) {
    let followed = stream("not-yet");
    let mut subscription = store.subscribe_stream(&followed, 0);
    append(&store, &stream("unrelated"), ExpectedVersion::Any, events(2)).await;
    idle(&mut subscription).await;
    let created = append(&store, &followed, ExpectedVersion::NoStream, events(2)).await;
    let taken = take(&mut subscription, 2).await;
    assert_eq!(versions(&taken), [1, 2]);
    let positions: Vec<u64> = taken.iter().map(|event| event.position).collect();
    assert_eq!(positions, created.positions);
}

/// [`Start::End`] reads the head during the call to `subscribe`: the
/// events committed after the call, and none before it, are handed out.
/// [`Start::Beginning`] is the whole log.
pub async fn subscribe_from_the_end_hands_out_only_later_events<S: EventStore>(store: S) {
    let stream = stream("from-end");
    append(&store, &stream, ExpectedVersion::Any, events(3)).await;
    let mut from_end = subscribe(&store, Start::End).await;
    let mut from_beginning = subscribe(&store, Start::Beginning).await;
    let later = append(&store, &stream, ExpectedVersion::Exact(3), events(2)).await;
    let taken = take(&mut from_end, 2).await;
    let positions: Vec<u64> = taken.iter().map(|event| event.position).collect();
    assert_eq!(positions, later.positions, "from the end");
    assert_eq!(versions(&taken), [4, 5]);
    assert_eq!(take(&mut from_beginning, 5).await, read_everything(&store).await);
}

/// [`Start::After`] is [`subscribe_all`](EventStore::subscribe_all) from
/// that position.
pub async fn subscribe_after_a_position_equals_subscribe_all<S: EventStore>(store: S) {
    append(&store, &stream("after-a"), ExpectedVersion::Any, events(3)).await;
    append(&store, &stream("after-b"), ExpectedVersion::Any, events(3)).await;
    let all = read_everything(&store).await;
    let after = all[1].position;
    let mut started = subscribe(&store, Start::After(after)).await;
    let mut subscribed = store.subscribe_all(after);
    let from_start = take(&mut started, 4).await;
    assert_eq!(from_start, all[2..].to_vec());
    assert_eq!(from_start, take(&mut subscribed, 4).await);
}
