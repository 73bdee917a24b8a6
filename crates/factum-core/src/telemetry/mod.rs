//! Tracing spans and metrics: what factum reports about the work it does,
//! and how an application exports it.
//!
//! Both are written once, in the code every backend shares (the
//! repository and application, subscriptions, the projection runner, the
//! outbox relay), so every store reports the same names and fields.
//!
//! # Spans
//!
//! Through the [`tracing`](https://docs.rs/tracing) crate. With no
//! subscriber installed they cost a load and a compare each; payloads and
//! error messages (which may quote a payload) are never recorded, only an
//! error's kind (`conflict`, `not_found`, `store`...).
//!
//! | span | level | fields |
//! |---|---|---|
//! | `factum.append` | info | `aggregate_type`, `aggregate_id`, `expected_version` (0: no stream; absent for `Any`), `event_count`, `stream_version`, `first_position`, `last_position`, `error` |
//! | `factum.append_many` | info | `streams`, `event_count`, `first_position`, `last_position`, `error` |
//! | `factum.load` | info | `aggregate_type`, `aggregate_id`, `up_to` (time travel only), `from_snapshot`, `snapshot_version`, `events_replayed`, `version` (0: not found), `error` |
//! | `factum.save` | info | `aggregate_type`, `aggregate_id`, `expected_version`, `event_count`, `stream_version`, `error` |
//! | `factum.save_all` | info | `aggregate_type`, `aggregates`, `event_count`, `error` |
//! | `factum.unit_of_work` | info | `aggregates`, `event_count`, `error` |
//! | `factum.subscription.batch` | info | `after`, `limit`, `projection` (a runner catching up) or `aggregate_type`, `aggregate_id`, `from_version` (one stream); `event_count`, `last_position`, `error` |
//! | `factum.projection.batch` | info | `projection`, `event_count`, `read` (before the filter), `first_position`, `last_position` |
//! | `factum.projection.handle` | debug | `projection`, `position`, `event_type`, `aggregate_type`, `aggregate_id`, `version`, `attempt`, `error` |
//! | `factum.relay.publish` | info | `batch_size`, `sent`, `first_position`, `last_position`, `published`, `failed` |
//!
//! A save's span holds its append's span; a failed span also carries
//! `otel.status_code = "ERROR"`, which OpenTelemetry exporters show as a
//! failed span (see `otel_layer`, under the `otel` feature).
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade: the
//! application installs a recorder (a Prometheus exporter, StatsD...) and
//! factum's metrics go to it. With no recorder installed each one costs a
//! thread-local and an atomic read: keys labelled with an aggregate type
//! are built at compile time.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `factum_appends_total` | counter | `aggregate_type` | stream batches appended (a multi-stream append counts each stream) |
//! | `factum_events_appended_total` | counter | `aggregate_type` | events appended |
//! | `factum_append_conflicts_total` | counter | `aggregate_type` | appends refused by the expected version |
//! | `factum_saves_total` | counter | `aggregate_type` | aggregates saved with new events (`save`, `save_all`, `UnitOfWork`) |
//! | `factum_loads_total` | counter | `aggregate_type` | loads (`get`, `load_or_create`, `Repository::load`...) |
//! | `factum_events_replayed_total` | counter | `aggregate_type` | events replayed by loads (after the snapshot, if any) |
//! | `factum_replay_duration_seconds` | histogram | `aggregate_type` | time of a load: snapshot, read and replay |
//! | `factum_projection_events_handled_total` | counter | `projection` | events a projection handled |
//! | `factum_projection_retries_total` | counter | `projection` | failed handler calls that were retried |
//! | `factum_projection_dead_letters_total` | counter | `projection` | events sent to the dead letters |
//! | `factum_projection_lag` | gauge | `projection` | positions of the log the committed checkpoint is behind the newest position the runner knows of |
//! | `factum_relay_messages_published_total` | counter | | outbox entries the publisher accepted |
//! | `factum_relay_messages_failed_total` | counter | `reason` (`retriable`, `permanent`) | outbox entries the publisher refused |
//!
//! A projection runner and an outbox relay register their metrics when
//! they start, so install the recorder first. [`describe_metrics`] gives
//! the recorder each metric's unit and help text.
//!
//! ```
//! // What an application's `main` does before starting its work, with any
//! // recorder: here metrics-util's, as the tests use.
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     factum_core::telemetry::describe_metrics();
//! });
//! # let _ = snapshotter;
//! ```

mod append;
#[cfg(test)]
pub(crate) mod capture;
mod flow;
pub(crate) mod keys;
mod load;
#[cfg(feature = "otel")]
mod otel;

pub(crate) use append::{AppendMeter, record_error};
pub(crate) use flow::{
    ProjectionInstruments, handler_failed, handler_span, log_read_span, projection_batch_span, read_done,
    relay_answered, relay_span, stream_read_span,
};
pub(crate) use load::{LoadMeter, save_all_span, save_span, saved, unit_of_work_span};
#[cfg(feature = "otel")]
pub use otel::otel_layer;

use metrics::Unit;

use crate::{Error, ExpectedVersion};

