//! Producer settings, checked before and by librdkafka, and the start-up
//! check that a broker answers.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};

use crate::{Error, KafkaNotifier};

/// How long [`KafkaNotifierBuilder::build`] waits for a broker by default.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a notifier waits, every message failing, before it replaces
/// its producer (see [`KafkaNotifierBuilder::restart_stalled_after`]).
pub const DEFAULT_RESTART_STALLED_AFTER: Duration = Duration::from_secs(60);

/// librdkafka gives up on a message after `delivery.timeout.ms`; its own
/// default (five minutes) would hold a notifying `save` that long while the
/// broker is down. Settable with [`KafkaNotifierBuilder::set`].
const DEFAULT_DELIVERY_TIMEOUT_MS: &str = "30000";

/// librdkafka's producer asks brokers to create a missing topic; one
/// created that way gets the broker's default partition count, which
/// decides how far one topic's aggregates spread. A missing topic is an
/// [`Error::TopicNotFound`] instead, on every broker. Settable.
const DEFAULT_ALLOW_AUTO_CREATE_TOPICS: &str = "false";

/// Settings that the ordering and no-duplicate guarantees rest on: the
/// builder sets them and refuses other values.
const REQUIRED: [(&str, &[&str]); 3] = [
    ("enable.idempotence", &["true"]),
    ("acks", &["all", "-1"]),
    ("request.required.acks", &["all", "-1"]),
];

/// Configures and starts a [`KafkaNotifier`]: the topic, any librdkafka
/// producer setting, and how long to wait for a broker at start-up.
///
/// ```no_run
/// use std::time::Duration;
/// use factum_kafka::KafkaNotifier;
///
/// let notifier = KafkaNotifier::builder("localhost:9092")
///     .topic("orders.events")
///     .set("linger.ms", "5")
///     .set("compression.type", "lz4")
///     .startup_timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok::<(), factum_kafka::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct KafkaNotifierBuilder {
    bootstrap_servers: String,
    topic: Option<String>,
    settings: Vec<(String, String)>,
    startup_timeout: Duration,
    restart_stalled_after: Duration,
}

