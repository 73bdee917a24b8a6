//! Atomic appends across streams: one call of `factum_append_batches`, a
//! single statement, so one transaction and one round trip (see the crate
//! docs, "Atomic appends across streams"). Every stream of a call is the
//! store value's tenant's, and a tenant's view runs the call as it runs a
//! single append: as the tenant role, in the same round trip.

use std::collections::HashMap;

use factum_core::backend::{check_batches, from_stored, original_append_many, taken_elsewhere};
use factum_core::{AppendBatch, AppendResult, Error};
use tokio_postgres::error::SqlState;

use crate::PostgresEventStore;
use crate::append::{MAX_ATTEMPTS, StoredIds, expected_version, first_taken_elsewhere, refused_value};
use crate::attempt::AppendFailure;
use crate::batch::Appends;

/// The SQLSTATE `factum_append_batches` raises when a stream is not at its
/// batch's expected version (the batch's number and the actual version in
/// its DETAIL).
const CONFLICT: &str = "FA005";

/// The parameters of one call, as the function takes them.
fn call_of(batches: &[AppendBatch]) -> Result<Appends<'_>, Error> {
    let total = batches.iter().map(|batch| batch.events.len()).sum();
    let mut call = Appends::with_capacity(batches.len(), total);
    for batch in batches {
        call.push(
            &batch.stream,
            expected_version(&batch.stream, batch.expected)?,
            &batch.events,
        )?;
    }
    Ok(call)
}

/// What one attempt at a call did.
enum Attempt {
    /// Stored: each stream's version before the call, and the positions.
    Done(Vec<i64>, Vec<i64>),
    /// Nothing written: the batch at this index (from 0) found its stream
    /// at this version.
    Conflict(usize, i64),
}

impl PostgresEventStore {
    /// [`EventStore::append_many`](factum_core::EventStore::append_many):
    /// attempts until the call is stored, conflicts or fails.
    pub(crate) async fn append_batches(&self, batches: &[AppendBatch]) -> Result<Vec<AppendResult>, Error> {
        check_batches(self.home(), batches)?;
        let call = call_of(batches)?;
        let mut attempt = 1;
        loop {
            let failure = match self.try_call(&call).await {
                Ok(Attempt::Done(actual, positions)) => {
                    return self.stored_call(batches, &actual, &positions);
                }
                Ok(Attempt::Conflict(index, actual)) => {
                    return self.call_conflict(batches, index, actual).await;
                }
                Err(AppendFailure::Invalid(error)) => return Err(error),
                Err(AppendFailure::Pool(error)) => return Err(error.into()),
                Err(AppendFailure::Driver(error)) => error,
            };
            let last = attempt >= MAX_ATTEMPTS;
            if let Some(originals) = self.after_call_failure(batches, failure, last).await? {
                return Ok(originals);
            }
            attempt += 1;
        }
    }

