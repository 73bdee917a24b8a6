//! What an append of events whose ids are already stored means.

use std::collections::HashSet;

use uuid::Uuid;

use crate::{AppendResult, Error, NewEvent, RecordedEvent, StreamId};

/// Decides whether an append of `events` is the retry of an earlier one: the
/// rule every store shares for idempotency by event id.
///
/// `stored` returns the event already stored under a new event's id, if any.
/// The answer is `Ok(None)` when no id is stored (a fresh append), the
/// original result when every id is stored with the same content in the same
/// stream (a retry: write nothing), [`Error::DuplicateEventId`] when an id is
/// stored with other content or in another stream, and
/// [`Error::InvalidRequest`] when the batch mixes stored and new events.
pub fn original_append(
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
