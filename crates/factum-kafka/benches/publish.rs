//! KafkaNotifier against a raw rdkafka `FutureProducer` sending the same
//! JSON messages (same key, headers and producer settings) to the same
//! broker, in one process: the ratio is the publisher's own overhead.
//!
//! Run: `cargo bench -p factum-kafka` with a broker at
//! `FACTUM_KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`; without one the
//! bench says so and exits). Each case publishes 10,000 events of 10
//! aggregates, raw and factum in turns for six rounds (each goes first in
//! half of them), after a warm-up that lets both producers learn the
//! topic's partitions, and sums the rounds. `BENCH_SCALE=0.2` shortens it.

use std::time::{Duration, Instant};

use factum_core::{Metadata, NewEvent, Payload, Publisher, RecordedEvent, StreamId};
use factum_kafka::KafkaNotifier;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ROUNDS: usize = 6;
const AGGREGATES: usize = 10;
const PAYLOAD: &str = r#"{"amount":1,"note":"a typical small event payload"}"#;

fn bootstrap() -> String {
    std::env::var("FACTUM_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn scale(count: usize) -> usize {
    let factor: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1.0);
    ((count as f64 * factor) as usize).max(1)
}

fn events(count: usize) -> Vec<RecordedEvent> {
    let correlation = Uuid::now_v7();
    (0..count)
        .map(|index| {
            let stream = StreamId::new("Account", format!("acct-{}", index % AGGREGATES));
            let version = (index / AGGREGATES + 1) as u64;
            NewEvent::new("deposited", Payload::from_stored(PAYLOAD))
                .with_metadata(Metadata::default().with_correlation_id(correlation))
                .recorded(stream, version, index as u64 + 1)
        })
        .collect()
}

/// The message as a user of rdkafka would write it by hand.
#[derive(Serialize)]
struct RawMessage<'a> {
    id: Uuid,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    payload: &'a RawValue,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    published_at: OffsetDateTime,
    metadata: &'a Metadata,
}

/// Queues every event of `events` on the raw producer, then awaits every
/// delivery report.
async fn publish_raw(
    producer: &FutureProducer,
    topic: &str,
    events: &[RecordedEvent],
) -> Result<(), BoxError> {
    let published_at = OffsetDateTime::now_utc();
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let value = serde_json::to_vec(&RawMessage {
            id: event.event_id,
            aggregate_type: event.aggregate_type(),
            aggregate_id: event.aggregate_id(),
            event_type: &event.event_type,
            payload: serde_json::from_str(event.payload.as_str())?,
            occurred_at: event.occurred_at,
            published_at,
            metadata: &event.metadata,
        })?;
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "event_type",
            value: Some(event.event_type.as_ref()),
        });
        if let Some(id) = event.metadata.correlation_id {
            headers = headers.insert(Header {
                key: "correlation_id",
                value: Some(&id.to_string()),
            });
        }
        let record = FutureRecord::to(topic)
            .key(event.aggregate_id())
            .payload(&value)
            .headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    Ok(())
}

async fn publish_factum(notifier: &KafkaNotifier, events: &[RecordedEvent]) -> Result<(), BoxError> {
    for answer in notifier.publish(events).await {
        answer?;
    }
    Ok(())
}

async fn create_topic() -> Result<String, BoxError> {
    let topic = format!("factum-bench-{}", Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin
        .create_topics([&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &options)
        .await?
    {
        result.map_err(|(name, code)| format!("creating {name}: {code}"))?;
    }
    Ok(topic)
}

async fn run() -> Result<(), BoxError> {
    let topic = create_topic().await?;
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("delivery.timeout.ms", "30000")
        .create()?;
    let notifier = KafkaNotifier::new(bootstrap(), &topic)?;
    let count = scale(10_000);
    println!(
        "{count} events of {AGGREGATES} aggregates to {} (topic {topic}), {ROUNDS} rounds",
        bootstrap()
    );
    println!("| case | raw FutureProducer | KafkaNotifier | ratio |");
    println!("|---|---:|---:|---:|");
    // Warm-up: the raw producer fetches the topic's metadata on its first
    // send; the notifier did so at start-up.
    publish_raw(&raw, &topic, &events(AGGREGATES)).await?;
    publish_factum(&notifier, &events(AGGREGATES)).await?;
    for batch in [count, 100] {
        let (mut raw_time, mut factum_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            for raw_turn in [round % 2 == 0, round % 2 == 1] {
                let round_events = events(count);
                let started = Instant::now();
                for chunk in round_events.chunks(batch) {
                    if raw_turn {
                        publish_raw(&raw, &topic, chunk).await?;
                    } else {
                        publish_factum(&notifier, chunk).await?;
                    }
                }
                *(if raw_turn { &mut raw_time } else { &mut factum_time }) += started.elapsed();
            }
        }
        let rate = |elapsed: Duration| (count * ROUNDS) as f64 / elapsed.as_secs_f64();
        println!(
            "| {count} events, calls of {batch} | {:.0} msg/s | {:.0} msg/s | {:.0}% |",
            rate(raw_time),
            rate(factum_time),
            100.0 * rate(factum_time) / rate(raw_time)
        );
    }
    Ok(())
}

fn main() {
    // `cargo test --benches` runs bench targets once with `--bench` absent:
    // nothing to measure then.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(async {
        let address = bootstrap();
        let probe = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&address));
        if !matches!(probe.await, Ok(Ok(_))) {
            println!("skipped: no Kafka broker answers at {address} (set FACTUM_KAFKA_BOOTSTRAP)");
            return;
        }
        if let Err(error) = run().await {
            eprintln!("benchmark failed: {error}");
            std::process::exit(1);
        }
    });
}
