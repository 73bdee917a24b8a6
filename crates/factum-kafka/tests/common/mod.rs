//! Shared helpers of the Kafka tests: the broker address, a fresh topic per
//! test, events to publish, a consumer that reads them back, and skipping
//! when no broker answers.
#![allow(dead_code, unreachable_pub)]

pub mod stores;

use std::time::Duration;

use factum_core::{Metadata, NewEvent, Payload, RecordedEvent, StreamId};
use factum_kafka::{KafkaNotifier, KafkaNotifierBuilder};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use uuid::Uuid;

/// How long a test waits for one message before it fails: a guard against
/// hanging, far above what a message takes.
const READ_GUARD: Duration = Duration::from_secs(60);

/// The broker the tests use: `FACTUM_KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`.
pub fn bootstrap() -> String {
    std::env::var("FACTUM_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Reports the test skipped (or fails it under `CI=true`) and returns `None`.
pub fn unavailable<T>(reason: impl std::fmt::Display) -> Option<T> {
    factum_core::testing::service_unavailable(&format!("Kafka broker at {}", bootstrap()), reason)
}

/// A new topic with `partitions` partitions, named after the test, or
/// `None` (skipped) when no broker answers.
pub async fn fresh_topic(test: &str, partitions: i32) -> Option<String> {
    let first_broker = bootstrap().split(',').next().unwrap_or_default().to_owned();
    let probe = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&first_broker),
    );
    match probe.await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return unavailable(error),
        Err(_) => return unavailable("no answer to a TCP connect within 5 s"),
    }
    let topic = format!("factum-{test}-{}", Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("an admin client with valid settings can be created");
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(20)))
        .request_timeout(Some(Duration::from_secs(20)));
    let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
    let results = match admin.create_topics([&new_topic], &options).await {
        Ok(results) => results,
        Err(error) => return unavailable(error),
    };
    for result in results {
        if let Err((name, code)) = result {
            panic!("the broker answered but did not create topic {name}: {code}");
        }
    }
    Some(topic)
}

/// A builder for `topic` on the test broker.
pub fn builder(topic: &str) -> KafkaNotifierBuilder {
    KafkaNotifier::builder(bootstrap()).topic(topic)
}

/// A notifier for `topic` with default settings.
pub fn notifier(topic: &str) -> KafkaNotifier {
    builder(topic)
        .build()
        .unwrap_or_else(|error| panic!("a notifier for an existing topic starts: {error}"))
}

/// An event of `Account-<account>` at `version`, as a store would return it.
pub fn event(account: &str, version: u64, payload: &str, metadata: Metadata) -> RecordedEvent {
    NewEvent::new("deposited", Payload::from_stored(payload))
        .with_metadata(metadata)
        .recorded(StreamId::new("Account", account), version, version)
}

/// A message read back from the topic.
#[derive(Debug)]
pub struct Received {
    pub partition: i32,
    pub key: String,
    /// The value as sent.
    pub text: String,
    /// The value, parsed.
    pub value: Value,
    pub headers: Vec<(String, String)>,
}

/// Reads the first `count` messages of `topic` (all `partitions`, from the
/// beginning), in the order each partition holds them.
pub async fn read(topic: &str, partitions: i32, count: usize) -> Vec<Received> {
    read_until(&bootstrap(), topic, partitions, |received| {
        received.len() >= count
    })
    .await
}

/// Reads `topic` on the broker at `bootstrap_servers` (all `partitions`,
/// from the beginning) until `done` says so; panics when a message takes
/// longer than a minute to come.
pub async fn read_until(
    bootstrap_servers: &str,
    topic: &str,
    partitions: i32,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", format!("factum-test-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer with valid settings can be created");
    // assign(), not subscribe(): no group join, which waits out the session timeout.
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a valid partition offset");
    }
    consumer.assign(&assignment).expect("the assignment is accepted");
    let mut received = Vec::new();
    while !done(&received) {
        let message = tokio::time::timeout(READ_GUARD, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "message {} did not arrive within {READ_GUARD:?}",
                    received.len() + 1
                )
            })
            .unwrap_or_else(|error| panic!("the consumer failed: {error}"));
        received.push(received_message(&message));
    }
    received
}

fn received_message(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    let text = String::from_utf8(message.payload().unwrap_or_default().to_vec()).expect("the value is UTF-8");
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header.value.unwrap_or_default();
                    (header.key.to_owned(), String::from_utf8_lossy(value).into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    Received {
        partition: message.partition(),
        key: String::from_utf8(message.key().unwrap_or_default().to_vec()).expect("the key is UTF-8"),
        value: serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("the value is JSON ({error}): {text}")),
        text,
        headers,
    }
}

impl Received {
    /// The event id the message carries.
    pub fn event_id(&self) -> Uuid {
        self.value["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no event id in {}", self.text))
    }
}

/// Creates `topic` with `partitions` partitions on the broker at
/// `bootstrap_servers`.
pub async fn create_topic(bootstrap_servers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(|error| error.to_string())?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(20)))
        .request_timeout(Some(Duration::from_secs(20)));
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|error| error.to_string())?;
    for result in results {
        result.map_err(|(name, code)| format!("topic {name}: {code}"))?;
    }
    Ok(())
}
