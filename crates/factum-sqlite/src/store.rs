use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use factum_core::{
    AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, Payload, PollingSubscription,
    RecordedEvent, Snapshot, SnapshotStore, StreamId, SubscriptionOptions,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

use crate::SqliteOptions;
use crate::decode::{Decoder, LOG_COLUMNS, STREAM_COLUMNS, corrupt, optional_count};
use crate::error::{SqliteError, sqlite};
use crate::schema::{self, Location};
use crate::transaction::SqliteTransaction;
use crate::writer::{self, Command};

/// Events per page when a stream is read.
const PAGE: usize = 4096;
/// Pages of a stream read requested ahead of the caller.
const PAGES_IN_FLIGHT: usize = 3;

const STREAM_KEY_OF: &str =
    "(SELECT stream_key FROM streams WHERE aggregate_type = ?1 AND aggregate_id = ?2)";

/// A durable event store in one SQLite file: no server, safe across crashes.
///
/// Cheap to clone; clones share one writer thread and one pool of read
/// connections. Every method is async and never blocks the runtime: writes
/// go to a dedicated writer thread (one writer, so commit order is position
/// order; appends queued together commit in one transaction), reads run on
/// tokio's blocking pool. Several processes may open the same file: SQLite
/// serialises their writes, and live subscriptions poll for appends made
/// elsewhere (see [`SqliteOptions::poll_interval`]).
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
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    readers: Option<ReadPool>,
    head: Arc<watch::Sender<u64>>,
    location: Location,
    options: SqliteOptions,
    closed: AtomicBool,
}

/// Idle read connections of a file store.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let location = match &self.inner.location {
            Location::File(path) => path.display().to_string(),
            Location::Memory => ":memory:".to_owned(),
        };
        f.debug_struct("SqliteEventStore")
            .field("location", &location)
            .field("durability", &self.inner.options.durability)
            .field("head", &*self.inner.head.borrow())
            .finish()
    }
}

impl SqliteEventStore {
    /// Opens the store in the SQLite file at `path`, creating it when
    /// missing, with the default [`SqliteOptions`] (durability
    /// [`Durability::Full`](crate::Durability::Full)).
    ///
    /// Fails with [`SqliteError::NotAFactumDatabase`] for a file that is not a
    /// factum store and [`SqliteError::SchemaTooNew`] for one written by a
    /// newer factum-sqlite, both inside [`Error::Store`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the store in the SQLite file at `path` with `options`.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        Self::start(Location::File(path), options).await
    }

    /// A private store in memory, gone when the last clone is dropped: for
    /// tests. It behaves like a file store (same SQL, same checks), minus
    /// durability and concurrent reads.
    pub async fn open_in_memory() -> Result<Self, Error> {
        Self::start(Location::Memory, SqliteOptions::default().poll_interval(None)).await
    }

    async fn start(location: Location, options: SqliteOptions) -> Result<Self, Error> {
        let head = Arc::new(watch::Sender::new(0));
        let commands = writer::start(location.clone(), options.clone(), head.clone()).await?;
        let readers = match &location {
            Location::File(path) => Some(ReadPool {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            Location::Memory => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                readers,
                head,
                location,
                options,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The file the store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// Finishes the queued writes and closes the database for every clone
    /// of this store: later calls fail with [`SqliteError::WriterGone`].
    ///
    /// Dropping the last clone closes the store too, in the background;
    /// `close` waits until the file is closed (and its write-ahead log
    /// folded back in), which is what a program should do before it exits.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(readers) = &self.inner.readers {
            readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        let (reply, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(reply)).is_err() {
            return Ok(());
        }
        // An error here means the thread was already gone: closed either way.
        let _ = closed.await;
        Ok(())
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SqliteError::WriterGone.into());
        }
        self.inner
            .commands
            .send(command)
            .map_err(|_| SqliteError::WriterGone.into())
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
        answer.await.map_err(|_| Error::from(SqliteError::WriterGone))?
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
        if self.inner.closed.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(SqliteError::WriterGone.into())));
        }
        if self.inner.readers.is_none() {
            let (reply, answer) = oneshot::channel();
            let sent = self.send(Command::Read(Box::new(move |connection| {
                let _ = reply.send(read(connection));
            })));
            return Box::pin(async move {
                sent?;
                answer.await.map_err(|_| Error::from(SqliteError::WriterGone))?
            });
        }
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(error) => {
                return Box::pin(std::future::ready(Err(SqliteError::ReaderFailed(
                    error.to_string(),
                )
                .into())));
            }
        };
        let inner = self.inner.clone();
        let task = runtime.spawn_blocking(move || inner.with_reader(read));
        Box::pin(async move {
            task.await
                .map_err(|error| Error::from(SqliteError::ReaderFailed(error.to_string())))?
        })
    }

    /// Reads versions `from_version..from_version + PAGE` of `stream`.
    fn read_page(&self, stream: StreamId, from_version: u64) -> BoxFuture<'static, Result<Page, Error>> {
        self.read(move |connection| {
            let sql = format!(
                "SELECT {STREAM_COLUMNS} FROM events WHERE stream_key = {STREAM_KEY_OF} \
                 AND version >= ?3 AND version < ?4 ORDER BY version"
            );
            let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
            let from = i64::try_from(from_version).unwrap_or(i64::MAX);
            let until = from.saturating_add(PAGE as i64);
            let mut rows = statement
                .query((stream.aggregate_type(), stream.aggregate_id(), from, until))
                .map_err(sqlite)?;
            // Fresh strings for each page: the caller drops the events on
            // another thread, and sharing one reference count between the
            // reading and the dropping thread costs more than the copy.
            let stream = StreamId::new(stream.aggregate_type(), stream.aggregate_id());
            let mut decoder = Decoder::default();
            let mut events = Vec::with_capacity(PAGE);
            let mut expected_version = from_version;
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(error) => {
                        events.push(Err(sqlite(error)));
                        break;
                    }
                };
                match decoder.stream_event(row, &stream, expected_version) {
                    Ok(event) => {
                        expected_version = event.version + 1;
                        events.push(Ok(event));
                    }
                    Err(error) => {
                        events.push(Err(error));
                        break;
                    }
                }
            }
            let last = events.len() == PAGE && events.iter().all(Result::is_ok);
            Ok(Page {
                events,
                continues: last,
            })
        })
    }
}

