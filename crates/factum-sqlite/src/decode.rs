//! Rows to events, checking every column: file content never panics, a bad
//! value is `Error::Corrupt` naming the stream and version.

use std::collections::HashMap;
use std::sync::Arc;

use factum_core::{Error, Metadata, Payload, RecordedEvent, StreamId};
use rusqlite::Row;
use rusqlite::types::ValueRef;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::sqlite;

/// The columns of a stream read, in the order [`Decoder::stream_event`] expects.
pub(crate) const STREAM_COLUMNS: &str =
    "position, version, event_id, event_type, schema_version, payload, metadata, occurred_at";

/// The columns of a global-log read (`events e JOIN streams s`), in the
/// order [`Decoder::log_event`] expects.
pub(crate) const LOG_COLUMNS: &str = "e.position, e.stream_key, s.aggregate_type, s.aggregate_id, e.version, \
     e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.occurred_at";

/// Decodes rows, sharing the event type strings and stream ids of
/// consecutive rows instead of allocating them per event.
#[derive(Default)]
pub(crate) struct Decoder {
    event_types: Vec<Arc<str>>,
    streams: HashMap<i64, StreamId>,
}

/// How many distinct event types a decoder keeps to share.
const EVENT_TYPES_KEPT: usize = 32;
/// How many stream ids a decoder keeps to share.
const STREAMS_KEPT: usize = 4096;

impl Decoder {
    /// Decodes a row of [`STREAM_COLUMNS`] of `stream`, where the next
    /// version should be `expected_version`.
    pub(crate) fn stream_event(
        &mut self,
        row: &Row<'_>,
        stream: &StreamId,
        expected_version: u64,
    ) -> Result<RecordedEvent, Error> {
        let version = column(row, 1).and_then(|value| positive(value, "version"));
        let version = version.map_err(|reason| corrupt(stream, expected_version, reason))?;
        if version != expected_version {
            return Err(corrupt(
                stream,
                expected_version,
                format!("version {expected_version} is missing: the next stored version is {version}"),
            ));
        }
        self.fields(row, 0, 2, stream.clone(), version)
    }

    /// Decodes a row of [`LOG_COLUMNS`].
    pub(crate) fn log_event(&mut self, row: &Row<'_>) -> Result<RecordedEvent, Error> {
        let stream = self.stream(row)?;
        let version = column(row, 4).and_then(|value| positive(value, "version"));
        let version = version.map_err(|reason| corrupt(&stream, 0, reason))?;
        self.fields(row, 0, 5, stream, version)
    }

    fn stream(&mut self, row: &Row<'_>) -> Result<StreamId, Error> {
        let key = match column(row, 1) {
            Ok(ValueRef::Integer(key)) => Some(key),
            _ => None,
        };
        if let Some(stream) = key.and_then(|key| self.streams.get(&key)) {
            return Ok(stream.clone());
        }
        let aggregate_type = column(row, 2).and_then(|value| text(value, "aggregate_type"));
        let aggregate_id = column(row, 3).and_then(|value| text(value, "aggregate_id"));
        let (aggregate_type, aggregate_id) = match (aggregate_type, aggregate_id) {
            (Ok(aggregate_type), Ok(aggregate_id)) => (aggregate_type, aggregate_id),
            (Err(reason), _) | (_, Err(reason)) => {
                let position = column(row, 0)
                    .ok()
                    .and_then(|value| value.as_i64().ok())
                    .unwrap_or(0);
                let stream = StreamId::new("<unreadable>", format!("at-position-{position}"));
                return Err(corrupt(&stream, 0, reason));
            }
        };
        let stream = StreamId::new(aggregate_type, aggregate_id);
        if let Some(key) = key {
            if self.streams.len() >= STREAMS_KEPT {
                self.streams.clear();
            }
            self.streams.insert(key, stream.clone());
        }
        Ok(stream)
    }

    /// Decodes position (at `position_column`) and the columns from
    /// `event_id` on (starting at `first`).
    fn fields(
        &mut self,
        row: &Row<'_>,
        position_column: usize,
        first: usize,
        stream: StreamId,
        version: u64,
    ) -> Result<RecordedEvent, Error> {
        let decoded = (|| {
            let position = positive(column(row, position_column)?, "position")?;
            let event_id = match column(row, first)? {
                ValueRef::Blob(bytes) => Uuid::from_slice(bytes)
                    .map_err(|_| format!("event_id is {} bytes long, not a 16-byte UUID", bytes.len()))?,
                other => return Err(format!("event_id is {}, not a 16-byte UUID", kind(other))),
            };
            let event_type = self.event_type(text(column(row, first + 1)?, "event_type")?);
            let schema_version = integer(column(row, first + 2)?, "schema_version")?;
            let schema_version = u32::try_from(schema_version)
                .map_err(|_| format!("schema_version {schema_version} is out of range"))?;
            let payload = Payload::from_stored(text(column(row, first + 3)?, "payload")?);
            let metadata = match column(row, first + 4)? {
                ValueRef::Null => Metadata::default(),
                ValueRef::Text(bytes) => serde_json::from_slice(bytes)
                    .map_err(|error| format!("metadata is not valid: {error}"))?,
                other => return Err(format!("metadata is {}, not JSON text", kind(other))),
            };
            let nanos = integer(column(row, first + 5)?, "occurred_at")?;
            let occurred_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                .map_err(|error| format!("occurred_at {nanos} is not a time: {error}"))?;
            Ok(RecordedEvent {
                event_id,
                stream: stream.clone(),
                version,
                position,
                event_type,
                schema_version,
                payload,
                metadata,
                occurred_at,
            })
        })();
        decoded.map_err(|reason| corrupt(&stream, version, reason))
    }

    fn event_type(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.event_types.iter().find(|known| ***known == *text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        if self.event_types.len() >= EVENT_TYPES_KEPT {
            self.event_types.clear();
        }
        self.event_types.push(shared.clone());
        shared
    }
}

/// The error for a damaged stored value.
pub(crate) fn corrupt(stream: &StreamId, version: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        stream: stream.clone(),
        version,
        reason: reason.into(),
    }
}

fn column<'row>(row: &'row Row<'_>, index: usize) -> Result<ValueRef<'row>, String> {
    row.get_ref(index)
        .map_err(|error| format!("column {index} cannot be read: {error}"))
}

fn kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn integer(value: ValueRef<'_>, name: &str) -> Result<i64, String> {
    match value {
        ValueRef::Integer(number) => Ok(number),
        other => Err(format!("{name} is {}, not an integer", kind(other))),
    }
}

fn positive(value: ValueRef<'_>, name: &str) -> Result<u64, String> {
    let number = integer(value, name)?;
    u64::try_from(number)
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| format!("{name} {number} is not positive"))
}

fn text<'row>(value: ValueRef<'row>, name: &str) -> Result<&'row str, String> {
    match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|_| format!("{name} is not valid UTF-8")),
        other => Err(format!("{name} is {}, not text", kind(other))),
    }
}

/// Reads an optional non-negative integer from a one-column aggregate query
/// (`max(...)`), as a stored version or position.
pub(crate) fn optional_count(
    connection: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    stream: &StreamId,
) -> Result<u64, Error> {
    let mut statement = connection.prepare_cached(sql).map_err(sqlite)?;
    let value: Option<i64> = statement.query_row(params, |row| row.get(0)).map_err(sqlite)?;
    match value {
        None => Ok(0),
        Some(number) => u64::try_from(number).map_err(|_| {
            corrupt(
                stream,
                0,
                format!("a stored version or position is negative ({number})"),
            )
        }),
    }
}
