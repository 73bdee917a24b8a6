//! The transactional outbox in the store's schema: a table that a trigger
//! on the events table fills, and the [`Outbox`] relays claim from. Why a
//! trigger, and how claims work: see the crate documentation.

mod claim;
mod sql;

use std::sync::Arc;

use factum_core::backend::query_bound;
use factum_core::{Error, Outbox, OutboxEntry};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;

pub use claim::PostgresOutboxClaim;
use sql::OutboxSql;
pub(crate) use sql::{OutboxNames, capture_function, indexes};

use crate::conn::Conn;
use crate::migrate::MIGRATION_LOCK_CLASS;
use crate::rows::{Decoder, ENVELOPE_COLUMNS};
use crate::{PostgresError, PostgresEventStore};

impl PostgresEventStore {
    /// Switches the transactional outbox on for this store's schema:
    /// creates the `factum_outbox` table and a trigger on the events table
    /// that writes one row per append and stream (an *entry*: the stream,
    /// its first and last version appended, the first event's position),
    /// in the transaction that appends the events, whoever appends. Idempotent, and safe to run from several processes
    /// (they take turns with `ensure_schema`); call it after
    /// [`ensure_schema`](Self::ensure_schema).
    ///
    /// Events stored before this call have no rows: the outbox publishes
    /// what is saved from now on.
    ///
    /// ```no_run
    /// # use factum_core::Outbox;
    /// # use factum_postgres::PostgresEventStore;
    /// # async fn demo() -> Result<(), factum_core::Error> {
    /// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    /// store.ensure_schema().await?;
    /// store.enable_outbox().await?;
    /// assert!(store.outbox_enabled().await?);
    /// println!("{} events wait to be published", store.outbox().pending().await?);
    /// # Ok(()) }
    /// ```
    pub async fn enable_outbox(&self) -> Result<(), Error> {
        let sql = OutboxSql::new(self);
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.query_error(e))?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&MIGRATION_LOCK_CLASS, &self.shared.options.schema],
            )
            .await
            .map_err(|e| self.query_error(e))?;
        transaction
            .batch_execute(&sql.enable)
            .await
            .map_err(|e| self.query_error(e))?;
        transaction.commit().await.map_err(|e| self.query_error(e))?;
        Ok(())
    }

    /// Switches the outbox off: drops the trigger, so new events get no
    /// rows. The table and its unsent rows stay, for a relay to drain;
    /// [`enable_outbox`](Self::enable_outbox) switches it on again.
    pub async fn disable_outbox(&self) -> Result<(), Error> {
        let sql = OutboxSql::new(self);
        let client = self.client().await?;
        client
            .batch_execute(&sql.disable)
            .await
            .map_err(|error| self.fail(&client, error).into())
    }

    /// Whether the outbox is on for this store's schema (by any process).
    pub async fn outbox_enabled(&self) -> Result<bool, Error> {
        let sql = OutboxSql::new(self);
        let client = self.client().await?;
        let row = client
            .query_one(&sql.enabled, &[&sql.events, &sql.trigger])
            .await
            .map_err(|error| self.fail(&client, error))?;
        row.try_get(0).map_err(|error| self.fail(&client, error).into())
    }

    /// The outbox of this store, for an [`OutboxRelay`](factum_core::OutboxRelay)
    /// (or an operator: [`Outbox::parked`], [`Outbox::requeue`]).
    pub fn outbox(&self) -> PostgresOutbox {
        PostgresOutbox::new(self)
    }
}

/// The outbox of a [`PostgresEventStore`], as relays claim from it (see
/// the [crate documentation](crate#transactional-outbox) for how claims
/// work).
///
/// Cheap to clone. Each claim takes a connection from the store's pool for
/// as long as the relay publishes it; a running relay holds up to two
/// claims at once (it claims the next batch while it publishes one).
///
/// ```no_run
/// # use factum_core::{OutboxRelay, Publisher};
/// # use factum_postgres::PostgresEventStore;
/// # async fn demo(store: PostgresEventStore, bus: impl Publisher) -> Result<(), factum_core::Error> {
/// store.enable_outbox().await?;
/// let relay = OutboxRelay::new(store.outbox(), bus).spawn();
/// // … until the application stops:
/// relay.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOutbox {
    store: PostgresEventStore,
    sql: Arc<OutboxSql>,
}

