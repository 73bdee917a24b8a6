//! The rules every event store shares, written once: what a retried append
//! returns, how metadata and numbers cross into a database and back, and
//! what a damaged row is called.
//!
//! For backends (factum-sqlite, factum-postgres, the in-memory store); not
//! a stable API, and hidden from the documentation for that reason.

use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AppendResult, DeadLetter, Error, Metadata, NewEvent, RecordedEvent, StreamId};

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

/// The metadata of event `event_id` as JSON text to store; `None` (SQL
/// NULL) when it is empty.
pub fn metadata_to_json(
    stream: &StreamId,
    event_id: Uuid,
    metadata: &Metadata,
) -> Result<Option<String>, Error> {
    if metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(metadata)
        .map(Some)
        .map_err(|error| Error::InvalidRequest {
            stream: stream.clone(),
            reason: format!("the metadata of event {event_id} does not serialize: {error}"),
        })
}

/// Stored metadata back from its JSON text (`None`: SQL NULL, no metadata);
/// text that does not parse is [`Error::Corrupt`].
pub fn metadata_from_json(stream: &StreamId, version: u64, json: Option<&[u8]>) -> Result<Metadata, Error> {
    let Some(json) = json else {
        return Ok(Metadata::default());
    };
    serde_json::from_slice(json).map_err(|error| {
        corrupt(
            stream,
            version,
            format!("the metadata does not deserialize: {error}"),
        )
    })
}

/// The error for a damaged stored value of the event at `version` of
/// `stream` (0 when the version is unknown).
pub fn corrupt(stream: &StreamId, version: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        stream: stream.clone(),
        version,
        reason: reason.into(),
    }
}

/// A number read from the database as the type it stands for: a stored
/// value out of range (a negative version, position or count) is
/// [`Error::Corrupt`], never silently 0.
pub fn from_stored<T, S>(stored: S, what: &str, stream: &StreamId, version: u64) -> Result<T, Error>
where
    T: TryFrom<S>,
    S: Copy + Display,
{
    T::try_from(stored).map_err(|_| {
        corrupt(
            stream,
            version,
            format!("the stored {what} {stored} is out of range"),
        )
    })
}

/// A stored version or position: at least 1, else [`Error::Corrupt`].
pub fn positive_from_stored(stored: i64, what: &str, stream: &StreamId, version: u64) -> Result<u64, Error> {
    match u64::try_from(stored) {
        Ok(number) if number > 0 => Ok(number),
        _ => Err(corrupt(
            stream,
            version,
            format!("the stored {what} {stored} is not positive"),
        )),
    }
}

/// A number to store, in the database's type: one the column cannot hold
/// is [`Error::InvalidRequest`], never clamped.
pub fn to_stored<T, S>(value: S, what: &str, stream: &StreamId) -> Result<T, Error>
where
    T: TryFrom<S>,
    S: Copy + Display,
{
    T::try_from(value).map_err(|_| Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!("{what} {value} is beyond what the store can keep"),
    })
}

/// A version or position used only as a query bound (`position > ?`,
/// `version >= ?`): no stored value exceeds `i64::MAX`, so a larger bound
/// finds what `i64::MAX` finds.
pub fn query_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A projection's checkpoint as the store keeps it: a position beyond
/// `i64::MAX` is [`Error::Checkpoint`].
pub fn checkpoint_to_stored(projection: &str, position: u64) -> Result<i64, Error> {
    i64::try_from(position).map_err(|_| Error::Checkpoint {
        projection: projection.to_owned(),
        message: format!("position {position} is beyond what the store can keep"),
    })
}

/// A stored checkpoint back (`None`: no row, 0); a negative value is
/// [`Error::Checkpoint`], never 0, since starting over would handle every
/// event again.
pub fn checkpoint_from_stored(projection: &str, stored: Option<i64>) -> Result<u64, Error> {
    let Some(stored) = stored else {
        return Ok(0);
    };
    u64::try_from(stored).map_err(|_| Error::Checkpoint {
        projection: projection.to_owned(),
        message: format!("the stored checkpoint {stored} is not a position"),
    })
}

