//! The notifier: one idempotent producer and one topic, behind both of
//! factum's ways of getting events out.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use factum_core::{Notifier, NotifyError, PendingAnswers, PublishError, Publisher, RecordedEvent};
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use time::OffsetDateTime;

use crate::send::{Queued, queue_all};
use crate::{Error, KafkaNotifierBuilder};

/// Publishes recorded events to one Kafka topic, keyed by aggregate id.
///
/// One value serves both of factum's ways of getting events out: as a
/// [`Notifier`] (`Application::with_notifier`, told after each save) and
/// as a [`Publisher`] (what an outbox relay sends through). Clones share
/// one producer; the producer's I/O runs on librdkafka's own threads.
///
/// Each event becomes one message in the format of
/// [`encode_message`](crate::encode_message), with the aggregate id as key
/// (so one aggregate's events land in one partition, in order) and the
/// headers `event_type`, `correlation_id` and `causation_id` (the last two
/// when set). The producer is idempotent with `acks=all`: librdkafka's
/// retries neither duplicate nor reorder messages within a partition.
///
/// ```no_run
/// use factum_core::{Notifier, RecordedEvent};
/// use factum_kafka::KafkaNotifier;
///
/// # async fn run(events: Vec<RecordedEvent>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let notifier = KafkaNotifier::new("localhost:9092", "orders.events")?;
/// notifier.notify(&events).await?; // every event acknowledged by the cluster
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KafkaNotifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced by a new producer when it stalls (see `restart_stalled_after`).
    producer: RwLock<FutureProducer>,
    config: ClientConfig,
    topic: String,
    bootstrap_servers: String,
    restart_stalled_after: Duration,
    /// Since when every call has failed, retriably, without one message
    /// delivered.
    stalled_since: Mutex<Option<Instant>>,
    restarts: AtomicU64,
}

impl KafkaNotifier {
    /// Connects to the cluster at `bootstrap_servers` (`host:port`, comma
    /// separated) with default settings and checks that `topic` exists,
    /// waiting at most ten seconds for a broker.
    ///
    /// # Errors
    ///
    /// See [`KafkaNotifierBuilder::build`].
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Result<Self, Error> {
        Self::builder(bootstrap_servers).topic(topic).build()
    }

    /// A builder, for producer settings and the start-up timeout.
    pub fn builder(bootstrap_servers: impl Into<String>) -> KafkaNotifierBuilder {
        KafkaNotifierBuilder::new(bootstrap_servers)
    }

    pub(crate) fn from_parts(
        producer: FutureProducer,
        config: ClientConfig,
        topic: String,
        bootstrap_servers: String,
        restart_stalled_after: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                producer: RwLock::new(producer),
                config,
                topic,
                bootstrap_servers,
                restart_stalled_after,
                stalled_since: Mutex::new(None),
                restarts: AtomicU64::new(0),
            }),
        }
    }

    /// How many times the notifier replaced a stalled producer (see
    /// [`KafkaNotifierBuilder::restart_stalled_after`]).
    pub fn producer_restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// The topic events go to.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The bootstrap servers it was started with.
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap_servers
    }

    /// Sends `events` and waits until the cluster has acknowledged or
    /// refused each one; one answer per event, in order.
    ///
    /// All messages are queued before any answer is awaited, so a batch
    /// costs about one round trip, not one per event. When an event cannot
    /// be queued (it does not serialise, it is too large, the local queue
    /// stays full), the later events of the same aggregate in `events` are
    /// not sent and answer [`Error::Publish`] with a retriable
    /// [`PublishError`], so none of them overtakes it.
    pub async fn send(&self, events: &[RecordedEvent]) -> Vec<Result<(), Error>> {
        let answers = self.queue(events).await.answers().await;
        self.watch_for_stall(&answers);
        answers
    }

    /// Hands `events` to the producer, in order; their answers come later.
    async fn queue(&self, events: &[RecordedEvent]) -> Queued {
        let producer = self
            .inner
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        queue_all(&producer, &self.inner.topic, events, OffsetDateTime::now_utc()).await
    }

    /// Replaces the producer once every call has failed retriably for
    /// `restart_stalled_after`. An idempotent producer cannot resume
    /// against a cluster that lost its producer state (a broker that came
    /// back empty, a cluster rebuilt at the same address): it keeps its
    /// producer id and sequence numbers, and every message times out. A new
    /// producer starts afresh. Every message of the old one has been
    /// answered by then, so none is in flight on both.
    fn watch_for_stall(&self, answers: &[Result<(), Error>]) {
        let delivered = answers.iter().any(Result::is_ok);
        let retriable = answers
            .iter()
            .any(|answer| matches!(answer, Err(Error::Publish { source, .. }) if source.retriable));
        let mut stalled_since = self
            .inner
            .stalled_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if delivered || !retriable {
            *stalled_since = None;
            return;
        }
        let since = *stalled_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.inner.restart_stalled_after {
            return;
        }
        match self.inner.config.create::<FutureProducer>() {
            Ok(producer) => {
                *self
                    .inner
                    .producer
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = producer;
                *stalled_since = None;
                self.inner.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    bootstrap_servers = %self.inner.bootstrap_servers,
                    stalled_for = ?since.elapsed(),
                    "no Kafka message delivered for a while: started a new producer"
                );
            }
            Err(error) => tracing::warn!(%error, "starting a new Kafka producer failed; keeping the old one"),
        }
    }
}

