//! The transactional outbox relayed to a real Kafka-protocol broker and
//! read back by a consumer, on SQLite and PostgreSQL: content and key,
//! per-aggregate order, a relay killed between publish and mark, two
//! relays at once, and a message the broker refuses. Needs a broker at
//! `FACTUM_KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`) and PostgreSQL at
//! `FACTUM_POSTGRES_URL`; skipped without them, except under `CI=true`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::stores::{self, drained, quick};
use common::{Received, bootstrap, builder, fresh_topic, notifier, read_until};
use factum_core::testing::outbox::Watched;
use factum_core::{
    EventStore, ExpectedVersion, Metadata, NewEvent, Outbox, Payload, PublishError, Publisher, RecordedEvent,
    StreamId,
};
use factum_kafka::KafkaNotifier;
use serde_json::json;
use tokio::sync::{Barrier, Notify};
use uuid::Uuid;

fn deposit(amount: u64) -> NewEvent {
    NewEvent::new(
        "deposited",
        Payload::encode(&json!({ "amount": amount })).unwrap(),
    )
}

async fn append<S: EventStore>(store: &S, account: &str, events: Vec<NewEvent>) {
    store
        .append(&StreamId::new("Account", account), ExpectedVersion::Any, events)
        .await
        .unwrap_or_else(|error| panic!("appending to {account} failed: {error}"));
}

/// Appends `per_account` events to each of `accounts`, one at a time and
/// interleaved.
async fn interleave<S: EventStore>(store: &S, accounts: usize, per_account: u64) {
    for version in 1..=per_account {
        for account in 0..accounts {
            append(store, &format!("acct-{account}"), vec![deposit(version)]).await;
        }
    }
}

async fn stored<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    store.read_all(0, 100_000).await.expect("reading $all")
}

/// Reads `topic` until every event of `events` has arrived at least once.
async fn read_all_of(topic: &str, partitions: i32, events: &[RecordedEvent]) -> Vec<Received> {
    let wanted: HashSet<Uuid> = events.iter().map(|event| event.event_id).collect();
    let mut seen = HashSet::new();
    read_until(&bootstrap(), topic, partitions, |received| {
        if let Some(last) = received.last() {
            seen.insert(last.event_id());
        }
        wanted.is_subset(&seen)
    })
    .await
}

