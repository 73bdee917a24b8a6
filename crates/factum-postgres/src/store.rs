//! The store type: its shared state, constructors and lifecycle, and the
//! [`EventStore`] implementation, which hands each operation to the module
//! that does it (`append`, `read`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use factum_core::backend::{home, narrow};
use factum_core::{
    AppendBatch, AppendResult, Error, EventPages, EventStore, EventStream, ExpectedVersion, NewEvent,
    RecordedEvent, StreamId, Tenancy, Tenant,
};
use tokio::sync::{mpsc, watch};

use crate::group::Gate;
use crate::options::Names;
use crate::scope::View;
use crate::statements::Sql;
use crate::{PostgresError, PostgresOptions, conn, dsn, notify};

/// An [`EventStore`] in PostgreSQL.
///
/// Cheap to clone: clones share one connection pool. See the
/// [crate documentation](crate) for the lifecycle, the tables, the global
/// order and the wake-ups of subscriptions.
///
/// [`for_tenant`](Tenancy::for_tenant) gives a view of one tenant over the
/// same pool, confined to it by row-level security (see the crate
/// documentation, "Tenants").
///
/// ```no_run
/// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
/// # use factum_postgres::PostgresEventStore;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// store.ensure_schema().await?;
/// let stream = StreamId::new("Counter", "42");
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#)?);
/// store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// store.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresEventStore {
    pub(crate) shared: Arc<Shared>,
    /// The tenant of this view; `None` for the unscoped store.
    pub(crate) view: Option<Arc<View>>,
}

