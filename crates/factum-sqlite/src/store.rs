use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use factum_core::backend::{
    PollingSubscription, SubscriptionOptions, check_batches, home, narrow, query_bound,
};
use factum_core::{
    AppendBatch, AppendResult, Error, EventPages, EventStore, EventStream, ExpectedVersion, NewEvent,
    RecordedEvent, StreamId, Tenancy, Tenant,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::SqliteOptions;
use crate::decode::{Decoder, LOG_COLUMNS, optional_count};
use crate::error::{SqliteError, sqlite};
use crate::read::{self, ReadPool, STREAM_KEY_OF};
use crate::schema::{self, Location};
use crate::transaction::SqliteTransaction;
use crate::watcher::Watcher;
use crate::writer::{self, Command};

/// The most events a `read_all` page preallocates room for.
const READ_ALL_CAPACITY: usize = 4096;

/// A durable event store in one SQLite file: no server, safe across crashes.
///
/// Cheap to clone; clones share one writer thread and one pool of read
/// connections. Every method is async and never blocks the runtime: writes
/// go to a dedicated writer thread (one writer, so commit order is position
/// order; appends queued together commit in one transaction), reads run on
/// tokio's blocking pool. Several processes may open the same file: SQLite
/// serialises their writes, and one watcher per store wakes its live
/// subscriptions for appends made elsewhere (see [`SqliteOptions::poll_interval`]).
///
/// [`for_tenant`](Tenancy::for_tenant) gives a view of one tenant over the
/// same file, writer and readers (see [`Tenancy`] for what it reaches).
///
/// ```
/// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
/// # use factum_sqlite::SqliteEventStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("events.db");
/// let store = SqliteEventStore::open(&path).await?;
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#)?);
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(result.stream_version, 1);
/// store.close().await?;
///
/// // The events survive the process: open the file again.
/// let store = SqliteEventStore::open(&path).await?;
/// assert_eq!(store.stream_version(&stream).await?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteEventStore {
    pub(crate) inner: Arc<Inner>,
    /// The tenant of this view; `None` for the unscoped handle.
    tenant: Option<Tenant>,
}

pub(crate) struct Inner {
    commands: mpsc::Sender<Command>,
    readers: Option<ReadPool>,
    /// The head position: sent by the writer after each commit and by the
    /// watcher when another process has appended; what subscriptions wait on.
    pub(crate) head: Arc<watch::Sender<u64>>,
    pub(crate) watcher: Watcher,
    location: Location,
    options: SqliteOptions,
    closed: AtomicBool,
    /// Reads started, so tests can tell who reads while nothing happens.
    #[cfg(test)]
    pub(crate) reads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let location = match &self.inner.location {
            Location::File(path) => path.display().to_string(),
            Location::Memory => ":memory:".to_owned(),
        };
        f.debug_struct("SqliteEventStore")
            .field("location", &location)
            .field("tenant", &self.tenant)
            .field("durability", &self.inner.options.durability)
            .field("head", &*self.inner.head.borrow())
            .field("watcher_checks", &self.inner.watcher.checks())
            .finish()
    }
}