/// One page of a stream read.
struct Page {
    /// The events, ending with the first error met.
    events: Vec<Result<RecordedEvent, Error>>,
    /// True when the page is full and whole: the stream may go on.
    continues: bool,
}

impl Inner {
    fn with_reader<R>(&self, read: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        let Some(pool) = &self.readers else {
            return Err(SqliteError::WriterGone.into());
        };
        let idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let connection = schema::open_secondary(&pool.path, &self.options)?;
                // Only the writer writes: a read connection handed to a
                // caller's closure cannot break that.
                connection
                    .pragma_update(None, "query_only", true)
                    .map_err(sqlite)?;
                connection
            }
        };
        let result = read(&connection);
        if !self.closed.load(Ordering::SeqCst) {
            let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.options.read_connections {
                idle.push(connection);
            }
        }
        result
    }
}

/// Where a stream read stands: the pages being fetched, oldest first.
struct Cursor {
    store: SqliteEventStore,
    stream: StreamId,
    /// The first version of the next page to request.
    next_version: u64,
    in_flight: VecDeque<BoxFuture<'static, Result<Page, Error>>>,
    done: bool,
}

impl Cursor {
    /// The next page, keeping `PAGES_IN_FLIGHT` requested ahead: versions
    /// have no gaps, so each page's range is known before the previous one
    /// arrives, and several readers decode in parallel.
    async fn next_page(&mut self) -> Option<Result<Page, Error>> {
        if self.done {
            return None;
        }
        while self.in_flight.len() < PAGES_IN_FLIGHT && self.next_version < u64::MAX - PAGE as u64 {
            let page = self.store.read_page(self.stream.clone(), self.next_version);
            self.in_flight.push_back(page);
            self.next_version += PAGE as u64;
        }
        let page = self.in_flight.pop_front()?.await;
        if !page.as_ref().is_ok_and(|page| page.continues) {
            // Pages requested past the end come back empty; nobody waits for them.
            self.done = true;
            self.in_flight.clear();
        }
        Some(page)
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
            stream: stream.clone(),
            expected,
            events,
            reply,
        })?;
        answer.await.map_err(|_| Error::from(SqliteError::WriterGone))?
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        let cursor = Cursor {
            store: self.clone(),
            stream: stream.clone(),
            next_version: from_version.max(1),
            in_flight: VecDeque::new(),
            done: false,
        };
        futures::stream::unfold(cursor, |mut cursor| async move {
            let page = cursor.next_page().await?;
            let events = match page {
                Ok(page) => page.events,
                Err(error) => vec![Err(error)],
            };
            Some((futures::stream::iter(events), cursor))
        })
        .flatten()
        .boxed()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |connection| {
            let sql = format!(
                "SELECT {LOG_COLUMNS} FROM events e CROSS JOIN streams s ON s.stream_key = e.stream_key \
                 WHERE e.position > ?1 ORDER BY e.position LIMIT ?2"
            );
            let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = statement.query((after, limit)).map_err(sqlite)?;
            let mut decoder = Decoder::default();
            let mut events = Vec::with_capacity(usize::try_from(limit).unwrap_or(PAGE).min(PAGE));
            while let Some(row) = rows.next().map_err(sqlite)? {
                events.push(decoder.log_event(row)?);
            }
            Ok(events)
        })
        .await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        let options = SubscriptionOptions {
            poll_interval: self.inner.options.poll_interval,
            ..SubscriptionOptions::default()
        };
        PollingSubscription::stream(self.clone(), after, Some(self.inner.head.subscribe()), options)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let stream = stream.clone();
        self.read(move |connection| {
            let sql = format!("SELECT max(version) FROM events WHERE stream_key = {STREAM_KEY_OF}");
            optional_count(
                connection,
                &sql,
                (stream.aggregate_type(), stream.aggregate_id()),
                &stream,
            )
        })
        .await
    }

    async fn head_position(&self) -> Result<u64, Error> {
        self.read(|connection| {
            optional_count(
                connection,
                "SELECT max(position) FROM events",
                [],
                &StreamId::new("$all", ""),
            )
        })
        .await
    }
}

