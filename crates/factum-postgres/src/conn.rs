//! The connection pool and its connections: building the pool, taking a
//! connection, and keeping broken connections out of it.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool::managed::QueueMode;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::{PostgresError, PostgresEventStore, PostgresOptions};

/// The pool [`PostgresEventStore::connect_with`] opens for `config`.
pub(crate) fn build_pool(
    config: tokio_postgres::Config,
    options: &PostgresOptions,
) -> Result<Pool, PostgresError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size)
        // The most recently used connection first: a lightly loaded store
        // keeps reusing warm connections (prepared statements, plans,
        // caches) instead of cycling through all of them.
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| PostgresError::InvalidConfig {
            reason: error.to_string(),
        })
}

impl PostgresEventStore {
    /// A connection from the pool; [`PostgresError::Closed`] once the store
    /// is closed.
    pub(crate) async fn client(&self) -> Result<Conn, PostgresError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        self.shared
            .pool
            .get()
            .await
            .map(Conn::new)
            .map_err(|error| self.pool_error(error))
    }
}

/// A pooled connection that leaves the pool, instead of going back to it,
/// once a statement on it found the connection gone: the pool's cheap
/// recycling check can miss a connection the server has just closed.
pub(crate) struct Conn {
    object: Option<Object>,
    lost: AtomicBool,
}

impl Conn {
    fn new(object: Object) -> Self {
        Self {
            object: Some(object),
            lost: AtomicBool::new(false),
        }
    }

    /// Closes the connection when this value is dropped, instead of handing
    /// it back to the pool: for a connection left inside a transaction.
    pub(crate) fn discard(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    /// Remembers that the connection is gone when `error` says so.
    pub(crate) fn check(&self, error: tokio_postgres::Error) -> tokio_postgres::Error {
        if connection_lost(&error) {
            self.lost.store(true, Ordering::Relaxed);
        }
        error
    }
}

impl std::ops::Deref for Conn {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object
            .as_ref()
            .expect("a Conn holds its object until it is dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        self.object
            .as_mut()
            .expect("a Conn holds its object until it is dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.lost.load(Ordering::Relaxed)
            && let Some(object) = self.object.take()
        {
            drop(Object::take(object));
        }
    }
}

/// True when `error` means the connection cannot be used any more.
pub(crate) fn connection_lost(error: &tokio_postgres::Error) -> bool {
    let code = error.code().map(SqlState::code).unwrap_or_default();
    let io = std::error::Error::source(error).is_some_and(|inner| inner.is::<std::io::Error>());
    error.is_closed() || io || code.starts_with("57P") || code.starts_with("08")
}