/// Checks that `event` is the next event of a replay of `stream`: in that
/// stream, at `expected_version`. Versions in a stream start at 1 and have
/// no gaps, so anything else is [`Error::Corrupt`]. Every replay, and every
/// read of a stream that can meet stored rows, uses this check (or
/// [`check_version`], its version half, on a row not yet decoded).
pub fn check_next_version(
    stream: &StreamId,
    expected_version: u64,
    event: &RecordedEvent,
) -> Result<(), Error> {
    if event.stream != *stream {
        return Err(corrupt(
            stream,
            expected_version,
            format!(
                "a read of this stream returned event {} of stream {}",
                event.event_id, event.stream
            ),
        ));
    }
    check_version(stream, expected_version, event.version)
}

/// Checks that the version `found` stored next in `stream` is
/// `expected_version`; a gap or a repeat is [`Error::Corrupt`].
pub fn check_version(stream: &StreamId, expected_version: u64, found: u64) -> Result<(), Error> {
    if found == expected_version {
        return Ok(());
    }
    Err(corrupt(
        stream,
        expected_version,
        format!("version {expected_version} is missing: the next stored version is {found}"),
    ))
}

/// Shares the event type strings of the rows a reader decodes, instead of
/// allocating one per event: a stream holds few distinct types.
#[derive(Debug, Default)]
pub struct EventTypes {
    known: Vec<Arc<str>>,
}

/// How many distinct event types an [`EventTypes`] keeps.
const EVENT_TYPES_KEPT: usize = 32;

impl EventTypes {
    /// The shared string for `name`.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.known.iter().find(|known| ***known == *name) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        if self.known.len() >= EVENT_TYPES_KEPT {
            // A reader meeting many types (the global log) starts over
            // rather than scanning a long list for every row.
            self.known.clear();
        }
        self.known.push(shared.clone());
        shared
    }
}

/// The columns of a dead letter's row that need checking before they are
/// stored; the rest are the letter's own fields.
#[derive(Debug)]
pub struct DeadLetterRow<'a> {
    /// The letter.
    pub letter: &'a DeadLetter,
    /// The event's position.
    pub position: i64,
    /// The event's version in its stream.
    pub version: i64,
    /// The event's metadata as JSON text (`None`: empty).
    pub metadata: Option<String>,
}

impl<'a> DeadLetterRow<'a> {
    /// Checks and converts `letter` for storage.
    pub fn new(letter: &'a DeadLetter) -> Result<Self, Error> {
        let row = Self {
            letter,
            position: 0,
            version: 0,
            metadata: None,
        };
        let event = &letter.event;
        Ok(Self {
            position: row.convert(event.position, "position")?,
            version: row.convert(event.version, "version")?,
            metadata: metadata_to_json(&event.stream, event.event_id, &event.metadata)?,
            ..row
        })
    }

    /// `value` as the column's type; [`Error::InvalidRequest`] naming the
    /// letter when the column cannot hold it.
    pub fn convert<T, S>(&self, value: S, what: &str) -> Result<T, Error>
    where
        T: TryFrom<S>,
        S: Copy + Display,
    {
        T::try_from(value).map_err(|_| self.invalid(format!("{what} {value} is out of range")))
    }

    /// The error for a letter the store cannot keep.
    pub fn invalid(&self, reason: String) -> Error {
        let event = &self.letter.event;
        Error::InvalidRequest {
            stream: event.stream.clone(),
            reason: format!(
                "dead letter of `{}` at {}: {reason}",
                self.letter.projection, event.position
            ),
        }
    }
}

/// What a dead letter's row holds besides its event, as read back.
#[derive(Debug)]
pub struct Failure {
    /// What the handler reported.
    pub error: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// When the last one failed.
    pub failed_at: OffsetDateTime,
}