impl SqliteEventStore {
    /// Opens the store in the SQLite file at `path`, creating it when
    /// missing, with the default [`SqliteOptions`] (durability
    /// [`Durability::Full`](crate::Durability::Full)), and brings its schema
    /// up to date.
    ///
    /// Fails with [`SqliteError::NotAFactumDatabase`] for a file that is not a
    /// factum store and [`SqliteError::SchemaTooNew`] for one written by a
    /// newer factum-sqlite, both inside [`Error::Store`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path, SqliteOptions::new()).await
    }

    /// Opens the store in the SQLite file at `path` with `options`.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        Self::start(Location::File(path), options).await
    }

    /// A private store in memory, gone when the last clone is dropped: for
    /// tests. It behaves like a file store (same SQL, same checks), minus
    /// durability, concurrent reads and other processes.
    pub async fn open_in_memory() -> Result<Self, Error> {
        Self::start(
            Location::Memory,
            SqliteOptions::new().watch_other_processes(false),
        )
        .await
    }

    async fn start(location: Location, options: SqliteOptions) -> Result<Self, Error> {
        let head = Arc::new(watch::Sender::new(0));
        let commands = writer::start(location.clone(), options.clone(), head.clone()).await?;
        let readers = match &location {
            Location::File(path) => Some(ReadPool::new(path.clone())),
            Location::Memory => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                readers,
                head,
                watcher: Watcher::default(),
                location,
                options,
                closed: AtomicBool::new(false),
                #[cfg(test)]
                reads: std::sync::atomic::AtomicU64::new(0),
            }),
            tenant: None,
        })
    }

    /// The unscoped handle of `inner`: what the watcher reads the whole
    /// log's head through.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner, tenant: None }
    }

    /// The tenant whose streams and snapshots this view addresses.
    pub(crate) fn home(&self) -> &Tenant {
        home(self.tenant.as_ref())
    }

    /// The tenant of this view; `None` for the unscoped handle.
    pub(crate) fn view_tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// The schema version this factum-sqlite writes (`PRAGMA user_version`).
    pub fn schema_version() -> u32 {
        schema::SCHEMA_VERSION
    }

    /// Confirms that the file holds the schema this store migrated it to
    /// when it opened: idempotent, and cheap enough to call at every start
    /// of a program (beside [`open`](Self::open), which creates or migrates
    /// the schema).
    ///
    /// Fails with [`SqliteError::SchemaChanged`] when another program
    /// changed the file's schema version since it was opened (with
    /// [`SqliteError::SchemaTooNew`] when a newer factum-sqlite migrated
    /// it), and with [`SqliteError::Closed`] after [`close`](Self::close).
    pub async fn ensure_schema(&self) -> Result<(), Error> {
        let path = self.location_name();
        self.read(move |connection| schema::confirm(connection, &path).map_err(Error::from))
            .await
    }

    /// The file the store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    fn location_name(&self) -> std::path::PathBuf {
        match &self.inner.location {
            Location::File(path) => path.clone(),
            Location::Memory => ":memory:".into(),
        }
    }

    /// Finishes the queued writes and closes the database for every clone
    /// of this store; every later call fails with [`SqliteError::Closed`].
    /// Closing a closed store does nothing.
    ///
    /// Dropping the last clone closes the store too, in the background;
    /// `close` waits until the file is closed (and its write-ahead log
    /// folded back in), which is what a program should do before it exits.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.watcher.stop();
        // Live subscriptions read once more, meet `Closed` and end.
        self.inner.head.send_modify(|_| {});
        if let Some(readers) = &self.inner.readers {
            readers.clear();
        }
        let (reply, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(reply)).is_err() {
            return Ok(());
        }
        // An error here means the thread was already gone: closed either way.
        let _ = closed.await;
        Ok(())
    }

    /// True once [`close`](Self::close) has run, on this clone or another.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The error for a call on a closed store.
    fn check_open(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(SqliteError::Closed.into());
        }
        Ok(())
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.check_open()?;
        self.inner.commands.send(command).map_err(|_| self.gone())
    }

    /// The error for a call the writer thread will not answer: the store
    /// was closed while it was under way (say so), or the thread stopped.
    pub(crate) fn gone(&self) -> Error {
        match self.check_open() {
            Err(closed) => closed,
            Ok(()) => SqliteError::WriterGone.into(),
        }
    }

    /// Runs `write` on the writer's connection, committed with the next
    /// group of appends in a savepoint of its own (undone when it fails);
    /// answers once the commit is durable.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write(Box::new(move |connection| {
            let result = connection.map_err(Error::from).and_then(write);
            writer::Written {
                succeeded: result.is_ok(),
                answer: Box::new(move |committed| {
                    let _ = reply.send(committed.map_err(Error::from).and(result));
                }),
            }
        })))?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Opens a projection transaction on the writer's connection.
    pub(crate) async fn begin_transaction(&self) -> Result<SqliteTransaction, Error> {
        if self.inner.readers.is_none() {
            return Err(SqliteError::InMemory.into());
        }
        SqliteTransaction::begin(|command| self.send(command)).await
    }

    /// Runs `read` on a read connection, off the runtime. The work starts
    /// when this is called, not when the future is first polled, so a
    /// reader can fetch its next page while the caller handles the last.
    pub(crate) fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        if let Err(error) = self.check_open() {
            return Box::pin(std::future::ready(Err(error)));
        }
        #[cfg(test)]
        self.inner.reads.fetch_add(1, Ordering::SeqCst);
        if self.inner.readers.is_none() {
            return self.read_on_writer(read);
        }
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(error) => {
                return Box::pin(std::future::ready(Err(
                    SqliteError::NoRuntime(Arc::new(error)).into()
                )));
            }
        };
        let inner = self.inner.clone();
        let task = runtime.spawn_blocking(move || inner.with_reader(read));
        Box::pin(async move {
            task.await
                .map_err(|error| Error::from(SqliteError::ReaderFailed(Arc::new(error))))?
        })
    }

    /// Runs `read` on the writer's connection: an in-memory store has no other.
    fn read_on_writer<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Command::Read(Box::new(move |connection| {
            let _ = reply.send(read(connection));
        })));
        let store = self.clone();
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| store.gone())?
        })
    }
}

