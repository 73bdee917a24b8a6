//! The columns of an append, checked and encoded for the statements.

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
        let mut batch = Batch {
            event_ids: Vec::with_capacity(events.len()),
            event_types: Vec::with_capacity(events.len()),
            schema_versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            occurred_at: Vec::with_capacity(events.len()),
        };
        for event in events {
            batch.event_ids.push(event.event_id);
            batch.event_types.push(&event.event_type);
            batch.schema_versions.push(schema_version(stream, event)?);
            batch.payloads.push(event.payload.as_str());
            batch.metadata.push(encode_metadata(stream, event)?);
            batch.occurred_at.push(event.occurred_at);
        }
        Ok(batch)
    }

    /// True when no event id repeats (such a batch goes to `factum_append`,
    /// which reports it).
    pub(crate) fn ids_are_distinct(&self) -> bool {
        let mut ids = self.event_ids.clone();
        ids.sort_unstable();
        ids.windows(2).all(|pair| pair[0] != pair[1])
    }
}

/// The event's schema version as the `integer` column stores it.
pub(crate) fn schema_version(stream: &StreamId, event: &NewEvent) -> Result<i32, Error> {
    i32::try_from(event.schema_version).map_err(|_| Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!(
            "schema version {} of event {} is above {}",
            event.schema_version,
            event.event_id,
            i32::MAX
        ),
    })
}

/// The metadata as JSON text, or NULL when there is none.
pub(crate) fn encode_metadata(stream: &StreamId, event: &NewEvent) -> Result<Option<String>, Error> {
    if event.metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&event.metadata)
        .map(Some)
        .map_err(|error| Error::InvalidRequest {
            stream: stream.clone(),
            reason: format!(
                "the metadata of event {} does not serialize: {error}",
                event.event_id
            ),
        })
}
