//! The relay against a small outbox and publisher kept in memory: what it
//! publishes, retries, parks and prunes.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::{NewEvent, Payload, PendingAnswers, RecordedEvent};

#[derive(Clone, Debug)]
struct Row {
    entry: OutboxEntry,
    sent_at: Option<OffsetDateTime>,
    parked: Option<String>,
    claimed: bool,
}

#[derive(Clone, Default)]
struct MemoryOutbox {
    rows: Arc<Mutex<Vec<Row>>>,
    /// Finishes that fail (recording nothing) before they work again.
    failing_finishes: Arc<Mutex<u32>>,
    /// When set, claims and finishes take time, as a database's do.
    slow: Option<Arc<Slow>>,
}

/// Claims and finishes that take `delay`, and how many were ever under
/// way at once.
#[derive(Default)]
struct Slow {
    delay: Duration,
    under_way: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Slow {
    async fn take_time(slow: Option<&Slow>) {
        let Some(slow) = slow else { return };
        let now = slow.under_way.fetch_add(1, Ordering::SeqCst) + 1;
        slow.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(slow.delay).await;
        slow.under_way.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MemoryOutbox {
    fn with_events(events: &[(&str, u64)]) -> Self {
        let outbox = Self::default();
        let rows = events
            .iter()
            .enumerate()
            .map(|(index, (stream, version))| {
                let position = index as u64 + 1;
                let event = NewEvent::new("added", Payload::parse("{}").unwrap()).recorded(
                    StreamId::new("Tally", *stream),
                    *version,
                    position,
                );
                Row {
                    entry: OutboxEntry::new(position, event, 0),
                    sent_at: None,
                    parked: None,
                    claimed: false,
                }
            })
            .collect();
        *outbox.rows.lock().unwrap() = rows;
        outbox
    }

    fn sent(&self) -> usize {
        self.rows
            .lock()
            .unwrap()
            .iter()
            .filter(|row| row.sent_at.is_some())
            .count()
    }
}

struct MemoryClaim {
    rows: Arc<Mutex<Vec<Row>>>,
    failing_finishes: Arc<Mutex<u32>>,
    slow: Option<Arc<Slow>>,
    entries: Vec<OutboxEntry>,
}

impl OutboxClaim for MemoryClaim {
    fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    async fn finish(self, outcomes: Vec<Outcome>) -> Result<(), Error> {
        if !outcomes.is_empty() {
            Slow::take_time(self.slow.as_deref()).await;
        }
        let mut rows = self.rows.lock().unwrap();
        for entry in &self.entries {
            rows.iter_mut()
                .find(|row| row.entry.id == entry.id)
                .unwrap()
                .claimed = false;
        }
        let mut failing = self.failing_finishes.lock().unwrap();
        if *failing > 0 && !outcomes.is_empty() {
            *failing -= 1;
            return Err(Error::store("memory", "the database is gone for a moment"));
        }
        for (entry, outcome) in self.entries.iter().zip(outcomes) {
            let row = rows.iter_mut().find(|row| row.entry.id == entry.id).unwrap();
            match outcome {
                Outcome::Sent => row.sent_at = Some(OffsetDateTime::now_utc()),
                Outcome::Retry(_) => row.entry.attempts += 1,
                Outcome::Park(reason) => row.parked = Some(reason),
            }
        }
        Ok(())
    }
}

impl Outbox for MemoryOutbox {
    type Claim = MemoryClaim;

    async fn claim(&self, limit: usize) -> Result<MemoryClaim, Error> {
        Slow::take_time(self.slow.as_deref()).await;
        let mut rows = self.rows.lock().unwrap();
        let mut entries = Vec::new();
        for row in rows.iter_mut() {
            if entries.len() < limit && row.sent_at.is_none() && row.parked.is_none() && !row.claimed {
                row.claimed = true;
                entries.push(row.entry.clone());
            }
        }
        Ok(MemoryClaim {
            rows: Arc::clone(&self.rows),
            failing_finishes: Arc::clone(&self.failing_finishes),
            slow: self.slow.clone(),
            entries,
        })
    }

    async fn prune(&self, sent_before: OffsetDateTime) -> Result<u64, Error> {
        let mut rows = self.rows.lock().unwrap();
        let before = rows.len();
        rows.retain(|row| row.sent_at.is_none_or(|sent| sent >= sent_before));
        Ok((before - rows.len()) as u64)
    }

    async fn parked(&self, limit: usize) -> Result<Vec<(OutboxEntry, String)>, Error> {
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .iter()
            .filter_map(|row| Some((row.entry.clone(), row.parked.clone()?)))
            .take(limit)
            .collect())
    }

    async fn requeue(&self, id: u64) -> Result<bool, Error> {
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|row| row.entry.id == id && row.parked.is_some());
        Ok(row.map(|row| row.parked = None).is_some())
    }

    async fn pending(&self) -> Result<u64, Error> {
        let rows = self.rows.lock().unwrap();
        Ok(rows.iter().filter(|row| row.sent_at.is_none()).count() as u64)
    }
}

/// Records what it published; refuses what it is told to.
#[derive(Clone, Default)]
struct Bus {
    published: Arc<Mutex<Vec<(String, u64)>>>,
    down_for_rounds: Arc<Mutex<u32>>,
    failing: Arc<Mutex<HashMap<(String, u64), PublishErrorKind>>>,
}

#[derive(Clone, Copy)]
enum PublishErrorKind {
    Retriable,
    Rejected,
}

impl Bus {
    fn fail(&self, stream: &str, version: u64, kind: PublishErrorKind) {
        self.failing
            .lock()
            .unwrap()
            .insert((stream.to_owned(), version), kind);
    }

