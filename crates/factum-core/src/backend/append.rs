//! What an append of events whose ids are already stored means.

use std::collections::HashSet;

use uuid::Uuid;

use super::tenant::taken_elsewhere;
use crate::{AppendResult, Error, NewEvent, RecordedEvent, StreamId, Tenant};

/// Decides whether an append of `events` is the retry of an earlier one: the
/// rule every store shares for idempotency by event id.
///
/// `stored` returns the event already stored under a new event's id, if any,
/// with its tenant in its metadata (as every read fills it in); `tenant` is
/// the one `stream` lives in. The answer is `Ok(None)` when no id is stored
/// (a fresh append), the original result when every id is stored with the
/// same content in the same stream of the same tenant (a retry: write
/// nothing), [`Error::DuplicateEventId`] when an id is stored with other
/// content or in another stream (naming no stream of another tenant: see
/// [`taken_elsewhere`]), and [`Error::InvalidRequest`] when the batch mixes
/// stored and new events.
pub fn original_append(
    tenant: &Tenant,
    stream: &StreamId,
    events: &[NewEvent],
    mut stored: impl FnMut(&NewEvent) -> Result<Option<RecordedEvent>, Error>,
) -> Result<Option<AppendResult>, Error> {
    let mut original = AppendResult {
        stream_version: 0,
        positions: Vec::with_capacity(events.len()),
    };
    let mut fresh = None;
    for event in events {
        let Some(recorded) = stored(event)? else {
            fresh.get_or_insert(event.event_id);
            continue;
        };
        // Another tenant's event is never returned, compared or named.
        if recorded.metadata.tenant.as_ref() != Some(tenant) {
            return Err(taken_elsewhere(stream, event.event_id));
        }
        if recorded.stream != *stream || !recorded.same_content(event) {
            return Err(Error::DuplicateEventId {
                stream: stream.clone(),
                existing_stream: recorded.stream,
                event_id: event.event_id,
            });
        }
        original.positions.push(recorded.position);
        original.stream_version = recorded.version;
    }
    match (original.positions.is_empty(), fresh) {
        (true, _) => Ok(None),
        (false, None) => Ok(Some(original)),
        (false, Some(new_id)) => Err(Error::InvalidRequest {
            stream: stream.clone(),
            reason: format!(
                "the append mixes events already stored with new event {new_id}; retry the original batch unchanged"
            ),
        }),
    }
}

/// The error for a batch that carries `event_id` twice.
pub fn repeated_event_id(stream: &StreamId, event_id: Uuid) -> Error {
    Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!("event id {event_id} appears twice in one append"),
    }
}

/// The first event id that `events` carries twice, if any.
pub fn first_repeated_id(events: &[NewEvent]) -> Option<Uuid> {
    let mut seen = HashSet::with_capacity(events.len());
    events
        .iter()
        .find(|event| !seen.insert(event.event_id))
        .map(|event| event.event_id)
}

/// Fails with [`repeated_event_id`] when `events` carries an id twice.
pub fn check_distinct_ids(stream: &StreamId, events: &[NewEvent]) -> Result<(), Error> {
    match first_repeated_id(events) {
        Some(event_id) => Err(repeated_event_id(stream, event_id)),
        None => Ok(()),
    }
}
