//! The columns of an append, checked and encoded for the statements.

use factum_core::backend::{metadata_to_json, to_stored};
use factum_core::{Error, NewEvent, StreamId};
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

/// The event's schema version as the `integer` column stores it.
pub(crate) fn schema_version(stream: &StreamId, event: &NewEvent) -> Result<i32, Error> {
    to_stored(event.schema_version, "schema version", stream)
}

/// The event's metadata as JSON text, or NULL when there is none.
pub(crate) fn metadata(stream: &StreamId, event: &NewEvent) -> Result<Option<String>, Error> {
    metadata_to_json(stream, event.event_id, &event.metadata)
}
