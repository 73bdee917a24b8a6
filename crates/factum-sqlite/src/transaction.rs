//! Projection transactions: a read-model update and its checkpoint, run on
//! the writer's connection and committed together.
//!
//! SQLite has one writer per file, and factum-sqlite's writer thread owns
//! the only writing connection. A projection transaction therefore runs on
//! that thread too: `BEGIN IMMEDIATE`, then each step the handler sends,
//! then `COMMIT` or `ROLLBACK`. While it is open the writer does nothing
//! else (appends queue behind it), which is what makes it serialisable, and
//! why it must stay short: the runner opens it only while it has events in
//! hand, and the writer rolls back a transaction that sits idle for the
//! busy timeout while other writes wait (the same limit SQLite puts on a
//! writer from another process).
//!
//! The other choice, a second connection to the same file, would hold
//! SQLite's write lock just as long, and make the writer thread wait for it
//! in SQLite's busy handler (sleeping up to 100 ms at a time) instead of in
//! its queue.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use factum_core::Error;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::error::SqliteError;
use crate::writer::Command;

/// One step of a projection transaction, run on the writer thread.
pub(crate) enum Step {
    /// Work in the transaction; it answers its caller itself, and returns
    /// true when it panicked.
    Call(Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> bool + Send>),
    Commit(oneshot::Sender<Result<(), Error>>),
    Rollback(oneshot::Sender<Result<(), Error>>),
}

/// A request to open a projection transaction on the writer thread.
pub(crate) struct Begin {
    steps: mpsc::Receiver<Step>,
    started: oneshot::Sender<Result<(), Error>>,
    ended: Arc<Mutex<Option<SqliteError>>>,
}

/// A unit of work of a projection on a SQLite file: the handler's SQL, the
/// checkpoint and dead letters, committed together or not at all.
///
/// Handed to [`TransactionalProjection::handle`](factum_core::TransactionalProjection::handle)
/// by the runner (through [`SqliteProjectionStore`](crate::SqliteProjectionStore)).
/// Each call runs on the store's writer thread inside `BEGIN IMMEDIATE`, so
/// the handler reads what it wrote earlier in the transaction. Dropping the
/// transaction without committing it rolls it back.
///
/// Keep it short, and never wait inside it for a write to the same store
/// (an append, another transaction): the writer serves only this
/// transaction until it ends. One that stays idle for the store's busy
/// timeout (5 s by default) while other writes wait is rolled back, and its
/// next call fails.
///
/// ```
/// # use factum_core::ProjectionStore;
/// # use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let events = SqliteEventStore::open(dir.path().join("app.db")).await?;
/// let store = SqliteProjectionStore::new(&events);
/// store.execute_batch("CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, total INTEGER NOT NULL)").await?;
///
/// let mut transaction = store.begin("totals").await?;
/// transaction
///     .execute("INSERT INTO totals VALUES (?1, ?2)", ("orders".to_owned(), 3))
///     .await?;
/// let total: i64 = transaction
///     .call(|tx| tx.query_row("SELECT total FROM totals WHERE name = 'orders'", [], |row| row.get(0)))
///     .await?;
/// assert_eq!(total, 3);
/// store.save_checkpoint(&mut transaction, "totals", 0, 17).await?;
/// store.commit(transaction).await?;
/// assert_eq!(store.checkpoint("totals").await?, 17);
/// # events.close().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct SqliteTransaction {
    steps: mpsc::Sender<Step>,
    ended: Arc<Mutex<Option<SqliteError>>>,
}

impl std::fmt::Debug for SqliteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTransaction")
            .field("ended", &self.ended_early())
            .finish_non_exhaustive()
    }
}

impl SqliteTransaction {
    /// Asks the writer for a transaction through `send`, and waits until it
    /// has begun.
    pub(crate) async fn begin(send: impl FnOnce(Command) -> Result<(), Error>) -> Result<Self, Error> {
        let (steps, receiver) = mpsc::channel();
        let (started, answer) = oneshot::channel();
        let ended = Arc::new(Mutex::new(None));
        send(Command::Begin(Begin {
            steps: receiver,
            started,
            ended: Arc::clone(&ended),
        }))?;
        answer.await.map_err(|_| Error::from(SqliteError::WriterGone))??;
        Ok(Self { steps, ended })
    }

    /// Runs `sql` with `params` in the transaction; the number of rows it
    /// changed.
    ///
    /// `params` are owned values (a tuple such as `(String, i64)`, `()`,
    /// or [`rusqlite::params_from_iter`] over owned values): the statement
    /// runs on the writer thread.
    pub async fn execute<P>(&mut self, sql: &str, params: P) -> Result<usize, Error>
    where
        P: rusqlite::Params + Send + 'static,
    {
        let sql = sql.to_owned();
        self.call(move |transaction| transaction.prepare_cached(&sql)?.execute(params))
            .await
    }

