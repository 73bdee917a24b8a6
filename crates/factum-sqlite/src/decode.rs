//! Rows to events, checking every column: file content never panics, a bad
//! value is `Error::Corrupt` naming the stream and version.

use std::collections::HashMap;

use factum_core::backend::{
    EventTypes, check_next_version, corrupt, from_stored, metadata_from_json, positive_from_stored,
};
use factum_core::{Error, Payload, RecordedEvent, StreamId};
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
    event_types: EventTypes,
    streams: HashMap<i64, StreamId>,
}

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
        let version = At::new(stream, expected_version).positive(row, 1, "version")?;
        let event = self.fields(row, 0, 2, stream.clone(), version)?;
        check_next_version(stream, expected_version, &event)?;
        Ok(event)
    }

    /// Decodes a row of [`LOG_COLUMNS`].
    pub(crate) fn log_event(&mut self, row: &Row<'_>) -> Result<RecordedEvent, Error> {
        let stream = self.stream(row)?;
        let version = At::new(&stream, 0).positive(row, 4, "version")?;
        self.fields(row, 0, 5, stream, version)
    }

    fn stream(&mut self, row: &Row<'_>) -> Result<StreamId, Error> {
        let key = match row.get_ref(1) {
            Ok(ValueRef::Integer(key)) => Some(key),
            _ => None,
        };
        if let Some(stream) = key.and_then(|key| self.streams.get(&key)) {
            return Ok(stream.clone());
        }
        let position = row.get_ref(0).ok().and_then(|value| value.as_i64().ok());
        let unreadable = StreamId::new("<unreadable>", format!("at-position-{}", position.unwrap_or(0)));
        let at = At::new(&unreadable, 0);
        let stream = StreamId::new(
            at.text(row, 2, "aggregate_type")?,
            at.text(row, 3, "aggregate_id")?,
        );
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
        let at = At::new(&stream, version);
        let position = at.positive(row, position_column, "position")?;
        let event_id = match at.column(row, first)? {
            ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map_err(|_| {
                at.corrupt(format!(
                    "event_id is {} bytes long, not a 16-byte UUID",
                    bytes.len()
                ))
            })?,
            other => return Err(at.corrupt(format!("event_id is {}, not a 16-byte UUID", kind(other)))),
        };
        let event_type = self.event_types.intern(at.text(row, first + 1, "event_type")?);
        let schema_version = at.integer(row, first + 2, "schema_version")?;
        let schema_version = from_stored(schema_version, "schema version", &stream, version)?;
        let payload = Payload::from_stored(at.text(row, first + 3, "payload")?);
        let metadata = match at.column(row, first + 4)? {
            ValueRef::Null => metadata_from_json(&stream, version, None)?,
            ValueRef::Text(json) => metadata_from_json(&stream, version, Some(json))?,
            other => return Err(at.corrupt(format!("metadata is {}, not JSON text", kind(other)))),
        };
        let occurred_at = at.time(row, first + 5, "occurred_at")?;
        Ok(RecordedEvent {
            event_id,
            stream,
            version,
            position,
            event_type,
            schema_version,
            payload,
            metadata,
            occurred_at,
        })
    }
}

/// Where a value being decoded belongs: the stream and version its errors name.
pub(crate) struct At<'a> {
    stream: &'a StreamId,
    version: u64,
}

impl<'a> At<'a> {
    pub(crate) fn new(stream: &'a StreamId, version: u64) -> Self {
        Self { stream, version }
    }

    pub(crate) fn corrupt(&self, reason: String) -> Error {
        corrupt(self.stream, self.version, reason)
    }

    fn column<'row>(&self, row: &'row Row<'_>, index: usize) -> Result<ValueRef<'row>, Error> {
        row.get_ref(index)
            .map_err(|error| self.corrupt(format!("column {index} cannot be read: {error}")))
    }

    pub(crate) fn integer(&self, row: &Row<'_>, index: usize, name: &str) -> Result<i64, Error> {
        match self.column(row, index)? {
            ValueRef::Integer(number) => Ok(number),
            other => Err(self.corrupt(format!("{name} is {}, not an integer", kind(other)))),
        }
    }

    fn positive(&self, row: &Row<'_>, index: usize, name: &str) -> Result<u64, Error> {
        positive_from_stored(self.integer(row, index, name)?, name, self.stream, self.version)
    }

    pub(crate) fn text<'row>(
        &self,
        row: &'row Row<'_>,
        index: usize,
        name: &str,
    ) -> Result<&'row str, Error> {
        match self.column(row, index)? {
            ValueRef::Text(bytes) => {
                std::str::from_utf8(bytes).map_err(|_| self.corrupt(format!("{name} is not valid UTF-8")))
            }
            other => Err(self.corrupt(format!("{name} is {}, not text", kind(other)))),
        }
    }

    /// A time stored as nanoseconds since the Unix epoch.
    pub(crate) fn time(&self, row: &Row<'_>, index: usize, name: &str) -> Result<OffsetDateTime, Error> {
        let nanos = self.integer(row, index, name)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .map_err(|error| self.corrupt(format!("{name} {nanos} is not a time: {error}")))
    }
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

/// Reads an optional non-negative integer from a one-column aggregate query
/// (`max(...)`), as a stored version or position (none: 0).
pub(crate) fn optional_count(
    connection: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    stream: &StreamId,
) -> Result<u64, Error> {
    let mut statement = connection.prepare_cached(sql).map_err(sqlite)?;
    let value: Option<i64> = statement.query_row(params, |row| row.get(0)).map_err(sqlite)?;
    value.map_or(Ok(0), |number| {
        from_stored(number, "version or position", stream, 0)
    })
}
