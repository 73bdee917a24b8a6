//! Projections whose read model lives in the events' PostgreSQL database:
//! the [`ProjectionStore`] (read model and checkpoint committed together)
//! and the plain [`CheckpointStore`]. Dead letters and leases have files of
//! their own.

use std::sync::Arc;

use factum_core::backend::{
    checkpoint_from_stored, checkpoint_moved, checkpoint_to_stored, projection_scope,
};
use factum_core::{CheckpointStore, DeadLetter, Error, ProjectionStore, Tenancy, Tenant};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::dead_letters::{LETTER_COLUMNS, LetterRow, letters_of};
use crate::{PostgresEventStore, PostgresTransaction};

/// Read models, checkpoints, dead letters and leases of projections, kept in
/// the database (and schema) of a [`PostgresEventStore`].
///
/// As a [`ProjectionStore`] it gives a
/// [`TransactionalProjection`](factum_core::TransactionalProjection)'s
/// handler a [`PostgresTransaction`]: the handler's SQL on the read model's
/// tables and the projection's checkpoint commit together, so each event
/// takes effect exactly once, whenever the process dies. The checkpoint is
/// a compare-and-set (`INSERT … ON CONFLICT DO UPDATE … WHERE position =
/// expected`, or `UPDATE … WHERE position = expected`), which fences out a
/// second instance that lost its lease without noticing.
///
/// It is also a [`CheckpointStore`] and a [`DeadLetterStore`](factum_core::DeadLetterStore) (each call its
/// own autocommitted statement) for plain [`Projection`](factum_core::Projection)s,
/// and a [`Lease`](factum_core::Lease) shared by every process that uses the database.
///
/// Tables, in the store's schema and with its prefix (schema version 3; an
/// older schema gains them in [`ensure_schema`](PostgresEventStore::ensure_schema)):
/// `factum_checkpoints`, `factum_dead_letters`, `factum_leases`. Create the
/// read model's own tables with [`execute_batch`](Self::execute_batch), and
/// read them through [`query`](Self::query) or the event store's
/// [`pool`](PostgresEventStore::pool).
///
/// Made from a tenant's view of the events (or with [`Tenancy::for_tenant`]),
/// it keeps that tenant's checkpoints, dead letters and leases, and runs
/// everything (transactions, [`query`](Self::query), [`execute_batch`](Self::execute_batch))
/// as the tenant role with the tenant set: grant that role what your read
/// model's tables need, and row-level security on them can use
/// `current_setting('factum.tenant')` too.
///
/// Cheap to clone; clones share the event store's pool.
///
/// ```no_run
/// use factum_core::{HandlerError, ProjectionRunner, RecordedEvent, TransactionalProjection};
/// use factum_postgres::{PostgresEventStore, PostgresProjectionStore, PostgresTransaction};
///
/// /// Counts events per type, in a table beside the events.
/// struct EventTypes;
///
/// impl TransactionalProjection<PostgresProjectionStore> for EventTypes {
///     fn name(&self) -> &str {
///         "event_types"
///     }
///
///     async fn handle(
///         &mut self,
///         transaction: &mut PostgresTransaction,
///         event: &RecordedEvent,
///     ) -> Result<(), HandlerError> {
///         transaction
///             .execute(
///                 "INSERT INTO event_types (event_type, count) VALUES ($1, 1) \
///                  ON CONFLICT (event_type) DO UPDATE SET count = event_types.count + 1",
///                 &[&&*event.event_type],
///             )
///             .await?;
///         Ok(())
///     }
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let events = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// events.ensure_schema().await?;
/// let store = PostgresProjectionStore::new(&events);
/// store
///     .execute_batch("CREATE TABLE IF NOT EXISTS event_types (event_type text PRIMARY KEY, count bigint NOT NULL)")
///     .await?;
/// let runner = ProjectionRunner::transactional(events.clone(), EventTypes, store.clone());
/// # let _ = runner;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresProjectionStore {
    events: PostgresEventStore,
    pub(crate) sql: Arc<Sql>,
    /// The key of this store's projection state: its tenant, or `$all`.
    pub(crate) scope: String,
}

/// The statements of the store, with its names filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) load: String,
    pub(crate) move_from_zero: String,
    pub(crate) move_from: String,
    pub(crate) save: String,
    pub(crate) put_letter: String,
    pub(crate) list_letters: String,
    pub(crate) remove_letter: String,
    pub(crate) clear_letters: String,
    pub(crate) acquire: String,
    pub(crate) release: String,
}