    fn published(&self) -> Vec<(String, u64)> {
        self.published.lock().unwrap().clone()
    }
}

impl Publisher for Bus {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        {
            let mut down = self.down_for_rounds.lock().unwrap();
            if *down > 0 {
                *down -= 1;
                return events
                    .iter()
                    .map(|_| Err(PublishError::retriable("broker down")))
                    .collect();
            }
        }
        let mut failing = self.failing.lock().unwrap();
        events
            .iter()
            .map(|event| {
                let key = (event.aggregate_id().to_owned(), event.version);
                match failing.remove(&key) {
                    Some(PublishErrorKind::Retriable) => Err(PublishError::retriable("timed out")),
                    Some(PublishErrorKind::Rejected) => Err(PublishError::rejected("message too large")),
                    None => {
                        self.published.lock().unwrap().push(key);
                        Ok(())
                    }
                }
            })
            .collect()
    }
}

/// A [`Bus`] that takes events at once and answers 10 ms later, as a
/// broker does: the relay can hand it several batches before the first
/// answer. Counts the most batches it held unanswered at once.
#[derive(Clone, Default)]
struct Later {
    bus: Bus,
    unanswered: Arc<Mutex<(usize, usize)>>,
}

impl Later {
    fn most_unanswered(&self) -> usize {
        self.unanswered.lock().unwrap().1
    }
}

impl Publisher for Later {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        self.enqueue(events).await.await
    }

    async fn enqueue(&self, events: &[RecordedEvent]) -> PendingAnswers {
        let answers = self.bus.publish(events).await;
        {
            let mut unanswered = self.unanswered.lock().unwrap();
            unanswered.0 += 1;
            unanswered.1 = unanswered.1.max(unanswered.0);
        }
        let unanswered = Arc::clone(&self.unanswered);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            unanswered.lock().unwrap().0 -= 1;
            answers
        })
    }
}

/// Runs a relay in batches of two until `count` entries are sent, then
/// stops it; what it counted.
async fn relay_in_pairs(outbox: &MemoryOutbox, bus: &Later, count: usize) -> RelayMetrics {
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
        .batch_size(2)
        .spawn();
    sent(outbox, count).await;
    handle.shutdown().await.unwrap();
    handle.metrics()
}

