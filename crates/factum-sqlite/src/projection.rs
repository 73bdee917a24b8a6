//! Projections whose read model lives in the events' SQLite file: the
//! [`ProjectionStore`] (read model and checkpoint committed together), and
//! the plain [`CheckpointStore`] and [`DeadLetterStore`].

use factum_core::backend::{
    checkpoint_from_stored, checkpoint_moved, checkpoint_to_stored, projection_scope,
};
use factum_core::{CheckpointStore, DeadLetter, DeadLetterStore, Error, ProjectionStore, Tenancy, Tenant};
use rusqlite::Connection;

use crate::error::sqlite;
use crate::{SqliteEventStore, SqliteTransaction, dead_letter};

/// Read models, checkpoints, dead letters and leases of projections, kept in
/// the file of a [`SqliteEventStore`].
///
/// As a [`ProjectionStore`] it gives a
/// [`TransactionalProjection`](factum_core::TransactionalProjection)'s
/// handler a [`SqliteTransaction`]: the handler's SQL on the read model's
/// tables and the projection's checkpoint commit together, so each event
/// takes effect exactly once, whenever the process dies. The checkpoint is
/// a compare-and-set, which fences out a second instance that lost its
/// lease without noticing.
///
/// It is also a [`CheckpointStore`] and a [`DeadLetterStore`] (each call
/// its own durable write) for plain [`Projection`](factum_core::Projection)s,
/// and a [`Lease`](factum_core::Lease) shared by every process that opens
/// the file.
///
/// Tables: `factum_checkpoints`, `factum_dead_letters`, `factum_leases`
/// (schema version 2; a version 1 file gains them when opened), keyed by
/// tenant since version 3: the store made from a tenant's view of the
/// events ([`Tenancy::for_tenant`], on either store) keeps that tenant's
/// checkpoints, dead letters and leases, apart from every other tenant's
/// and from the unscoped store's. (The read model's own tables are yours:
/// key them by `event.metadata.tenant` when several tenants share one.) Create the
/// read model's own tables with [`execute_batch`](Self::execute_batch), and
/// read them with [`query`](Self::query) or
/// [`with_connection`](Self::with_connection).
///
/// Cheap to clone; clones share the event store's connections. Writes go
/// through the event store's writer thread (the only writing connection);
/// reads use its read connections and see committed data only.
///
/// ```
/// use factum_core::{HandlerError, ProjectionStore, RecordedEvent, TransactionalProjection};
/// use factum_sqlite::{SqliteEventStore, SqliteProjectionStore, SqliteTransaction};
///
/// /// Counts events per type, in a table beside the events.
/// struct EventTypes;
///
/// impl TransactionalProjection<SqliteProjectionStore> for EventTypes {
///     fn name(&self) -> &str {
///         "event_types"
///     }
///
///     async fn handle(
///         &mut self,
///         transaction: &mut SqliteTransaction,
///         event: &RecordedEvent,
///     ) -> Result<(), HandlerError> {
///         transaction
///             .execute(
///                 "INSERT INTO event_types (event_type, count) VALUES (?1, 1) \
///                  ON CONFLICT (event_type) DO UPDATE SET count = count + 1",
///                 (event.event_type.to_string(),),
///             )
///             .await?;
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let events = SqliteEventStore::open(dir.path().join("app.db")).await?;
/// let store = SqliteProjectionStore::new(&events);
/// store
///     .execute_batch("CREATE TABLE IF NOT EXISTS event_types (event_type TEXT PRIMARY KEY, count INTEGER NOT NULL)")
///     .await?;
/// let runner = factum_core::ProjectionRunner::transactional(events.clone(), EventTypes, store.clone());
/// # let _ = runner;
/// # events.close().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteProjectionStore {
    events: SqliteEventStore,
}

impl SqliteProjectionStore {
    /// The projection store in the file of `events`.
    ///
    /// Transactions need a file: on a store opened with
    /// [`SqliteEventStore::open_in_memory`], [`begin`](ProjectionStore::begin)
    /// fails with [`SqliteError::InMemory`](crate::SqliteError::InMemory)
    /// (the plain checkpoint, dead-letter and lease stores work there).
    pub fn new(events: &SqliteEventStore) -> Self {
        Self {
            events: events.clone(),
        }
    }

    /// The event store whose file this is (a tenant's view when this
    /// store is one).
    pub fn events(&self) -> &SqliteEventStore {
        &self.events
    }

