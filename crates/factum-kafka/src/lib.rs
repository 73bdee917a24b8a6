//! Kafka for [factum](https://docs.rs/factum): publishes recorded events to
//! a topic, as a notifier after each save or as the publisher of an outbox
//! relay.
//!
//! [`KafkaNotifier`] runs on [`rdkafka`] with its bundled librdkafka
//! (built from source with librdkafka's own configure script and zlib from
//! source: no system Kafka library, no CMake). It implements both
//! [`factum_core::Notifier`] and [`factum_core::Publisher`]. Users reach it
//! through the facade as `factum::kafka` with the `kafka` feature.
//!
//! ```no_run
//! use factum_core::{Notifier, RecordedEvent};
//! use factum_kafka::KafkaNotifier;
//!
//! # async fn run(saved: Vec<RecordedEvent>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let notifier = KafkaNotifier::builder("localhost:9092")
//!     .topic("bank.events")
//!     .set("linger.ms", "5")
//!     .build()?;                        // fails at once if no broker answers
//! notifier.notify(&saved).await?;       // acknowledged by the cluster, or an error per event
//! # Ok(())
//! # }
//! ```
//!
//! # The message
//!
//! One message per event, on one topic:
//!
//! - **key**: the aggregate id, so one aggregate's events share a partition
//!   and keep their order;
//! - **value**: compact JSON with exactly `id`, `aggregate_type`,
//!   `aggregate_id`, `event_type`, `payload` (the event's JSON, embedded as
//!   JSON), `occurred_at`, `published_at` (RFC 3339, UTC) and `metadata`
//!   ([`encode_message`] writes it);
//! - **headers**: `event_type`, and `correlation_id` and `causation_id` when
//!   the event's metadata has them.
//!
//! # Guarantees
//!
//! The producer is idempotent with `acks=all` (the builder refuses other
//! values): librdkafka's internal retries neither duplicate nor reorder
//! messages within a partition. A batch is queued whole before its delivery
//! reports are awaited. A message that cannot be queued holds back the
//! later events of its aggregate in the same batch. Failures map to
//! [`factum_core::PublishError`]: refusals that a retry would repeat (too
//! large, invalid topic, not authorised) are rejected, the rest (transport,
//! timeouts, a full queue) retriable.
//!
//! # TLS and SASL
//!
//! The bundled librdkafka is built without OpenSSL, so that it needs no
//! system library. For `security.protocol=ssl` or `sasl_ssl`, add
//! `rdkafka = { version = "0.39", features = ["ssl-vendored"] }` to your own
//! `Cargo.toml` (Cargo merges the features) and pass the settings with
//! [`KafkaNotifierBuilder::set`].

mod builder;
mod classify;
mod error;
mod message;
mod notifier;
mod send;

pub use builder::{DEFAULT_RESTART_STALLED_AFTER, DEFAULT_STARTUP_TIMEOUT, KafkaNotifierBuilder};
pub use error::Error;
pub use message::{CAUSATION_ID_HEADER, CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, encode_message};
pub use notifier::KafkaNotifier;
/// The Kafka client this crate is built on, for the types in its errors.
pub use rdkafka;