/// Snapshots live in the `snapshots` table, one row per stream: the latest.
///
/// ```
/// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotStore, StreamId};
/// # use factum_sqlite::SqliteEventStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteEventStore::open_in_memory().await?;
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":5}"#)?);
/// store.append(&stream, ExpectedVersion::Any, vec![event]).await?;
///
/// let state = Payload::parse(r#"{"value":5}"#)?;
/// let taken_at = time::OffsetDateTime::now_utc();
/// store.save_snapshot(Snapshot { stream: stream.clone(), version: 1, state, taken_at }).await?;
/// let snapshot = store.load_snapshot(&stream).await?.expect("saved above");
/// assert_eq!((snapshot.version, snapshot.state.as_str()), (1, r#"{"value":5}"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
impl SnapshotStore for SqliteEventStore {
    /// Stores `snapshot` unless a snapshot of a higher version is stored.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SaveSnapshot { snapshot, reply })?;
        answer.await.map_err(|_| Error::from(SqliteError::WriterGone))?
    }

    /// The latest snapshot of `stream`; a damaged row is
    /// [`Error::Corrupt`].
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let stream = stream.clone();
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT version, state, taken_at FROM snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .map_err(sqlite)?;
            let mut rows = statement
                .query((stream.aggregate_type(), stream.aggregate_id()))
                .map_err(sqlite)?;
            let Some(row) = rows.next().map_err(sqlite)? else {
                return Ok(None);
            };
            let damaged = |reason: String| corrupt(&stream, 0, format!("the snapshot is damaged: {reason}"));
            let version = row.get::<_, i64>(0).map_err(|error| damaged(error.to_string()))?;
            let version = u64::try_from(version).map_err(|_| damaged(format!("version {version}")))?;
            let state = row.get::<_, String>(1).map_err(|error| damaged(error.to_string()))?;
            let taken_at = row.get::<_, i64>(2).map_err(|error| damaged(error.to_string()))?;
            let taken_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(taken_at))
                .map_err(|error| damaged(error.to_string()))?;
            Ok(Some(Snapshot {
                stream: stream.clone(),
                version,
                state: Payload::from_stored(state),
                taken_at,
            }))
        })
        .await
    }
}
