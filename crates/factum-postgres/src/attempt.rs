//! One attempt at an append, by one of four paths: a new stream's first
//! event, one event, a batch in one statement, or the `factum_append`
//! function that takes turns on the stream (retries, and batches that
//! repeat an event id).

use factum_core::backend::{first_repeated_id, to_stored};
use factum_core::{Error, NewEvent, StreamId};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::batch::{Batch, metadata, schema_version};
use crate::conn::Conn;
use crate::{PostgresError, PostgresEventStore};

/// The SQLSTATE `factum_append` raises when the stream is not at the
/// expected version (the actual version in its DETAIL).
const CONFLICT: &str = "FA001";

/// What one attempt at an append did.
pub(crate) enum Appended {
    /// Stored: the stream's new version and the positions.
    Done(i64, Vec<i64>),
    /// Nothing written: the stream was not at the expected version (the
    /// actual version, when known).
    Conflict(Option<i64>),
    /// Nothing written: run again, taking turns (another append held the
    /// stream's turn, or the position lock was taken).
    Retry,
}

/// Why one attempt at an append failed.
pub(crate) enum AppendFailure {
    /// The request itself is refused (nothing was sent).
    Invalid(Error),
    /// No connection could be had.
    Pool(PostgresError),
    /// The server or the connection failed.
    Driver(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for AppendFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Driver(error)
    }
}

impl PostgresEventStore {
    /// One attempt at an append on a pooled connection; `take_turns` after a
    /// lost race.
    pub(crate) async fn try_append(
        &self,
        stream: &StreamId,
        expected: Option<i64>,
        take_turns: bool,
        events: &[NewEvent],
    ) -> Result<Appended, AppendFailure> {
        let client = self.client().await.map_err(AppendFailure::Pool)?;
        let result = match events {
            [event] if !take_turns && expected == Some(0) => self.append_new(&client, stream, event).await,
            [event] if !take_turns => self.append_one(&client, stream, expected, event).await,
            _ => {
                let batch = Batch::new(stream, events).map_err(AppendFailure::Invalid)?;
                if !take_turns && events.len() > 1 && first_repeated_id(events).is_none() {
                    self.append_many(&client, stream, expected, &batch).await
                } else {
                    self.append_taking_turns(&client, stream, expected, take_turns, &batch)
                        .await
                }
            }
        };
        match result {
            Err(AppendFailure::Driver(error)) => Err(AppendFailure::Driver(client.check(error))),
            other => other,
        }
    }

    /// The first event of a stream expected to be new: no version to read.
    async fn append_new(
        &self,
        client: &Conn,
        stream: &StreamId,
        event: &NewEvent,
    ) -> Result<Appended, AppendFailure> {
        let statement = client.prepare_cached(&self.shared.sql.append_new).await?;
        let schema_version = schema_version(stream, event).map_err(AppendFailure::Invalid)?;
        let metadata = metadata(stream, event).map_err(AppendFailure::Invalid)?;
        let event_type: &str = &event.event_type;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 9] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &event.event_id,
            &event_type,
            &schema_version,
            &event.payload.as_str(),
            &metadata,
            &event.occurred_at,
            &tenant,
        ];
        let row = self.scoped(client, client.query_opt(&statement, &params)).await?;
        Ok(match row {
            Some(row) => Appended::Done(1, vec![row.try_get(0)?]),
            None => Appended::Retry,
        })
    }

    /// One event, first attempt: one statement, no PL/pgSQL.
    async fn append_one(
        &self,
        client: &Conn,
        stream: &StreamId,
        expected: Option<i64>,
        event: &NewEvent,
    ) -> Result<Appended, AppendFailure> {
        let statement = client.prepare_cached(&self.shared.sql.append_one).await?;
        let schema_version = schema_version(stream, event).map_err(AppendFailure::Invalid)?;
        let metadata = metadata(stream, event).map_err(AppendFailure::Invalid)?;
        let event_type: &str = &event.event_type;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 10] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &expected,
            &event.event_id,
            &event_type,
            &schema_version,
            &event.payload.as_str(),
            &metadata,
            &event.occurred_at,
            &tenant,
        ];
        let row = self.scoped(client, client.query_one(&statement, &params)).await?;
        let actual: i64 = row.try_get(0)?;
        if !row.try_get::<_, bool>(2)? {
            return Ok(Appended::Retry);
        }
        Ok(match row.try_get::<_, Option<i64>>(1)? {
            Some(position) => Appended::Done(actual + 1, vec![position]),
            None => Appended::Conflict(Some(actual)),
        })
    }

    /// A batch with distinct ids, first attempt: one multi-row statement.
    async fn append_many(
        &self,
        client: &Conn,
        stream: &StreamId,
        expected: Option<i64>,
        batch: &Batch<'_>,
    ) -> Result<Appended, AppendFailure> {
        let statement = client.prepare_cached(&self.shared.sql.append_many).await?;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 10] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &expected,
            &batch.event_ids,
            &batch.event_types,
            &batch.schema_versions,
            &batch.payloads,
            &batch.metadata,
            &batch.occurred_at,
            &tenant,
        ];
        let row = self.scoped(client, client.query_one(&statement, &params)).await?;
        let actual: i64 = row.try_get(0)?;
        if !row.try_get::<_, bool>(2)? {
            return Ok(Appended::Retry);
        }
        let positions: Vec<i64> = row.try_get(1)?;
        Ok(if positions.len() == batch.event_ids.len() {
            let count: i64 =
                to_stored(positions.len(), "the number of events", stream).map_err(AppendFailure::Invalid)?;
            Appended::Done(actual.saturating_add(count), positions)
        } else {
            Appended::Conflict(Some(actual))
        })
    }

    /// Through `factum_append`: taking turns on the stream when asked, and
    /// reporting a batch that repeats an event id.
    async fn append_taking_turns(
        &self,
        client: &Conn,
        stream: &StreamId,
        expected: Option<i64>,
        take_turns: bool,
        batch: &Batch<'_>,
    ) -> Result<Appended, AppendFailure> {
        let statement = client.prepare_cached(&self.shared.sql.append).await?;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 11] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &expected,
            &take_turns,
            &batch.event_ids,
            &batch.event_types,
            &batch.schema_versions,
            &batch.payloads,
            &batch.metadata,
            &batch.occurred_at,
            &tenant,
        ];
        match self.scoped(client, client.query_one(&statement, &params)).await {
            Ok(row) => Ok(Appended::Done(row.try_get(0)?, row.try_get(1)?)),
            Err(error) if error.code().map(SqlState::code) == Some(CONFLICT) => {
                let reported = error
                    .as_db_error()
                    .and_then(|db| db.detail())
                    .and_then(|detail| detail.parse::<i64>().ok());
                Ok(Appended::Conflict(reported))
            }
            Err(error) => Err(error.into()),
        }
    }
}
