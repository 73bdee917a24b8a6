//! Turning rows of the events table into [`RecordedEvent`]s.

use factum_core::backend::{
    EventTypes, check_version, corrupt, from_stored, metadata_from_json, positive_from_stored,
};
use factum_core::{Error, Payload, RecordedEvent, StreamId, Tenant};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};
use uuid::Uuid;

/// The columns every read selects, in this order.
pub(crate) const COLUMNS: &str = "position, stream_type, stream_id, version, event_id, event_type, \
                                  schema_version, payload, metadata, occurred_at, tenant";

/// How many columns [`COLUMNS`] names: queries that read more after the
/// envelope find them from here.
pub(crate) const ENVELOPE_COLUMNS: usize = 11;

pub(crate) const POSITION: usize = 0;
const STREAM_TYPE: usize = 1;
const STREAM_ID: usize = 2;
const VERSION: usize = 3;
const EVENT_ID: usize = 4;
const EVENT_TYPE: usize = 5;
const SCHEMA_VERSION: usize = 6;
const PAYLOAD: usize = 7;
const METADATA: usize = 8;
const OCCURRED_AT: usize = 9;
const TENANT: usize = 10;

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

/// Decodes rows, sharing the event type strings, streams and tenants that
/// repeat instead of allocating one per row.
#[derive(Default)]
pub(crate) struct Decoder {
    event_types: EventTypes,
    /// The tenant of the last row that named one.
    tenant: Option<Tenant>,
    /// The stream of the last row read by [`Decoder::decode`]: the global
    /// log holds runs of one stream's events (a batch, a busy aggregate),
    /// which then share one `StreamId` instead of allocating three times
    /// per row.
    stream: Option<StreamId>,
}

impl Decoder {
    /// Decodes a row of `stream` of `tenant` (its stream and tenant columns
    /// are not read), where the next version should be `expected_version`:
    /// the version is checked before the rest of the row is decoded.
    pub(crate) fn stream_event(
        &mut self,
        row: &Row,
        stream: &StreamId,
        tenant: &Tenant,
        expected_version: u64,
    ) -> Result<RecordedEvent, Error> {
        let version = version(row, stream)?;
        check_version(stream, expected_version, version)?;
        self.fields(row, stream.clone(), tenant, version)
    }

    /// Decodes a row of any stream and tenant, named by its columns.
    pub(crate) fn decode(&mut self, row: &Row) -> Result<RecordedEvent, Error> {
        let unknown = StreamId::new("?", "?");
        let stream_type: &str = column(row, STREAM_TYPE, &unknown, 0)?;
        let stream_id: &str = column(row, STREAM_ID, &unknown, 0)?;
        let stream = match &self.stream {
            Some(last) if last.aggregate_id() == stream_id && last.aggregate_type() == stream_type => {
                last.clone()
            }
            _ => {
                let stream = StreamId::new(stream_type, stream_id);
                self.stream = Some(stream.clone());
                stream
            }
        };
        let version = version(row, &stream)?;
        let tenant = self.tenant(row, &stream, version)?;
        self.fields(row, stream, &tenant, version)
    }

    /// The row's tenant, shared with the last row's when they agree.
    fn tenant(&mut self, row: &Row, stream: &StreamId, version: u64) -> Result<Tenant, Error> {
        let name: &str = column(row, TENANT, stream, version)?;
        if let Some(known) = self.tenant.as_ref().filter(|known| known.as_str() == name) {
            return Ok(known.clone());
        }
        let tenant = Tenant::new(name)
            .map_err(|error| corrupt(stream, version, format!("the stored tenant is damaged: {error}")))?;
        self.tenant = Some(tenant.clone());
        Ok(tenant)
    }

    /// The columns after the stream and the version.
    fn fields(
        &mut self,
        row: &Row,
        stream: StreamId,
        tenant: &Tenant,
        version: u64,
    ) -> Result<RecordedEvent, Error> {
        let raw_position: i64 = column(row, POSITION, &stream, version)?;
        let position = positive_from_stored(raw_position, "position", &stream, version)?;
        let event_id: Uuid = column(row, EVENT_ID, &stream, version)?;
        let event_type = self
            .event_types
            .intern(column(row, EVENT_TYPE, &stream, version)?);
        let raw_schema_version: i32 = column(row, SCHEMA_VERSION, &stream, version)?;
        let schema_version = from_stored(raw_schema_version, "schema version", &stream, version)?;
        let JsonText(payload) = column(row, PAYLOAD, &stream, version)?;
        let metadata: Option<JsonText<'_>> = column(row, METADATA, &stream, version)?;
        let metadata = metadata_from_json(
            &stream,
            version,
            metadata.map(|JsonText(text)| text.as_bytes()),
            tenant,
        )?;
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
}

/// The version of the event in `row`: at least 1.
fn version(row: &Row, stream: &StreamId) -> Result<u64, Error> {
    positive_from_stored(column(row, VERSION, stream, 0)?, "version", stream, 0)
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

#[cfg(test)]
mod column_count {
    #[test]
    fn envelope_columns_counts_the_columns() {
        assert_eq!(super::COLUMNS.split(',').count(), super::ENVELOPE_COLUMNS);
    }
}