    /// Runs several statements separated by semicolons, without parameters.
    pub async fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_owned();
        self.call(move |transaction| transaction.execute_batch(&sql))
            .await
    }

    /// Runs `work` with the open transaction on the writer thread, and
    /// returns what it returns: for queries, and for several statements in
    /// one round trip.
    ///
    /// `work` must not commit or roll back the transaction itself (the
    /// store does, and fails the commit if it finds the transaction gone).
    pub async fn call<R, F>(&mut self, work: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let step = Step::Call(Box::new(move |transaction| {
            // A panic in the caller's work must not take the writer thread,
            // and the event store with it, down.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(transaction)));
            let panicked = result.is_err();
            let _ = reply.send(match result {
                Ok(result) => result.map_err(SqliteError::from),
                Err(_) => Err(SqliteError::TransactionPanicked),
            });
            panicked
        }));
        self.send(step)?;
        match answer.await {
            Ok(result) => Ok(result?),
            // The writer dropped the work without answering: it panicked,
            // or the transaction had ended.
            Err(_) => Err(self.gone()),
        }
    }

    /// Commits everything done in the transaction, at once.
    pub(crate) async fn commit(self) -> Result<(), Error> {
        self.finish(Step::Commit).await
    }

    /// Discards everything done in the transaction.
    pub(crate) async fn rollback(self) -> Result<(), Error> {
        self.finish(Step::Rollback).await
    }

    async fn finish(self, step: fn(oneshot::Sender<Result<(), Error>>) -> Step) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(step(reply))?;
        answer.await.map_err(|_| self.gone())?
    }

    fn send(&self, step: Step) -> Result<(), Error> {
        self.steps.send(step).map_err(|_| self.gone())
    }

    fn ended_early(&self) -> Option<SqliteError> {
        self.ended.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Why the writer stopped serving this transaction.
    fn gone(&self) -> Error {
        self.ended_early().unwrap_or(SqliteError::WriterGone).into()
    }
}

/// What serving a transaction left for the writer.
pub(crate) struct Served {
    /// A command taken from the queue while the transaction was open, to
    /// handle next.
    pub(crate) carried: Option<Command>,
    /// Rows the transaction changed and committed (for the write-ahead log
    /// estimate).
    pub(crate) changed_rows: u64,
}

/// Runs the transaction `begin` asks for on `connection`, on the writer
/// thread, until it commits, rolls back, is dropped, or holds the writer for
/// `busy_timeout` while `queue` has work waiting.
pub(crate) fn serve(
    connection: &Connection,
    begin: Begin,
    queue: &mpsc::Receiver<Command>,
    busy_timeout: Duration,
) -> Served {
    let Begin {
        steps,
        started,
        ended,
    } = begin;
    let mut served = Served {
        carried: None,
        changed_rows: 0,
    };
    let Some(transaction) = start(connection, started) else {
        return served;
    };
    let end = |reason: SqliteError| {
        *ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    };
    let changes_before = connection.total_changes();
    loop {
        let step = match next_step(&steps, queue, busy_timeout) {
            Next::Step(step) => step,
            // The transaction was dropped without commit: roll back.
            Next::Dropped => return served,
            Next::Abandoned(waiting) => {
                end(SqliteError::TransactionAbandoned { idle: busy_timeout });
                served.carried = Some(waiting);
                return served;
            }
        };
        if connection.is_autocommit() {
            // A statement ended the transaction (an explicit COMMIT, or an
            // error after which SQLite rolled it back): what follows would
            // run outside it.
            let reason = SqliteError::TransactionEnded;
            end(reason.clone());
            answer_ended(step, reason);
            return served;
        }
        let Step::Call(work) = step else {
            served.changed_rows = finish(transaction, step, changes_before);
            return served;
        };
        if work(&transaction) {
            end(SqliteError::TransactionPanicked);
            return served;
        }
    }
}

/// Begins the transaction and tells its owner; `None` when it did not
/// begin or nobody waits for it any more.
fn start(
    connection: &Connection,
    started: oneshot::Sender<Result<(), Error>>,
) -> Option<rusqlite::Transaction<'_>> {
    match rusqlite::Transaction::new_unchecked(connection, TransactionBehavior::Immediate) {
        // When the owner is gone, dropping the transaction rolls it back.
        Ok(transaction) => started.send(Ok(())).is_ok().then_some(transaction),
        Err(error) => {
            let _ = started.send(Err(SqliteError::from(error).into()));
            None
        }
    }
}

/// What the writer found waiting for an open transaction.
enum Next {
    /// The transaction's next step.
    Step(Step),
    /// The transaction was dropped.
    Dropped,
    /// It sat idle for the busy timeout while this write waited.
    Abandoned(Command),
}

/// Waits for the transaction's next step, giving up on it when it stays
/// idle for `busy_timeout` while `queue` has work.
fn next_step(steps: &mpsc::Receiver<Step>, queue: &mpsc::Receiver<Command>, busy_timeout: Duration) -> Next {
    loop {
        match steps.recv_timeout(busy_timeout) {
            Ok(step) => return Next::Step(step),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Next::Dropped,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(waiting) = queue.try_recv() {
                    tracing::warn!(
                        ?busy_timeout,
                        "a projection transaction sat idle while writes waited; rolled back"
                    );
                    return Next::Abandoned(waiting);
                }
            }
        }
    }
}

/// Commits or rolls back, as `step` asks, and answers it; the rows the
/// transaction changed when it committed (else 0).
fn finish(transaction: rusqlite::Transaction<'_>, step: Step, changes_before: u64) -> u64 {
    match step {
        Step::Commit(reply) => {
            let changed_rows = transaction.total_changes().saturating_sub(changes_before);
            let committed = transaction.commit();
            let changed_rows = if committed.is_ok() { changed_rows } else { 0 };
            let _ = reply.send(committed.map_err(|error| SqliteError::from(error).into()));
            changed_rows
        }
        Step::Rollback(reply) => {
            let _ = reply.send(
                transaction
                    .rollback()
                    .map_err(|error| SqliteError::from(error).into()),
            );
            0
        }
        // Dropping the work drops its reply; the transaction rolls back.
        Step::Call(_) => 0,
    }
}

fn answer_ended(step: Step, reason: SqliteError) {
    match step {
        // Dropping the work drops its reply: the caller reads `ended`.
        Step::Call(_) => {}
        Step::Commit(reply) => {
            let _ = reply.send(Err(reason.into()));
        }
        // Nothing of it is left to undo.
        Step::Rollback(reply) => {
            let _ = reply.send(Ok(()));
        }
    }
}
