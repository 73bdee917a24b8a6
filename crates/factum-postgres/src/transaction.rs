//! Projection transactions: a pooled connection inside `BEGIN`, owned by
//! the runner's unit of work, so a read-model update and its checkpoint
//! commit together.
//!
//! Dropping a transaction without [`commit`](factum_core::ProjectionStore::commit)
//! or [`rollback`](factum_core::ProjectionStore::rollback) (a cancelled
//! task, a panic, a killed runner) closes its connection instead of handing
//! it back to the pool: the server then rolls the transaction back, and no
//! other caller can ever be given a connection in the middle of someone
//! else's transaction. The other choice, sending `ROLLBACK` from `Drop`,
//! would need a task spawned on a runtime that may be shutting down, and a
//! pool that could hand the connection out before the `ROLLBACK` ran. A
//! dropped transaction is rare (the runner commits or rolls back every unit
//! of work it finishes), so the cost, one new connection, is paid rarely.

use factum_core::Error;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresEventStore;
use crate::conn::Conn;

/// A unit of work of a projection in PostgreSQL: the handler's SQL, the
/// checkpoint and the dead letters, committed together or not at all.
///
/// Handed to [`TransactionalProjection::handle`](factum_core::TransactionalProjection::handle)
/// by the runner (through [`PostgresProjectionStore`](crate::PostgresProjectionStore)).
/// It owns a pooled connection inside `BEGIN ISOLATION LEVEL READ COMMITTED`;
/// run the read model's SQL with [`execute`](Self::execute),
/// [`query`](Self::query) and [`execute_batch`](Self::execute_batch), or
/// with the driver's whole API through [`client`](Self::client). Statements
/// run through `execute` and `query` are prepared once per connection.
///
/// Dropping it without committing rolls it back: its connection is closed
/// (the server rolls back) and never returns to the pool mid-transaction.
/// A statement that fails leaves the transaction aborted, as PostgreSQL
/// does: the commit then fails too, and nothing of it is applied.
///
/// ```no_run
/// # use factum_core::ProjectionStore;
/// # use factum_postgres::{PostgresEventStore, PostgresProjectionStore};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let events = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// events.ensure_schema().await?;
/// let store = PostgresProjectionStore::new(&events);
/// store
///     .execute_batch("CREATE TABLE IF NOT EXISTS totals (name text PRIMARY KEY, total bigint NOT NULL)")
///     .await?;
///
/// let mut transaction = store.begin("totals").await?;
/// transaction
///     .execute("INSERT INTO totals VALUES ($1, $2)", &[&"orders", &3_i64])
///     .await?;
/// let row = transaction.query_one("SELECT total FROM totals WHERE name = 'orders'", &[]).await?;
/// assert_eq!(row.get::<_, i64>(0), 3);
/// store.save_checkpoint(&mut transaction, "totals", 0, 17).await?;
/// store.commit(transaction).await?;
/// assert_eq!(store.checkpoint("totals").await?, 17);
/// # Ok(()) }
/// ```
pub struct PostgresTransaction {
    /// `None` once committed or rolled back.
    conn: Option<Conn>,
    store: PostgresEventStore,
}

impl std::fmt::Debug for PostgresTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTransaction")
            .field("address", &self.store.address())
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl PostgresTransaction {
    /// Takes a connection from the store's pool and begins a transaction;
    /// on a tenant's view, one confined to the tenant (as the tenant role,
    /// with `factum.tenant` set) for all of its statements.
    pub(crate) async fn begin(store: &PostgresEventStore) -> Result<Self, Error> {
        let conn = store.client().await?;
        let begin = store
            .view
            .as_ref()
            .map_or("BEGIN ISOLATION LEVEL READ COMMITTED", |view| view.begin.as_str());
        if let Err(error) = conn.batch_execute(begin).await {
            // A failed `SET LOCAL ROLE` leaves the transaction open and aborted.
            conn.discard();
            return Err(store.fail(&conn, error).into());
        }
        Ok(Self {
            conn: Some(conn),
            store: store.clone(),
        })
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a PostgresTransaction holds its connection until commit or rollback consumes it")
    }

    /// The connection, unless the store was closed meanwhile: a transaction
    /// begun before [`close`](PostgresEventStore::close) fails like every
    /// other call after it (dropped, it rolls back).
    fn open(&self) -> Result<&Conn, Error> {
        if self.store.is_closed() {
            return Err(self.store.closed_error().into());
        }
        Ok(self.conn())
    }

    fn fail(&self, error: tokio_postgres::Error) -> Error {
        self.store.fail(self.conn(), error).into()
    }

    /// The connection, inside the transaction: the driver's whole API.
    ///
    /// Do not end the transaction through it (`COMMIT`, `ROLLBACK`): the
    /// store commits it with the checkpoint, and refuses to commit one
    /// that is no longer open.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.conn()
    }

    /// Runs `sql` with `params` (`$1`, `$2`, …) in the transaction; the
    /// number of rows it changed. The statement is prepared once per
    /// connection.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let conn = self.open()?;
        let statement = conn.prepare_cached(sql).await.map_err(|error| self.fail(error))?;
        conn.execute(&statement, params)
            .await
            .map_err(|error| self.fail(error))
    }

    /// Runs the query `sql` with `params` in the transaction; its rows. It
    /// sees what the transaction wrote.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let conn = self.open()?;
        let statement = conn.prepare_cached(sql).await.map_err(|error| self.fail(error))?;
        conn.query(&statement, params)
            .await
            .map_err(|error| self.fail(error))
    }

    /// [`query`](Self::query) for exactly one row (an error otherwise).
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let conn = self.open()?;
        let statement = conn.prepare_cached(sql).await.map_err(|error| self.fail(error))?;
        conn.query_one(&statement, params)
            .await
            .map_err(|error| self.fail(error))
    }

    /// [`query`](Self::query) for at most one row.
    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        let conn = self.open()?;
        let statement = conn.prepare_cached(sql).await.map_err(|error| self.fail(error))?;
        conn.query_opt(&statement, params)
            .await
            .map_err(|error| self.fail(error))
    }

    /// Runs several statements separated by semicolons, without
    /// parameters, in one round trip.
    pub async fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        self.open()?
            .batch_execute(sql)
            .await
            .map_err(|error| self.fail(error))
    }

    /// Commits, then hands the connection back to the pool.
    ///
    /// `SAVEPOINT` first, in the same round trip: it fails on a transaction
    /// that a failed statement aborted (where a bare `COMMIT` would roll
    /// back and still report success) and outside a transaction block (one
    /// the handler ended itself), so neither passes for a commit.
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        self.open()?
            .batch_execute("SAVEPOINT factum_commit; COMMIT")
            .await
            .map_err(|error| self.fail(error))?;
        // Committed: the connection goes back to the pool, out of any
        // transaction.
        drop(self.conn.take());
        Ok(())
    }

    /// Rolls back, then hands the connection back to the pool.
    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        self.open()?
            .batch_execute("ROLLBACK")
            .await
            .map_err(|error| self.fail(error))?;
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for PostgresTransaction {
    fn drop(&mut self) {
        // Still open (not committed or rolled back, or ending it failed):
        // close the connection, which makes the server roll back, rather
        // than let the pool hand it to someone else mid-transaction.
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}