/// A dead letter read back from a row: `failure` is its failure columns, or
/// what is wrong with them ([`Error::Corrupt`] naming the letter).
pub fn dead_letter_from_row(
    projection: &str,
    event: RecordedEvent,
    failure: Result<Failure, String>,
) -> Result<DeadLetter, Error> {
    let failure = failure.map_err(|reason| {
        corrupt(
            &event.stream,
            event.version,
            format!(
                "the dead letter of `{projection}` at position {} is damaged: {reason}",
                event.position
            ),
        )
    })?;
    Ok(DeadLetter {
        projection: projection.to_owned(),
        event,
        error: failure.error,
        attempts: failure.attempts,
        failed_at: failure.failed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn stream() -> StreamId {
        StreamId::new("Counter", "1")
    }

    #[test]
    fn a_negative_stored_number_is_corrupt_not_zero() {
        let error = from_stored::<u64, i64>(-1, "version", &stream(), 3).unwrap_err();
        assert!(matches!(error, Error::Corrupt { version: 3, .. }), "{error}");
        assert_eq!(from_stored::<u64, i64>(7, "version", &stream(), 3).unwrap(), 7);
        assert!(positive_from_stored(0, "position", &stream(), 0).is_err());
    }

    #[test]
    fn a_negative_checkpoint_is_an_error_not_a_fresh_start() {
        assert_eq!(checkpoint_from_stored("p", None).unwrap(), 0);
        assert_eq!(checkpoint_from_stored("p", Some(9)).unwrap(), 9);
        assert!(matches!(
            checkpoint_from_stored("p", Some(-1)),
            Err(Error::Checkpoint { .. })
        ));
        assert!(matches!(
            checkpoint_to_stored("p", u64::MAX),
            Err(Error::Checkpoint { .. })
        ));
    }

    #[test]
    fn a_number_too_large_to_store_is_refused() {
        let error = to_stored::<i64, u64>(u64::MAX, "version", &stream()).unwrap_err();
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error}");
        assert_eq!(query_bound(u64::MAX), i64::MAX);
    }

    #[test]
    fn a_repeated_id_is_found() {
        let event = NewEvent::new("created", Payload::parse("{}").unwrap());
        let other = NewEvent::new("created", Payload::parse("{}").unwrap());
        assert_eq!(first_repeated_id(&[event.clone(), other.clone()]), None);
        let repeated = [event.clone(), other, event.clone()];
        assert_eq!(first_repeated_id(&repeated), Some(event.event_id));
        assert!(check_distinct_ids(&stream(), &repeated).is_err());
    }

    #[test]
    fn metadata_round_trips_and_empty_is_null() {
        let empty = Metadata::default();
        assert_eq!(metadata_to_json(&stream(), Uuid::nil(), &empty).unwrap(), None);
        let metadata = Metadata {
            tenant: Some("acme".to_owned()),
            ..Metadata::default()
        };
        let json = metadata_to_json(&stream(), Uuid::nil(), &metadata)
            .unwrap()
            .unwrap();
        assert_eq!(
            metadata_from_json(&stream(), 1, Some(json.as_bytes())).unwrap(),
            metadata
        );
        assert!(metadata_from_json(&stream(), 1, Some(b"{")).is_err());
    }

    #[test]
    fn only_the_next_version_of_the_same_stream_follows() {
        let recorded = |stream: StreamId, version: u64| RecordedEvent {
            event_id: Uuid::now_v7(),
            stream,
            version,
            position: version,
            event_type: Arc::from("added"),
            schema_version: 1,
            payload: Payload::parse("{}").unwrap(),
            metadata: Metadata::default(),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(check_next_version(&stream(), 2, &recorded(stream(), 2)).is_ok());
        let gap = check_next_version(&stream(), 2, &recorded(stream(), 3)).unwrap_err();
        assert!(matches!(gap, Error::Corrupt { version: 2, .. }), "{gap}");
        let other =
            check_next_version(&stream(), 2, &recorded(StreamId::new("Counter", "2"), 2)).unwrap_err();
        assert!(matches!(other, Error::Corrupt { version: 2, .. }), "{other}");
    }

    #[test]
    fn event_types_are_shared() {
        let mut types = EventTypes::default();
        let first = types.intern("created");
        assert!(Arc::ptr_eq(&first, &types.intern("created")));
        for number in 0..100 {
            assert_eq!(&*types.intern(&number.to_string()), number.to_string());
        }
    }
}
