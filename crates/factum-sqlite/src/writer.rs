//! The writer thread: the only connection that writes, so commit order is
//! position order.
//!
//! Appends queue on a channel. The thread takes every append waiting when it
//! wakes and commits them together in one transaction (group commit): one
//! fsync for many appends. Each append runs inside its own savepoint, so one
//! that fails (a conflict, a reused id) is rolled back alone and the others
//! still commit; every append stays all-or-nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use factum_core::{AppendResult, Error, ExpectedVersion, NewEvent, Snapshot, StreamId, original_append};
use rusqlite::{Connection, ErrorCode};
use tokio::sync::{oneshot, watch};

use crate::SqliteOptions;
use crate::decode::{Decoder, LOG_COLUMNS, corrupt, optional_count};
use crate::error::{SqliteError, sqlite};
use crate::schema;
use crate::transaction::{self, Begin};

/// A request to the writer thread.
pub(crate) enum Command {
    Append {
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<AppendResult, Error>>,
    },
    SaveSnapshot {
        snapshot: Snapshot,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// A write committed with the next group, in a savepoint of its own.
    Write(Write),
    /// A projection transaction: the writer serves only it until it ends.
    Begin(Begin),
    /// A read on the writer's connection (in-memory stores have no other).
    Read(Box<dyn FnOnce(&Connection) + Send>),
    /// Finish what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A write of the store's own (a checkpoint, a dead letter, a lease): run
/// with the connection (or the error that kept the group from starting),
/// it returns whether it succeeded and what to answer once the group's
/// commit is known.
pub(crate) type Write = Box<dyn FnOnce(Result<&Connection, SqliteError>) -> Written + Send>;

/// What a [`Write`] did, and how to answer it after the commit.
pub(crate) struct Written {
    pub(crate) succeeded: bool,
    pub(crate) answer: Box<dyn FnOnce(Result<(), SqliteError>) + Send>,
}

/// The most appends committed in one transaction.
const MAX_GROUP: usize = 256;
/// Stop adding appends to a group past this many events.
const MAX_GROUP_EVENTS: usize = 100_000;
/// Rows per multi-row INSERT statement.
const CHUNK: usize = 64;
/// Bound parameters per event row.
const COLUMNS: usize = 9;

const INSERT_COLUMNS: &str = "INSERT OR FAIL INTO events \
    (position, stream_key, version, event_id, event_type, schema_version, payload, metadata, occurred_at) VALUES ";

fn insert_sql(rows: usize) -> &'static str {
    static CHUNK_SQL: OnceLock<String> = OnceLock::new();
    static ONE_SQL: OnceLock<String> = OnceLock::new();
    let build = |rows: usize| {
        let row = format!("({})", ["?"; COLUMNS].join(","));
        format!("{INSERT_COLUMNS}{}", vec![row; rows].join(","))
    };
    if rows == CHUNK {
        CHUNK_SQL.get_or_init(|| build(CHUNK))
    } else {
        ONE_SQL.get_or_init(|| build(1))
    }
}

const STREAM_SQL: &str = "SELECT s.stream_key, (SELECT max(version) FROM events WHERE stream_key = s.stream_key) \
     FROM streams s WHERE s.aggregate_type = ?1 AND s.aggregate_id = ?2";
const NEW_STREAM_SQL: &str = "INSERT INTO streams (aggregate_type, aggregate_id) VALUES (?1, ?2)";
const HEAD_SQL: &str = "SELECT max(position) FROM events";

/// Starts the writer thread on `location` and waits (without blocking the
/// runtime) until the database is open; returns the command channel and the
/// head position found.
pub(crate) async fn start(
    location: schema::Location,
    options: SqliteOptions,
    head: Arc<watch::Sender<u64>>,
) -> Result<mpsc::Sender<Command>, Error> {
    let (commands, queue) = mpsc::channel();
    let (ready, opened) = oneshot::channel();
    std::thread::Builder::new()
        .name("factum-sqlite-writer".into())
        .spawn(move || {
            let connection = match schema::open_writer(&location, &options) {
                Ok(connection) => connection,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            let stored_head = optional_count(&connection, HEAD_SQL, [], &StreamId::new("$all", ""));
            match stored_head {
                Ok(position) => head.send_replace(position),
                Err(error) => {
                    let _ = ready.send(Err(SqliteError::ReaderFailed(error.to_string())));
                    return;
                }
            };
            let checkpointer = match &location {
                schema::Location::File(path) => Checkpointer::start(path.clone(), options.clone()),
                schema::Location::Memory => None,
            };
            let _ = ready.send(Ok(()));
            Writer {
                connection,
                head,
                checkpointer,
                memory: matches!(location, schema::Location::Memory),
                checkpoint_bytes: options.checkpoint_bytes,
                unchecked_bytes: 0,
                busy_timeout: options.busy_timeout,
            }
            .run(&queue);
        })
        .map_err(|source| SqliteError::Spawn {
            thread: "writer",
            source: Arc::new(source),
        })?;
    match opened.await {
        Ok(Ok(())) => Ok(commands),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(SqliteError::WriterGone.into()),
    }
}

struct Writer {
    connection: Connection,
    head: Arc<watch::Sender<u64>>,
    checkpointer: Option<Checkpointer>,
    memory: bool,
    checkpoint_bytes: u64,
    unchecked_bytes: u64,
    /// How long a projection transaction may sit idle while writes wait.
    busy_timeout: std::time::Duration,
}

/// What one queued write produced, answered after the commit.
enum Outcome {
    Append(
        oneshot::Sender<Result<AppendResult, Error>>,
        Result<AppendResult, Error>,
    ),
    Snapshot(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
    Write(Box<dyn FnOnce(Result<(), SqliteError>) + Send>),
}

impl Writer {
    fn run(mut self, queue: &mpsc::Receiver<Command>) {
        let mut closing = None;
        // A command taken from the queue while a transaction was open.
        let mut carried = None;
        while closing.is_none() {
            let first = match carried.take() {
                Some(command) => command,
                None => match queue.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            let mut group = Vec::new();
            let mut reads = Vec::new();
            let mut transaction = None;
            let mut events = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Read(read) => reads.push(read),
                    Command::Close(reply) => {
                        closing = Some(reply);
                        break;
                    }
                    // What was queued before it commits first.
                    Command::Begin(begin) => {
                        transaction = Some(begin);
                        break;
                    }
                    Command::Append {
                        events: ref batch, ..
                    } => {
                        events += batch.len();
                        group.push(command);
                    }
                    Command::SaveSnapshot { .. } | Command::Write(_) => group.push(command),
                }
                if group.len() < MAX_GROUP && events < MAX_GROUP_EVENTS {
                    next = queue.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            for read in reads {
                read(&self.connection);
            }
            if let Some(begin) = transaction {
                let served = transaction::serve(&self.connection, begin, queue, self.busy_timeout);
                carried = served.carried;
                // A rough figure for the write-ahead log: a changed row and
                // its index entries.
                self.wrote(served.changed_rows.saturating_mul(256));
            }
        }
        // Close the checkpointer's connection before ours, so that the last
        // connection to close checkpoints and removes the write-ahead log.
        drop(self.checkpointer.take());
        drop(self);
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    fn commit_group(&mut self, group: Vec<Command>) {
        let connection = &self.connection;
        let mut outcomes = Vec::with_capacity(group.len());
        let mut appended_bytes = 0;
        let begun = execute(connection, "BEGIN IMMEDIATE");
        // The last position, read once per transaction (another process may
        // have appended since the last one) and kept up to date by appends.
        let mut head = None;
        for command in group {
            match command {
                Command::Append {
                    stream,
                    expected,
                    events,
                    reply,
                } => {
                    let result = match &begun {
                        Ok(()) => append(connection, &mut head, &stream, expected, &events),
                        Err(error) => Err(error.clone().into()),
                    };
                    if result.as_ref().is_ok_and(|result| !result.positions.is_empty()) {
                        appended_bytes += events
                            .iter()
                            .map(|event| event.payload.as_str().len() as u64 + 64)
                            .sum::<u64>();
                    }
                    outcomes.push(Outcome::Append(reply, result));
                }
                Command::SaveSnapshot { snapshot, reply } => {
                    let result = match &begun {
                        Ok(()) => save_snapshot(connection, &snapshot),
                        Err(error) => Err(error.clone().into()),
                    };
                    outcomes.push(Outcome::Snapshot(reply, result));
                }
                Command::Write(write) => {
                    let answer = match &begun {
                        Ok(()) => write_in_savepoint(connection, write),
                        Err(error) => (write(Err(error.clone()))).answer,
                    };
                    outcomes.push(Outcome::Write(answer));
                }
                Command::Read(_) | Command::Close(_) | Command::Begin(_) => {}
            }
        }
        let committed = begun.and_then(|()| execute(connection, "COMMIT"));
        if let Err(error) = &committed {
            // The transaction may still be open (a failed COMMIT under
            // SQLITE_BUSY keeps it); nothing of it may survive.
            if !connection.is_autocommit() {
                let _ = execute(connection, "ROLLBACK");
            }
            tracing::warn!(%error, "a group of appends failed to commit");
        }
        let mut head = None;
        for outcome in &mut outcomes {
            if let (Outcome::Append(_, result @ Ok(_)), Err(error)) = (&mut *outcome, &committed) {
                *result = Err(error.clone().into());
            }
            if let (Outcome::Snapshot(_, result @ Ok(_)), Err(error)) = (&mut *outcome, &committed) {
                *result = Err(error.clone().into());
            }
            if let Outcome::Append(_, Ok(result)) = outcome {
                head = result.positions.last().copied().max(head);
            }
        }
        if let Some(head) = head {
            self.head.send_if_modified(|current| {
                let advanced = head > *current;
                *current = (*current).max(head);
                advanced
            });
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Append(reply, result) => {
                    let _ = reply.send(result);
                }
                Outcome::Snapshot(reply, result) => {
                    let _ = reply.send(result);
                }
                Outcome::Write(answer) => answer(committed.clone()),
            }
        }
        if committed.is_ok() {
            self.wrote(appended_bytes);
        }
    }

    /// Counts `bytes` committed to the write-ahead log, and has it
    /// checkpointed when enough have piled up.
    fn wrote(&mut self, bytes: u64) {
        self.unchecked_bytes += bytes;
        if self.unchecked_bytes >= self.checkpoint_bytes {
            self.unchecked_bytes = 0;
            let delegated = self.checkpointer.as_ref().is_some_and(Checkpointer::wake);
            if !delegated && !self.memory {
                checkpoint(&self.connection);
            }
        }
    }
}

/// Runs `write` in a savepoint of its own, undone when it fails.
fn write_in_savepoint(
    connection: &Connection,
    write: Write,
) -> Box<dyn FnOnce(Result<(), SqliteError>) + Send> {
    if let Err(error) = execute(connection, "SAVEPOINT factum_write") {
        return write(Err(error)).answer;
    }
    let written = write(Ok(connection));
    let undone = if written.succeeded {
        Ok(())
    } else {
        execute(connection, "ROLLBACK TO factum_write")
    };
    let released = undone.and_then(|()| execute(connection, "RELEASE factum_write"));
    match released {
        Ok(()) => written.answer,
        Err(error) => {
            let answer = written.answer;
            Box::new(move |_| answer(Err(error)))
        }
    }
}

fn execute(connection: &Connection, sql: &str) -> Result<(), SqliteError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(SqliteError::from)
}

/// Appends `events` to `stream`, checking `expected` and event ids.
fn append(
    connection: &Connection,
    head: &mut Option<i64>,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, Error> {
    let (key, actual) = match stream_state(connection, stream)? {
        Some((key, version)) => (Some(key), version),
        None => (None, 0),
    };
    if !expected.admits(actual) {
        if let Some(original) = retried(connection, stream, events)? {
            return Ok(original);
        }
        return Err(Error::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        });
    }
    if events.is_empty() {
        return Ok(AppendResult {
            stream_version: actual,
            positions: Vec::new(),
        });
    }
    let rows = encode(stream, events)?;
    execute(connection, "SAVEPOINT factum_insert")?;
    let inserted = insert(connection, head, stream, key, actual, events, &rows);
    match inserted {
        Ok(result) => {
            execute(connection, "RELEASE factum_insert")?;
            *head = result.positions.last().map(|&position| position as i64);
            Ok(result)
        }
        Err(error) => {
            execute(connection, "ROLLBACK TO factum_insert")?;
            execute(connection, "RELEASE factum_insert")?;
            if !is_unique_violation(&error) {
                return Err(sqlite(error));
            }
            // A stored event id (a retry, or a reused id) or an id repeated
            // in this batch: the slow path tells them apart.
            if let Some(original) = retried(connection, stream, events)? {
                return Ok(original);
            }
            let mut seen = HashSet::with_capacity(events.len());
            if let Some(repeated) = events.iter().find(|event| !seen.insert(event.event_id)) {
                return Err(Error::InvalidRequest {
                    stream: stream.clone(),
                    reason: format!("event id {} appears twice in one append", repeated.event_id),
                });
            }
            Err(sqlite(error))
        }
    }
}

/// The columns of an event that need converting before binding.
struct EncodedRow {
    metadata: Option<String>,
    occurred_at: i64,
}

fn encode(stream: &StreamId, events: &[NewEvent]) -> Result<Vec<EncodedRow>, Error> {
    events
        .iter()
        .map(|event| {
            let invalid = |reason: String| Error::InvalidRequest {
                stream: stream.clone(),
                reason,
            };
            let metadata = if event.metadata.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&event.metadata).map_err(|error| {
                    invalid(format!(
                        "the metadata of event {} does not serialize: {error}",
                        event.event_id
                    ))
                })?)
            };
            let occurred_at = i64::try_from(event.occurred_at.unix_timestamp_nanos()).map_err(|_| {
                invalid(format!(
                    "event {} occurred at {}, outside the years 1678 to 2261 the store can keep",
                    event.event_id, event.occurred_at
                ))
            })?;
            Ok(EncodedRow {
                metadata,
                occurred_at,
            })
        })
        .collect()
}

