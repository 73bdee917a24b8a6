use std::sync::Arc;
use std::time::Duration;

use factum_core::{PublishError, StreamId};
use rdkafka::error::KafkaError;

/// What can go wrong when starting a [`KafkaNotifier`](crate::KafkaNotifier)
/// or publishing through it.
///
/// Start-up errors ([`Config`](Self::Config), [`Client`](Self::Client),
/// [`Connect`](Self::Connect), [`TopicNotFound`](Self::TopicNotFound),
/// [`Topic`](Self::Topic)) come from
/// [`KafkaNotifier::new`](crate::KafkaNotifier::new) and
/// [`KafkaNotifierBuilder::build`](crate::KafkaNotifierBuilder::build).
/// Per-event errors ([`Serialize`](Self::Serialize),
/// [`Publish`](Self::Publish)) name the event's stream, version and type;
/// [`Notifier::notify`](factum_core::Notifier::notify) returns them boxed,
/// so `downcast_ref::<factum_kafka::Error>()` recovers them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A producer setting that librdkafka refuses, or one that would break
    /// the guarantees this crate gives (idempotence, `acks=all`).
    #[error("invalid Kafka producer setting `{key}`: {reason}")]
    Config {
        /// The setting.
        key: String,
        /// Why it was refused.
        reason: String,
    },

    /// librdkafka could not create the producer.
    #[error("the Kafka producer could not be created: {source}")]
    Client {
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },

    /// No broker answered a metadata request within the start-up timeout:
    /// the address does not resolve, nothing listens there, or it does not
    /// speak Kafka.
    #[error(
        "no Kafka broker at {bootstrap_servers} answered within {timeout:?} (is the address right and the broker up?): {source}"
    )]
    Connect {
        /// The bootstrap servers that were tried.
        bootstrap_servers: String,
        /// How long the notifier waited.
        timeout: Duration,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },

    /// The cluster answered that the topic does not exist. Brokers that do
    /// not create topics on first use need it created beforehand.
    #[error("the Kafka topic `{topic}` does not exist at {bootstrap_servers}; create it first")]
    TopicNotFound {
        /// The topic.
        topic: String,
        /// The cluster that was asked.
        bootstrap_servers: String,
    },

    /// The cluster answered with an error for the topic (not authorised,
    /// invalid name...).
    #[error("the Kafka topic `{topic}` cannot be used: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What the cluster said.
        reason: String,
    },

    /// The event cannot be written as a message: its stored payload is not
    /// JSON, or a timestamp is out of RFC 3339's range. Nothing was sent for
    /// it.
    #[error(
        "event {event_type} (version {version} of {stream}) cannot be written as a Kafka message: {source}"
    )]
    Serialize {
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event type.
        event_type: Arc<str>,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// The broker did not take the message, or the producer gave up on it.
    /// [`PublishError::retriable`] tells whether sending it again may work.
    #[error("publishing event {event_type} (version {version} of {stream}) to Kafka failed: {source}")]
    Publish {
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event type.
        event_type: Arc<str>,
        /// Why, and whether a retry may succeed.
        #[source]
        source: PublishError,
    },
}

impl Error {
    /// The per-event error as the [`PublishError`] an outbox relay acts on:
    /// a message that cannot be serialised is rejected (retrying will not
    /// change the payload).
    pub(crate) fn into_publish_error(self) -> PublishError {
        match self {
            Self::Publish { source, .. } => source,
            other => PublishError::rejected(other.to_string()),
        }
    }
}
