use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong in the SQLite store itself.
///
/// The store's methods return [`factum_core::Error`]; these errors arrive
/// inside [`factum_core::Error::Store`] with `backend: "sqlite"`, and can be
/// recovered with [`std::error::Error::source`] and `downcast_ref`.
/// Optimistic-concurrency conflicts and reused event ids are not here: they
/// are [`factum_core::Error::Conflict`] and
/// [`factum_core::Error::DuplicateEventId`], as on every backend.
///
/// ```
/// # use factum_sqlite::SqliteError;
/// fn is_foreign_file(error: &factum_core::Error) -> bool {
///     std::error::Error::source(error)
///         .and_then(|source| source.downcast_ref::<SqliteError>())
///         .is_some_and(|error| matches!(error, SqliteError::NotAFactumDatabase { .. }))
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file exists but is not a factum event store: another
    /// application's SQLite database, or not SQLite at all.
    #[error("{} is not a factum database: {reason}", path.display())]
    NotAFactumDatabase {
        /// The file that was opened.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The database was written by a newer factum-sqlite, with a schema this
    /// version does not know. Upgrade factum-sqlite to open it.
    #[error(
        "{} has factum schema version {found}, newer than the version {supported} this factum-sqlite supports; upgrade factum-sqlite",
        path.display()
    )]
    SchemaTooNew {
        /// The file that was opened.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
        /// The newest schema version this crate knows.
        supported: u32,
    },

    /// The file's schema version changed after this store opened it
    /// (another program migrated or altered it), found by
    /// [`SqliteEventStore::ensure_schema`](crate::SqliteEventStore::ensure_schema).
    /// Reopen the store.
    #[error(
        "the factum schema of {} changed under the open store: it is at version {found}, not {expected}; reopen the store",
        path.display()
    )]
    SchemaChanged {
        /// The file.
        path: PathBuf,
        /// The schema version found in the file now.
        found: u32,
        /// The schema version the store opened it at.
        expected: u32,
    },

    /// SQLite reported an error (I/O, a full disk, a damaged file, a lock
    /// held too long by another process).
    #[error("SQLite failed: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),

    /// The store was closed with
    /// [`SqliteEventStore::close`](crate::SqliteEventStore::close) (by this
    /// handle or a clone): open the file again to go on.
    #[error("the store is closed")]
    Closed,

    /// The writer thread stopped without the store being closed: the last
    /// clone was dropped while the call was under way, or the thread
    /// panicked.
    #[error("the store's writer thread has stopped")]
    WriterGone,

    /// A blocking read task did not finish (it panicked or the runtime is
    /// shutting down).
    #[error("a read task did not finish: {0}")]
    ReaderFailed(#[source] Arc<tokio::task::JoinError>),

    /// A read was started outside a tokio runtime: the store runs its
    /// reads on tokio's blocking pool.
    #[error("the store was used outside a tokio runtime: {0}")]
    NoRuntime(#[source] Arc<tokio::runtime::TryCurrentError>),

    /// A projection transaction held the writer idle for the busy timeout
    /// while other writes waited, and was rolled back: its handler waited
    /// too long inside it (or for a write to the same store, which cannot
    /// happen before the transaction ends).
    #[error(
        "the projection transaction was rolled back: it held the writer idle for {idle:?} while other writes waited"
    )]
    TransactionAbandoned {
        /// How long it sat idle (the store's busy timeout).
        idle: std::time::Duration,
    },

    /// A statement run in a projection transaction ended it (an explicit
    /// `COMMIT` or `ROLLBACK`, or an error after which SQLite rolled it
    /// back); nothing more runs in it, and it cannot commit.
    #[error(
        "the projection transaction ended before its commit (a statement committed it or SQLite rolled it back)"
    )]
    TransactionEnded,

    /// Work run in a projection transaction panicked; the transaction was
    /// rolled back.
    #[error("work in the projection transaction panicked; the transaction was rolled back")]
    TransactionPanicked,

    /// Projection transactions need a file: a store opened with
    /// [`SqliteEventStore::open_in_memory`](crate::SqliteEventStore::open_in_memory)
    /// has one connection, which the transaction would hold while the
    /// store's readers wait for it.
    #[error("projection transactions need a store in a file, not one opened in memory")]
    InMemory,

    /// The outbox table does not exist: the outbox of this file was never
    /// enabled.
    #[error("the file has no outbox; call SqliteEventStore::enable_outbox() first")]
    OutboxMissing,

    /// A thread of the store could not be started.
    #[error("could not start the {thread} thread: {source}")]
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl From<rusqlite::Error> for SqliteError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(error))
    }
}

impl From<SqliteError> for factum_core::Error {
    fn from(error: SqliteError) -> Self {
        factum_core::Error::store(crate::BACKEND, error)
    }
}

/// Wraps a SQLite error as a store error.
pub(crate) fn sqlite(error: rusqlite::Error) -> factum_core::Error {
    SqliteError::from(error).into()
}
