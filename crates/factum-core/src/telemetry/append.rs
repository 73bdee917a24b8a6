//! The span and metrics of an append: written once, around the calls
//! factum-core makes to [`EventStore::append`](crate::EventStore::append) and
//! [`EventStore::append_many`](crate::EventStore::append_many), so every
//! backend reports the same.

use tracing::Span;
use tracing::field::Empty;

use super::keys::{self, AggregateKeys};
use super::{error_kind, expected_field};
use super::{int, record};
use crate::{AppendBatch, AppendResult, Error, StreamId};

/// An append in flight: its span, and what each of its batches counts
/// under.
///
/// It reads no clock: an append's duration is its span's (OpenTelemetry
/// keeps it), and two clock reads would double what the metrics cost a
/// save with no recorder installed.
pub(crate) struct AppendMeter {
    span: Span,
    batches: Batches,
}

/// One batch (the common case: no allocation) or several.
enum Batches {
    One(Counted),
    Many(Vec<Counted>),
}

struct Counted {
    keys: &'static AggregateKeys,
    /// Which stream, to find the one a conflict names (not needed, so not
    /// kept, for a single batch).
    stream: Option<StreamId>,
    events: usize,
}

impl AppendMeter {
    /// Starts measuring the append of `batches`; `keys` holds the keys of
    /// each batch's aggregate type, in the same order.
    pub(crate) fn start(batches: &[AppendBatch], keys: &[&'static AggregateKeys]) -> Self {
        let counted = |(batch, keys): (&AppendBatch, &&'static AggregateKeys)| Counted {
            keys,
            stream: Some(batch.stream.clone()),
            events: batch.events.len(),
        };
        let (span, batches) = match (batches, keys) {
            ([batch], [keys]) => (
                append_span(batch),
                Batches::One(Counted {
                    keys,
                    stream: None,
                    events: batch.events.len(),
                }),
            ),
            _ => (
                append_many_span(batches),
                Batches::Many(batches.iter().zip(keys).map(counted).collect()),
            ),
        };
        Self { span, batches }
    }

    /// The span the append runs in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the append ended, on its span and in the metrics.
    pub(crate) fn finish(self, result: Result<&[AppendResult], &Error>) {
        let counted: &[Counted] = match &self.batches {
            Batches::One(one) => std::slice::from_ref(one),
            Batches::Many(many) => many,
        };
        let Some(first) = counted.first() else {
            return;
        };
        match result {
            Ok(results) => {
                for batch in counted {
                    keys::count(&batch.keys.appends, 1);
                    keys::count(&batch.keys.events_appended, batch.events as u64);
                }
                if !self.span.is_disabled() {
                    record_positions(&self.span, results);
                }
            }
            Err(error) => {
                if let Error::Conflict { stream, .. } = error {
                    let moved = counted
                        .iter()
                        .find(|batch| batch.stream.as_ref() == Some(stream))
                        .unwrap_or(first);
                    keys::count(&moved.keys.conflicts, 1);
                }
                record_error(&self.span, error);
            }
        }
    }
}

/// Records where the events went: the stream's version (one stream) and
/// the first and last positions.
fn record_positions(span: &Span, results: &[AppendResult]) {
    if let [only] = results {
        record(span, "stream_version", int(only.stream_version));
    }
    let mut positions = results.iter().flat_map(|result| &result.positions);
    if let Some(first) = positions.next() {
        record(span, "first_position", int(*first));
        record(span, "last_position", int(*positions.last().unwrap_or(first)));
    }
}

/// Marks `span` failed with the kind of `error` (never its message: a
/// serde message may quote a payload).
pub(crate) fn record_error(span: &Span, error: &Error) {
    record(span, "error", error_kind(error));
    record(span, "otel.status_code", "ERROR");
}

fn append_span(batch: &AppendBatch) -> Span {
    tracing::info_span!(
        "factum.append",
        aggregate_type = batch.stream.aggregate_type(),
        aggregate_id = batch.stream.aggregate_id(),
        expected_version = expected_field(batch.expected).map(int),
        event_count = int(batch.events.len()),
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
        streams = int(batches.len()),
        event_count = int(batches.iter().map(|batch| batch.events.len()).sum::<usize>()),
        first_position = Empty,
        last_position = Empty,
        error = Empty,
        otel.status_code = Empty,
    )
}
