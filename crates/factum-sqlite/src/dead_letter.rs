//! Dead letters to rows and back: the whole envelope is kept, so a dead
//! letter is replayed from its row, and a damaged row is an error naming
//! its event, never a panic. The checks shared with every backend are in
//! [`factum_core::backend`].

use factum_core::backend::{DeadLetterRow, Failure, dead_letter_from_row};
use factum_core::{DeadLetter, Error, Tenant};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use time::OffsetDateTime;

use crate::decode::Decoder;
use crate::encode::nanos;
use crate::error::sqlite;

/// The columns of a dead-letter read: those [`Decoder::log_event`] expects
/// (with no stream key), then the failure.
const COLUMNS: &str = "position, NULL, aggregate_type, aggregate_id, event_tenant, version, event_id, \
     event_type, schema_version, payload, metadata, occurred_at, error, attempts, failed_at";

const PUT_SQL: &str = "INSERT OR REPLACE INTO factum_dead_letters \
     (projection, position, aggregate_type, aggregate_id, version, event_id, event_type, schema_version, \
      payload, metadata, occurred_at, error, attempts, failed_at, tenant, event_tenant) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// Stores `letter` in `scope` (stored by a view of `tenant`), replacing one
/// of the same projection and position.
pub(crate) fn put(
    connection: &Connection,
    scope: &str,
    tenant: Option<&Tenant>,
    letter: &DeadLetter,
) -> Result<(), Error> {
    let row = DeadLetterRow::new(letter, tenant)?;
    let event = &letter.event;
    let time =
        |at: OffsetDateTime, what: &str| nanos(at).map_err(|reason| row.invalid(format!("{what} {reason}")));
    let mut statement = connection.prepare_cached(PUT_SQL).map_err(sqlite)?;
    statement
        .execute(rusqlite::params![
            letter.projection,
            row.position,
            event.stream.aggregate_type(),
            event.stream.aggregate_id(),
            row.version,
            &event.event_id.as_bytes()[..],
            &*event.event_type,
            i64::from(event.schema_version),
            event.payload.as_str(),
            row.metadata,
            time(event.occurred_at, "the event's time")?,
            letter.error,
            i64::from(letter.attempts),
            time(letter.failed_at, "the failure's time")?,
            scope,
            row.event_tenant.as_str(),
        ])
        .map_err(sqlite)?;
    Ok(())
}

/// The dead letters of `projection` in `scope`, in position order.
pub(crate) fn list(connection: &Connection, scope: &str, projection: &str) -> Result<Vec<DeadLetter>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM factum_dead_letters WHERE tenant = ?1 AND projection = ?2 ORDER BY position"
    );
    let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
    let mut rows = statement.query([scope, projection]).map_err(sqlite)?;
    let mut decoder = Decoder::default();
    let mut letters = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let event = decoder.log_event(row)?;
        letters.push(dead_letter_from_row(projection, event, failure(row))?);
    }
    Ok(letters)
}

/// The failure columns of a dead letter's row, or what is wrong with them.
fn failure(row: &rusqlite::Row<'_>) -> Result<Failure, String> {
    let error = match row.get_ref(12) {
        Ok(ValueRef::Text(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => return Err("its error is not text".to_owned()),
    };
    let attempts = match row.get_ref(13) {
        Ok(ValueRef::Integer(attempts)) => {
            u32::try_from(attempts).map_err(|_| format!("its attempt count {attempts} is out of range"))?
        }
        _ => return Err("its attempt count is not an integer".to_owned()),
    };
    let failed_at = match row.get_ref(14) {
        Ok(ValueRef::Integer(nanos)) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .map_err(|error| format!("its failure time {nanos} is not a time: {error}"))?,
        _ => return Err("its failure time is not an integer".to_owned()),
    };
    Ok(Failure {
        error,
        attempts,
        failed_at,
    })
}

/// Deletes the dead letter of `projection` in `scope` at `position`; false
/// when there was none.
pub(crate) fn remove(
    connection: &Connection,
    scope: &str,
    projection: &str,
    position: u64,
) -> Result<bool, Error> {
    // No stored position exceeds `i64::MAX`: a larger one has no letter.
    let Ok(position) = i64::try_from(position) else {
        return Ok(false);
    };
    let removed = connection
        .prepare_cached(
            "DELETE FROM factum_dead_letters WHERE tenant = ?3 AND projection = ?1 AND position = ?2",
        )
        .and_then(|mut statement| statement.execute((projection, position, scope)))
        .map_err(sqlite)?;
    Ok(removed > 0)
}

/// Deletes every dead letter of `projection` in `scope`.
pub(crate) fn clear(connection: &Connection, scope: &str, projection: &str) -> Result<(), Error> {
    connection
        .prepare_cached("DELETE FROM factum_dead_letters WHERE tenant = ?1 AND projection = ?2")
        .and_then(|mut statement| statement.execute([scope, projection]))
        .map_err(sqlite)?;
    Ok(())
}
