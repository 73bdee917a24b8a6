//! The writer thread: the only connection that writes, so commit order is
//! position order.
//!
//! Appends queue on a channel. The thread takes every append waiting when it
//! wakes and commits them together in one transaction (group commit): one
//! fsync for many appends. Each append runs inside its own savepoint, so one
//! that fails (a conflict, a reused id) is rolled back alone and the others
//! still commit; every append stays all-or-nothing. An atomic append
//! across streams is one such unit: one savepoint around all its batches. The SQL of an append is
//! in [`crate::append`], of a snapshot in [`crate::snapshot`]; the
//! write-ahead log's checkpoints in [`crate::checkpoint`].

mod group;

use std::sync::Arc;
use std::sync::mpsc;

use factum_core::{AppendBatch, AppendResult, Error, ExpectedVersion, NewEvent, Snapshot, StreamId, Tenant};
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::SqliteOptions;
use crate::append::HEAD_SQL;
use crate::checkpoint::{Checkpointer, checkpoint};
use crate::decode::optional_count;
use crate::error::SqliteError;
use crate::schema::{self, Location};
use crate::transaction::{self, Begin};

/// A request to the writer thread.
pub(crate) enum Command {
    Append {
        /// The tenant the stream lives in.
        tenant: Tenant,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<AppendResult, Error>>,
    },
    /// An atomic append across streams: one unit of its group.
    AppendMany {
        /// The tenant every batch's stream lives in.
        tenant: Tenant,
        batches: Vec<AppendBatch>,
        reply: oneshot::Sender<Result<Vec<AppendResult>, Error>>,
    },
    SaveSnapshot {
        tenant: Tenant,
        snapshot: Snapshot,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// A write committed with the next group, in a savepoint of its own.
    Write(Write),
    /// A projection transaction: the writer serves only it until it ends.
    Begin(Begin),
    /// A read on the writer's connection (in-memory stores have no other).
    Read(Read),
    /// Finish what is queued, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A read run on the writer's connection; it answers its caller itself.
pub(crate) type Read = Box<dyn FnOnce(&Connection) + Send>;

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

/// Starts the writer thread on `location` and waits (without blocking the
/// runtime) until the database is open and its head position is published
/// in `head`; returns the command channel.
pub(crate) async fn start(
    location: Location,
    options: SqliteOptions,
    head: Arc<watch::Sender<u64>>,
) -> Result<mpsc::Sender<Command>, Error> {
    let (commands, queue) = mpsc::channel();
    let (ready, opened) = oneshot::channel();
    std::thread::Builder::new()
        .name("factum-sqlite-writer".into())
        .spawn(move || match Writer::open(&location, &options, head) {
            Ok(writer) => {
                let _ = ready.send(Ok(()));
                writer.run(&queue);
            }
            Err(error) => {
                let _ = ready.send(Err(error));
            }
        })
        .map_err(|source| SqliteError::Spawn {
            thread: "writer",
            source: Arc::new(source),
        })?;
    opened.await.map_err(|_| Error::from(SqliteError::WriterGone))??;
    Ok(commands)
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

/// What the writer took from its queue in one turn.
#[derive(Default)]
struct Turn {
    /// Writes committed together.
    group: Vec<Command>,
    /// Reads run after the group commits.
    reads: Vec<Read>,
    /// A projection transaction served after the group: what was queued
    /// before it commits first.
    transaction: Option<Begin>,
    closing: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// Takes `first` and whatever else is waiting, up to a group's limits,
    /// a transaction or a close.
    fn take(first: Command, queue: &mpsc::Receiver<Command>) -> Self {
        let mut turn = Self::default();
        let mut events = 0;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Read(read) => turn.reads.push(read),
                Command::Close(reply) => {
                    turn.closing = Some(reply);
                    break;
                }
                Command::Begin(begin) => {
                    turn.transaction = Some(begin);
                    break;
                }
                Command::Append {
                    events: ref batch, ..
                } => {
                    events += batch.len();
                    turn.group.push(command);
                }
                Command::AppendMany { ref batches, .. } => {
                    events += batches.iter().map(|batch| batch.events.len()).sum::<usize>();
                    turn.group.push(command);
                }
                Command::SaveSnapshot { .. } | Command::Write(_) => turn.group.push(command),
            }
            if turn.group.len() < MAX_GROUP && events < MAX_GROUP_EVENTS {
                next = queue.try_recv().ok();
            }
        }
        turn
    }
}

impl Writer {
    /// Opens the writer's connection and publishes the stored head.
    fn open(
        location: &Location,
        options: &SqliteOptions,
        head: Arc<watch::Sender<u64>>,
    ) -> Result<Self, Error> {
        let connection = schema::open_writer(location, options)?;
        let stored_head = optional_count(&connection, HEAD_SQL, [], &StreamId::new("$all", ""))?;
        head.send_replace(stored_head);
        let checkpointer = match location {
            Location::File(path) => Checkpointer::start(path.clone(), options.clone()),
            Location::Memory => None,
        };
        Ok(Self {
            connection,
            head,
            checkpointer,
            memory: matches!(location, Location::Memory),
            checkpoint_bytes: options.checkpoint_bytes,
            unchecked_bytes: 0,
            busy_timeout: options.busy_timeout,
        })
    }

    fn run(mut self, queue: &mpsc::Receiver<Command>) {
        let mut closing = None;
        // A command taken from the queue while a transaction was open.
        let mut carried = None;
        while closing.is_none() {
            let Some(first) = carried.take().or_else(|| queue.recv().ok()) else {
                break;
            };
            let turn = Turn::take(first, queue);
            if !turn.group.is_empty() {
                self.commit_group(turn.group);
            }
            for read in turn.reads {
                read(&self.connection);
            }
            closing = turn.closing;
            if let Some(begin) = turn.transaction {
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

/// Runs one statement without parameters.
pub(crate) fn execute(connection: &Connection, sql: &str) -> Result<(), SqliteError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(SqliteError::from)
}
