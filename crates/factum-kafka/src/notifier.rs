//! The notifier: one idempotent producer and one topic, behind both of
//! factum's ways of getting events out.

use std::fmt;
use std::sync::Arc;

use factum_core::{Notifier, NotifyError, PublishError, Publisher, RecordedEvent};
use rdkafka::producer::FutureProducer;
use time::OffsetDateTime;

use crate::send::send_all;
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
    producer: FutureProducer,
    topic: String,
    bootstrap_servers: String,
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

    pub(crate) fn from_parts(producer: FutureProducer, topic: String, bootstrap_servers: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                producer,
                topic,
                bootstrap_servers,
            }),
        }
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
        send_all(
            &self.inner.producer,
            &self.inner.topic,
            events,
            OffsetDateTime::now_utc(),
        )
        .await
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
}

impl fmt::Debug for KafkaNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaNotifier")
            .field("bootstrap_servers", &self.inner.bootstrap_servers)
            .field("topic", &self.inner.topic)
            .finish_non_exhaustive()
    }
}
