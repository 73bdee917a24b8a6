//! Dead letters to rows and back: the whole envelope is kept, so a dead
//! letter is replayed from its row, and a damaged row is an error naming
//! its event, never a panic.

use factum_core::{DeadLetter, Error};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use time::OffsetDateTime;

use crate::decode::{Decoder, corrupt};
use crate::error::sqlite;

/// The columns of a dead-letter read: those [`Decoder::log_event`] expects
/// (with no stream key), then the failure.
const COLUMNS: &str = "position, NULL, aggregate_type, aggregate_id, version, event_id, event_type, \
     schema_version, payload, metadata, occurred_at, error, attempts, failed_at";

const PUT_SQL: &str = "INSERT OR REPLACE INTO factum_dead_letters \
     (projection, position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, \
      payload, metadata, occurred_at, error, attempts, failed_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// Stores `letter`, replacing one of the same projection and position.
pub(crate) fn put(connection: &Connection, letter: &DeadLetter) -> Result<(), Error> {
    let event = &letter.event;
    let invalid = |reason: String| Error::InvalidRequest {
        stream: event.stream.clone(),
        reason: format!(
            "dead letter of `{}` at {}: {reason}",
            letter.projection, event.position
        ),
    };
    let metadata = if event.metadata.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(&event.metadata)
                .map_err(|error| invalid(format!("the metadata does not serialize: {error}")))?,
        )
    };
    let nanos = |at: OffsetDateTime, what: &str| {
        i64::try_from(at.unix_timestamp_nanos()).map_err(|_| {
            invalid(format!(
                "{what} {at} is outside the years 1678 to 2261 the store can keep"
            ))
        })
    };
    let number = |value: u64, what: &str| {
        i64::try_from(value).map_err(|_| invalid(format!("{what} {value} is out of range")))
    };
    let mut statement = connection.prepare_cached(PUT_SQL).map_err(sqlite)?;
    statement
        .execute(rusqlite::params![
            letter.projection,
            number(event.position, "position")?,
            event.stream.aggregate_type(),
            event.stream.aggregate_id(),
            number(event.version, "version")?,
            &event.event_id.as_bytes()[..],
            &*event.event_type,
            i64::from(event.schema_version),
            event.payload.as_str(),
            metadata,
            nanos(event.occurred_at, "the event's time")?,
            letter.error,
            i64::from(letter.attempts),
            nanos(letter.failed_at, "the failure's time")?,
        ])
        .map_err(sqlite)?;
    Ok(())
}

/// The dead letters of `projection`, in position order.
pub(crate) fn list(connection: &Connection, projection: &str) -> Result<Vec<DeadLetter>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM factum_dead_letters WHERE projection = ?1 ORDER BY position");
    let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
    let mut rows = statement.query([projection]).map_err(sqlite)?;
    let mut decoder = Decoder::default();
    let mut letters = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let event = decoder.log_event(row)?;
        let failure = (|| {
            let error = match row.get_ref(11) {
                Ok(ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                _ => return Err("its error is not text".to_owned()),
            };
            let attempts = match row.get_ref(12) {
                Ok(ValueRef::Integer(attempts)) => u32::try_from(attempts)
                    .map_err(|_| format!("its attempt count {attempts} is out of range"))?,
                _ => return Err("its attempt count is not an integer".to_owned()),
            };
            let failed_at = match row.get_ref(13) {
                Ok(ValueRef::Integer(nanos)) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                    .map_err(|error| format!("its failure time {nanos} is not a time: {error}"))?,
                _ => return Err("its failure time is not an integer".to_owned()),
            };
            Ok((error, attempts, failed_at))
        })();
        let (error, attempts, failed_at) = failure.map_err(|reason| {
            corrupt(
                &event.stream,
                event.version,
                format!(
                    "the dead letter of `{projection}` at position {} is damaged: {reason}",
                    event.position
                ),
            )
        })?;
        letters.push(DeadLetter {
            projection: projection.to_owned(),
            event,
            error,
            attempts,
            failed_at,
        });
    }
    Ok(letters)
}

/// Deletes the dead letter of `projection` at `position`; false when there
/// was none.
pub(crate) fn remove(connection: &Connection, projection: &str, position: u64) -> Result<bool, Error> {
    let Ok(position) = i64::try_from(position) else {
        return Ok(false);
    };
    let removed = connection
        .prepare_cached("DELETE FROM factum_dead_letters WHERE projection = ?1 AND position = ?2")
        .and_then(|mut statement| statement.execute((projection, position)))
        .map_err(sqlite)?;
    Ok(removed > 0)
}

/// Deletes every dead letter of `projection`.
pub(crate) fn clear(connection: &Connection, projection: &str) -> Result<(), Error> {
    connection
        .prepare_cached("DELETE FROM factum_dead_letters WHERE projection = ?1")
        .and_then(|mut statement| statement.execute([projection]))
        .map_err(sqlite)?;
    Ok(())
}
