//! Appends: the attempts (see `attempt`), the retries after a lost race,
//! idempotent retries by event id, and what each failure means.

use std::collections::HashMap;
use std::sync::Arc;

use factum_core::backend::{
    check_events, first_repeated_id, from_stored, original_append, repeated_event_id, taken_elsewhere,
    to_stored,
};
use factum_core::{AppendResult, Error, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::attempt::{AppendFailure, Appended};
use crate::group::{Answer, Entry, groupable};
use crate::rows::Decoder;
use crate::{PostgresError, PostgresEventStore};

/// The SQLSTATE `factum_append` raises for a batch that repeats an event id.
const REPEATED_ID: &str = "FA003";

/// How often an append that lost a race on a unique key (or found the
/// position lock taken) is run again before the error is handed to the
/// caller.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// What to do after an attempt the server refused.
enum AfterFailure {
    /// Run the append again, taking turns.
    Retry,
    /// The append was a retry of a stored one: its original result.
    Original(AppendResult),
}

impl PostgresEventStore {
    /// [`EventStore::append`](factum_core::EventStore::append): through
    /// group commit when it is on and the append may join a group (see
    /// `group`), otherwise alone.
    pub(crate) async fn append_owned(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let expected_version = expected_version(stream, expected)?;
        check_events(self.home(), stream, &events)?;
        let Some(gate) = self.shared.group.as_ref() else {
            return self
                .append_alone(stream, expected, expected_version, &events)
                .await;
        };
        if !groupable(self.home(), stream, &events) {
            return self
                .append_alone(stream, expected, expected_version, &events)
                .await;
        }
        let events: Arc<[NewEvent]> = events.into();
        // The place in flight the append runs alone in, if it was given one
        // (it is given back when dropped, after the append).
        let _place = match gate.enter(self, stream, expected_version, &events) {
            Entry::Run(slot) => Some(slot),
            // A dropped answer (the driver's runtime shut down) leaves the
            // group's outcome unknown: running alone settles it, as after a
            // lost connection.
            Entry::Grouped(answer) => match answer.await.unwrap_or(Answer::Alone(None)) {
                Answer::Done(version, positions) => return self.stored(stream, version, &positions),
                Answer::Conflict(actual) => {
                    return self.conflict(stream, expected, Some(actual), &events).await;
                }
                Answer::Alone(slot) => slot,
            },
        };
        self.append_alone(stream, expected, expected_version, &events)
            .await
    }

    /// One append in its own transaction: attempts until it is stored,
    /// conflicts or fails.
    pub(crate) async fn append_alone(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        expected_version: Option<i64>,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            let failure = match self
                .try_append(stream, expected_version, attempt > 1, events)
                .await
            {
                Ok(Appended::Done(version, positions)) => return self.stored(stream, version, &positions),
                Ok(Appended::Conflict(reported)) => {
                    return self.conflict(stream, expected, reported, events).await;
                }
                Ok(Appended::Retry) => continue,
                Err(AppendFailure::Invalid(error)) => return Err(error),
                Err(AppendFailure::Pool(error)) => return Err(error.into()),
                Err(AppendFailure::Driver(error)) => error,
            };
            match self
                .after_failure(stream, expected, events, failure, last)
                .await?
            {
                AfterFailure::Retry => continue,
                AfterFailure::Original(result) => return Ok(result),
            }
        }
        // Only the position lock, found taken on every attempt, gets here (a
        // lost race on the unique key ends in `after_failure` on the last
        // attempt). Today only a first attempt can find it taken, since later
        // ones wait for it in `factum_append`; the error stays typed as the
        // server's state, never the caller's configuration, should that change.
        Err(PostgresError::PositionLockUnavailable {
            address: self.shared.address.clone(),
            schema: self.shared.names.display.clone(),
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }

    /// The result of a stored append; wakes subscribers.
    fn stored(&self, stream: &StreamId, version: i64, positions: &[i64]) -> Result<AppendResult, Error> {
        let positions = positions
            .iter()
            .map(|&position| from_stored(position, "position", stream, 0))
            .collect::<Result<Vec<u64>, Error>>()?;
        self.announce(positions.last().copied());
        Ok(AppendResult {
            stream_version: from_stored(version, "stream version", stream, 0)?,
            positions,
        })
    }

    /// The stream was not at the expected version: a conflict, unless the
    /// append is the retry of a stored one (which meets the version check
    /// first).
    async fn conflict(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        reported: Option<i64>,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        if let Some(original) = self.retried(stream, events).await? {
            return Ok(original);
        }
        let actual = match reported {
            Some(actual) => from_stored(actual, "stream version", stream, 0)?,
            None => self.version_of(stream).await?,
        };
        Err(Error::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        })
    }

    /// What a refused attempt means: a repeated id, a retry of a stored
    /// append, a lost race (a conflict, or with `ExpectedVersion::Any` run
    /// again unless `last`), a refused value, or a failure of the server.
    async fn after_failure(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        failure: tokio_postgres::Error,
        last: bool,
    ) -> Result<AfterFailure, Error> {
        if self.role_failure(&failure) {
            return Err(self.query_error(failure).into());
        }
        let code = failure.code().map(SqlState::code).unwrap_or_default();
        // Should the server's check and this one ever disagree, the
        // server's error is reported as it is.
        if code == REPEATED_ID
            && let Some(repeated) = first_repeated_id(events)
        {
            return Err(repeated_event_id(stream, repeated));
        }
        // The transaction held a position lock: readers capped by it can
        // move on now that it is gone.
        self.announce(None);
        if code == SqlState::UNIQUE_VIOLATION.code() {
            let constraint = failure
                .as_db_error()
                .and_then(|db| db.constraint())
                .unwrap_or_default();
            if constraint == self.shared.names.event_id_constraint
                && let Some(original) = self.retried(stream, events).await?
            {
                return Ok(AfterFailure::Original(original));
            }
            if constraint == self.shared.names.stream_version_constraint {
                return self.lost_race(stream, expected, events, last).await;
            }
            if !last {
                return Ok(AfterFailure::Retry);
            }
        }
        if code.starts_with("22") {
            return Err(refused_value(stream, &failure));
        }
        Err(self.query_error(failure).into())
    }

    /// An attempt refused by the unique key on `(stream, version)`: a
    /// concurrent append to the stream committed one of the versions this
    /// one was writing, so the stream is past any version expected of it (a
    /// conflict, which reads the actual version). With
    /// `ExpectedVersion::Any` the append runs again, taking its turn, and
    /// cannot lose again to factum's writers; should writers outside factum
    /// win every attempt, the last one reports the conflict too, never the
    /// server's unique violation.
    async fn lost_race(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        last: bool,
    ) -> Result<AfterFailure, Error> {
        if expected == ExpectedVersion::Any && !last {
            return Ok(AfterFailure::Retry);
        }
        self.conflict(stream, expected, None, events)
            .await
            .map(AfterFailure::Original)
    }

    /// The original result when `events` is a retry of an earlier append
    /// (`None` when none of their ids is stored).
    async fn retried(&self, stream: &StreamId, events: &[NewEvent]) -> Result<Option<AppendResult>, Error> {
        let StoredIds {
            events: mut stored,
            elsewhere,
        } = self.stored_events(events).await?;
        if let Some(id) = first_taken_elsewhere(events, &elsewhere) {
            return Err(taken_elsewhere(stream, id));
        }
        original_append(self.home(), stream, events, |event| {
            Ok(stored.remove(&event.event_id))
        })
    }

    /// What is stored under the ids of `events`, as this store may know it.
    ///
    /// The unscoped store sees every tenant's events, and the shared rule
    /// tells another tenant's apart. A tenant's view sees only its own:
    /// ids it cannot see are asked of `taken_event_ids`, which says whether
    /// they are stored elsewhere and nothing more.
    pub(crate) async fn stored_events<'a>(
        &self,
        events: impl IntoIterator<Item = &'a NewEvent>,
    ) -> Result<StoredIds, Error> {
        let ids: Vec<Uuid> = events.into_iter().map(|event| event.event_id).collect();
        let client = self.client().await?;
        let sql = &self.shared.sql;
        let statement = client
            .prepare_cached(&sql.by_event_ids)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let rows = self
            .scoped(&client, client.query(&statement, &[&ids]))
            .await
            .map_err(|e| self.fail(&client, e))?;
        let mut decoder = Decoder::default();
        let stored = rows
            .iter()
            .map(|row| decoder.decode(row).map(|event| (event.event_id, event)))
            .collect::<Result<HashMap<Uuid, RecordedEvent>, Error>>()?;
        let mut elsewhere = Vec::new();
        if self.view.is_some() && stored.len() < ids.len() {
            let unseen: Vec<Uuid> = ids
                .iter()
                .copied()
                .filter(|id| !stored.contains_key(id))
                .collect();
            let statement = client
                .prepare_cached(&sql.taken_ids)
                .await
                .map_err(|e| self.fail(&client, e))?;
            let taken = self
                .scoped(&client, client.query(&statement, &[&unseen]))
                .await
                .map_err(|e| self.fail(&client, e))?;
            elsewhere = taken
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(|e| self.fail(&client, e))?;
        }
        Ok(StoredIds {
            events: stored,
            elsewhere,
        })
    }
}

