//! Rows to events, checking every column: file content never panics, a bad
//! value is `Error::Corrupt` naming the stream and version.

use std::collections::HashMap;

use factum_core::backend::{
    EventTypes, check_version, corrupt, from_stored, metadata_from_json, positive_from_stored,
};
use factum_core::{Error, Payload, RecordedEvent, StreamId, Tenant};
use rusqlite::Row;
use rusqlite::types::ValueRef;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

use crate::error::sqlite;

/// The columns of a stream read, in the order [`Decoder::stream_event`] expects.
pub(crate) const STREAM_COLUMNS: &str =
    "position, version, event_id, event_type, schema_version, payload, metadata, occurred_at";

/// The columns of a global-log read (`events e JOIN streams s`), in the
/// order [`Decoder::log_event`] expects.
pub(crate) const LOG_COLUMNS: &str = "e.position, e.stream_key, s.aggregate_type, s.aggregate_id, s.tenant, \
     e.version, e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.occurred_at";

/// Decodes rows, sharing the event type strings, stream ids and tenants of
/// consecutive rows instead of allocating them per event.
#[derive(Default)]
pub(crate) struct Decoder {
    event_types: EventTypes,
    streams: HashMap<i64, (StreamId, Tenant)>,
    times: Times,
}

/// How many stream ids a decoder keeps to share.
const STREAMS_KEPT: usize = 4096;

impl Decoder {
    /// Decodes a row of [`STREAM_COLUMNS`] of `stream` of `tenant`, where
    /// the next version should be `expected_version`.
    pub(crate) fn stream_event(
        &mut self,
        row: &Row<'_>,
        stream: &StreamId,
        tenant: &Tenant,
        expected_version: u64,
    ) -> Result<RecordedEvent, Error> {
        let version = At::new(stream, expected_version).positive(row, 1, "version")?;
        // The stream is the one asked for by construction; its versions are
        // checked before the rest of the row is decoded.
        check_version(stream, expected_version, version)?;
        self.fields(row, 0, 2, stream.clone(), tenant, version)
    }

    /// Decodes a row of [`LOG_COLUMNS`].
    pub(crate) fn log_event(&mut self, row: &Row<'_>) -> Result<RecordedEvent, Error> {
        let (stream, tenant) = self.stream(row)?;
        let version = At::new(&stream, 0).positive(row, 5, "version")?;
        self.fields(row, 0, 6, stream, &tenant, version)
    }

    fn stream(&mut self, row: &Row<'_>) -> Result<(StreamId, Tenant), Error> {
        let key = match row.get_ref(1) {
            Ok(ValueRef::Integer(key)) => Some(key),
            _ => None,
        };
        if let Some(known) = key.and_then(|key| self.streams.get(&key)) {
            return Ok(known.clone());
        }
        let position = row.get_ref(0).ok().and_then(|value| value.as_i64().ok());
        let unreadable = StreamId::new("<unreadable>", format!("at-position-{}", position.unwrap_or(0)));
        let at = At::new(&unreadable, 0);
        let stream = StreamId::new(
            at.text(row, 2, "aggregate_type")?,
            at.text(row, 3, "aggregate_id")?,
        );
        let tenant = Tenant::new(At::new(&stream, 0).text(row, 4, "tenant")?)
            .map_err(|error| corrupt(&stream, 0, format!("the stream's tenant is damaged: {error}")))?;
        if let Some(key) = key {
            if self.streams.len() >= STREAMS_KEPT {
                self.streams.clear();
            }
            self.streams.insert(key, (stream.clone(), tenant.clone()));
        }
        Ok((stream, tenant))
    }

    /// Decodes position (at `position_column`) and the columns from
    /// `event_id` on (starting at `first`).
    fn fields(
        &mut self,
        row: &Row<'_>,
        position_column: usize,
        first: usize,
        stream: StreamId,
        tenant: &Tenant,
        version: u64,
    ) -> Result<RecordedEvent, Error> {
        // Read with plain reasons, turned into one `Error` at the end: this
        // runs once per event read, and small results keep it quick.
        let raw = (|| {
            Ok::<_, String>(RawFields {
                position: integer(row, position_column, "position")?,
                event_id: event_id(column(row, first)?)?,
                event_type: self
                    .event_types
                    .intern_utf8(text_bytes(row, first + 1, "event_type")?)
                    .map_err(|_| not_utf8("event_type"))?,
                schema_version: integer(row, first + 2, "schema_version")?,
                payload: Payload::from_stored(text(row, first + 3, "payload")?),
                metadata: match column(row, first + 4)? {
                    ValueRef::Null => None,
                    ValueRef::Text(json) => Some(json),
                    other => return Err(format!("metadata is {}, not JSON text", kind(other))),
                },
                occurred_at: self
                    .times
                    .time(integer(row, first + 5, "occurred_at")?, "occurred_at")?,
            })
        })()
        .map_err(|reason| corrupt(&stream, version, reason))?;
        Ok(RecordedEvent {
            event_id: raw.event_id,
            position: positive_from_stored(raw.position, "position", &stream, version)?,
            event_type: raw.event_type,
            schema_version: from_stored(raw.schema_version, "schema version", &stream, version)?,
            payload: raw.payload,
            metadata: metadata_from_json(&stream, version, raw.metadata, tenant)?,
            occurred_at: raw.occurred_at,
            stream,
            version,
        })
    }
}

