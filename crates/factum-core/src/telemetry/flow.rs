//! The spans and metrics of events flowing out of the store: subscription
//! reads, projection batches and handlers, outbox relay publishes.

use metrics::{Counter, Gauge, Key, Label};
use tracing::Span;
use tracing::field::Empty;

use super::keys::METADATA;
use super::names;
use super::{int, record};
use crate::{Error, OutboxEntry, RecordedEvent, StreamId};

/// The span of one read of the global log by a subscription (or by a
/// projection runner catching up, then `projection` names it).
pub(crate) fn log_read_span(projection: Option<&str>, after: u64, limit: usize) -> Span {
    tracing::info_span!(
        "factum.subscription.batch",
        projection,
        after = int(after),
        limit = int(limit),
        event_count = Empty,
        last_position = Empty,
    )
}

/// The span of one page read by a subscription to one stream.
pub(crate) fn stream_read_span(stream: &StreamId, from_version: u64) -> Span {
    tracing::info_span!(
        "factum.subscription.batch",
        aggregate_type = stream.aggregate_type(),
        aggregate_id = stream.aggregate_id(),
        from_version = int(from_version),
        event_count = Empty,
        last_position = Empty,
    )
}

/// Records what a read returned on its span.
pub(crate) fn read_done(span: &Span, result: Result<&[RecordedEvent], &Error>) {
    match result {
        Ok(events) => {
            record(span, "event_count", int(events.len()));
            if let Some(last) = events.last() {
                record(span, "last_position", int(last.position));
            }
        }
        Err(error) => super::append::record_error(span, error),
    }
}

/// The span of a batch of events handed to a projection.
pub(crate) fn projection_batch_span(projection: &str, events: &[RecordedEvent], read: usize) -> Span {
    tracing::info_span!(
        "factum.projection.batch",
        projection,
        event_count = int(events.len()),
        read = int(read),
        first_position = events.first().map(|event| int(event.position)),
        last_position = events.last().map(|event| int(event.position)),
    )
}

/// The span of one call of a projection's handler: at debug level, so a
/// subscriber at info records one span per batch rather than per event.
pub(crate) fn handler_span(projection: &str, event: &RecordedEvent, attempt: u32) -> Span {
    tracing::debug_span!(
        "factum.projection.handle",
        projection,
        position = int(event.position),
        event_type = &*event.event_type,
        aggregate_type = event.stream.aggregate_type(),
        aggregate_id = event.stream.aggregate_id(),
        version = int(event.version),
        attempt = i64::from(attempt),
        error = Empty,
        otel.status_code = Empty,
    )
}

/// Marks a handler's span failed; the handler's message stays out of it
/// (it may quote the event), the dead letter keeps it.
pub(crate) fn handler_failed(span: &Span) {
    record(span, "error", "handler");
    record(span, "otel.status_code", "ERROR");
}

/// The metrics of one projection runner, registered when it starts.
#[derive(Debug)]
pub(crate) struct ProjectionInstruments {
    pub(crate) handled: Counter,
    pub(crate) retries: Counter,
    pub(crate) dead_letters: Counter,
    pub(crate) lag: Gauge,
}

impl ProjectionInstruments {
    /// Registers the metrics of `projection` with the recorder installed now.
    pub(crate) fn register(projection: &str) -> Self {
        let key =
            |name: &'static str| Key::from_parts(name, vec![Label::new("projection", projection.to_owned())]);
        metrics::with_recorder(|recorder| Self {
            handled: recorder.register_counter(&key(names::PROJECTION_EVENTS_HANDLED), &METADATA),
            retries: recorder.register_counter(&key(names::PROJECTION_RETRIES), &METADATA),
            dead_letters: recorder.register_counter(&key(names::PROJECTION_DEAD_LETTERS), &METADATA),
            lag: recorder.register_gauge(&key(names::PROJECTION_LAG), &METADATA),
        })
    }
}

/// The span of one batch of outbox entries handed to the publisher.
/// `sent` is how many go out: the others wait behind an earlier entry of
/// their aggregate that is to be retried.
pub(crate) fn relay_span(entries: &[OutboxEntry], sent: usize) -> Span {
    tracing::info_span!(
        "factum.relay.publish",
        batch_size = int(entries.len()),
        sent = int(sent),
        first_position = entries.first().map(|entry| int(entry.event.position)),
        last_position = entries.last().map(|entry| int(entry.event.position)),
        published = Empty,
        failed = Empty,
    )
}

/// Records the publisher's answers for a batch, on its span and in the
/// metrics.
pub(crate) fn relay_answered(span: &Span, published: u64, retriable: u64, permanent: u64) {
    record(span, "published", int(published));
    record(span, "failed", int(retriable + permanent));
    metrics::counter!(names::RELAY_PUBLISHED).increment(published);
    if retriable > 0 {
        metrics::counter!(names::RELAY_FAILED, "reason" => "retriable").increment(retriable);
    }
    if permanent > 0 {
        metrics::counter!(names::RELAY_FAILED, "reason" => "permanent").increment(permanent);
    }
}