/// Checks that each aggregate's messages, as its partition holds them, are
/// its events in version order once duplicates are set aside (the last copy
/// of each comes in order).
fn assert_in_order(received: &[Received], events: &[RecordedEvent]) {
    let versions: HashMap<Uuid, u64> = events
        .iter()
        .map(|event| (event.event_id, event.version))
        .collect();
    let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for message in received {
        let version = versions[&message.event_id()];
        by_key.entry(&message.key).or_default().push(version);
    }
    for (key, versions) in by_key {
        let mut last_copies: Vec<u64> = Vec::new();
        for version in versions.iter().rev() {
            if !last_copies.contains(version) {
                last_copies.push(*version);
            }
        }
        last_copies.reverse();
        let expected: Vec<u64> = (1..=last_copies.len() as u64).collect();
        assert_eq!(last_copies, expected, "order of {key}: {versions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_each_event_with_its_content_and_key() {
    let Some(topic) = fresh_topic("outbox-content", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    let correlation = Uuid::now_v7();
    let metadata = Metadata::default()
        .with_correlation_id(correlation)
        .with("channel", "web");
    append(
        &store,
        "a-1",
        vec![deposit(250).with_metadata(metadata.clone()), deposit(5)],
    )
    .await;
    append(&store, "a-2", vec![deposit(7)]).await;
    let events = stored(&store).await;

    let relay = quick(store.outbox(), notifier(&topic)).spawn();
    drained(&store.outbox(), 0).await;
    relay.shutdown().await.unwrap();
    assert_eq!(relay.metrics().published, 3);

    let received = read_all_of(&topic, 1, &events).await;
    assert_eq!(received.len(), 3, "each event once");
    for (message, event) in received.iter().zip(&events) {
        assert_eq!(message.key, event.aggregate_id());
        assert_eq!(message.value["id"], event.event_id.to_string());
        assert_eq!(message.value["aggregate_type"], "Account");
        assert_eq!(message.value["aggregate_id"], event.aggregate_id());
        assert_eq!(message.value["event_type"], "deposited");
        assert_eq!(message.value["payload"], event.payload.to_value().unwrap());
        assert_eq!(
            message.value["metadata"],
            serde_json::to_value(&event.metadata).unwrap()
        );
    }
    assert_eq!(received[0].value["payload"], json!({"amount": 250}));
    assert!(
        received[0]
            .headers
            .contains(&("correlation_id".to_owned(), correlation.to_string()))
    );
    store.close().await.unwrap();
}

async fn order_with_many_aggregates<O: Outbox + Clone, S: EventStore + Clone + 'static>(
    store: S,
    outbox: O,
    topic: &str,
) {
    let relay = quick(outbox.clone(), notifier(topic)).spawn();
    // Saved while the relay runs: it keeps claiming partial histories.
    interleave(&store, 40, 15).await;
    drained(&outbox, 0).await;
    relay.shutdown().await.unwrap();
    let events = stored(&store).await;
    let received = read_all_of(topic, 4, &events).await;
    assert_eq!(received.len(), events.len(), "no faults, no repeats");
    assert_in_order(&received, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_aggregate_keeps_its_order_on_sqlite() {
    let Some(topic) = fresh_topic("outbox-order-sqlite", 4).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    order_with_many_aggregates(store.clone(), store.outbox(), &topic).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_aggregate_keeps_its_order_on_postgres() {
    let Some(topic) = fresh_topic("outbox-order-postgres", 4).await else {
        return;
    };
    let Some(store) = stores::postgres().await else {
        return;
    };
    order_with_many_aggregates(store.clone(), store.outbox(), &topic).await;
    stores::drop_postgres(store).await;
}

/// How the relay dies right after its first publish, before it marks
/// anything sent.
#[derive(Clone, Copy)]
enum Death {
    /// The publisher panics: the relay's task unwinds and drops its claim.
    Panic,
    /// The publisher never answers, and the task is aborted.
    Abort,
}

/// Publishes through Kafka, then kills the relay the first time.
#[derive(Clone)]
struct DiesAfterPublish {
    inner: KafkaNotifier,
    death: Death,
    died: Arc<AtomicBool>,
    published: Arc<Notify>,
}

impl Publisher for DiesAfterPublish {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        let answers = self.inner.publish(events).await;
        if self.died.swap(true, Ordering::SeqCst) {
            return answers;
        }
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        self.published.notify_one();
        match self.death {
            Death::Panic => panic!("the relay dies between publish and mark (on purpose)"),
            Death::Abort => std::future::pending().await,
        }
    }
}

async fn killed_between_publish_and_mark<O: Outbox + Clone, S: EventStore>(
    store: &S,
    outbox: O,
    topic: &str,
    death: Death,
) {
    interleave(store, 5, 4).await;
    let events = stored(store).await;
    let dying = DiesAfterPublish {
        inner: notifier(topic),
        death,
        died: Arc::default(),
        published: Arc::default(),
    };
    let first = quick(outbox.clone(), dying.clone()).batch_size(8);
    let task = tokio::spawn(first.run(std::future::pending()));
    dying.published.notified().await;
    if let Death::Abort = death {
        task.abort();
    }
    let ended = task.await.expect_err("the relay's task died");
    assert!(ended.is_panic() || ended.is_cancelled());
    assert_eq!(
        outbox.pending().await.unwrap(),
        events.len() as u64,
        "nothing was marked sent"
    );

    let second = quick(outbox.clone(), notifier(topic)).spawn();
    drained(&outbox, 0).await;
    second.shutdown().await.unwrap();

    let received = read_all_of(topic, 1, &events).await;
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    for message in &received {
        *copies.entry(message.event_id()).or_default() += 1;
    }
    let first_batch: Vec<Uuid> = events.iter().take(8).map(|event| event.event_id).collect();
    for id in &first_batch {
        assert_eq!(copies[id], 2, "published, not marked, published again: {id}");
    }
    assert!(
        events.iter().all(|event| copies.contains_key(&event.event_id)),
        "none is lost"
    );
    assert_eq!(received.len(), events.len() + first_batch.len());
    assert_in_order(&received, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_panics_after_publishing_repeats_messages_and_loses_none_on_sqlite() {
    let Some(topic) = fresh_topic("outbox-killed-sqlite", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    killed_between_publish_and_mark(&store, store.outbox(), &topic, Death::Panic).await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_aborted_after_publishing_repeats_messages_and_loses_none_on_postgres() {
    let Some(topic) = fresh_topic("outbox-killed-postgres", 1).await else {
        return;
    };
    let Some(store) = stores::postgres().await else {
        return;
    };
    killed_between_publish_and_mark(&store, store.outbox(), &topic, Death::Abort).await;
    stores::drop_postgres(store).await;
}

/// Holds each relay's first publish until the other relay reaches its own,
/// so the two are publishing at the same time. Without it, on a busy
/// machine one relay can drain the outbox alone and the test would prove
/// nothing about two (a fixed delay only made that rarer).
#[derive(Clone)]
struct Meeting<P> {
    inner: P,
    both_here: Arc<Barrier>,
    arrived: Arc<AtomicBool>,
}

impl<P> Meeting<P> {
    fn pair(inner: P) -> [Self; 2]
    where
        P: Clone,
    {
        let both_here = Arc::new(Barrier::new(2));
        [(); 2].map(|()| Self {
            inner: inner.clone(),
            both_here: Arc::clone(&both_here),
            arrived: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl<P: Publisher> Publisher for Meeting<P> {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        if !self.arrived.swap(true, Ordering::SeqCst) {
            // A relay that never gets a row lets the other go on after the
            // wait; the check that both took part then fails with counts.
            let _ = tokio::time::timeout(Duration::from_secs(20), self.both_here.wait()).await;
        }
        self.inner.publish(events).await
    }
}

async fn two_relays_at_once<O: Outbox + Clone, S: EventStore>(store: &S, first: O, second: O, topic: &str) {
    let watched = Watched::new(notifier(topic));
    let [for_first, for_second] = Meeting::pair(watched.clone());
    let relays = [
        quick(first.clone(), for_first).batch_size(8).spawn(),
        quick(second, for_second).batch_size(8).spawn(),
    ];
    // More aggregates than one relay holds (two claims of 8): while one
    // waits at the meeting, the other always finds an aggregate whose next
    // entry nobody holds, since an entry waits for its predecessor's relay.
    interleave(store, 24, 5).await;
    drained(&first, 0).await;
    for relay in &relays {
        relay.shutdown().await.unwrap();
    }
    assert!(
        relays.iter().all(|relay| relay.metrics().published > 0),
        "both relays took part: {:?}",
        relays
            .iter()
            .map(|relay| relay.metrics().published)
            .collect::<Vec<_>>()
    );
    assert!(
        watched.overlaps().is_empty(),
        "published by both at once: {:?}",
        watched.overlaps()
    );
    let events = stored(store).await;
    let received = read_all_of(topic, 3, &events).await;
    assert_eq!(received.len(), events.len(), "each event once");
    assert_in_order(&received, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_sqlite_file_never_publish_a_row_at_once() {
    let Some(topic) = fresh_topic("outbox-two-sqlite", 3).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    let other_process = stores::sqlite(&dir).await;
    two_relays_at_once(&store, store.outbox(), other_process.outbox(), &topic).await;
    store.close().await.unwrap();
    other_process.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_postgres_schema_never_publish_a_row_at_once() {
    let Some(topic) = fresh_topic("outbox-two-postgres", 3).await else {
        return;
    };
    let Some(store) = stores::postgres().await else {
        return;
    };
    let other_process = stores::postgres_twin(&store).await;
    two_relays_at_once(&store, store.outbox(), other_process.outbox(), &topic).await;
    other_process.close().await.unwrap();
    stores::drop_postgres(store).await;
}

/// A message larger than the broker takes is parked with the reason,
/// listed, counted as pending, and never dropped; it does not hold back the
/// rest of its aggregate. Requeued, it is tried again (and parked again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_is_parked_with_its_error() {
    let Some(topic) = fresh_topic("outbox-too-large", 1).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = stores::sqlite(&dir).await;
    let outbox = store.outbox();
    let large = NewEvent::new(
        "deposited",
        Payload::encode(&json!({ "scan": "x".repeat(20_000) })).unwrap(),
    );
    append(&store, "a-1", vec![deposit(1)]).await;
    append(&store, "a-2", vec![large, deposit(2)]).await;
    append(&store, "a-3", vec![deposit(3)]).await;
    let events = stored(&store).await;
    let small = builder(&topic).set("message.max.bytes", "10000").build().unwrap();

    let relay = quick(outbox.clone(), small.clone()).spawn();
    drained(&outbox, 1).await;
    let parked = outbox.parked(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    let (entry, reason) = &parked[0];
    assert_eq!(entry.event.event_id, events[1].event_id);
    assert_eq!(entry.attempts, 1);
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(outbox.pending().await.unwrap(), 1, "kept, not dropped");

    let others: Vec<RecordedEvent> = events
        .iter()
        .filter(|event| event.event_id != entry.event.event_id)
        .cloned()
        .collect();
    let received = read_all_of(&topic, 1, &others).await;
    assert_eq!(received.len(), 3);

    assert!(outbox.requeue(entry.id).await.unwrap());
    tokio::time::timeout(stores::PATIENCE, async {
        while relay.metrics().parked < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the requeued message is tried again");
    relay.shutdown().await.unwrap();
    assert_eq!(outbox.parked(10).await.unwrap()[0].0.attempts, 2);
    assert_eq!(relay.metrics().published, 3);
    store.close().await.unwrap();
}
