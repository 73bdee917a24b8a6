//! Dead letters of projections in the `factum_dead_letters` table: the
//! whole envelope of the event that failed, so it can be replayed from its
//! row.

use deadpool_postgres::ClientWrapper;
use factum_core::backend::{DeadLetterRow, Failure, dead_letter_from_row};
use factum_core::{DeadLetter, DeadLetterStore, Error, ProjectionStore};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresProjectionStore;
use crate::rows::Decoder;

/// The parameters of a dead letter's row, checked.
pub(crate) struct LetterRow<'a> {
    row: DeadLetterRow<'a>,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    payload: &'a str,
    schema_version: i32,
    attempts: i32,
}

impl<'a> LetterRow<'a> {
    /// The parameters of the dead-letter insert, in column order.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 14] {
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
        ]
    }

    pub(crate) fn new(letter: &'a DeadLetter) -> Result<Self, Error> {
        let row = DeadLetterRow::new(letter)?;
        let event = &letter.event;
        Ok(Self {
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

async fn put_letter(
    client: &ClientWrapper,
    sql: &str,
    row: &LetterRow<'_>,
) -> Result<(), tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, &row.params()).await?;
    Ok(())
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
    let error: String = row.try_get(10).map_err(|error| format!("error: {error}"))?;
    let attempts: i32 = row.try_get(11).map_err(|error| format!("attempts: {error}"))?;
    let attempts = u32::try_from(attempts).map_err(|_| format!("attempt count {attempts} is negative"))?;
    let failed_at: OffsetDateTime = row.try_get(12).map_err(|error| format!("failed_at: {error}"))?;
    Ok(Failure {
        error,
        attempts,
        failed_at,
    })
}

/// Each change is its own autocommitted statement.
impl DeadLetterStore for PostgresProjectionStore {
    async fn put(&self, letter: DeadLetter) -> Result<(), Error> {
        let row = LetterRow::new(&letter)?;
        self.autocommit(async |client| put_letter(client, &self.sql.put_letter, &row).await)
            .await
    }

    async fn list(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters(projection).await
    }

    async fn remove(&self, projection: &str, position: u64) -> Result<bool, Error> {
        let Ok(position) = i64::try_from(position) else {
            return Ok(false);
        };
        let removed = self
            .autocommit(async |client| {
                let statement = client.prepare_cached(&self.sql.remove_letter).await?;
                client.execute(&statement, &[&projection, &position]).await
            })
            .await?;
        Ok(removed > 0)
    }

    async fn clear(&self, projection: &str) -> Result<(), Error> {
        self.autocommit(async |client| {
            let statement = client.prepare_cached(&self.sql.clear_letters).await?;
            client.execute(&statement, &[&projection]).await
        })
        .await?;
        Ok(())
    }
}