/// The names of factum's metrics, as the table above lists them.
pub mod names {
    /// Stream batches appended (counter; `aggregate_type`).
    pub const APPENDS: &str = "factum_appends_total";
    /// Events appended (counter; `aggregate_type`).
    pub const EVENTS_APPENDED: &str = "factum_events_appended_total";
    /// Appends refused by their expected version (counter; `aggregate_type`).
    pub const APPEND_CONFLICTS: &str = "factum_append_conflicts_total";
    /// Aggregates saved with new events (counter; `aggregate_type`).
    pub const SAVES: &str = "factum_saves_total";
    /// Loads of an aggregate (counter; `aggregate_type`).
    pub const LOADS: &str = "factum_loads_total";
    /// Events replayed by loads (counter; `aggregate_type`).
    pub const EVENTS_REPLAYED: &str = "factum_events_replayed_total";
    /// Time of a load, in seconds (histogram; `aggregate_type`).
    pub const REPLAY_DURATION: &str = "factum_replay_duration_seconds";
    /// Events a projection handled (counter; `projection`).
    pub const PROJECTION_EVENTS_HANDLED: &str = "factum_projection_events_handled_total";
    /// Failed handler calls that were retried (counter; `projection`).
    pub const PROJECTION_RETRIES: &str = "factum_projection_retries_total";
    /// Events sent to a projection's dead letters (counter; `projection`).
    pub const PROJECTION_DEAD_LETTERS: &str = "factum_projection_dead_letters_total";
    /// Positions a projection's checkpoint is behind (gauge; `projection`).
    pub const PROJECTION_LAG: &str = "factum_projection_lag";
    /// Outbox entries the publisher accepted (counter).
    pub const RELAY_PUBLISHED: &str = "factum_relay_messages_published_total";
    /// Outbox entries the publisher refused (counter; `reason`).
    pub const RELAY_FAILED: &str = "factum_relay_messages_failed_total";
}

/// Tells the installed recorder the unit and meaning of each of factum's
/// metrics (a Prometheus exporter prints them as `# HELP` lines).
///
/// Optional: the metrics are recorded without it. Call it once, after
/// installing the recorder.
///
/// ```
/// factum_core::telemetry::describe_metrics(); // no recorder: does nothing
/// ```
pub fn describe_metrics() {
    use names::*;
    let counters = [
        (APPENDS, "Stream batches appended"),
        (EVENTS_APPENDED, "Events appended"),
        (
            APPEND_CONFLICTS,
            "Appends refused because the stream was not at the expected version",
        ),
        (SAVES, "Aggregates saved with new events"),
        (LOADS, "Aggregates loaded"),
        (
            EVENTS_REPLAYED,
            "Events replayed by loads, after the snapshot if any",
        ),
        (PROJECTION_EVENTS_HANDLED, "Events a projection handled"),
        (
            PROJECTION_RETRIES,
            "Failed projection handler calls that were retried",
        ),
        (
            PROJECTION_DEAD_LETTERS,
            "Events sent to a projection's dead letters",
        ),
        (RELAY_PUBLISHED, "Outbox entries the publisher accepted"),
        (RELAY_FAILED, "Outbox entries the publisher refused"),
    ];
    for (name, help) in counters {
        metrics::describe_counter!(name, Unit::Count, help);
    }
    metrics::describe_histogram!(
        REPLAY_DURATION,
        Unit::Seconds,
        "Time of a load: snapshot, read and replay"
    );
    metrics::describe_gauge!(
        PROJECTION_LAG,
        Unit::Count,
        "Positions of the log a projection's committed checkpoint is behind"
    );
}

/// Records `value` in the field `name` of `span`, when a subscriber takes
/// the span: on a disabled one `Span::record` would still look the field up
/// by name, a cost paid on every save and load with no subscriber.
pub(crate) fn record(span: &tracing::Span, name: &'static str, value: impl tracing::Value) {
    if !span.is_disabled() {
        span.record(name, value);
    }
}

/// A count, version or position as a span field: a signed integer, which
/// OpenTelemetry keeps as a number (an unsigned one reaches it as text).
/// Positions and versions stay far below `i64::MAX` (PostgreSQL's `bigint`).
pub(crate) fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// What a span records of an error: its kind, never its message.
pub(crate) fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Conflict { .. } => "conflict",
        Error::NotFound { .. } => "not_found",
        Error::VersionNotFound { .. } => "version_not_found",
        Error::Serialization { .. } => "serialization",
        Error::UnknownEventType { .. } => "unknown_event_type",
        Error::Replay { .. } => "replay",
        Error::Upcast { .. } => "upcast",
        Error::SchemaTooNew { .. } => "schema_too_new",
        Error::Evolution { .. } => "evolution",
        Error::Corrupt { .. } => "corrupt",
        Error::DuplicateEventId { .. } => "duplicate_event_id",
        Error::InvalidTenant { .. } => "invalid_tenant",
        Error::InvalidRequest { .. } => "invalid_request",
        Error::EmptyBatchList => "empty_batch_list",
        Error::DuplicateStream { .. } => "duplicate_stream",
        Error::Projection { .. } => "projection",
        Error::Checkpoint { .. } => "checkpoint",
        Error::Runner { .. } => "runner",
        Error::Notify { .. } => "notify",
        Error::Store { .. } => "store",
    }
}

/// The `expected_version` field of an append: the version the stream must
/// be at (0: no stream), or none for [`ExpectedVersion::Any`].
pub(crate) fn expected_field(expected: ExpectedVersion) -> Option<u64> {
    match expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => Some(version),
    }
}
