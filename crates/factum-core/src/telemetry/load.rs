//! The spans and metrics of loads and saves through a repository or an
//! application.

use std::time::Instant;

use tracing::Span;
use tracing::field::Empty;

use super::append::record_error;
use super::keys::{self, AggregateKeys};
use super::{int, record};
use crate::{Aggregate, AppendResult, Error};

/// A load in flight: its span and when it started.
pub(crate) struct LoadMeter {
    span: Span,
    started: Instant,
    keys: &'static AggregateKeys,
}

impl LoadMeter {
    /// Starts measuring the load of aggregate `id` of type `A`, up to
    /// version `up_to` (`u64::MAX`: the whole stream).
    pub(crate) fn start<A: Aggregate>(id: &A::Id, up_to: u64) -> Self {
        let span = tracing::info_span!(
            "factum.load",
            aggregate_type = A::TYPE,
            aggregate_id = %id,
            up_to = (up_to != u64::MAX).then(|| int(up_to)),
            from_snapshot = Empty,
            snapshot_version = Empty,
            events_replayed = Empty,
            version = Empty,
            error = Empty,
            otel.status_code = Empty,
        );
        Self {
            span,
            started: Instant::now(),
            keys: keys::of::<A>(),
        }
    }

    /// The span the load runs in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the load ended: `snapshot` is the version of the
    /// snapshot (or given base) it started from, if any.
    pub(crate) fn finish<A: Aggregate>(self, result: &Result<Option<A>, Error>, snapshot: Option<u64>) {
        let seconds = self.started.elapsed().as_secs_f64();
        record(&self.span, "from_snapshot", snapshot.is_some());
        if let Some(version) = snapshot {
            record(&self.span, "snapshot_version", int(version));
        }
        match result {
            Ok(loaded) => {
                let version = loaded.as_ref().map_or(0, |aggregate| aggregate.version());
                let replayed = version.saturating_sub(snapshot.unwrap_or(0));
                record(&self.span, "version", int(version));
                record(&self.span, "events_replayed", int(replayed));
                keys::count(&self.keys.loads, 1);
                keys::count(&self.keys.events_replayed, replayed);
                keys::observe(&self.keys.replay_duration, seconds);
            }
            Err(error) => record_error(&self.span, error),
        }
    }
}

/// The span of saving one aggregate.
pub(crate) fn save_span<A: Aggregate>(aggregate: &A) -> Span {
    tracing::info_span!(
        "factum.save",
        aggregate_type = A::TYPE,
        aggregate_id = %aggregate.id(),
        expected_version = int(aggregate.state().persisted_version()),
        event_count = int(aggregate.state().pending().len()),
        stream_version = Empty,
        error = Empty,
        otel.status_code = Empty,
    )
}

/// The span of saving several aggregates of type `A` atomically.
pub(crate) fn save_all_span<A: Aggregate>(aggregates: &[&mut A]) -> Span {
    tracing::info_span!(
        "factum.save_all",
        aggregate_type = A::TYPE,
        aggregates = int(aggregates.len()),
        event_count = int(aggregates
            .iter()
            .map(|aggregate| aggregate.state().pending().len())
            .sum::<usize>()),
        error = Empty,
        otel.status_code = Empty,
    )
}

/// The span of a unit of work's commit.
pub(crate) fn unit_of_work_span(aggregates: usize, events: usize) -> Span {
    tracing::info_span!(
        "factum.unit_of_work",
        aggregates = int(aggregates),
        event_count = int(events),
        error = Empty,
        otel.status_code = Empty,
    )
}

/// Records one aggregate's save: on `span` when given (a single save), and
/// in the metrics when it stored events.
pub(crate) fn saved(
    keys: &'static AggregateKeys,
    span: Option<&Span>,
    result: Result<&AppendResult, &Error>,
) {
    match result {
        Ok(result) => {
            if let Some(span) = span {
                record(span, "stream_version", int(result.stream_version));
            }
            if !result.positions.is_empty() {
                keys::count(&keys.saves, 1);
            }
        }
        Err(error) => {
            if let Some(span) = span {
                record_error(span, error);
            }
        }
    }
}
