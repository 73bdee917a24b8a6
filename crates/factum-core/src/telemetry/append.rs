//! The span and metrics of an append: written once, around the calls
//! factum-core makes to [`EventStore::append`](crate::EventStore::append) and
//! [`EventStore::append_many`](crate::EventStore::append_many), so every
//! backend reports the same.

use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

use super::keys::{self, AggregateKeys};
use super::{error_kind, expected_field};
use crate::{AppendBatch, AppendResult, Error, StreamId};

/// An append in flight: its span, when it started, and what each of its
/// batches counts under.
pub(crate) struct AppendMeter {
    span: Span,
    started: Instant,
    batches: Batches,
}

/// One batch (the common case: no allocation) or several.
enum Batches {
    One(Counted),
    Many(Vec<Counted>),
}

struct Counted {
    keys: &'static AggregateKeys,
    stream: StreamId,
    events: usize,
}

impl AppendMeter {
    /// Starts measuring the append of `batches`; `keys` holds the keys of
    /// each batch's aggregate type, in the same order.
    pub(crate) fn start(batches: &[AppendBatch], keys: &[&'static AggregateKeys]) -> Self {
        let counted = |(batch, keys): (&AppendBatch, &&'static AggregateKeys)| Counted {
            keys,
            stream: batch.stream.clone(),
            events: batch.events.len(),
        };
        let (span, batches) = match (batches, keys) {
            ([batch], [batch_keys]) => (append_span(batch), Batches::One(counted((batch, batch_keys)))),
            _ => (
                append_many_span(batches),
                Batches::Many(batches.iter().zip(keys).map(counted).collect()),
            ),
        };
        Self {
            span,
            started: Instant::now(),
            batches,
        }
    }

    /// The span the append runs in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the append ended, on its span and in the metrics.
    pub(crate) fn finish(self, result: &Result<Vec<AppendResult>, Error>) {
        let counted: &[Counted] = match &self.batches {
            Batches::One(one) => std::slice::from_ref(one),
            Batches::Many(many) => many,
        };
        let Some(first) = counted.first() else {
            return;
        };
        let seconds = self.started.elapsed().as_secs_f64();
        keys::observe(&first.keys.append_duration, seconds);
        match result {
            Ok(results) => {
                for batch in counted {
                    keys::count(&batch.keys.appends, 1);
                    keys::count(&batch.keys.events_appended, batch.events as u64);
                }
                if let [only] = results.as_slice() {
                    self.span.record("stream_version", only.stream_version);
                }
                let mut positions = results.iter().flat_map(|result| &result.positions);
                if let Some(first_position) = positions.next() {
                    self.span.record("first_position", first_position);
                    let last = positions.last().unwrap_or(first_position);
                    self.span.record("last_position", last);
                }
            }
            Err(error) => {
                if let Error::Conflict { stream, .. } = error {
                    let moved = counted
                        .iter()
                        .find(|batch| batch.stream == *stream)
                        .unwrap_or(first);
                    keys::count(&moved.keys.conflicts, 1);
                }
                record_error(&self.span, error);
            }
        }
    }
}

/// Marks `span` failed with the kind of `error` (never its message: a
/// serde message may quote a payload).
pub(crate) fn record_error(span: &Span, error: &Error) {
    span.record("error", error_kind(error));
    span.record("otel.status_code", "ERROR");
}

fn append_span(batch: &AppendBatch) -> Span {
    tracing::info_span!(
        "factum.append",
        aggregate_type = batch.stream.aggregate_type(),
        aggregate_id = batch.stream.aggregate_id(),
        expected_version = expected_field(batch.expected),
        event_count = batch.events.len(),
        stream_version = Empty,
        first_position = Empty,
        last_position = Empty,
        error = Empty,
        otel.status_code = Empty,
    )
}

fn append_many_span(batches: &[AppendBatch]) -> Span {
    tracing::info_span!(
        "factum.append_many",
        streams = batches.len(),
        event_count = batches.iter().map(|batch| batch.events.len()).sum::<usize>(),
        first_position = Empty,
        last_position = Empty,
        error = Empty,
        otel.status_code = Empty,
    )
}