    /// The key of this store's projection state: its tenant, or `$all`.
    fn scope(&self) -> String {
        projection_scope(self.events.view_tenant()).to_owned()
    }

    /// Runs `sql` (several statements separated by semicolons) in one
    /// durable write: for creating a read model's tables
    /// (`CREATE TABLE IF NOT EXISTS ...`) before its runner starts.
    pub async fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_owned();
        self.events
            .write(move |connection| connection.execute_batch(&sql).map_err(sqlite))
            .await
    }

    /// Runs the query `sql` with `params` on a read connection (read-only,
    /// off the runtime) and maps each row with `map_row`: for serving a read
    /// model. It sees committed data only.
    ///
    /// The counterpart of `PostgresProjectionStore::query`; rusqlite's rows
    /// borrow their statement, hence the mapping closure. `params` are owned
    /// values (a tuple such as `(String, i64)`, `()`, or
    /// [`rusqlite::params_from_iter`] over owned values): the query runs on
    /// another thread.
    ///
    /// ```
    /// # use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// # let events = SqliteEventStore::open(dir.path().join("app.db")).await?;
    /// let store = SqliteProjectionStore::new(&events);
    /// store.execute_batch("CREATE TABLE totals (name TEXT PRIMARY KEY, total INTEGER); \
    ///                      INSERT INTO totals VALUES ('orders', 3), ('refunds', 1)").await?;
    /// let totals: Vec<(String, i64)> = store
    ///     .query("SELECT name, total FROM totals WHERE total >= ?1 ORDER BY name", (1,), |row| {
    ///         Ok((row.get(0)?, row.get(1)?))
    ///     })
    ///     .await?;
    /// assert_eq!(totals, [("orders".to_owned(), 3), ("refunds".to_owned(), 1)]);
    /// # events.close().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn query<T, P, F>(&self, sql: &str, params: P, map_row: F) -> Result<Vec<T>, Error>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let sql = sql.to_owned();
        self.with_connection(move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            statement.query_map(params, map_row)?.collect()
        })
        .await
    }

    /// Runs `work` on a read connection (read-only, off the runtime), for
    /// what [`query`](Self::query) cannot express: several queries on one
    /// connection, streaming rows into an aggregate. It sees committed data
    /// only.
    pub async fn with_connection<R, F>(&self, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.events
            .read(move |connection| work(connection).map_err(sqlite))
            .await
    }
}

/// The committed checkpoint of `projection` in `scope` (0: none).
fn load(connection: &Connection, scope: &str, projection: &str) -> Result<u64, Error> {
    let mut statement = connection
        .prepare_cached("SELECT position FROM factum_checkpoints WHERE tenant = ?1 AND projection = ?2")
        .map_err(sqlite)?;
    let mut rows = statement.query([scope, projection]).map_err(sqlite)?;
    let Some(row) = rows.next().map_err(sqlite)? else {
        return checkpoint_from_stored(projection, None);
    };
    match row.get_ref(0).map_err(sqlite)? {
        rusqlite::types::ValueRef::Integer(position) => checkpoint_from_stored(projection, Some(position)),
        other => Err(Error::Checkpoint {
            projection: projection.to_owned(),
            message: format!("the stored checkpoint is {:?}, not an integer", other.data_type()),
        }),
    }
}

/// Moves the checkpoint of `projection` in `scope` from `expected` (no row
/// counts as 0) to `position`; [`Error::Checkpoint`] when it is elsewhere.
fn compare_and_set(
    connection: &Connection,
    scope: &str,
    projection: &str,
    expected: u64,
    position: u64,
) -> Result<(), Error> {
    let (expected_stored, position_stored) = (
        checkpoint_to_stored(projection, expected)?,
        checkpoint_to_stored(projection, position)?,
    );
    let mut moved = connection
        .prepare_cached(
            "UPDATE factum_checkpoints SET position = ?3 WHERE tenant = ?4 AND projection = ?1 AND position = ?2",
        )
        .and_then(|mut statement| statement.execute((projection, expected_stored, position_stored, scope)))
        .map_err(sqlite)?;
    if moved == 0 && expected == 0 {
        moved = connection
            .prepare_cached(
                "INSERT INTO factum_checkpoints (tenant, projection, position) VALUES (?3, ?1, ?2) \
                 ON CONFLICT (tenant, projection) DO NOTHING",
            )
            .and_then(|mut statement| statement.execute((projection, position_stored, scope)))
            .map_err(sqlite)?;
    }
    if moved == 0 {
        let found = load(connection, scope, projection)?;
        return Err(checkpoint_moved(projection, expected, found));
    }
    Ok(())
}

