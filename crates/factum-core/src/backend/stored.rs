//! Values crossing into a database and back: metadata as JSON, numbers in
//! the database's integer types, and the error for a damaged value.

use std::fmt::Display;

use uuid::Uuid;

use crate::{Error, Metadata, StreamId};

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

/// The error of a checkpoint compare-and-set that found the checkpoint of
/// `projection` at `found` instead of `expected`: another instance moved it.
pub fn checkpoint_moved(projection: &str, expected: u64, found: u64) -> Error {
    Error::Checkpoint {
        projection: projection.to_owned(),
        message: format!(
            "expected the checkpoint at {expected}, found {found}: another instance is running this projection"
        ),
    }
}