fn insert(
    connection: &Connection,
    head: &Option<i64>,
    stream: &StreamId,
    key: Option<i64>,
    actual: u64,
    events: &[NewEvent],
    rows: &[EncodedRow],
) -> rusqlite::Result<AppendResult> {
    let key = match key {
        Some(key) => key,
        None => {
            let mut statement = connection.prepare_cached(NEW_STREAM_SQL)?;
            statement.execute((stream.aggregate_type(), stream.aggregate_id()))?;
            connection.last_insert_rowid()
        }
    };
    let head = match head {
        Some(head) => *head,
        None => connection
            .prepare_cached(HEAD_SQL)?
            .query_row([], |row| row.get::<_, Option<i64>>(0))?
            .unwrap_or(0),
    };
    let first_position = head + 1;
    let first_version = actual as i64 + 1;
    let mut offset = 0;
    for size in [CHUNK, 1] {
        if events.len() - offset < size {
            continue;
        }
        let mut statement = connection.prepare_cached(insert_sql(size))?;
        while events.len() - offset >= size {
            for row in 0..size {
                let index = offset + row;
                let (event, encoded) = (&events[index], &rows[index]);
                let base = row * COLUMNS;
                statement.raw_bind_parameter(base + 1, first_position + index as i64)?;
                statement.raw_bind_parameter(base + 2, key)?;
                statement.raw_bind_parameter(base + 3, first_version + index as i64)?;
                statement.raw_bind_parameter(base + 4, &event.event_id.as_bytes()[..])?;
                statement.raw_bind_parameter(base + 5, &*event.event_type)?;
                statement.raw_bind_parameter(base + 6, i64::from(event.schema_version))?;
                statement.raw_bind_parameter(base + 7, event.payload.as_str())?;
                statement.raw_bind_parameter(base + 8, encoded.metadata.as_deref())?;
                statement.raw_bind_parameter(base + 9, encoded.occurred_at)?;
            }
            statement.raw_execute()?;
            offset += size;
        }
    }
    let count = events.len() as u64;
    Ok(AppendResult {
        stream_version: actual + count,
        positions: (0..count).map(|index| first_position as u64 + index).collect(),
    })
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.code == ErrorCode::ConstraintViolation
            && failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The stream's key and version, when it has been written to.
fn stream_state(connection: &Connection, stream: &StreamId) -> Result<Option<(i64, u64)>, Error> {
    let mut statement = connection.prepare_cached(STREAM_SQL).map_err(sqlite)?;
    let mut rows = statement
        .query((stream.aggregate_type(), stream.aggregate_id()))
        .map_err(sqlite)?;
    let Some(row) = rows.next().map_err(sqlite)? else {
        return Ok(None);
    };
    let key: i64 = row.get(0).map_err(sqlite)?;
    let version: Option<i64> = row.get(1).map_err(sqlite)?;
    let version = u64::try_from(version.unwrap_or(0))
        .map_err(|_| corrupt(stream, 0, format!("the stored version {version:?} is negative")))?;
    Ok(Some((key, version)))
}

/// The original result when `events` is a retry of an earlier append (the
/// same rules as the in-memory store).
fn retried(
    connection: &Connection,
    stream: &StreamId,
    events: &[NewEvent],
) -> Result<Option<AppendResult>, Error> {
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM events e JOIN streams s ON s.stream_key = e.stream_key WHERE e.event_id = ?1"
    );
    let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
    let mut decoder = Decoder::default();
    original_append(stream, events, |event| {
        let mut rows = statement
            .query([&event.event_id.as_bytes()[..]])
            .map_err(sqlite)?;
        match rows.next().map_err(sqlite)? {
            Some(row) => decoder.log_event(row).map(Some),
            None => Ok(None),
        }
    })
}

