//! A claim on PostgreSQL: rows locked `FOR UPDATE SKIP LOCKED` in a
//! transaction that stays open while the relay publishes.

use std::sync::Arc;

use factum_core::backend::{ClaimedEntry, hand_out, query_bound};
use factum_core::{Error, OutboxClaim, OutboxEntry, Outcome};
use tokio_postgres::Row;

use super::sql::OutboxSql;
use crate::PostgresEventStore;
use crate::conn::Conn;
use crate::rows::{Decoder, ENVELOPE_COLUMNS};

/// The columns after the envelope in a claim's rows.
const ATTEMPTS: usize = ENVELOPE_COLUMNS;
const WAITING_ON: usize = ENVELOPE_COLUMNS + 1;

/// Entries locked by one relay's transaction: other relays skip them until
/// it commits (the claim is finished) or ends any other way — the claim
/// dropped, the relay's task or process gone, its connection lost — when
/// the server rolls it back and the rows are free again.
///
/// The claim owns a pooled connection for as long as it lives. Rows it
/// locked but holds back (an earlier entry of their aggregate is held
/// elsewhere) are not handed out, and are released when it ends.
pub struct PostgresOutboxClaim {
    /// `None` once committed, or when there was nothing to hold.
    conn: Option<Conn>,
    store: PostgresEventStore,
    sql: Arc<OutboxSql>,
    entries: Vec<OutboxEntry>,
}

impl std::fmt::Debug for PostgresOutboxClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOutboxClaim")
            .field("address", &self.store.address())
            .field("entries", &self.entries.len())
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl PostgresOutboxClaim {
    /// Begins a transaction and locks up to `limit` waiting rows.
    pub(super) async fn take(
        store: &PostgresEventStore,
        sql: &Arc<OutboxSql>,
        limit: usize,
        ahead: &[u64],
    ) -> Result<Self, Error> {
        let mut claim = Self {
            conn: Some(store.client().await?),
            store: store.clone(),
            sql: Arc::clone(sql),
            entries: Vec::new(),
        };
        let rows = claim.lock_rows(limit).await?;
        let mut decoder = Decoder::default();
        let candidates = rows
            .iter()
            .map(|row| candidate(&mut decoder, row))
            .collect::<Result<Vec<_>, Error>>()?;
        let (entries, _held_back) = hand_out(candidates, ahead);
        claim.entries = entries;
        if claim.entries.is_empty() {
            // Nothing to publish: let any held-back rows go at once, and
            // the connection back to the pool.
            claim.commit().await?;
        }
        Ok(claim)
    }

    async fn lock_rows(&self, limit: usize) -> Result<Vec<Row>, Error> {
        let conn = self.conn();
        let fail = |error| Error::from(self.store.fail(conn, error));
        conn.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(fail)?;
        let statement = conn
            .prepare_cached(&self.sql.claim)
            .await
            .map_err(|error| self.sql_error(error))?;
        conn.query(&statement, &[&query_bound(limit as u64)])
            .await
            .map_err(|error| self.sql_error(error))
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a PostgresOutboxClaim holds its connection until it commits")
    }

    fn sql_error(&self, error: tokio_postgres::Error) -> Error {
        super::outbox_error(&self.store, self.conn(), error)
    }

    /// Commits, and hands the connection back to the pool.
    async fn commit(&mut self) -> Result<(), Error> {
        if let Some(conn) = &self.conn {
            if self.store.is_closed() {
                return Err(self.store.closed_error().into());
            }
            conn.batch_execute("COMMIT")
                .await
                .map_err(|error| Error::from(self.store.fail(conn, error)))?;
        }
        self.conn = None;
        Ok(())
    }
}

fn candidate(decoder: &mut Decoder, row: &Row) -> Result<ClaimedEntry, Error> {
    let event = decoder.decode(row)?;
    let corrupt = |reason: String| factum_core::backend::corrupt(&event.stream, event.version, reason);
    let attempts: i32 = row
        .try_get(ATTEMPTS)
        .map_err(|error| corrupt(format!("outbox attempts: {error}")))?;
    let waiting_on: Option<i64> = row
        .try_get(WAITING_ON)
        .map_err(|error| corrupt(format!("outbox predecessor: {error}")))?;
    Ok(ClaimedEntry {
        entry: OutboxEntry::new(event.position, event, u32::try_from(attempts).unwrap_or(0)),
        waiting_on: waiting_on.and_then(|position| u64::try_from(position).ok()),
    })
}

impl OutboxClaim for PostgresOutboxClaim {
    fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// One `UPDATE` of every outcome, then `COMMIT`: the outcomes and the
    /// release of every locked row take effect together.
    async fn finish(mut self, outcomes: Vec<Outcome>) -> Result<(), Error> {
        if self.conn.is_none() {
            return Ok(());
        }
        let count = outcomes.len().min(self.entries.len());
        let mut positions = Vec::with_capacity(count);
        let mut kinds: Vec<i16> = Vec::with_capacity(count);
        let mut errors: Vec<Option<String>> = Vec::with_capacity(count);
        for (entry, outcome) in self.entries.iter().zip(outcomes) {
            positions.push(query_bound(entry.id));
            let (kind, error) = match outcome {
                Outcome::Sent => (0, None),
                Outcome::Retry(error) => (1, Some(error)),
                Outcome::Park(error) => (2, Some(error)),
            };
            kinds.push(kind);
            errors.push(error);
        }
        if !positions.is_empty() {
            let conn = self.conn();
            let statement = conn
                .prepare_cached(&self.sql.finish)
                .await
                .map_err(|error| self.sql_error(error))?;
            conn.execute(&statement, &[&positions, &kinds, &errors])
                .await
                .map_err(|error| self.sql_error(error))?;
        }
        self.commit().await
    }
}

impl Drop for PostgresOutboxClaim {
    fn drop(&mut self) {
        // Still open: close the connection, which makes the server roll back
        // and free the rows, rather than hand a connection in the middle of
        // a transaction back to the pool (see `PostgresTransaction`).
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}
