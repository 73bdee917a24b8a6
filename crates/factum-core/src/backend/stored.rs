//! Values crossing into a database and back: metadata as JSON, numbers in
//! the database's integer types, and the error for a damaged value.

use std::fmt::Display;

use uuid::Uuid;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Metadata, StreamId, Tenant};

/// Metadata as a store keeps it: everything but the tenant, which is where
/// the event lives (a column of its own), never text a caller wrote.
#[derive(Serialize)]
struct StoredMetadata<'a> {
    #[serde(skip_serializing_if = "no_id")]
    correlation_id: &'a Option<Uuid>,
    #[serde(skip_serializing_if = "no_id")]
    causation_id: &'a Option<Uuid>,
    #[serde(skip_serializing_if = "no_entries")]
    user: &'a BTreeMap<String, Value>,
}

fn no_id(id: &&Option<Uuid>) -> bool {
    id.is_none()
}

fn no_entries(user: &&BTreeMap<String, Value>) -> bool {
    user.is_empty()
}

/// Stored metadata read back. A `tenant` key (written before factum kept
/// tenants apart) is ignored: the event's tenant is where it lives.
#[derive(Deserialize)]
struct ReadMetadata {
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    user: BTreeMap<String, Value>,
}

/// The metadata of event `event_id` as JSON text to store, without its
/// tenant (stored apart); `None` (SQL NULL) when nothing else is set.
pub fn metadata_to_json(
    stream: &StreamId,
    event_id: Uuid,
    metadata: &Metadata,
) -> Result<Option<String>, Error> {
    if metadata.correlation_id.is_none() && metadata.causation_id.is_none() && metadata.user.is_empty() {
        return Ok(None);
    }
    let stored = StoredMetadata {
        correlation_id: &metadata.correlation_id,
        causation_id: &metadata.causation_id,
        user: &metadata.user,
    };
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|error| Error::InvalidRequest {
            stream: stream.clone(),
            reason: format!("the metadata of event {event_id} does not serialize: {error}"),
        })
}

/// Stored metadata back from its JSON text (`None`: SQL NULL, no metadata),
/// with `tenant`, the one the event lives in; text that does not parse is
/// [`Error::Corrupt`].
pub fn metadata_from_json(
    stream: &StreamId,
    version: u64,
    json: Option<&[u8]>,
    tenant: &Tenant,
) -> Result<Metadata, Error> {
    let tenant = Some(tenant.clone());
    let Some(json) = json else {
        return Ok(Metadata {
            tenant,
            ..Metadata::default()
        });
    };
    let read: ReadMetadata = serde_json::from_slice(json).map_err(|error| {
        corrupt(
            stream,
            version,
            format!("the metadata does not deserialize: {error}"),
        )
    })?;
    Ok(Metadata {
        correlation_id: read.correlation_id,
        causation_id: read.causation_id,
        tenant,
        user: read.user,
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
