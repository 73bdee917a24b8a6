//! Turning rows of the events table into [`RecordedEvent`]s.

use std::sync::Arc;

use factum_core::{Error, Metadata, Payload, RecordedEvent, StreamId};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};
use uuid::Uuid;

/// The columns every read selects, in this order.
pub(crate) const COLUMNS: &str = "position, stream_type, stream_id, version, event_id, event_type, \
                                  schema_version, payload, metadata, occurred_at";

const POSITION: usize = 0;
const STREAM_TYPE: usize = 1;
const STREAM_ID: usize = 2;
const VERSION: usize = 3;
const EVENT_ID: usize = 4;
const EVENT_TYPE: usize = 5;
const SCHEMA_VERSION: usize = 6;
const PAYLOAD: usize = 7;
const METADATA: usize = 8;
const OCCURRED_AT: usize = 9;

/// The text of a `json` (or `jsonb`, or `text`) column, borrowed from the row.
struct JsonText<'a>(&'a str);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb format version".into()),
            }
        } else {
            raw
        };
        Ok(Self(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB | Type::TEXT | Type::VARCHAR)
    }
}

/// Decodes rows, sharing the strings that repeat (the stream being read,
/// event types) instead of allocating them per row.
#[derive(Default)]
pub(crate) struct Decoder {
    stream: Option<StreamId>,
    event_types: Vec<Arc<str>>,
}

impl Decoder {
    /// A decoder for rows of one known stream.
    pub(crate) fn for_stream(stream: StreamId) -> Self {
        Self {
            stream: Some(stream),
            event_types: Vec::new(),
        }
    }

    pub(crate) fn decode(&mut self, row: &Row) -> Result<RecordedEvent, Error> {
        let stream = self.stream(row)?;
        let raw_version: i64 = column(row, VERSION, &stream, 0)?;
        let version = u64::try_from(raw_version)
            .map_err(|_| corrupt(&stream, 0, format!("negative version {raw_version}")))?;
        let raw_position: i64 = column(row, POSITION, &stream, version)?;
        let position = u64::try_from(raw_position)
            .map_err(|_| corrupt(&stream, version, format!("negative position {raw_position}")))?;
        let event_id: Uuid = column(row, EVENT_ID, &stream, version)?;
        let event_type: &str = column(row, EVENT_TYPE, &stream, version)?;
        let event_type = self.event_type(event_type);
        let raw_schema_version: i32 = column(row, SCHEMA_VERSION, &stream, version)?;
        let schema_version = u32::try_from(raw_schema_version).map_err(|_| {
            corrupt(
                &stream,
                version,
                format!("negative schema version {raw_schema_version}"),
            )
        })?;
        let JsonText(payload) = column(row, PAYLOAD, &stream, version)?;
        let metadata: Option<JsonText<'_>> = column(row, METADATA, &stream, version)?;
        let metadata = match metadata {
            None => Metadata::default(),
            Some(JsonText(text)) => serde_json::from_str(text).map_err(|error| {
                corrupt(
                    &stream,
                    version,
                    format!("the metadata does not deserialize: {error}"),
                )
            })?,
        };
        let occurred_at: OffsetDateTime = column(row, OCCURRED_AT, &stream, version)?;
        Ok(RecordedEvent {
            event_id,
            stream,
            version,
            position,
            event_type,
            schema_version,
            payload: Payload::from_stored(payload),
            metadata,
            occurred_at,
        })
    }

    fn stream(&self, row: &Row) -> Result<StreamId, Error> {
        if let Some(stream) = &self.stream {
            return Ok(stream.clone());
        }
        let unknown = || StreamId::new("?", "?");
        let stream_type: &str = column(row, STREAM_TYPE, &unknown(), 0)?;
        let stream_id: &str = column(row, STREAM_ID, &unknown(), 0)?;
        Ok(StreamId::new(stream_type, stream_id))
    }

    fn event_type(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.event_types.iter().find(|known| ***known == *name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        if self.event_types.len() < 32 {
            self.event_types.push(name.clone());
        }
        name
    }
}

fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    stream: &StreamId,
    version: u64,
) -> Result<T, Error> {
    row.try_get(index).map_err(|error| {
        let name = row.columns().get(index).map_or("?", |column| column.name());
        corrupt(stream, version, format!("column `{name}`: {error}"))
    })
}

fn corrupt(stream: &StreamId, version: u64, reason: String) -> Error {
    Error::Corrupt {
        stream: stream.clone(),
        version,
        reason,
    }
}

/// A count or position the store computed (a version, a position): never
/// negative in a sound database, so a negative one is corruption, never 0.
pub(crate) fn stored_u64(value: i64, stream: &StreamId, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| corrupt(stream, 0, format!("negative {what} {value}")))
}
