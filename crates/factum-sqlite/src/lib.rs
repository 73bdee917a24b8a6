//! The embedded, durable event store of [factum](https://docs.rs/factum):
//! one SQLite file, no server.
//!
//! [`SqliteEventStore`] implements [`factum_core::EventStore`] and passes the
//! shared conformance suite. Users reach it through the facade as
//! `factum::SqliteEventStore` with the `sqlite` feature.
//!
//! ```
//! use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
//! use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};
//! use futures::StreamExt;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("events.db");
//! let store = SqliteEventStore::open_with(&path, SqliteOptions::new().durability(Durability::Normal)).await?;
//!
//! let stream = StreamId::new("Counter", "42");
//! let events = vec![
//!     NewEvent::new("created", Payload::parse(r#"{"value":0}"#)?),
//!     NewEvent::new("incremented", Payload::parse(r#"{"amount":2}"#)?),
//! ];
//! store.append(&stream, ExpectedVersion::NoStream, events).await?;
//!
//! let mut history = store.read_stream(&stream, 1);
//! while let Some(event) = history.next().await {
//!     let event = event?;
//!     println!("{} v{} at {}: {}", event.stream, event.version, event.position, event.payload);
//! }
//! # store.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Lifecycle
//!
//! The same steps, with the same names, as factum's PostgreSQL store:
//!
//! 1. **Open**: [`SqliteEventStore::open`] (default options),
//!    [`SqliteEventStore::open_with`] with [`SqliteOptions::new`]`()...`,
//!    or [`SqliteEventStore::open_in_memory`] for tests. Opening creates
//!    the file when missing and migrates its schema to this crate's version
//!    in one transaction.
//! 2. **Check the schema**: [`SqliteEventStore::ensure_schema`] is
//!    idempotent and cheap: it confirms that the file is still at the
//!    schema version opening left it at, and fails with
//!    [`SqliteError::SchemaChanged`] when another program changed it.
//! 3. **Use** it from any number of tasks; clones share one writer thread
//!    and one pool of read connections.
//! 4. **Close**: [`SqliteEventStore::close`] finishes the queued writes,
//!    stops the writer and checkpoint threads and folds the write-ahead log
//!    back into the file. Every later call, on any clone, fails with
//!    [`SqliteError::Closed`] (inside [`factum_core::Error::Store`]);
//!    closing again does nothing. Dropping the last clone closes the store
//!    in the background.
//!
//! # How it works
//!
//! - **One writer.** A dedicated thread owns the only writing connection, so
//!   commit order is position order and `$all` never has a gap a reader
//!   could skip. Appends queued while it commits are committed together in
//!   the next transaction (group commit), each in its own savepoint, so one
//!   failing append does not affect the others.
//! - **Atomic appends across streams**
//!   ([`append_many`](factum_core::EventStore::append_many)) are one unit
//!   of a group: every batch's version is checked, then all are inserted in
//!   one savepoint, so a call that fails is undone alone and its neighbours
//!   commit. The writer hands out positions alone, so a call's positions
//!   are contiguous in `$all`.
//! - **Readers** use a small pool of connections on tokio's blocking pool.
//!   Reads page by key (`position > ?`, `version >= ?`), and a stream read
//!   fetches its next page while the caller handles the current one, so
//!   replaying a million events keeps memory flat.
//! - **Write-ahead log** (`journal_mode = WAL`): readers never block the
//!   writer. A background thread checkpoints the log, so commits never wait
//!   for one.
//! - **Durability** is [`Durability::Full`] by default (`synchronous = FULL`:
//!   an append that returned survives a power loss);
//!   [`Durability::Normal`] trades the last moments before a power loss for
//!   speed. Both keep every returned append across a crash of the process.
//! - **Idempotent appends**: appending events whose ids are stored, with the
//!   same content, returns the original positions and writes nothing.
//! - **Live subscriptions** (of `$all`, of one stream, of projections) wake
//!   as soon as this process commits. Appends made by other processes on
//!   the same file are found by one watcher per store, which reads the head
//!   every [`SqliteOptions::poll_interval`] while anyone subscribes and
//!   wakes them all: the subscriptions themselves never poll (off with
//!   [`SqliteOptions::watch_other_processes`]`(false)`).
//! - **Replay in pages**: [`EventStore::read_stream_pages`](factum_core::EventStore::read_stream_pages)
//!   hands over each page as it was read (4,096 events), with the next
//!   pages already being read, so loading an aggregate never holds its whole
//!   history.
//! - **Snapshots**: the store implements [`factum_core::SnapshotStore`],
//!   keeping the latest snapshot of each aggregate in a table beside its
//!   events, so `Application::with_snapshots` works on it.
//! - **Projections in the same file**: [`SqliteProjectionStore`] keeps read
//!   models, checkpoints, dead letters and leases beside the events. A
//!   [`TransactionalProjection`](factum_core::TransactionalProjection)'s
//!   handler runs its SQL in a [`SqliteTransaction`] on the writer thread,
//!   and its checkpoint commits in the same transaction: each event takes
//!   effect exactly once.
//!
//! # Transactional outbox
//!
//! [`SqliteEventStore::enable_outbox`] switches the file's outbox on: from
//! then on, every append writes an entry in `factum_outbox` in the
//! transaction that stores its events; sent entries move to
//! `factum_outbox_sent` until the relay's retention prunes them, so the
//! table an append writes to holds only what waits. An entry is one append's events to
//! one stream: their first position (its key and its order; no sequence of
//! its own) and their last, contiguous since the writer hands positions
//! out; the envelopes are read from `events`. An
//! [`OutboxRelay`](factum_core::OutboxRelay) on [`SqliteEventStore::outbox`]
//! publishes the events, at least once and in order per aggregate, and
//! marks them sent.
//!
//! Why an entry per append: the outbox's cost is then paid per save, not
//! per event. A save of 100 events writes one row, and a relay leases and
//! marks one row for them; a row per event, written by a row trigger,
//! made such a save 1.5× slower and kept the relay to a third of a raw
//! producer (see the README's benchmarks). Every way events arrive —
//! `append`, `append_many`, the appends the writer commits together,
//! tenant views, another process on the same file — passes through the one
//! function that inserts events, which writes the entry in the same
//! statement sequence, so no code path can store an event and forget it.
//! The switch is a row of `factum_outbox_state`, read by that statement in
//! the append's transaction, so switching is a change of the file that
//! every process sees at its next append;
//! [`SqliteEventStore::disable_outbox`] keeps the entries not yet sent, for
//! a relay to drain. A release from before entries (schema version 4)
//! cannot open the file, so none writes events without them.
//!
//! Relays claim entries by lease ([`SqliteOutbox::lease`], renewed while
//! the claim lives), in a write transaction: relays in other processes skip
//! leased entries and take over those of a relay that died once its lease
//! lapses; a claim dropped unfinished gives its entries back at once. A
//! claim cuts an entry that holds more events than it has room for, and
//! splits one whose events end differently (a parked event becomes an
//! entry of its own).
//!
//! # The file
//!
//! A factum database carries `PRAGMA application_id = 0x6663746d` ("fctm") and
//! its schema version in `PRAGMA user_version`. Opening another program's
//! SQLite file, or a file that is not SQLite, fails with
//! [`SqliteError::NotAFactumDatabase`]; a file from a newer factum-sqlite
//! fails with [`SqliteError::SchemaTooNew`]. A damaged row surfaces as
//! [`factum_core::Error::Corrupt`] naming its stream and version; the store
//! never panics on file content.
//!
//! Tables: `streams` (stream key → tenant, aggregate type and id), `events`
//! (`position` is the rowid; `occurred_at` is nanoseconds since the Unix
//! epoch; `metadata` is NULL when empty) and `snapshots` (schema version
//! 1; its `schema_version` column, the aggregate's shape version, since
//! version 4); `factum_checkpoints`, `factum_dead_letters` and
//! `factum_leases` (version 2); tenants in every key (version 3: see
//! below). Opening a file of an older version migrates it in one
//! transaction, keeping its events. `factum_outbox` (entries not
//! yet sent), `factum_outbox_sent` and `factum_outbox_state` (version 5)
//! are in every file, switched on by
//! [`SqliteEventStore::enable_outbox`]; a version 4 file whose outbox was
//! on keeps it on, each of its rows an entry of one event. Stop the
//! processes of the earlier release that write or relay the file before
//! the first open by this one migrates it: they check the schema version
//! when they open the file, not at each append, so a writer still running
//! would store events without entries (its relay only fails: the table
//! changed shape).
//!
//! # Tenants
//!
//! [`for_tenant`](factum_core::Tenancy::for_tenant) gives a view of one
//! tenant over the same file: its streams, snapshots, log and projection
//! state are the tenant's only (the rules are
//! [`factum_core::Tenancy`]'s). A stream's key includes its tenant, and
//! `events.tenant` lets a tenant's log be read by position through a
//! partial index that holds only the events of tenants other than the
//! default one, so a single-tenant store writes what it wrote before.
//! Events of files older than version 3 belong to the default tenant; their
//! projection state stays with the unscoped store that wrote it.
//!
//! # Inspection
//!
//! The store implements [`factum_core::StoreAdmin`] (what the `factum`
//! command uses): counts, size on disk, streams by type and id,
//! projections with their checkpoints, leases and dead letters, replay
//! requests and checkpoint resets. [`SqliteEventStore::file_schema_version`]
//! reads a file's schema version without opening (or migrating) it.

mod admin;
mod append;
mod atomic;
mod checkpoint;
mod dead_letter;
mod decode;
mod encode;
mod error;
mod lease;
mod options;
mod outbox;
mod projection;
mod read;
mod schema;
mod snapshot;
mod store;
mod transaction;
mod watcher;
mod writer;

pub use error::SqliteError;
pub use options::{Durability, SqliteOptions};
pub use outbox::{SqliteOutbox, SqliteOutboxClaim};
pub use projection::SqliteProjectionStore;
pub use store::SqliteEventStore;
pub use transaction::SqliteTransaction;

/// The rusqlite this crate uses, for the SQL a projection runs in a
/// [`SqliteTransaction`] or reads with [`SqliteProjectionStore::query`].
pub use rusqlite;

/// The name of this backend in [`factum_core::Error::Store`].
pub const BACKEND: &str = "sqlite";
