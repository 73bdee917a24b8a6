//! Queue every message of a batch, then collect the delivery reports.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factum_core::{PublishError, RecordedEvent, StreamId};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use time::OffsetDateTime;

use crate::Error;
use crate::classify::classify;
use crate::message::{encode_message, headers};

/// How long a message waits for room in librdkafka's local queue before it
/// fails as retriable.
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(10);

/// Where one event of the batch stands.
enum Slot {
    /// In librdkafka's queue; the future yields the delivery report.
    Queued(DeliveryFuture),
    /// Answered.
    Done(Result<(), Error>),
}

/// What an answer names of its event.
struct Origin {
    stream: StreamId,
    version: u64,
    event_type: Arc<str>,
}

impl Origin {
    fn of(event: &RecordedEvent) -> Self {
        Self {
            stream: event.stream.clone(),
            version: event.version,
            event_type: Arc::clone(&event.event_type),
        }
    }
}

impl Slot {
    async fn settle(&mut self, origin: &Origin) {
        if let Slot::Queued(delivery) = self {
            let answer = delivery_answer(delivery.await, origin);
            *self = Slot::Done(answer);
        }
    }
}

/// A batch handed to librdkafka, its delivery reports still to come.
pub(crate) struct Queued {
    slots: Vec<(Slot, Origin)>,
}

impl Queued {
    /// Waits for every delivery report; one answer per event, in order.
    pub(crate) async fn answers(self) -> Vec<Result<(), Error>> {
        let mut answers = Vec::with_capacity(self.slots.len());
        for (mut slot, origin) in self.slots {
            slot.settle(&origin).await;
            if let Slot::Done(answer) = slot {
                answers.push(answer);
            }
        }
        answers
    }
}

/// Publishes `events` to `topic`: every message is queued before any
/// delivery report is awaited, so the batch travels in a few produce
/// requests. One answer per event, in order.
#[cfg(test)]
pub(crate) async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    events: &[RecordedEvent],
    published_at: OffsetDateTime,
) -> Vec<Result<(), Error>> {
    queue_all(producer, topic, events, published_at)
        .await
        .answers()
        .await
}

/// Hands every message of `events` to librdkafka, in order, and returns
/// once all are queued (or answered: an event that could not be queued
/// holds back the later events of its aggregate, or they would overtake
/// it). Queues of several calls keep their order in each partition.
pub(crate) async fn queue_all(
    producer: &FutureProducer,
    topic: &str,
    events: &[RecordedEvent],
    published_at: OffsetDateTime,
) -> Queued {
    let mut slots: Vec<(Slot, Origin)> = Vec::with_capacity(events.len());
    let mut blocked: HashSet<&StreamId> = HashSet::new();
    let mut oldest_queued = 0;
    for event in events {
        let origin = Origin::of(event);
        if blocked.contains(&event.stream) {
            slots.push((Slot::Done(Err(held_back(&origin))), origin));
            continue;
        }
        let slot = match encode_message(event, published_at) {
            Err(error) => Slot::Done(Err(error)),
            Ok(value) => queue(producer, topic, event, &value, &mut slots, &mut oldest_queued).await,
        };
        if matches!(slot, Slot::Done(Err(_))) {
            blocked.insert(&event.stream);
        }
        slots.push((slot, origin));
    }
    Queued { slots }
}

/// Hands one message to librdkafka. While its queue is full, waits for the
/// oldest message of this batch still in flight (its answer frees room),
/// up to [`QUEUE_FULL_WAIT`].
async fn queue(
    producer: &FutureProducer,
    topic: &str,
    event: &RecordedEvent,
    value: &[u8],
    slots: &mut [(Slot, Origin)],
    oldest_queued: &mut usize,
) -> Slot {
    let deadline = Instant::now() + QUEUE_FULL_WAIT;
    let mut record = FutureRecord::to(topic)
        .key(event.aggregate_id())
        .payload(value)
        .headers(headers(event));
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Slot::Queued(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                record = returned;
                while *oldest_queued < slots.len() && matches!(slots[*oldest_queued].0, Slot::Done(_)) {
                    *oldest_queued += 1;
                }
                match slots.get_mut(*oldest_queued) {
                    Some((slot, origin)) => slot.settle(origin).await,
                    // Other callers filled the queue: give their messages time.
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            Err((error, _)) => return Slot::Done(Err(publish_error(&Origin::of(event), classify(&error)))),
        }
    }
}

type DeliveryReport = <DeliveryFuture as std::future::Future>::Output;

fn delivery_answer(report: DeliveryReport, origin: &Origin) -> Result<(), Error> {
    match report {
        Ok(Ok(_delivered)) => Ok(()),
        Ok(Err((error, _message))) => Err(publish_error(origin, classify(&error))),
        Err(_canceled) => Err(publish_error(
            origin,
            PublishError::retriable("the producer was dropped before the broker answered"),
        )),
    }
}

fn held_back(origin: &Origin) -> Error {
    publish_error(
        origin,
        PublishError::retriable(format!(
            "not sent: an earlier event of {} in this batch was not published, and this one must not overtake it",
            origin.stream
        )),
    )
}

fn publish_error(origin: &Origin, source: PublishError) -> Error {
    Error::Publish {
        stream: origin.stream.clone(),
        version: origin.version,
        event_type: Arc::clone(&origin.event_type),
        source,
    }
}

#[cfg(test)]
mod tests {
    use factum_core::{NewEvent, Payload};
    use rdkafka::ClientConfig;

    use super::*;

    fn event(account: &str, version: u64, payload: &str) -> RecordedEvent {
        NewEvent::new("deposited", Payload::from_stored(payload)).recorded(
            StreamId::new("Account", account),
            version,
            version,
        )
    }

    /// A producer whose broker never answers: nothing can be delivered.
    fn producer_without_broker() -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.max.bytes", "2000")
            .set("delivery.timeout.ms", "300")
            .create()
            .expect("a producer with valid settings can be created")
    }

    fn retriable(answer: &Result<(), Error>) -> bool {
        matches!(answer, Err(Error::Publish { source, .. }) if source.retriable)
    }

    #[tokio::test]
    async fn a_failed_event_holds_back_its_aggregate_and_a_dead_broker_is_retriable() {
        let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(4_000));
        let events = [
            event("broken", 1, "{"),
            event("broken", 2, "{}"),
            event("large", 1, &big),
            event("large", 2, "{}"),
            event("fine", 1, "{}"),
        ];
        let answers = send_all(
            &producer_without_broker(),
            "events",
            &events,
            OffsetDateTime::now_utc(),
        )
        .await;

        assert!(
            matches!(answers[0], Err(Error::Serialize { version: 1, .. })),
            "{:?}",
            answers[0]
        );
        assert!(retriable(&answers[1]), "{:?}", answers[1]);
        assert!(
            matches!(&answers[2], Err(Error::Publish { source, .. }) if !source.retriable),
            "too large is rejected: {:?}",
            answers[2]
        );
        assert!(retriable(&answers[3]), "{:?}", answers[3]);
        // Queued, then given up on after `delivery.timeout.ms` without a broker.
        assert!(retriable(&answers[4]), "{:?}", answers[4]);
        assert!(
            answers[4].as_ref().unwrap_err().to_string().contains("timed out"),
            "{:?}",
            answers[4]
        );
    }
}