/// What the clones of one store share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) names: Names,
    pub(crate) address: String,
    pub(crate) options: PostgresOptions,
    /// Woken after every append of this store value and every notification.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) notifier: Mutex<Option<mpsc::Sender<()>>>,
    pub(crate) listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by [`PostgresEventStore::close`]: every later call fails with
    /// [`PostgresError::Closed`].
    pub(crate) closed: AtomicBool,
    pub(crate) sql: Sql,
    /// The highest horizon this store has computed (0: none yet): pages
    /// of the global log below it need no new scan of `pg_locks`.
    pub(crate) known_horizon: std::sync::atomic::AtomicU64,
    /// The queue of group commit; `None` when it is off.
    pub(crate) group: Option<Gate>,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("address", &self.shared.address)
            .field("schema", &self.shared.names.display)
            .field("tenant", &self.tenant())
            .field("pool", &self.shared.pool.status())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl PostgresEventStore {
    /// Connects to the server at `dsn` (`postgres://user:password@host:port/database`
    /// or `host=... user=...`) with the default [`PostgresOptions`].
    ///
    /// Opens one connection to check that the server answers, so a wrong
    /// address fails here, with the address in the error. Does not create
    /// the tables: call [`ensure_schema`](Self::ensure_schema).
    pub async fn connect(dsn: &str) -> Result<Self, Error> {
        Self::connect_with(dsn, PostgresOptions::new()).await
    }

    /// [`connect`](Self::connect) with `options`.
    pub async fn connect_with(dsn: &str, options: PostgresOptions) -> Result<Self, Error> {
        options.validate()?;
        let config = dsn::parse(dsn, &options)?;
        let address = dsn::address_of(&config);
        let pool = conn::build_pool(config.clone(), &options)?;
        let mut options = options;
        if options.listen.is_none() {
            let mut listen = config;
            listen.application_name("factum-listener");
            options.listen = Some(listen);
        }
        let store = Self::build(pool, options, address);
        drop(store.client().await?);
        Ok(store)
    }

    /// A store over an existing pool (for TLS, or to share the pool with the
    /// application's own queries), with the default [`PostgresOptions`].
    ///
    /// Its subscriptions are woken by its own appends and by polling; give
    /// [`PostgresOptions::listen_with`] to [`from_pool_with`](Self::from_pool_with)
    /// to also `LISTEN` for other processes' appends.
    pub fn from_pool(pool: Pool) -> Self {
        Self::build(pool, PostgresOptions::new(), "the pool's server".to_owned())
    }

    /// [`from_pool`](Self::from_pool) with `options` (the pool size and
    /// timeouts are the pool's own).
    pub fn from_pool_with(pool: Pool, options: PostgresOptions) -> Result<Self, Error> {
        options.validate()?;
        let address = options
            .listen
            .as_ref()
            .map_or_else(|| "the pool's server".to_owned(), dsn::address_of);
        Ok(Self::build(pool, options, address))
    }

    fn build(pool: Pool, options: PostgresOptions, address: String) -> Self {
        let names = Names::new(&options.schema, &options.table_prefix);
        let sql = Sql::new(&names);
        let group = options
            .group_commit
            .enabled
            .then(|| Gate::new(options.group_commit.clone()));
        Self {
            shared: Arc::new(Shared {
                pool,
                names,
                address,
                options,
                head: watch::Sender::new(0),
                notifier: Mutex::new(None),
                listener: Mutex::new(None),
                closed: AtomicBool::new(false),
                sql,
                known_horizon: std::sync::atomic::AtomicU64::new(0),
                group,
            }),
            view: None,
        }
    }

    /// The tenant whose streams and snapshots this view addresses.
    pub(crate) fn home(&self) -> &Tenant {
        home(self.tenant())
    }

    /// The connection pool, for the application's own queries (a projection
    /// that commits its read model and checkpoint in one transaction).
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// The server, as `host:port`.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// The schema and table prefix, e.g. `public.factum_`.
    pub fn schema_name(&self) -> &str {
        &self.shared.names.display
    }

    /// Closes the store: stops its background tasks (the `LISTEN`
    /// connection, the `NOTIFY` sender) and closes its pool. Every clone is
    /// closed with it.
    ///
    /// Afterwards every operation fails at once with [`PostgresError::Closed`]
    /// (live subscriptions yield it and end); nothing hangs. Connections in
    /// use finish their statement and are then closed instead of going back
    /// to the pool. Closing again does nothing. Appends are committed when
    /// they return, so there is nothing to flush.
    pub async fn close(&self) -> Result<(), Error> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let listener = lock(&self.shared.listener).take();
        if let Some(listener) = listener {
            listener.abort();
            // Its result is only the cancellation just requested.
            let _ = listener.await;
        }
        lock(&self.shared.notifier).take();
        self.shared.pool.close();
        // Subscribers waiting for a wake-up read once more and meet `Closed`.
        self.shared.head.send_modify(|_| {});
        Ok(())
    }

    /// True once [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Wakes this process's subscribers, and the others' through `NOTIFY`.
    pub(crate) fn announce(&self, head: Option<u64>) {
        match head {
            Some(head) => {
                self.shared.head.send_replace(head);
            }
            None => self.shared.head.send_modify(|_| {}),
        }
        if self.shared.options.notify && !self.is_closed() {
            notify::request(&self.shared);
        }
    }

    /// The error of an operation on a closed store.
    pub(crate) fn closed_error(&self) -> PostgresError {
        PostgresError::Closed {
            address: self.shared.address.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        self.append_owned(stream, expected, events).await
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        self.append_batches(&batches).await
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        self.stream_events(stream, from_version)
    }

    fn read_stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        self.stream_pages(stream, from_version)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        self.read_log(after, limit).await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        self.subscribe_log(after)
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        self.subscribe_one(stream, from_version)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        self.version_of(stream).await
    }

    /// The horizon; on a tenant's view, the position of the tenant's last
    /// event at or below it (0: none).
    async fn head_position(&self) -> Result<u64, Error> {
        match &self.view {
            None => self.horizon().await,
            Some(view) => self.tenant_head(&view.tenant).await,
        }
    }
}

impl Tenancy for PostgresEventStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        let tenant = narrow(self.tenant(), tenant)?;
        Ok(Self {
            shared: Arc::clone(&self.shared),
            view: Some(View::new(tenant, &self.shared.options.tenant_role)),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.view.as_ref().map(|view| &view.tenant)
    }
}