impl SqliteEventStore {
    /// What a new subscription waits on: this store's commits and, through
    /// the store's one watcher, other processes' commits. Without a runtime
    /// to run the watcher on, the subscription polls for itself.
    fn wake_up(&self) -> (watch::Receiver<u64>, SubscriptionOptions) {
        // Subscribe before the watcher is asked for: see `Watcher::ensure`.
        let wake = self.inner.head.subscribe();
        let options = &self.inner.options;
        let watched = !options.watch_other_processes
            || self.is_closed()
            || Watcher::ensure(&self.inner, options.poll_interval);
        let options = SubscriptionOptions {
            poll_interval: (!watched).then_some(options.poll_interval),
            ..SubscriptionOptions::default()
        };
        (wake, options)
    }
}

impl Inner {
    fn with_reader<R>(&self, read: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        let Some(pool) = &self.readers else {
            return Err(SqliteError::WriterGone.into());
        };
        pool.with_reader(&self.options, || !self.closed.load(Ordering::SeqCst), read)
    }
}

impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append {
            tenant: self.home().clone(),
            stream: stream.clone(),
            expected,
            events,
            reply,
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    /// One unit of the writer's next group: one savepoint around every
    /// batch, at contiguous positions; every stream is this view's tenant's.
    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        let tenant = self.home().clone();
        check_batches(&tenant, &batches)?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::AppendMany {
            tenant,
            batches,
            reply,
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        read::stream_events(self, stream, from_version).boxed()
    }

    /// The pages as they are read (up to 4,096 events each), each checked
    /// to follow the last without a gap.
    fn read_stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        read::stream_pages(self, stream, from_version).boxed()
    }

    /// On a tenant view, the tenant's events only: the default tenant's by
    /// position (they are most of a single-tenant log), another tenant's
    /// through the partial index `events_tenant_position`.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let tenant = self.tenant.clone();
        self.read(move |connection| {
            let only = match &tenant {
                None => "",
                Some(tenant) if tenant.is_default() => "e.tenant IS NULL AND",
                Some(_) => "e.tenant = ?3 AND",
            };
            let sql = format!(
                "SELECT {LOG_COLUMNS} FROM events e CROSS JOIN streams s ON s.stream_key = e.stream_key \
                 WHERE {only} e.position > ?1 ORDER BY e.position LIMIT ?2"
            );
            let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
            let (after, limit_bound) = (query_bound(after), query_bound(limit as u64));
            let mut rows = match tenant.as_ref().filter(|tenant| !tenant.is_default()) {
                Some(tenant) => statement.query((after, limit_bound, tenant.as_str())),
                None => statement.query((after, limit_bound)),
            }
            .map_err(sqlite)?;
            let mut decoder = Decoder::default();
            let mut events = Vec::with_capacity(limit.min(READ_ALL_CAPACITY));
            while let Some(row) = rows.next().map_err(sqlite)? {
                events.push(decoder.log_event(row)?);
            }
            Ok(events)
        })
        .await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        let (wake, options) = self.wake_up();
        PollingSubscription::stream(self.clone(), after, Some(wake), options)
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        let (wake, options) = self.wake_up();
        PollingSubscription::stream_of(self.clone(), stream.clone(), from_version, Some(wake), options)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let stream = stream.clone();
        let tenant = self.home().clone();
        self.read(move |connection| {
            let sql = format!("SELECT max(version) FROM events WHERE stream_key = {STREAM_KEY_OF}");
            optional_count(
                connection,
                &sql,
                (tenant.as_str(), stream.aggregate_type(), stream.aggregate_id()),
                &stream,
            )
        })
        .await
    }

    /// The last position of the log; on a tenant view, of the tenant's last
    /// event (0: none).
    async fn head_position(&self) -> Result<u64, Error> {
        let tenant = self.tenant.clone();
        self.read(move |connection| {
            let log = StreamId::new("$all", "");
            match &tenant {
                None => optional_count(connection, "SELECT max(position) FROM events", [], &log),
                // Walks back from the end of the log to the tenant's last event.
                Some(tenant) if tenant.is_default() => optional_count(
                    connection,
                    "SELECT (SELECT position FROM events WHERE tenant IS NULL ORDER BY position DESC LIMIT 1)",
                    [],
                    &log,
                ),
                Some(tenant) => optional_count(
                    connection,
                    "SELECT max(position) FROM events WHERE tenant = ?1",
                    [tenant.as_str()],
                    &log,
                ),
            }
        })
        .await
    }
}

impl Tenancy for SqliteEventStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::clone(&self.inner),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}