impl PostgresProjectionStore {
    /// The projection store in the database and schema of `events`, over its
    /// connection pool; a tenant's when `events` is a tenant's view.
    ///
    /// The tables exist once [`PostgresEventStore::ensure_schema`] has run.
    /// Every statement takes the scope (the tenant, or `$all`) as its last
    /// parameter.
    pub fn new(events: &PostgresEventStore) -> Self {
        let names = &events.shared.names;
        let (checkpoints, letters, leases) = (&names.checkpoints, &names.dead_letters, &names.leases);
        let sql = Sql {
            load: format!("SELECT position FROM {checkpoints} WHERE tenant = $2 AND projection = $1"),
            // No row counts as 0; a row at 0 (a rebuild) is moved too.
            move_from_zero: format!(
                "INSERT INTO {checkpoints} AS c (projection, position, tenant) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, projection) DO UPDATE SET position = EXCLUDED.position WHERE c.position = 0"
            ),
            move_from: format!(
                "UPDATE {checkpoints} SET position = $3 WHERE tenant = $4 AND projection = $1 AND position = $2"
            ),
            save: format!(
                "INSERT INTO {checkpoints} (projection, position, tenant) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, projection) DO UPDATE SET position = EXCLUDED.position"
            ),
            put_letter: format!(
                "INSERT INTO {letters} (projection, position, stream_type, stream_id, version, event_id, \
                 event_type, schema_version, payload, metadata, occurred_at, error, attempts, failed_at, \
                 event_tenant, tenant) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::json, $10::text::json, $11, $12, $13, $14, \
                 $15, $16) \
                 ON CONFLICT (tenant, projection, position) DO UPDATE SET stream_type = EXCLUDED.stream_type, \
                 stream_id = EXCLUDED.stream_id, version = EXCLUDED.version, event_id = EXCLUDED.event_id, \
                 event_type = EXCLUDED.event_type, schema_version = EXCLUDED.schema_version, \
                 payload = EXCLUDED.payload, metadata = EXCLUDED.metadata, occurred_at = EXCLUDED.occurred_at, \
                 error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = EXCLUDED.failed_at, \
                 event_tenant = EXCLUDED.event_tenant"
            ),
            list_letters: format!(
                "SELECT {LETTER_COLUMNS} FROM {letters} WHERE tenant = $2 AND projection = $1 ORDER BY position"
            ),
            remove_letter: format!(
                "DELETE FROM {letters} WHERE tenant = $3 AND projection = $1 AND position = $2"
            ),
            clear_letters: format!("DELETE FROM {letters} WHERE tenant = $2 AND projection = $1"),
            // The server's clock decides, for every instance: no skew
            // between the hosts of competing instances.
            acquire: format!(
                "INSERT INTO {leases} AS l (projection, holder, expires_at, tenant) \
                 VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 microsecond', $4) \
                 ON CONFLICT (tenant, projection) DO UPDATE SET holder = EXCLUDED.holder, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()"
            ),
            release: format!("DELETE FROM {leases} WHERE tenant = $3 AND projection = $1 AND holder = $2"),
        };
        Self {
            events: events.clone(),
            sql: Arc::new(sql),
            scope: projection_scope(events.tenant()).to_owned(),
        }
    }

    /// The event store whose database this is.
    pub fn events(&self) -> &PostgresEventStore {
        &self.events
    }

    /// Runs `sql` (several statements separated by semicolons, without
    /// parameters) in one round trip, outside any projection transaction:
    /// for creating a read model's tables (`CREATE TABLE IF NOT EXISTS …`)
    /// before its runner starts. Several statements run in one implicit
    /// transaction.
    pub async fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        let conn = self.events.client().await?;
        self.events
            .scoped(&conn, conn.batch_execute(sql))
            .await
            .map_err(|error| self.events.fail(&conn, error).into())
    }

    /// Runs the query `sql` with `params` on a pooled connection, outside
    /// any projection transaction: for serving a read model. It sees
    /// committed data only.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        self.autocommit(sql, async |conn, statement| conn.query(statement, params).await)
            .await
    }

    /// Prepares `sql` on a pooled connection, then runs `work` with it as
    /// its own statement (in the tenant's transaction on a tenant's view:
    /// `work` must send one statement when first polled), mapping the
    /// driver's errors.
    pub(crate) async fn autocommit<R>(
        &self,
        sql: &str,
        work: impl AsyncFnOnce(
            &tokio_postgres::Client,
            &tokio_postgres::Statement,
        ) -> Result<R, tokio_postgres::Error>,
    ) -> Result<R, Error> {
        let conn = self.events.client().await?;
        let result = async {
            // Prepared first, outside the tenant's transaction: the
            // statement itself then goes out between its BEGIN and COMMIT.
            let statement = conn.prepare_cached(sql).await?;
            self.events.scoped(&conn, work(&conn, &statement)).await
        }
        .await;
        result.map_err(|error| self.events.fail(&conn, error).into())
    }
}