impl ProjectionStore for SqliteProjectionStore {
    type Transaction = SqliteTransaction;

    async fn checkpoint(&self, projection: &str) -> Result<u64, Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        self.events
            .read(move |connection| load(connection, &scope, &projection))
            .await
    }

    async fn begin(&self, _projection: &str) -> Result<SqliteTransaction, Error> {
        self.events.begin_transaction().await
    }

    async fn save_checkpoint(
        &self,
        transaction: &mut SqliteTransaction,
        projection: &str,
        expected: u64,
        position: u64,
    ) -> Result<(), Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        // The work's own errors travel inside its result, so a refused
        // compare-and-set stays `Error::Checkpoint`.
        transaction
            .call(move |transaction| {
                Ok(compare_and_set(
                    transaction,
                    &scope,
                    &projection,
                    expected,
                    position,
                ))
            })
            .await?
    }

    async fn put_dead_letter(
        &self,
        transaction: &mut SqliteTransaction,
        letter: DeadLetter,
    ) -> Result<(), Error> {
        let scope = self.scope();
        let tenant = self.events.view_tenant().cloned();
        transaction
            .call(move |transaction| Ok(dead_letter::put(transaction, &scope, tenant.as_ref(), &letter)))
            .await?
    }

    async fn remove_dead_letter(
        &self,
        transaction: &mut SqliteTransaction,
        projection: &str,
        position: u64,
    ) -> Result<bool, Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        transaction
            .call(move |transaction| Ok(dead_letter::remove(transaction, &scope, &projection, position)))
            .await?
    }

    async fn clear_dead_letters(
        &self,
        transaction: &mut SqliteTransaction,
        projection: &str,
    ) -> Result<(), Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        transaction
            .call(move |transaction| Ok(dead_letter::clear(transaction, &scope, &projection)))
            .await?
    }

    async fn commit(&self, transaction: SqliteTransaction) -> Result<(), Error> {
        transaction.commit().await
    }

    async fn rollback(&self, transaction: SqliteTransaction) -> Result<(), Error> {
        transaction.rollback().await
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        self.events
            .read(move |connection| dead_letter::list(connection, &scope, &projection))
            .await
    }
}

/// The store of a tenant's view of the same events: its projections'
/// checkpoints, dead letters and leases are that tenant's.
impl Tenancy for SqliteProjectionStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self::new(&self.events.for_tenant(tenant)?))
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.events.tenant()
    }
}

/// Each checkpoint saved is its own durable write. Use it for a plain
/// [`Projection`](factum_core::Projection) whose read model lives elsewhere
/// (at least once); a read model in this file is better served by the
/// [`ProjectionStore`] (exactly once).
impl CheckpointStore for SqliteProjectionStore {
    async fn load(&self, projection: &str) -> Result<u64, Error> {
        self.checkpoint(projection).await
    }

    async fn save(&self, projection: &str, position: u64) -> Result<(), Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        let position = checkpoint_to_stored(&projection, position)?;
        self.events
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "INSERT INTO factum_checkpoints (tenant, projection, position) VALUES (?3, ?1, ?2) \
                         ON CONFLICT (tenant, projection) DO UPDATE SET position = excluded.position",
                    )
                    .and_then(|mut statement| statement.execute((projection, position, scope)))
                    .map_err(sqlite)?;
                Ok(())
            })
            .await
    }
}

/// Each change is its own durable write.
impl DeadLetterStore for SqliteProjectionStore {
    async fn put(&self, letter: DeadLetter) -> Result<(), Error> {
        let scope = self.scope();
        let tenant = self.events.view_tenant().cloned();
        self.events
            .write(move |connection| dead_letter::put(connection, &scope, tenant.as_ref(), &letter))
            .await
    }

    async fn list(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters(projection).await
    }

    async fn remove(&self, projection: &str, position: u64) -> Result<bool, Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        self.events
            .write(move |connection| dead_letter::remove(connection, &scope, &projection, position))
            .await
    }

    async fn clear(&self, projection: &str) -> Result<(), Error> {
        let (scope, projection) = (self.scope(), projection.to_owned());
        self.events
            .write(move |connection| dead_letter::clear(connection, &scope, &projection))
            .await
    }
}