fn quick<O: Outbox, P: Publisher>(relay: OutboxRelay<O, P>) -> OutboxRelay<O, P> {
    relay.poll_interval(Duration::from_millis(5)).backoff(
        RetryPolicy::default()
            .base_delay(Duration::from_millis(5))
            .max_delay(Duration::from_millis(20)),
    )
}

fn pairs(items: &[(&str, u64)]) -> Vec<(String, u64)> {
    items
        .iter()
        .map(|(stream, version)| ((*stream).to_owned(), *version))
        .collect()
}

#[tokio::test]
async fn publishes_everything_once_in_order_and_marks_it_sent() {
    let events = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3)];
    let outbox = MemoryOutbox::with_events(&events);
    let bus = Bus::default();
    let relay = OutboxRelay::new(outbox.clone(), bus.clone()).batch_size(2);
    while relay.run_once().await.unwrap() > 0 {}
    assert_eq!(bus.published(), pairs(&events));
    assert_eq!(outbox.sent(), 5);
    assert_eq!(relay.run_once().await.unwrap(), 0, "nothing is published twice");
}

#[tokio::test]
async fn a_broker_outage_delays_messages_and_loses_none() {
    let events = [("a", 1), ("a", 2), ("b", 1)];
    let outbox = MemoryOutbox::with_events(&events);
    let bus = Bus::default();
    *bus.down_for_rounds.lock().unwrap() = 4;
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone())).spawn();
    tokio::time::timeout(Duration::from_secs(10), async {
        while outbox.sent() < events.len() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay recovers after the outage");
    handle.shutdown().await.unwrap();
    assert_eq!(bus.published(), pairs(&events));
    let metrics = handle.metrics();
    assert_eq!(
        metrics.retried, 12,
        "three entries retried in each of four rounds"
    );
    assert_eq!(metrics.failing_rounds, 0, "healthy again");
    assert_eq!(metrics.last_error.as_deref(), Some("broker down"));
}

#[tokio::test]
async fn a_retried_event_holds_back_the_rest_of_its_aggregate_only() {
    let outbox = MemoryOutbox::with_events(&[("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]);
    let bus = Bus::default();
    bus.fail("a", 2, PublishErrorKind::Retriable);
    let relay = OutboxRelay::new(outbox.clone(), bus.clone());
    relay.run_once().await.unwrap();
    assert_eq!(bus.published(), pairs(&[("a", 1), ("b", 1), ("a", 3), ("b", 2)]));
    assert_eq!(outbox.sent(), 3, "a-3 went out but stays unsent behind a-2");
    relay.run_once().await.unwrap();
    let published = bus.published();
    assert_eq!(
        published[4..],
        pairs(&[("a", 2), ("a", 3)]),
        "a-2, then a-3 again"
    );
    assert_eq!(outbox.sent(), 5);
}

#[tokio::test]
async fn a_refused_message_is_parked_with_its_error_and_can_be_requeued() {
    let outbox = MemoryOutbox::with_events(&[("a", 1), ("a", 2), ("b", 1)]);
    let bus = Bus::default();
    bus.fail("a", 1, PublishErrorKind::Rejected);
    let relay = OutboxRelay::new(outbox.clone(), bus.clone());
    relay.run_once().await.unwrap();
    assert_eq!(bus.published(), pairs(&[("a", 2), ("b", 1)]));
    let parked = outbox.parked(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].1, "message too large");
    assert_eq!(outbox.pending().await.unwrap(), 1, "kept, not dropped");

    assert!(outbox.requeue(parked[0].0.id).await.unwrap());
    relay.run_once().await.unwrap();
    assert_eq!(bus.published().last(), Some(&("a".to_owned(), 1)));
    assert_eq!(outbox.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn sent_entries_older_than_the_retention_are_pruned() {
    let outbox = MemoryOutbox::with_events(&[("a", 1), ("a", 2)]);
    let bus = Bus::default();
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
        .retention(Some(Duration::ZERO))
        .prune_every(Duration::from_millis(5))
        .spawn();
    tokio::time::timeout(Duration::from_secs(10), async {
        while handle.metrics().pruned < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both sent entries are pruned");
    handle.shutdown().await.unwrap();
    assert!(outbox.rows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn missing_answers_are_retried() {
    let entries = MemoryOutbox::with_events(&[("a", 1), ("b", 1)])
        .rows
        .lock()
        .unwrap()
        .clone();
    let entries: Vec<OutboxEntry> = entries.into_iter().map(|row| row.entry).collect();
    let outcomes = outcomes(&entries, vec![Ok(())], &mut HashSet::new());
    assert_eq!(outcomes[0], Outcome::Sent);
    assert!(matches!(outcomes[1], Outcome::Retry(_)));
}

#[tokio::test]
async fn run_stops_when_its_shutdown_completes() {
    let outbox = MemoryOutbox::with_events(&[("a", 1)]);
    let bus = Bus::default();
    let relay = quick(OutboxRelay::new(outbox.clone(), bus.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(relay.run(async {
        stopped.await.ok();
    }));
    tokio::time::sleep(Duration::from_millis(30)).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(bus.published(), pairs(&[("a", 1)]));
}

/// Waits until `outbox` has sent `count` entries.
async fn sent(outbox: &MemoryOutbox, count: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while outbox.sent() < count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the relay sends everything");
}

#[tokio::test]
async fn overlapping_batches_go_out_in_order() {
    let events: Vec<(&str, u64)> = (1..=10)
        .flat_map(|version| [("a", version), ("b", version), ("c", version)])
        .collect();
    let outbox = MemoryOutbox::with_events(&events);
    let bus = Bus::default();
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
        .batch_size(4)
        .spawn();
    sent(&outbox, events.len()).await;
    handle.shutdown().await.unwrap();
    assert_eq!(bus.published(), pairs(&events));
    assert_eq!(handle.metrics().published, 30);
}

/// A [`Bus`] whose hand-over takes time, as encoding and queueing the
/// messages does, counted with the outbox's own claims and finishes.
#[derive(Clone)]
struct SlowToHandOver {
    bus: Bus,
    slow: Arc<Slow>,
}

impl Publisher for SlowToHandOver {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        Slow::take_time(Some(&self.slow)).await;
        self.bus.publish(events).await
    }
}

#[tokio::test]
async fn claiming_marking_and_handing_over_run_at_once() {
    let events: Vec<(&str, u64)> = (1..=6)
        .flat_map(|version| [("a", version), ("b", version)])
        .collect();
    let mut outbox = MemoryOutbox::with_events(&events);
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(10),
        ..Slow::default()
    });
    outbox.slow = Some(Arc::clone(&slow));
    let bus = SlowToHandOver {
        bus: Bus::default(),
        slow: Arc::clone(&slow),
    };
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
        .batch_size(2)
        .in_flight(1)
        .spawn();
    sent(&outbox, events.len()).await;
    handle.shutdown().await.unwrap();
    assert_eq!(bus.bus.published(), pairs(&events));
    assert_eq!(
        slow.most_at_once.load(Ordering::SeqCst),
        3,
        "the next claim, the oldest batch's marks and the hand-over of the batch claimed before were under way at once"
    );
}

#[tokio::test]
async fn a_retry_in_one_batch_holds_its_aggregate_back_in_the_next() {
    // Batches of two: [a1 b1] then, claimed while it is published, [a2 c1].
    let outbox = MemoryOutbox::with_events(&[("a", 1), ("b", 1), ("a", 2), ("c", 1)]);
    let bus = Bus::default();
    bus.fail("a", 1, PublishErrorKind::Retriable);
    let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
        .batch_size(2)
        .spawn();
    sent(&outbox, 4).await;
    handle.shutdown().await.unwrap();
    let published = bus.published();
    let a: Vec<u64> = published
        .iter()
        .filter(|(stream, _)| stream == "a")
        .map(|(_, version)| *version)
        .collect();
    assert_eq!(a, [1, 2], "a2 never went out before a1: {published:?}");
    assert_eq!(
        published.len(),
        4,
        "nothing else needed a second copy: {published:?}"
    );
}

#[tokio::test]
async fn a_batch_published_after_one_that_could_not_be_marked_goes_out_again() {
    let events = [("a", 1), ("b", 1), ("a", 2), ("b", 2)];
    let outbox = MemoryOutbox::with_events(&events);
    *outbox.failing_finishes.lock().unwrap() = 1;
    let bus = Later::default();
    let metrics = relay_in_pairs(&outbox, &bus, 4).await;
    let published = bus.bus.published();
    assert_eq!(
        published,
        pairs(&[
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("b", 2),
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("b", 2)
        ]),
        "both batches again, in order"
    );
    assert_eq!(metrics.failing_rounds, 0);
    assert!(metrics.last_error.unwrap().contains("gone for a moment"));
}

#[test]
fn each_publish_is_a_span_and_its_answers_are_counted() {
    use tracing_subscriber::layer::SubscriberExt;

    use crate::telemetry::capture::{Metrics, SpanCapture};
    use crate::telemetry::names;

    let outbox = MemoryOutbox::with_events(&[("a", 1), ("a", 2), ("b", 1), ("c", 1), ("d", 1)]);
    let bus = Bus::default();
    bus.fail("a", 1, PublishErrorKind::Retriable);
    bus.fail("c", 1, PublishErrorKind::Rejected);
    let relay = OutboxRelay::new(outbox.clone(), bus.clone());

    let capture = SpanCapture::default();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(relay.run_once()).unwrap();
        })
    });

    let spans = capture.named("factum.relay.publish");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let fields = |name| spans[0].field(name);
    assert_eq!(fields("batch_size"), Some("5"));
    assert_eq!(fields("sent"), Some("5"));
    assert_eq!(fields("first_position"), Some("1"));
    assert_eq!(fields("last_position"), Some("5"));
    assert_eq!(fields("published"), Some("3"));
    assert_eq!(fields("failed"), Some("2"));
    let metrics = Metrics::take(&snapshotter);
    assert_eq!(metrics.counter(names::RELAY_PUBLISHED, &[]), 3);
    assert_eq!(
        metrics.counter(names::RELAY_FAILED, &[("reason", "retriable")]),
        1
    );
    assert_eq!(
        metrics.counter(names::RELAY_FAILED, &[("reason", "permanent")]),
        1
    );
}

#[tokio::test]
async fn several_batches_are_out_at_once_and_still_go_out_in_order() {
    let events: Vec<(&str, u64)> = (1..=8)
        .flat_map(|version| [("a", version), ("b", version), ("c", version)])
        .collect();
    for (in_flight, most) in [(1, 1), (3, 3)] {
        let outbox = MemoryOutbox::with_events(&events);
        let bus = Later::default();
        let handle = quick(OutboxRelay::new(outbox.clone(), bus.clone()))
            .batch_size(2)
            .in_flight(in_flight)
            .spawn();
        sent(&outbox, events.len()).await;
        handle.shutdown().await.unwrap();
        assert_eq!(bus.bus.published(), pairs(&events), "in_flight({in_flight})");
        assert_eq!(bus.most_unanswered(), most, "in_flight({in_flight})");
    }
}

#[tokio::test]
async fn a_retry_answered_late_repeats_what_its_aggregate_sent_after_it() {
    // [a1 b1] is out when [a2 c1] goes: a1 fails, a2 went out behind it.
    let outbox = MemoryOutbox::with_events(&[("a", 1), ("b", 1), ("a", 2), ("c", 1)]);
    let bus = Later::default();
    bus.bus.fail("a", 1, PublishErrorKind::Retriable);
    let metrics = relay_in_pairs(&outbox, &bus, 4).await;
    let published = bus.bus.published();
    let a: Vec<u64> = published
        .iter()
        .filter(|(stream, _)| stream == "a")
        .map(|(_, version)| *version)
        .collect();
    assert_eq!(a, [2, 1, 2], "a2 went again after a1: {published:?}");
    assert_eq!(
        published.iter().filter(|(stream, _)| stream != "a").count(),
        2,
        "b1 and c1 went once: {published:?}"
    );
    assert_eq!(metrics.retried, 2, "a1, and a2 held back behind it");
}