    /// One attempt, on a pooled connection.
    async fn try_call(&self, call: &Appends<'_>) -> Result<Attempt, AppendFailure> {
        let client = self.client().await.map_err(AppendFailure::Pool)?;
        let tenant = self.home().as_str();
        let params = call.params(&tenant);
        let answer = match client.prepare_cached(&self.shared.sql.append_batches).await {
            Ok(statement) => self.scoped(&client, client.query_one(&statement, &params)).await,
            Err(error) => Err(error),
        };
        let error = match answer.and_then(|row| Ok(Attempt::Done(row.try_get(0)?, row.try_get(1)?))) {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        if error.code().map(SqlState::code) == Some(CONFLICT)
            && let Some(conflict) = reported_conflict(&error)
        {
            return Ok(conflict);
        }
        Err(AppendFailure::Driver(client.check(error)))
    }

    /// The results of a stored call, split by batch; wakes subscribers.
    fn stored_call(
        &self,
        batches: &[AppendBatch],
        actual: &[i64],
        positions: &[i64],
    ) -> Result<Vec<AppendResult>, Error> {
        let total: usize = batches.iter().map(|batch| batch.events.len()).sum();
        if actual.len() != batches.len() || positions.len() != total {
            return Err(Error::Corrupt {
                stream: batches[0].stream.clone(),
                version: 0,
                reason: format!(
                    "an atomic append of {total} events to {} streams returned {} positions and {} versions",
                    batches.len(),
                    positions.len(),
                    actual.len()
                ),
            });
        }
        let mut positions = positions.iter();
        let mut results = Vec::with_capacity(batches.len());
        for (batch, &actual) in batches.iter().zip(actual) {
            let stream = &batch.stream;
            let positions = positions
                .by_ref()
                .take(batch.events.len())
                .map(|&position| from_stored(position, "position", stream, 0))
                .collect::<Result<Vec<u64>, Error>>()?;
            let actual: u64 = from_stored(actual, "stream version", stream, 0)?;
            results.push(AppendResult {
                stream_version: actual + positions.len() as u64,
                positions,
            });
        }
        let head = results.iter().filter_map(|result| result.positions.last()).max();
        self.announce(head.copied());
        Ok(results)
    }

    /// A batch's stream was not at its expected version: a conflict naming
    /// it, unless the call is the retry of a stored one (which meets the
    /// version check first).
    async fn call_conflict(
        &self,
        batches: &[AppendBatch],
        index: usize,
        actual: i64,
    ) -> Result<Vec<AppendResult>, Error> {
        if let Some(originals) = self.retried_call(batches).await? {
            return Ok(originals);
        }
        let Some(batch) = batches.get(index) else {
            return Err(Error::Corrupt {
                stream: batches[0].stream.clone(),
                version: 0,
                reason: format!(
                    "the server reported a conflict on batch {index} of {}",
                    batches.len()
                ),
            });
        };
        Err(Error::Conflict {
            stream: batch.stream.clone(),
            expected: batch.expected,
            actual: from_stored(actual, "stream version", &batch.stream, 0)?,
        })
    }

    /// What a refused attempt means: a retry of a stored call (its original
    /// results), a version won by a writer outside factum (`None`: run
    /// again, unless `last`), a refused value, or a failure of the server.
    async fn after_call_failure(
        &self,
        batches: &[AppendBatch],
        failure: tokio_postgres::Error,
        last: bool,
    ) -> Result<Option<Vec<AppendResult>>, Error> {
        if self.role_failure(&failure) {
            return Err(self.query_error(failure).into());
        }
        // The transaction may have held a position lock: readers capped by
        // it can move on now that it is gone.
        self.announce(None);
        let code = failure.code().map(SqlState::code).unwrap_or_default();
        if code == SqlState::UNIQUE_VIOLATION.code() {
            let constraint = failure
                .as_db_error()
                .and_then(|db| db.constraint())
                .unwrap_or_default();
            if constraint == self.shared.names.event_id_constraint
                && let Some(originals) = self.retried_call(batches).await?
            {
                return Ok(Some(originals));
            }
            // Every factum append to these streams waited for the call's
            // turns, so only a writer outside factum can win a version.
            if constraint == self.shared.names.stream_version_constraint && !last {
                return Ok(None);
            }
        }
        if code.starts_with("22") {
            return Err(refused_value(&batches[0].stream, &failure));
        }
        Err(self.query_error(failure).into())
    }

    /// The original results when `batches` is a retry of an earlier call
    /// (`None` when none of its ids is stored), by the rule every store
    /// shares; an id stored in a tenant a view cannot see is the hidden
    /// [`Error::DuplicateEventId`], naming the batch that carries it.
    async fn retried_call(&self, batches: &[AppendBatch]) -> Result<Option<Vec<AppendResult>>, Error> {
        let StoredIds {
            events: mut stored,
            elsewhere,
        } = self
            .stored_events(batches.iter().flat_map(|batch| &batch.events))
            .await?;
        for batch in batches {
            if let Some(id) = first_taken_elsewhere(&batch.events, &elsewhere) {
                return Err(taken_elsewhere(&batch.stream, id));
            }
        }
        let mut versions = HashMap::new();
        if !stored.is_empty() {
            for batch in batches.iter().filter(|batch| batch.events.is_empty()) {
                versions.insert(&batch.stream, self.version_of(&batch.stream).await?);
            }
        }
        original_append_many(
            self.home(),
            batches,
            |event| Ok(stored.remove(&event.event_id)),
            |stream| Ok(versions.get(stream).copied().unwrap_or_default()),
        )
    }
}

/// The batch (from 0) and actual version a conflict's DETAIL reports.
fn reported_conflict(error: &tokio_postgres::Error) -> Option<Attempt> {
    let detail = error.as_db_error()?.detail()?;
    let (number, actual) = detail.split_once(' ')?;
    let number: usize = number.parse().ok()?;
    Some(Attempt::Conflict(number.checked_sub(1)?, actual.parse().ok()?))
}