fn save_snapshot(connection: &Connection, snapshot: &Snapshot) -> Result<(), Error> {
    let stream = &snapshot.stream;
    let invalid = |reason: String| Error::InvalidRequest {
        stream: stream.clone(),
        reason,
    };
    let version = i64::try_from(snapshot.version)
        .map_err(|_| invalid(format!("snapshot version {} is out of range", snapshot.version)))?;
    let taken_at = i64::try_from(snapshot.taken_at.unix_timestamp_nanos()).map_err(|_| {
        invalid(format!(
            "the snapshot was taken at {}, outside the years 1678 to 2261 the store can keep",
            snapshot.taken_at
        ))
    })?;
    let mut statement = connection
        .prepare_cached(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, version, state, taken_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
             SET version = excluded.version, state = excluded.state, taken_at = excluded.taken_at \
             WHERE excluded.version >= snapshots.version",
        )
        .map_err(sqlite)?;
    statement
        .execute((
            stream.aggregate_type(),
            stream.aggregate_id(),
            version,
            snapshot.state.as_str(),
            taken_at,
        ))
        .map_err(sqlite)?;
    Ok(())
}

/// Copies what it can of the write-ahead log into the database without
/// waiting for readers or the writer.
fn checkpoint(connection: &Connection) {
    let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match checkpoint {
        Ok((log, copied)) => tracing::debug!(log, copied, "checkpointed the write-ahead log"),
        // Not fatal: the log keeps growing until the next checkpoint succeeds.
        Err(error) => tracing::warn!(%error, "checkpoint failed; will retry"),
    }
}

/// A background thread that copies the write-ahead log into the database,
/// so that commits never pay for a checkpoint.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: PathBuf, options: SqliteOptions) -> Option<Self> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("factum-sqlite-checkpoint".into())
            .spawn(move || {
                let connection = match schema::open_secondary(&path, &options) {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "cannot open the checkpoint connection; the write-ahead log will be checkpointed when the store closes");
                        return;
                    }
                };
                while woken.recv().is_ok() {
                    checkpoint(&connection);
                }
            });
        match spawned {
            Ok(thread) => Some(Self {
                wake,
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the checkpoint thread; the write-ahead log will be checkpointed when the store closes");
                None
            }
        }
    }

    /// Asks for a checkpoint; false when the thread is gone.
    fn wake(&self) -> bool {
        // A full channel means a checkpoint is already due: nothing to add.
        !matches!(self.wake.try_send(()), Err(mpsc::TrySendError::Disconnected(())))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (closed, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.wake, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