impl KafkaNotifierBuilder {
    pub(crate) fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: None,
            settings: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            restart_stalled_after: DEFAULT_RESTART_STALLED_AFTER,
        }
    }

    /// The topic every event goes to (required).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets a librdkafka producer property (`linger.ms`,
    /// `compression.type`, `security.protocol`, `delivery.timeout.ms`...;
    /// see librdkafka's `CONFIGURATION.md`). A later call for the same key
    /// wins. factum-kafka's own defaults: `delivery.timeout.ms=30000` (a
    /// notifying save waits at most that long for a broker) and
    /// `allow.auto.create.topics=false` (a missing topic is an error, not a
    /// topic with the broker's default partitions). `enable.idempotence` and
    /// `acks` are fixed to `true` and `all`:
    /// another value is an [`Error::Config`] at [`build`](Self::build).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// How long [`build`](Self::build) waits for a broker to answer before
    /// it fails with [`Error::Connect`] (default: ten seconds).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long every message may fail (retriably, none delivered) before
    /// the notifier replaces its producer with a new one (default: one
    /// minute).
    ///
    /// An idempotent producer cannot resume against a cluster that lost
    /// its producer state — a broker that came back empty, a cluster
    /// rebuilt at the same address: every message times out, forever. A
    /// new producer starts with a new producer id. A cluster that merely
    /// went away for a while is not affected: the new producer reconnects
    /// like the old one would have.
    pub fn restart_stalled_after(mut self, stalled: Duration) -> Self {
        self.restart_stalled_after = stalled;
        self
    }

    /// Creates the producer and asks the cluster for the topic's metadata,
    /// waiting at most the start-up timeout.
    ///
    /// This blocks the calling thread while it waits; from async code on a
    /// single-threaded runtime, call it inside `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a missing topic or a refused setting,
    /// [`Error::Connect`] when no broker answers in time (an address that
    /// does not resolve included), [`Error::TopicNotFound`] or
    /// [`Error::Topic`] when the cluster answers but the topic cannot be
    /// used, [`Error::Client`] when librdkafka cannot start.
    pub fn build(self) -> Result<KafkaNotifier, Error> {
        let topic = match self.topic.as_deref() {
            Some(topic) if !topic.is_empty() => topic.to_owned(),
            _ => {
                return Err(Error::Config {
                    key: "topic".to_owned(),
                    reason: "no topic was set: call `.topic(name)`".to_owned(),
                });
            }
        };
        let config = self.client_config()?;
        let producer: FutureProducer = config.create().map_err(creation_error)?;
        self.check_topic(&producer, &topic)?;
        Ok(KafkaNotifier::from_parts(
            producer,
            config,
            topic,
            self.bootstrap_servers,
            self.restart_stalled_after,
        ))
    }

    fn client_config(&self) -> Result<ClientConfig, Error> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("delivery.timeout.ms", DEFAULT_DELIVERY_TIMEOUT_MS)
            .set("allow.auto.create.topics", DEFAULT_ALLOW_AUTO_CREATE_TOPICS);
        for (key, value) in &self.settings {
            check_required(key, value)?;
            config.set(key, value);
        }
        config.set("enable.idempotence", "true").set("acks", "all");
        Ok(config)
    }

    fn check_topic(&self, producer: &FutureProducer, topic: &str) -> Result<(), Error> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), self.startup_timeout)
            .map_err(|source| Error::Connect {
                bootstrap_servers: self.bootstrap_servers.clone(),
                timeout: self.startup_timeout,
                source,
            })?;
        let not_found = || Error::TopicNotFound {
            topic: topic.to_owned(),
            bootstrap_servers: self.bootstrap_servers.clone(),
        };
        let found = metadata.topics().iter().find(|found| found.name() == topic);
        let Some(found) = found else {
            return Err(not_found());
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None => Ok(()),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                Err(not_found())
            }
            // A broker that creates topics on first use answers this while
            // it elects the new topic's leader; the producer waits for it.
            Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(()),
            Some(code) => Err(Error::Topic {
                topic: topic.to_owned(),
                reason: code.to_string(),
            }),
        }
    }
}

fn check_required(key: &str, value: &str) -> Result<(), Error> {
    for (required_key, allowed) in REQUIRED {
        if key == required_key && !allowed.contains(&value) {
            return Err(Error::Config {
                key: key.to_owned(),
                reason: format!(
                    "factum-kafka keeps `{required_key}={}`: per-aggregate order without duplicates rests on it",
                    allowed[0]
                ),
            });
        }
    }
    Ok(())
}

fn creation_error(error: KafkaError) -> Error {
    match error {
        KafkaError::ClientConfig(_, reason, key, _) => Error::Config { key, reason },
        source => Error::Client { source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KafkaNotifier;

    #[test]
    fn a_missing_topic_is_a_config_error() {
        let error = KafkaNotifier::builder("localhost:9092").build().unwrap_err();
        assert!(
            matches!(&error, Error::Config { key, .. } if key == "topic"),
            "{error:?}"
        );
    }

    #[test]
    fn weakening_idempotence_or_acks_is_refused_before_connecting() {
        for (key, value) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("request.required.acks", "0"),
        ] {
            let error = KafkaNotifier::builder("localhost:9092")
                .topic("events")
                .set(key, value)
                .build()
                .unwrap_err();
            assert!(
                matches!(&error, Error::Config { key: found, .. } if found == key),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_setting_librdkafka_refuses_is_a_config_error_naming_it() {
        let error = KafkaNotifier::builder("localhost:9092")
            .topic("events")
            .set("linger.ms", "soon")
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config { key, .. } if key == "linger.ms"),
            "{error:?}"
        );
        let error = KafkaNotifier::builder("localhost:9092")
            .topic("events")
            .set("no.such.setting", "1")
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config { key, .. } if key == "no.such.setting"),
            "{error:?}"
        );
    }
}