impl PostgresOutbox {
    /// The outbox of `store`'s schema.
    pub fn new(store: &PostgresEventStore) -> Self {
        Self {
            store: store.clone(),
            sql: Arc::new(OutboxSql::new(store)),
        }
    }

    async fn client(&self) -> Result<Conn, Error> {
        Ok(self.store.client().await?)
    }
}

/// A failed statement on the outbox: [`PostgresError::OutboxMissing`] when
/// the table is not there.
pub(crate) fn outbox_error(store: &PostgresEventStore, conn: &Conn, error: tokio_postgres::Error) -> Error {
    let missing = error.code() == Some(&SqlState::UNDEFINED_TABLE)
        && error
            .as_db_error()
            .is_some_and(|db| db.message().contains("outbox"));
    if missing {
        return PostgresError::OutboxMissing {
            address: store.address().to_owned(),
            schema: store.schema_name().to_owned(),
        }
        .into();
    }
    store.fail(conn, error).into()
}

impl Outbox for PostgresOutbox {
    type Claim = PostgresOutboxClaim;

    /// Locks the oldest waiting entries in a transaction held until the
    /// claim is finished or dropped, and hands out their events, up to
    /// `limit` events: whole entries while they fit, then the first events
    /// of the next one (its other events stay in line, and `finish` splits
    /// them off into an entry of their own). A claim of a `limit` smaller
    /// than the first entry hands out `limit` of its events.
    async fn claim(&self, limit: usize) -> Result<PostgresOutboxClaim, Error> {
        PostgresOutboxClaim::take(&self.store, &self.sql, limit, &[]).await
    }

    async fn claim_after(&self, limit: usize, ahead: &[u64]) -> Result<PostgresOutboxClaim, Error> {
        PostgresOutboxClaim::take(&self.store, &self.sql, limit, ahead).await
    }

    async fn prune(&self, sent_before: OffsetDateTime) -> Result<u64, Error> {
        let conn = self.client().await?;
        let row = conn
            .query_one(&self.sql.prune, &[&sent_before])
            .await
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        let pruned: i64 = row
            .try_get(0)
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        Ok(u64::try_from(pruned).unwrap_or(0))
    }

    async fn parked(&self, limit: usize) -> Result<Vec<(OutboxEntry, String)>, Error> {
        let conn = self.client().await?;
        let rows = conn
            .query(&self.sql.parked, &[&query_bound(limit as u64)])
            .await
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        let mut decoder = Decoder::default();
        rows.iter()
            .map(|row| {
                let event = decoder.decode(row)?;
                let corrupt =
                    |reason: String| factum_core::backend::corrupt(&event.stream, event.version, reason);
                let attempts: i32 = row
                    .try_get(ENVELOPE_COLUMNS)
                    .map_err(|error| corrupt(format!("outbox attempts: {error}")))?;
                let error: Option<String> = row
                    .try_get(ENVELOPE_COLUMNS + 1)
                    .map_err(|error| corrupt(format!("outbox last_error: {error}")))?;
                let attempts = u32::try_from(attempts).unwrap_or(0);
                Ok((
                    OutboxEntry::new(event.position, event, attempts),
                    error.unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn requeue(&self, id: u64) -> Result<bool, Error> {
        let conn = self.client().await?;
        let changed = conn
            .execute(&self.sql.requeue, &[&query_bound(id)])
            .await
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        Ok(changed > 0)
    }

    async fn pending(&self) -> Result<u64, Error> {
        let conn = self.client().await?;
        let row = conn
            .query_one(&self.sql.pending, &[])
            .await
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        let pending: i64 = row
            .try_get(0)
            .map_err(|error| outbox_error(&self.store, &conn, error))?;
        Ok(u64::try_from(pending).unwrap_or(0))
    }
}
