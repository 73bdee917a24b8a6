//! An atomic append across streams, run on the writer's connection inside
//! the group's transaction: every batch's checks first, then all inserts
//! in one savepoint, so the call is one unit of its group. It fails alone
//! (its savepoint is undone, its neighbours commit), and its positions are
//! contiguous, since the writer is the only one handing them out. Every
//! stream of the call is the tenant's the command carries, as for a single
//! append.

use factum_core::backend::{first_conflict, original_append_many};
use factum_core::{AppendBatch, AppendResult, Error, Tenant};
use rusqlite::Connection;

use crate::append::{Head, Rows, insert, is_unique_violation, stored_events, stream_state};
use crate::error::sqlite;
use crate::writer::execute;

/// Appends every batch of `batches` to streams of `tenant` (already checked
/// by `factum_core::backend::check_batches`), or none.
pub(crate) fn append_many(
    connection: &Connection,
    head: &mut Head,
    tenant: &Tenant,
    batches: &[AppendBatch],
) -> Result<Vec<AppendResult>, Error> {
    let mut keys = Vec::with_capacity(batches.len());
    let mut actual = Vec::with_capacity(batches.len());
    for batch in batches {
        let state = stream_state(connection, tenant, &batch.stream)?;
        keys.push(state.map(|(key, _)| key));
        actual.push(state.map_or(0, |(_, version)| version));
    }
    if let Some(conflict) = first_conflict(batches, actual.iter().copied()) {
        // A retry meets the version check first: it is still a retry.
        return retried(connection, tenant, batches)?.ok_or(conflict);
    }
    let mut position = head.get(connection)?;
    let mut rows = Vec::with_capacity(batches.len());
    for (batch, &actual) in batches.iter().zip(&actual) {
        rows.push(Rows::new(tenant, &batch.stream, &batch.events, position, actual)?);
        position += batch.events.len() as u64;
    }
    execute(connection, "SAVEPOINT factum_atomic")?;
    match insert_all(connection, batches, &keys, &rows) {
        Ok(()) => {
            execute(connection, "RELEASE factum_atomic")?;
            head.advance_to(position);
            // A batch without events reports its stream's version.
            Ok(rows.iter().map(Rows::result).collect())
        }
        Err(error) => {
            execute(connection, "ROLLBACK TO factum_atomic")?;
            execute(connection, "RELEASE factum_atomic")?;
            // The call carries no id twice (checked before it was queued):
            // a unique violation is an id stored already.
            if is_unique_violation(&error) {
                retried(connection, tenant, batches)?.ok_or_else(|| sqlite(error))
            } else {
                Err(sqlite(error))
            }
        }
    }
}

fn insert_all(
    connection: &Connection,
    batches: &[AppendBatch],
    keys: &[Option<i64>],
    rows: &[Rows<'_>],
) -> rusqlite::Result<()> {
    for ((batch, &key), rows) in batches.iter().zip(keys).zip(rows) {
        if !batch.events.is_empty() {
            insert(connection, &batch.stream, key, rows)?;
        }
    }
    Ok(())
}

/// The original results when `batches` is a retry of an earlier call, by
/// the rule every store shares.
fn retried(
    connection: &Connection,
    tenant: &Tenant,
    batches: &[AppendBatch],
) -> Result<Option<Vec<AppendResult>>, Error> {
    original_append_many(tenant, batches, stored_events(connection)?, |stream| {
        Ok(stream_state(connection, tenant, stream)?.map_or(0, |(_, version)| version))
    })
}