/// The events stored under some new events' ids, as a store value may know
/// them.
pub(crate) struct StoredIds {
    /// The stored events this store value can see, by id.
    pub(crate) events: HashMap<Uuid, RecordedEvent>,
    /// The ids stored in a tenant a view cannot see (never filled for the
    /// unscoped store, which sees every tenant).
    pub(crate) elsewhere: Vec<Uuid>,
}

/// The first id of `events` stored in another tenant, if any.
pub(crate) fn first_taken_elsewhere(events: &[NewEvent], elsewhere: &[Uuid]) -> Option<Uuid> {
    events
        .iter()
        .map(|event| event.event_id)
        .find(|id| elsewhere.contains(id))
}

/// The expected version as the statements take it (NULL: any).
pub(crate) fn expected_version(stream: &StreamId, expected: ExpectedVersion) -> Result<Option<i64>, Error> {
    match expected {
        ExpectedVersion::Any => Ok(None),
        ExpectedVersion::NoStream => Ok(Some(0)),
        ExpectedVersion::Exact(version) => to_stored(version, "expected version", stream).map(Some),
    }
}

/// A data exception (SQLSTATE class 22): the server refused a value of the
/// append (a payload that is not JSON, a NUL character in a string).
pub(crate) fn refused_value(stream: &StreamId, failure: &tokio_postgres::Error) -> Error {
    let reason = failure
        .as_db_error()
        .map_or_else(|| crate::error::describe(failure), |db| db.message().to_owned());
    Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!("PostgreSQL refused a value of the append: {reason}"),
    }
}