/// The store of a tenant's view of the same events: its projections'
/// checkpoints, dead letters and leases are that tenant's, and it runs as
/// the tenant role.
impl Tenancy for PostgresProjectionStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self::new(&self.events.for_tenant(tenant)?))
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.events.tenant()
    }
}

/// The checkpoint in `row` (none: 0).
fn checkpoint_of(projection: &str, row: Option<Row>) -> Result<u64, Error> {
    let stored = row
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()
        .map_err(|error| Error::Checkpoint {
            projection: projection.to_owned(),
            message: format!("the stored checkpoint cannot be read: {error}"),
        })?;
    checkpoint_from_stored(projection, stored)
}

impl ProjectionStore for PostgresProjectionStore {
    type Transaction = PostgresTransaction;

    async fn checkpoint(&self, projection: &str) -> Result<u64, Error> {
        let row = self
            .autocommit(&self.sql.load, async |client, statement| {
                client.query_opt(statement, &[&projection, &self.scope]).await
            })
            .await?;
        checkpoint_of(projection, row)
    }

    async fn begin(&self, _projection: &str) -> Result<PostgresTransaction, Error> {
        PostgresTransaction::begin(&self.events).await
    }

    async fn save_checkpoint(
        &self,
        transaction: &mut PostgresTransaction,
        projection: &str,
        expected: u64,
        position: u64,
    ) -> Result<(), Error> {
        let (expected_stored, position_stored) = (
            checkpoint_to_stored(projection, expected)?,
            checkpoint_to_stored(projection, position)?,
        );
        let moved = if expected == 0 {
            transaction
                .execute(
                    &self.sql.move_from_zero,
                    &[&projection, &position_stored, &self.scope],
                )
                .await?
        } else {
            transaction
                .execute(
                    &self.sql.move_from,
                    &[&projection, &expected_stored, &position_stored, &self.scope],
                )
                .await?
        };
        if moved == 0 {
            let found = checkpoint_of(
                projection,
                transaction
                    .query_opt(&self.sql.load, &[&projection, &self.scope])
                    .await?,
            )?;
            return Err(checkpoint_moved(projection, expected, found));
        }
        Ok(())
    }

    async fn put_dead_letter(
        &self,
        transaction: &mut PostgresTransaction,
        letter: DeadLetter,
    ) -> Result<(), Error> {
        let row = LetterRow::new(&letter, self)?;
        transaction.execute(&self.sql.put_letter, &row.params()).await?;
        Ok(())
    }

    async fn remove_dead_letter(
        &self,
        transaction: &mut PostgresTransaction,
        projection: &str,
        position: u64,
    ) -> Result<bool, Error> {
        let Ok(position) = i64::try_from(position) else {
            return Ok(false);
        };
        let removed = transaction
            .execute(&self.sql.remove_letter, &[&projection, &position, &self.scope])
            .await?;
        Ok(removed > 0)
    }

    async fn clear_dead_letters(
        &self,
        transaction: &mut PostgresTransaction,
        projection: &str,
    ) -> Result<(), Error> {
        transaction
            .execute(&self.sql.clear_letters, &[&projection, &self.scope])
            .await?;
        Ok(())
    }

    async fn commit(&self, transaction: PostgresTransaction) -> Result<(), Error> {
        transaction.commit().await
    }

    async fn rollback(&self, transaction: PostgresTransaction) -> Result<(), Error> {
        transaction.rollback().await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        let rows = self
            .autocommit(&self.sql.list_letters, async |client, statement| {
                client.query(statement, &[&projection, &self.scope]).await
            })
            .await?;
        letters_of(projection, &rows)
    }
}

/// Each checkpoint saved is its own autocommitted statement. Use it for a
/// plain [`Projection`](factum_core::Projection) whose read model lives
/// elsewhere (at least once); a read model in this database is better served
/// by the [`ProjectionStore`] (exactly once).
impl CheckpointStore for PostgresProjectionStore {
    async fn load(&self, projection: &str) -> Result<u64, Error> {
        self.checkpoint(projection).await
    }

    async fn save(&self, projection: &str, position: u64) -> Result<(), Error> {
        let position = checkpoint_to_stored(projection, position)?;
        self.autocommit(&self.sql.save, async |client, statement| {
            client
                .execute(statement, &[&projection, &position, &self.scope])
                .await
        })
        .await?;
        Ok(())
    }
}
