//! Dead letters of projections in the `factum_dead_letters` table: the
//! whole envelope of the event that failed, so it can be replayed from its
//! row.

use factum_core::backend::{DeadLetterRow, Failure, dead_letter_from_row};
use factum_core::{DeadLetter, DeadLetterStore, Error, ProjectionStore, Tenancy};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresProjectionStore;
use crate::rows::Decoder;

/// The columns a listing of dead letters reads: the event's, as the
/// [`Decoder`] expects them (its tenant last), then the failure.
pub(crate) const LETTER_COLUMNS: &str = "position, stream_type, stream_id, version, event_id, event_type, \
     schema_version, payload, metadata, occurred_at, event_tenant, error, attempts, failed_at";

/// The parameters of a dead letter's row, checked.
pub(crate) struct LetterRow<'a> {
    row: DeadLetterRow<'a>,
    scope: &'a str,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    payload: &'a str,
    schema_version: i32,
    attempts: i32,
    event_tenant: String,
}

impl<'a> LetterRow<'a> {
    /// The parameters of the dead-letter insert, in column order.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        let (letter, event) = (self.row.letter, &self.row.letter.event);
        [
            &letter.projection,
            &self.row.position,
            &self.aggregate_type,
            &self.aggregate_id,
            &self.row.version,
            &event.event_id,
            &self.event_type,
            &self.schema_version,
            &self.payload,
            &self.row.metadata,
            &event.occurred_at,
            &letter.error,
            &self.attempts,
            &letter.failed_at,
            &self.event_tenant,
            &self.scope,
        ]
    }

    /// The row of `letter` kept by `store` (a tenant's view keeps letters of
    /// its own tenant's events only).
    pub(crate) fn new(letter: &'a DeadLetter, store: &'a PostgresProjectionStore) -> Result<Self, Error> {
        let row = DeadLetterRow::new(letter, store.tenant())?;
        let event = &letter.event;
        Ok(Self {
            scope: &store.scope,
            event_tenant: row.event_tenant.to_string(),
            aggregate_type: event.stream.aggregate_type(),
            aggregate_id: event.stream.aggregate_id(),
            event_type: &event.event_type,
            payload: event.payload.as_str(),
            schema_version: row.convert(event.schema_version, "schema version")?,
            attempts: row.convert(letter.attempts, "attempt count")?,
            row,
        })
    }
}

/// Dead letters from the rows of a listing.
pub(crate) fn letters_of(projection: &str, rows: &[Row]) -> Result<Vec<DeadLetter>, Error> {
    let mut decoder = Decoder::default();
    rows.iter()
        .map(|row| dead_letter_from_row(projection, decoder.decode(row)?, failure(row)))
        .collect()
}

/// The failure columns of a dead letter's row, or what is wrong with them.
fn failure(row: &Row) -> Result<Failure, String> {
    let error: String = row.try_get(11).map_err(|error| format!("error: {error}"))?;
    let attempts: i32 = row.try_get(12).map_err(|error| format!("attempts: {error}"))?;
    let attempts = u32::try_from(attempts).map_err(|_| format!("attempt count {attempts} is negative"))?;
    let failed_at: OffsetDateTime = row.try_get(13).map_err(|error| format!("failed_at: {error}"))?;
    Ok(Failure {
        error,
        attempts,
        failed_at,
    })
}

/// Each change is its own autocommitted statement.
impl DeadLetterStore for PostgresProjectionStore {
    async fn put(&self, letter: DeadLetter) -> Result<(), Error> {
        let row = LetterRow::new(&letter, self)?;
        self.autocommit(&self.sql.put_letter, async |client, statement| {
            client.execute(statement, &row.params()).await
        })
        .await?;
        Ok(())
    }

    async fn list(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters(projection).await
    }

    async fn remove(&self, projection: &str, position: u64) -> Result<bool, Error> {
        let Ok(position) = i64::try_from(position) else {
            return Ok(false);
        };
        let removed = self
            .autocommit(&self.sql.remove_letter, async |client, statement| {
                client
                    .execute(statement, &[&projection, &position, &self.scope])
                    .await
            })
            .await?;
        Ok(removed > 0)
    }

    async fn clear(&self, projection: &str) -> Result<(), Error> {
        self.autocommit(&self.sql.clear_letters, async |client, statement| {
            client.execute(statement, &[&projection, &self.scope]).await
        })
        .await?;
        Ok(())
    }
}
