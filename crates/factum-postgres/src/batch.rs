//! The columns of an append, checked and encoded for the statements.

use factum_core::backend::{metadata_to_json, to_stored};
use factum_core::{Error, NewEvent, StreamId};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The columns of one append, as the arrays the batch statements take.
pub(crate) struct Batch<'a> {
    pub(crate) event_ids: Vec<Uuid>,
    pub(crate) event_types: Vec<&'a str>,
    pub(crate) schema_versions: Vec<i32>,
    pub(crate) payloads: Vec<&'a str>,
    pub(crate) metadata: Vec<Option<String>>,
    pub(crate) occurred_at: Vec<time::OffsetDateTime>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(stream: &StreamId, events: &'a [NewEvent]) -> Result<Self, Error> {
        let mut batch = Self::with_capacity(events.len());
        for event in events {
            batch.push(stream, event)?;
        }
        Ok(batch)
    }

    /// Room for `events` events.
    pub(crate) fn with_capacity(events: usize) -> Self {
        Batch {
            event_ids: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            occurred_at: Vec::with_capacity(events),
        }
    }

    /// Adds the columns of `event`, bound for `stream`.
    pub(crate) fn push(&mut self, stream: &StreamId, event: &'a NewEvent) -> Result<(), Error> {
        self.event_ids.push(event.event_id);
        self.event_types.push(&event.event_type);
        self.schema_versions.push(schema_version(stream, event)?);
        self.payloads.push(event.payload.as_str());
        self.metadata.push(metadata(stream, event)?);
        self.occurred_at.push(event.occurred_at);
        Ok(())
    }
}

/// The columns of several appends sent in one statement (a group, an
/// atomic call across streams): per append, its stream and expected
/// version; per event, its append's number and its place in it (both from
/// 1), then its columns.
pub(crate) struct Appends<'a> {
    stream_types: Vec<&'a str>,
    stream_ids: Vec<&'a str>,
    expected: Vec<Option<i64>>,
    numbers: Vec<i32>,
    places: Vec<i32>,
    events: Batch<'a>,
}

impl<'a> Appends<'a> {
    /// Room for `appends` appends of `events` events in all.
    pub(crate) fn with_capacity(appends: usize, events: usize) -> Self {
        Self {
            stream_types: Vec::with_capacity(appends),
            stream_ids: Vec::with_capacity(appends),
            expected: Vec::with_capacity(appends),
            numbers: Vec::with_capacity(events),
            places: Vec::with_capacity(events),
            events: Batch::with_capacity(events),
        }
    }

    /// Adds an append of `events` to `stream` (`expected`: NULL for any
    /// version) as the next one.
    pub(crate) fn push(
        &mut self,
        stream: &'a StreamId,
        expected: Option<i64>,
        events: &'a [NewEvent],
    ) -> Result<(), Error> {
        let number: i32 = to_stored(self.stream_types.len() + 1, "append number", stream)?;
        self.stream_types.push(stream.aggregate_type());
        self.stream_ids.push(stream.aggregate_id());
        self.expected.push(expected);
        for (place, event) in (1..).zip(events) {
            self.numbers.push(number);
            self.places.push(to_stored(place, "place in the append", stream)?);
            self.events.push(stream, event)?;
        }
        Ok(())
    }

    /// The statement's parameters `$1`…`$12`, the last being `tenant`.
    pub(crate) fn params<'s>(&'s self, tenant: &'s (dyn ToSql + Sync)) -> [&'s (dyn ToSql + Sync); 12] {
        let events = &self.events;
        [
            &self.stream_types,
            &self.stream_ids,
            &self.expected,
            &self.numbers,
            &self.places,
            &events.event_ids,
            &events.event_types,
            &events.schema_versions,
            &events.payloads,
            &events.metadata,
            &events.occurred_at,
            tenant,
        ]
    }
}

/// The event's schema version as the `integer` column stores it.
pub(crate) fn schema_version(stream: &StreamId, event: &NewEvent) -> Result<i32, Error> {
    to_stored(event.schema_version, "schema version", stream)
}

/// The event's metadata as JSON text, or NULL when there is none.
pub(crate) fn metadata(stream: &StreamId, event: &NewEvent) -> Result<Option<String>, Error> {
    metadata_to_json(stream, event.event_id, &event.metadata)
}