impl Notifier for KafkaNotifier {
    /// Publishes the events of one save; fails with the first event that
    /// was not acknowledged (a [`factum_kafka::Error`](Error), boxed). The
    /// other events may have been published.
    async fn notify(&self, events: &[RecordedEvent]) -> Result<(), NotifyError> {
        match self.send(events).await.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(error) => Err(Box::new(error)),
        }
    }
}

impl Publisher for KafkaNotifier {
    /// [`send`](KafkaNotifier::send), with each error as the
    /// [`PublishError`] a relay acts on: a message that cannot be
    /// serialised or that the cluster refused for good is rejected, any
    /// other failure retriable.
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        self.send(events)
            .await
            .into_iter()
            .map(|result| result.map_err(Error::into_publish_error))
            .collect()
    }

    /// Queues `events` on the producer and returns; the answers come with
    /// the delivery reports. The idempotent producer keeps the order of
    /// every call's messages in each partition, so the next batch may be
    /// queued before this one is answered.
    async fn enqueue(&self, events: &[RecordedEvent]) -> PendingAnswers {
        let queued = self.queue(events).await;
        let notifier = self.clone();
        Box::pin(async move {
            let answers = queued.answers().await;
            notifier.watch_for_stall(&answers);
            answers
                .into_iter()
                .map(|result| result.map_err(Error::into_publish_error))
                .collect()
        })
    }
}

impl fmt::Debug for KafkaNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaNotifier")
            .field("bootstrap_servers", &self.inner.bootstrap_servers)
            .field("topic", &self.inner.topic)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use factum_core::{NewEvent, Payload, StreamId};

    use super::*;

    /// A notifier whose broker never answers, replacing its producer after
    /// `stalled` of failures.
    fn without_broker(stalled: Duration) -> KafkaNotifier {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("delivery.timeout.ms", "200");
        let producer = config
            .create()
            .expect("a producer with valid settings can be created");
        KafkaNotifier::from_parts(
            producer,
            config,
            "events".to_owned(),
            "127.0.0.1:1".to_owned(),
            stalled,
        )
    }

    fn event() -> RecordedEvent {
        NewEvent::new("noted", Payload::from_stored("{}")).recorded(StreamId::new("Note", "1"), 1, 1)
    }

    #[tokio::test]
    async fn a_producer_that_delivers_nothing_for_long_enough_is_replaced() {
        let patient = without_broker(Duration::from_secs(3600));
        assert!(patient.send(&[event()]).await[0].is_err());
        assert_eq!(patient.producer_restarts(), 0, "not stalled for long yet");

        let quick = without_broker(Duration::ZERO);
        assert!(quick.send(&[event()]).await[0].is_err());
        assert_eq!(quick.producer_restarts(), 1);
        assert!(
            quick.send(&[event()]).await[0].is_err(),
            "the new producer has no broker either"
        );
        assert_eq!(quick.producer_restarts(), 2, "and is replaced in turn");
    }
}