/// The columns of an event row as read, before the shared checks.
struct RawFields<'row> {
    position: i64,
    event_id: Uuid,
    event_type: std::sync::Arc<str>,
    schema_version: i64,
    payload: Payload,
    metadata: Option<&'row [u8]>,
    occurred_at: OffsetDateTime,
}

/// Turns stored times (nanoseconds since the Unix epoch) into dates and
/// times, keeping the date of the row before: rows read together were
/// mostly recorded on one day, and working out the calendar date is most of
/// a conversion's cost.
#[derive(Default)]
struct Times {
    /// The day (since the epoch) of the last time converted, and its date.
    day: Option<(i64, Date)>,
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

impl Times {
    fn time(&mut self, nanos: i64, name: &str) -> Result<OffsetDateTime, String> {
        let day = nanos.div_euclid(NANOS_PER_DAY);
        let date = match self.day {
            Some((known, date)) if known == day => date,
            _ => {
                let converted = unix_time(nanos, name)?;
                self.day = Some((day, converted.date()));
                return Ok(converted);
            }
        };
        let of_day = nanos.rem_euclid(NANOS_PER_DAY);
        let seconds = of_day / 1_000_000_000;
        // In range by construction: `of_day` is below a day.
        let time = Time::from_hms_nano(
            (seconds / 3600) as u8,
            (seconds / 60 % 60) as u8,
            (seconds % 60) as u8,
            (of_day % 1_000_000_000) as u32,
        )
        .map_err(|error| format!("{name} {nanos} is not a time: {error}"))?;
        Ok(date.with_time(time).assume_utc())
    }
}

/// Where a value being decoded belongs: the stream and version its errors
/// name. For values read outside the hot path of [`Decoder`].
pub(crate) struct At<'a> {
    stream: &'a StreamId,
    version: u64,
}

impl<'a> At<'a> {
    pub(crate) fn new(stream: &'a StreamId, version: u64) -> Self {
        Self { stream, version }
    }

    fn corrupt(&self, reason: String) -> Error {
        corrupt(self.stream, self.version, reason)
    }

    pub(crate) fn integer(&self, row: &Row<'_>, index: usize, name: &str) -> Result<i64, Error> {
        integer(row, index, name).map_err(|reason| self.corrupt(reason))
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
        text(row, index, name).map_err(|reason| self.corrupt(reason))
    }

    /// A time stored as nanoseconds since the Unix epoch.
    pub(crate) fn time(&self, row: &Row<'_>, index: usize, name: &str) -> Result<OffsetDateTime, Error> {
        time(row, index, name).map_err(|reason| self.corrupt(reason))
    }
}

fn column<'row>(row: &'row Row<'_>, index: usize) -> Result<ValueRef<'row>, String> {
    row.get_ref(index)
        .map_err(|error| format!("column {index} cannot be read: {error}"))
}

fn integer(row: &Row<'_>, index: usize, name: &str) -> Result<i64, String> {
    match column(row, index)? {
        ValueRef::Integer(number) => Ok(number),
        other => Err(format!("{name} is {}, not an integer", kind(other))),
    }
}

fn text<'row>(row: &'row Row<'_>, index: usize, name: &str) -> Result<&'row str, String> {
    std::str::from_utf8(text_bytes(row, index, name)?).map_err(|_| not_utf8(name))
}

/// A text column's bytes, not yet checked to be UTF-8.
fn text_bytes<'row>(row: &'row Row<'_>, index: usize, name: &str) -> Result<&'row [u8], String> {
    match column(row, index)? {
        ValueRef::Text(bytes) => Ok(bytes),
        other => Err(format!("{name} is {}, not text", kind(other))),
    }
}

fn not_utf8(name: &str) -> String {
    format!("{name} is not valid UTF-8")
}

fn time(row: &Row<'_>, index: usize, name: &str) -> Result<OffsetDateTime, String> {
    unix_time(integer(row, index, name)?, name)
}

/// The full conversion of a stored time (nanoseconds since the Unix epoch).
fn unix_time(nanos: i64, name: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|error| format!("{name} {nanos} is not a time: {error}"))
}

fn event_id(value: ValueRef<'_>) -> Result<Uuid, String> {
    match value {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes)
            .map_err(|_| format!("event_id is {} bytes long, not a 16-byte UUID", bytes.len())),
        other => Err(format!("event_id is {}, not a 16-byte UUID", kind(other))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_one_day_agree_with_a_full_conversion() {
        let mut times = Times::default();
        let noon = 1_765_108_800_000_000_000_i64;
        let stored = [
            noon,
            noon + 1,
            noon + 43_199_999_999_999,
            noon + 43_200_000_000_000,
            noon - 43_200_000_000_000,
            noon - 43_200_000_000_001,
            0,
            -1,
            -NANOS_PER_DAY,
            -NANOS_PER_DAY - 1,
            -1,
            noon + 3_723_000_000_123,
            i64::MAX,
            i64::MIN,
        ];
        for nanos in stored {
            let expected = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
            assert_eq!(times.time(nanos, "occurred_at").unwrap(), expected, "{nanos}");
            // Again, from the kept date.
            assert_eq!(times.time(nanos, "occurred_at").unwrap(), expected, "{nanos}");
        }
    }
}
