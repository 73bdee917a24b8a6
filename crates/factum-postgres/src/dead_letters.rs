//! Dead letters of projections in the `factum_dead_letters` table: the
//! whole envelope of the event that failed, so it can be replayed from its
//! row.

use deadpool_postgres::ClientWrapper;
use factum_core::{DeadLetter, DeadLetterStore, Error, ProjectionStore};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresProjectionStore;
use crate::rows::Decoder;

/// The parameters of a dead letter's row, checked.
pub(crate) struct LetterRow<'a> {
    letter: &'a DeadLetter,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    payload: &'a str,
    position: i64,
    version: i64,
    schema_version: i32,
    metadata: Option<String>,
    attempts: i32,
}

impl<'a> LetterRow<'a> {
    /// The parameters of the dead-letter insert, in column order.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        let (letter, event) = (self.letter, &self.letter.event);
        [
            &letter.projection,
            &self.position,
            &self.aggregate_type,
            &self.aggregate_id,
            &self.version,
            &event.event_id,
            &self.event_type,
            &self.schema_version,
            &self.payload,
            &self.metadata,
            &event.occurred_at,
            &letter.error,
            &self.attempts,
            &letter.failed_at,
        ]
    }

    pub(crate) fn new(letter: &'a DeadLetter) -> Result<Self, Error> {
        let event = &letter.event;
        let invalid = |reason: String| Error::InvalidRequest {
            stream: event.stream.clone(),
            reason: format!(
                "dead letter of `{}` at {}: {reason}",
                letter.projection, event.position
            ),
        };
        let number = |value: u64, what: &str| {
            i64::try_from(value).map_err(|_| invalid(format!("{what} {value} is out of range")))
        };
        let metadata = if event.metadata.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&event.metadata)
                    .map_err(|error| invalid(format!("the metadata does not serialize: {error}")))?,
            )
        };
        Ok(Self {
            letter,
            aggregate_type: event.stream.aggregate_type(),
            aggregate_id: event.stream.aggregate_id(),
            event_type: &event.event_type,
            payload: event.payload.as_str(),
            position: number(event.position, "position")?,
            version: number(event.version, "version")?,
            schema_version: i32::try_from(event.schema_version)
                .map_err(|_| invalid(format!("schema version {} is out of range", event.schema_version)))?,
            metadata,
            attempts: i32::try_from(letter.attempts).unwrap_or(i32::MAX),
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
        .map(|row| {
            let event = decoder.decode(row)?;
            let failure = (|| {
                let error: String = row.try_get(10).map_err(|error| format!("error: {error}"))?;
                let attempts: i32 = row.try_get(11).map_err(|error| format!("attempts: {error}"))?;
                let attempts =
                    u32::try_from(attempts).map_err(|_| format!("attempt count {attempts} is negative"))?;
                let failed_at: OffsetDateTime =
                    row.try_get(12).map_err(|error| format!("failed_at: {error}"))?;
                Ok::<_, String>((error, attempts, failed_at))
            })();
            let (error, attempts, failed_at) = failure.map_err(|reason| Error::Corrupt {
                stream: event.stream.clone(),
                version: event.version,
                reason: format!(
                    "the dead letter of `{projection}` at position {} is damaged: {reason}",
                    event.position
                ),
            })?;
            Ok(DeadLetter {
                projection: projection.to_owned(),
                event,
                error,
                attempts,
                failed_at,
            })
        })
        .collect()
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
