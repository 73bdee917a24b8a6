//! The PostgreSQL event store of [factum](https://docs.rs/factum).
//!
//! [`PostgresEventStore`] implements [`factum_core::EventStore`] on
//! tokio-postgres and a deadpool connection pool, and passes factum's
//! conformance suite.
//!
//! ```no_run
//! use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
//! use factum_postgres::PostgresEventStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
//! store.ensure_schema().await?; // idempotent: creates or migrates the tables
//!
//! let stream = StreamId::new("Counter", "42");
//! let created = NewEvent::new("created", Payload::parse(r#"{"value":0}"#)?);
//! let result = store.append(&stream, ExpectedVersion::NoStream, vec![created]).await?;
//! assert_eq!(result.stream_version, 1);
//!
//! let page = store.read_all(0, 100).await?; // the global log, in commit order
//! store.close().await?; // stops the listener, closes the pool
//! # Ok(()) }
//! ```
//!
//! # Lifecycle
//!
//! The same four steps as every factum store:
//!
//! 1. **Open**: [`connect(dsn)`](PostgresEventStore::connect), or
//!    [`connect_with(dsn, PostgresOptions::new()…)`](PostgresEventStore::connect_with)
//!    to set the schema, table prefix, pool size, timeouts, page size,
//!    [`poll_interval`](PostgresOptions::poll_interval) (a `Duration`) and
//!    [group commit](#group-commit).
//!    Opens one connection, so a wrong address or password fails here.
//!    [`from_pool`](PostgresEventStore::from_pool) takes a pool of yours
//!    (for TLS).
//! 2. **Schema**: [`ensure_schema()`](PostgresEventStore::ensure_schema)
//!    creates the tables, or migrates an older schema in place, one
//!    transaction per run, processes taking turns. Idempotent: call it at
//!    every start. Schema versions are `u32`
//!    ([`schema_version()`](PostgresEventStore::schema_version),
//!    [`PostgresError::SchemaTooNew`]).
//! 3. **Work**: the store is cheap to clone; clones share the pool and the
//!    background tasks (the `LISTEN` connection, started by the first
//!    subscription, and the `NOTIFY` sender).
//! 4. **Close**: [`close()`](PostgresEventStore::close) stops the background
//!    tasks and closes the pool, for every clone. Every later call fails at
//!    once with [`PostgresError::Closed`], naming the server; live
//!    subscriptions yield that error and end. Closing twice is fine. Appends
//!    are committed when they return, so there is nothing to flush; a store
//!    dropped without `close` releases the same resources as its last clone
//!    goes.
//!
//! # Tables
//!
//! In the configured schema (default `public`), with the configured prefix
//! (default `factum_`), [`ensure_schema`](PostgresEventStore::ensure_schema)
//! creates:
//!
//! - `factum_events`: one row per event, keyed by its global `position`,
//!   unique on `(stream_type, stream_id, version)` and on `event_id`;
//!   `payload` and `metadata` are `json` (kept as written);
//! - `factum_position`: the sequence of positions (`CACHE 1`);
//! - `factum_horizon`: the position up to which the global log can be read
//!   (every read of the global log calls it); `factum_append`: appends a
//!   batch; `factum_append_batches`: appends several streams' batches
//!   atomically; `factum_read_all(after, limit)`: a page of the global log,
//!   for clients in SQL;
//! - `factum_checkpoints`, `factum_dead_letters`, `factum_leases`: the
//!   state of projections (version 3), kept by [`PostgresProjectionStore`];
//! - `factum_snapshots`: the latest snapshot of each stream (version 4;
//!   its `schema_version` column, the aggregate's shape version, since
//!   version 6): the store implements [`factum_core::SnapshotStore`], so
//!   `Application::with_snapshots` works on it;
//! - a `tenant` column in every table and every key, with row-level
//!   security (version 5: see [Tenants](#tenants)), and
//!   `factum_taken_event_ids`;
//! - `factum_schema_version`: the versions applied. A newer crate migrates
//!   an older schema in place, in one transaction;
//! - `factum_outbox`, its indexes, the function `factum_outbox_capture` and
//!   the trigger of that name on `factum_events`: created by
//!   [`enable_outbox`](PostgresEventStore::enable_outbox), outside the
//!   versioned schema (see below); version 7 turns an outbox of one row
//!   per event, when an earlier release enabled one, into one of entries
//!   per append.
//!
//! # Appends
//!
//! One append is one round trip of one prepared statement. A single event
//! (the common case: a command on an aggregate) goes through one
//! `WITH … INSERT` statement that reads the stream's version, takes the
//! position lock (below) and inserts (creating a stream skips even the
//! version read: an existing stream has a version 1, which the unique key
//! refuses to store twice); a batch's first attempt is the same statement
//! over `unnest` of arrays, one multi-row `INSERT`, and a retry after a lost
//! race (or a batch that repeats an event id) goes through the PL/pgSQL
//! `factum_append`, which does the same work taking turns on the stream.
//! A wrong expected version writes nothing and comes back as
//! [`Error::Conflict`](factum_core::Error::Conflict) with the actual version
//! (SQLSTATE `FA001` from the function). Two writers racing on one stream
//! meet on the unique `(stream, version)` key (SQLSTATE `23505`): the
//! loser's expected version no longer holds, a conflict; with
//! `ExpectedVersion::Any` it runs again, this time taking its turn on the
//! stream (a transaction lock on the stream, never on the table, held
//! exclusively by the retry and shared by every first attempt, so the retry
//! cannot lose again and a hot stream never starves it). An
//! append whose event ids are stored already is compared with what is
//! stored: the same events are a retry and return the original positions,
//! other content is [`Error::DuplicateEventId`](factum_core::Error::DuplicateEventId).
//!
//! # Atomic appends across streams
//!
//! [`append_many`](factum_core::EventStore::append_many) is one call of
//! the PL/pgSQL `factum_append_batches`: one statement, so one transaction
//! and one round trip. It takes the turn of every stream of the call
//! *exclusively* (the lock a single-stream retry takes), in ascending order
//! of the turns' keys, then reads the versions in a new statement (a new
//! snapshot, taken after the turns: no append of these streams can still be
//! open), checks every batch's expected version (a mismatch is SQLSTATE
//! `FA005`, the batch and the actual version in its DETAIL, reported as
//! [`Error::Conflict`](factum_core::Error::Conflict) naming that stream),
//! takes one position lock as a single append does, and inserts every event,
//! positions in call order.
//!
//! Why two calls can never deadlock: a call waits only for turn locks, in
//! ascending key order, while holding only turns of lower keys (a cycle of
//! waits would need a call waiting for a lower key than one it holds). A
//! single-stream append holds at most one turn and waits for one only
//! before holding anything (a first attempt never waits: it only *tries* to
//! share the turn, and runs again taking its turn when a call holds it).
//! The position lock is shared and never waits. Once a call holds its turns
//! no other factum append of its streams is open, so its inserts wait for
//! no one's uncommitted versions. Streams whose keys collide share a turn,
//! which costs only waiting, never a deadlock: locks are taken by key.
//!
//! Concurrent calls may interleave their positions (each takes its own from
//! the sequence); a call's own positions increase in call order, and the
//! global order below holds for the call as a whole.
//!
//! With tenants (see [Tenants](#tenants)) every stream of a call is the
//! store value's tenant's: the function takes the tenant, reads each
//! stream's version within it and writes it into every row, and a tenant's
//! view runs the call as the tenant role with `factum.tenant` set, in the
//! same round trip, so row-level security holds it to that tenant too. The
//! turn keys leave the tenant out, as a single append's do: every factum
//! append of a stream id takes the same key whatever its tenant, so the keys
//! keep one total order and the argument above holds unchanged; streams of
//! the same id in two tenants share a turn, which costs only a wait.
//!
//! # The global order
//!
//! Positions come from a sequence, so a transaction that took position 5
//! can commit after one that took 6. A reader that delivered 6 must never
//! later find 5. The store makes that impossible without serialising
//! writers:
//!
//! - **Writers** (inside `factum_append`, before taking any position) take a
//!   *shared* transaction-scoped advisory lock whose 64-bit key is the store's
//!   16-bit tag (`0x46` for factum, then a byte derived from schema and
//!   prefix) followed by the last position the sequence has handed out (48
//!   bits). Shared locks never wait for one another: writers run in
//!   parallel, and the lock is released when the transaction ends.
//! - **Readers** (`factum_horizon`, called by `factum_read_all` and
//!   [`head_position`](factum_core::EventStore::head_position)) first read
//!   the last position handed out, `S` (`last_value`, or one less while the
//!   sequence's `is_called` is false: a fresh sequence has handed out
//!   nothing), then the smallest position `m` among the store's position
//!   locks in `pg_locks`. The horizon is `min(S, m)`; then, with a fresh
//!   snapshot, they read only positions at or below it.
//!
//! Why no event below the horizon can appear later: an event at position
//! `p <= S` got its position before the reader read `S`, so its writer took
//! its lock before the reader scanned `pg_locks`. If the writer still held
//! the lock, `m` is at most its key, which is below all of its positions, so
//! `p` is above the horizon. Otherwise the transaction had ended before the
//! scan, and PostgreSQL makes a commit visible before it releases its locks,
//! so the reader's later snapshot sees the event (or the append rolled back
//! and left a hole, which is fine). Positions handed out after the reader
//! read `S` are above `S`. A transaction that is not a factum append takes
//! no such lock, so an idle transaction on another table never holds the
//! horizon back; an open append holds it back only until it ends.
//!
//! An atomic call across streams is covered by the same argument: it takes
//! one position lock before any of its positions, so every event of the
//! call is above its key while it is open, and a reader's horizon stops
//! below the whole call until it commits, when all of it becomes visible
//! at once. A reader never sees part of a call.
//!
//! A group of appends (see [Group commit](#group-commit)) is one statement
//! too, and the same argument covers it: the statement takes one position
//! lock, keyed with the last position handed out, before it takes any
//! position (`nextval` runs only in a join with the lock's row), so while
//! the group is open every event of every append in it is above the
//! lock's key, and the horizon stops below the whole group; when it
//! commits, all of its appends become visible at once. Its appends are
//! committed or rolled back together, so a reader never sees part of a
//! group, and an append that the group left out (a conflict, a stream
//! whose turn it could not share) took no position.
//!
//! The cost: one advisory lock per append (shared, so never a wait; a
//! first attempt also shares its stream's turn, above) and one scan of
//! `pg_locks` per page read.
//!
//! Why this and not the alternatives: a table lock or one global advisory
//! lock per append serialises every writer (measured: a `LOCK TABLE`
//! design reaches a fraction of the commit rate, see the README); capping
//! reads at `pg_snapshot_xmin` stalls every reader while *any* transaction
//! in the cluster is open, even one on an unrelated table; a high-water mark
//! with a gap timeout skips a slow writer's events. Position locks are
//! exact, leave writers parallel, and are held only by factum appends.
//!
//! # Group commit
//!
//! With [`PostgresOptions::group_commit`] at its default,
//! [`GroupCommit::new()`], appends made while others are in flight are
//! committed together: one statement, one transaction, one commit for a
//! group of appends to distinct streams of one tenant. At most
//! [`in_flight`](GroupCommit::in_flight) appends and groups run at once
//! (default 1). An append that finds a place free and no group waiting
//! runs alone, as above, with no added wait. Otherwise it joins the group
//! that is gathering, which commits once a place is free (and its
//! [`window`](GroupCommit::window), if one is set, has passed): while one
//! group waits for its flush, the next gathers everything appended
//! meanwhile, so groups grow with the load instead of with a timer. A
//! group that has waited past its [`patience`](GroupCommit::patience)
//! (20 ms) for a place runs anyway: an append waiting on another
//! transaction's lock holds its place that long, and must not hold every
//! other append back.
//!
//! The group's statement does for each append what a first attempt does
//! for one: it tries to share the stream's turn and reads the stream's
//! version, and it inserts the events of exactly those appends whose turn
//! it shared and whose expected version holds, with positions that
//! increase with each append's versions. The others write nothing: an
//! append whose expected version did not hold is that append's
//! [`Error::Conflict`](factum_core::Error::Conflict) (or its original
//! positions, when it is a retry of a stored append); one whose turn a
//! retry held runs again alone, taking its turn. Any failure of the
//! statement (a value the server refuses, a unique key met in a race with
//! another transaction, a lost connection, a deadlock) rolls the whole
//! group back, and every append of it runs again alone, where each meets
//! its own outcome: only the bad append fails. An append with a NUL
//! character in its text (which PostgreSQL refuses), a repeated event id,
//! no events or more than 1,000 never joins a group. After a lost
//! connection the group's outcome is unknown to the client; running each
//! append alone settles it, since an append whose events are stored comes
//! back as its original positions. Appends in a group are written in the
//! order of their streams, so two groups that share streams wait for each
//! other at worst, never deadlock.
//!
//! Why groups wait for a place, and why few writers run alone:
//! PostgreSQL already gathers the commits of concurrent transactions into
//! one flush of the log, so what a group saves is the statement and commit
//! work per append, and a group's statement costs nearly as much for two
//! appends as for sixteen. Groups that ran side by side stayed small and
//! saved nothing; groups of one or two made two writers take turns. So
//! while the last group held at most two appends, up to
//! [`alone`](GroupCommit::alone) appends run alone beside the place, as
//! with group commit off, and once a larger group forms, appends gather.
//! Measured (see the README): about the same rate as group commit off at
//! 2 and 4 writers, 1.2–1.6× it at 8 and 16, with a p99 latency at 16
//! writers about half of raw tokio-postgres's. [`GroupCommit::off()`]
//! turns it off.
//!
//! # Reads
//!
//! [`read_all`](factum_core::EventStore::read_all) sends two statements in
//! one round trip: the first computes the horizon and leaves it in the
//! session, the second reads the page up to it. Being a separate statement,
//! the page reads with a snapshot taken after the horizon's scan of
//! `pg_locks`, as the argument above requires.
//!
//! [`read_stream`](factum_core::EventStore::read_stream) reads a stream in
//! keyset pages (`version >= n ORDER BY version LIMIT page_size`), decoding
//! rows as they arrive: memory stays flat whatever the stream's length.
//! Payloads are handed on as text; a row that cannot be decoded, or whose
//! version is not the next one (a gap), is an
//! [`Error::Corrupt`](factum_core::Error::Corrupt) naming its stream and
//! version, and ends the read (it is never skipped).
//! [`read_stream_pages`](factum_core::EventStore::read_stream_pages) hands
//! the same pages over whole, checked the same way. The rules shared with
//! the other backends (metadata as JSON, numbers in and out of `bigint`,
//! idempotent retries, dead-letter rows) are `factum_core`'s.
//!
//! # Subscriptions
//!
//! [`subscribe_all`](factum_core::EventStore::subscribe_all) catches up
//! with pages of the global log, then waits. It is woken at once by appends
//! through the same store value, and by `LISTEN` for appends of other
//! processes (each store sends one `NOTIFY` per burst of appends, outside
//! the append's transaction). When the notification connection drops, the
//! subscription polls every [`poll_interval`](PostgresOptions::poll_interval)
//! while the listener reconnects with backoff.
//! [`subscribe_stream`](factum_core::EventStore::subscribe_stream) follows
//! one stream the same way, reading pages of the stream by version; on a
//! wake-up it first asks the stream's version, so appends to other streams
//! cost it one small query.
//!
//! # Projections
//!
//! [`PostgresProjectionStore`] keeps projections' checkpoints, dead letters
//! and leases in the store's schema. A
//! [`TransactionalProjection`](factum_core::TransactionalProjection) whose
//! read model lives in this database writes it through a
//! [`PostgresTransaction`] (a pooled connection inside `BEGIN`), and the
//! checkpoint commits in that same transaction: each event takes effect
//! exactly once. A transaction dropped without commit closes its connection
//! (the server rolls back) rather than return it to the pool mid-transaction.
//!
//! # Tenants
//!
//! [`for_tenant(name)`](factum_core::Tenancy::for_tenant) gives a view of
//! one tenant (the rules every store keeps are [`factum_core::Tenancy`]'s).
//! Here the database enforces them too, so that a wrong query, in factum or
//! in a read model's SQL, cannot cross tenants:
//!
//! - **Where the tenant lives.** Every table has a `tenant` column, part of
//!   every key: `(tenant, stream_type, stream_id, version)` for events,
//!   `(tenant, stream_type, stream_id)` for snapshots, `(tenant, projection)`
//!   for checkpoints and leases. Projection state of the unscoped store is
//!   kept under `$all`, which no tenant can be named. Migrating to version 5
//!   puts existing events and snapshots in the `default` tenant, and leaves
//!   existing projection state with the unscoped store.
//! - **Row-level security.** Each table has row-level security enabled and
//!   one policy: a row is visible and writable only when its `tenant` equals
//!   the setting `factum.tenant` of the transaction (`USING` and `WITH
//!   CHECK`; an unset or empty setting matches nothing).
//! - **The tenant role.** Policies bind every role except superusers, roles
//!   with `BYPASSRLS`, and the tables' owner (a table's owner is exempt
//!   unless `FORCE ROW LEVEL SECURITY`). So a view does not rely on the
//!   connecting user: each of its statements runs inside
//!   `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL ROLE factum_tenant;
//!   SELECT set_config('factum.tenant', '<tenant>', true); …; COMMIT`, sent
//!   in the statement's own round trip. Once the role is taken, the checks
//!   are the role's, whoever connected: even on a superuser's connection
//!   the statement sees only its tenant's rows (`tests/tenants.rs` runs raw
//!   SQL that way and shows it). Both settings are `LOCAL`, so they end with
//!   the transaction. `FORCE ROW LEVEL SECURITY` is not used: it would bind
//!   the unscoped store (the owner) without binding superusers, which no
//!   setting can.
//! - **What the role may do.** Read and append events (never update or
//!   delete one), read and write snapshots and projection state, use the
//!   position sequence and factum's functions. [`ensure_tenant_role`](PostgresEventStore::ensure_tenant_role)
//!   creates the role (`NOLOGIN`) when missing, lets the connecting user
//!   take it, and grants it all that; [`ensure_schema`](PostgresEventStore::ensure_schema)
//!   renews the grants whenever the role exists. Both refuse a role that
//!   row-level security would not bind ([`PostgresError::TenantRoleUnsafe`]).
//!   Roles belong to the cluster: creating one is idempotent and retried
//!   when another process creates it at the same moment. An operator
//!   without `CREATEROLE` for the application runs, once:
//!
//!   ```sql
//!   CREATE ROLE factum_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
//!   GRANT factum_tenant TO app; -- the user factum connects as
//!   ```
//!
//!   and the application's `ensure_schema()` (run as the tables' owner)
//!   grants the rest. The role's name is [`PostgresOptions::tenant_role`].
//! - **The unscoped store** connects as the tables' owner (or a superuser,
//!   or a `BYPASSRLS` role) and sees every tenant; connected as another
//!   role, it would see nothing.
//! - **Read models.** A [`PostgresProjectionStore`] made from a view runs
//!   its transactions and queries as the tenant role too: grant the role
//!   your read model's tables, and give them policies on
//!   `current_setting('factum.tenant')` to confine them the same way.
//! - **Idempotent retries.** Event ids are unique across tenants. A view
//!   whose append meets another tenant's id cannot see that row (and
//!   PostgreSQL hides the key in the error under row-level security);
//!   `factum_taken_event_ids`, a `SECURITY DEFINER` function only the role
//!   may call, says which ids are taken and nothing else, and the append is
//!   [`Error::DuplicateEventId`](factum_core::Error::DuplicateEventId)
//!   naming no stream of the other tenant.
//! - **Costs.** The unscoped store's statements are unchanged but for the
//!   tenant parameter. A view's reads and appends carry the `BEGIN … COMMIT`
//!   in the same round trip; its stream pages arrive whole rather than row
//!   by row. A tenant's log is read through a partial index on
//!   `(tenant, position)` that leaves out the default tenant, so a
//!   single-tenant store writes no more index entries than before.
//! - **Global order.** A tenant's page is read up to the same horizon as
//!   the whole log, so the no-skip argument above holds for it unchanged.
//!
//! What row-level security does not stop: code that runs `RESET ROLE` on a
//! connection it was handed (a handler's [`PostgresTransaction::client`])
//! leaves the role. The role guards against wrong queries, not against code
//! that sets out to leave it.
//!
//! # Transactional outbox
//!
//! [`PostgresEventStore::enable_outbox`] switches the schema's outbox on: a
//! table `factum_outbox` with one row per appending statement and stream,
//! an *entry* (its stream, the first and last version the statement
//! stored, and the position of its first event, which keys it: no
//! sequence of its own; the envelopes are read from the events table by
//! stream and version) and a trigger on the events table that writes the
//! entries in the transaction that stores the events. A save of 100
//! events writes one outbox row. An
//! [`OutboxRelay`](factum_core::OutboxRelay) on
//! [`PostgresEventStore::outbox`] publishes them, at least once and in
//! order per aggregate, and marks them sent.
//!
//! Why a trigger: the outbox is a property of the database, not of the
//! process that happens to write. Every writer must add the rows in the
//! transaction of its events, or an event can be stored and never
//! published. A trigger does that for every way events arrive — single
//! appends, batches, `append_many`, the PL/pgSQL functions called from
//! SQL, other services and older factum-postgres releases writing to the
//! same schema — with no change to any of them, and no code path can
//! forget it. It is a statement trigger with a transition table
//! (`REFERENCING NEW TABLE`): one `INSERT … SELECT … GROUP BY` stream per
//! appending statement, so a 100-event batch pays for one row in one
//! statement.
//! Switching it on is a change of the schema, seen by every writer at once;
//! [`PostgresEventStore::disable_outbox`] drops the trigger and keeps the
//! rows not yet sent, for a relay to drain.
//!
//! A claim locks waiting entries with `SELECT … ORDER BY position LIMIT n
//! FOR UPDATE SKIP LOCKED` and keeps its transaction open while the relay
//! publishes: two relays never hold one entry, and the entries of a relay
//! that dies (its connection closes) are free as soon as the server rolls
//! back, with no lease to wait out. The relay sees one
//! [`OutboxEntry`](factum_core::OutboxEntry) per event (its id the event's
//! position): a claim of `limit` takes whole entries, oldest first, while
//! their events fit, then the first events of the next entry up to
//! `limit`. An event is handed out only when the previous event of its
//! stream is not waiting outside the claim, so relays never reorder an
//! aggregate; an entry whose first event is held back is held back whole.
//! Finishing a claim updates each entry whose events all had one outcome
//! in place (one statement for the claim), and splits an entry whose
//! events had several into runs of consecutive events with one outcome
//! (sent, to be retried, or released as they were), each an entry of its
//! own keyed by its first event; a parked event always becomes an entry
//! of its own, so parked entries are listed and requeued by event. The
//! runs of an entry cover its events exactly: none is lost or published
//! twice. [`Outbox::pending`](factum_core::Outbox::pending) counts events.
//!
//! Schema version 7 turns the one-row-per-event outbox of earlier releases
//! into entries (each old row an entry of one event, its state kept) and
//! replaces their trigger function. Stop the relays of earlier releases
//! before migrating: they would take an entry for its first event.
//!
//! Keep `idle_in_transaction_session_timeout` above the longest publish,
//! or the server ends claims mid-publish (their messages are then
//! published again). The claim's transaction takes no position lock, so it
//! never holds back readers of the global log.
//!
//! # Inspection
//!
//! The store implements [`factum_core::StoreAdmin`] (what the `factum`
//! command uses): counts, size on disk (`pg_total_relation_size` of the
//! store's tables), streams by type and id (a skip scan of the stream
//! index, one probe per stream), projections with their checkpoints,
//! leases and dead letters, replay requests and checkpoint resets.
//! [`PostgresEventStore::stored_schema_version`] reads the recorded schema
//! version without migrating.
//!
//! # Errors
//!
//! Failures of the server or the pool come back as
//! [`Error::Store`](factum_core::Error::Store) with a [`PostgresError`] as
//! source, naming the server's `host:port`: a server that cannot be reached
//! or a pool that stays exhausted fails after the connect or wait timeout,
//! never hangs.
//! [`PostgresError::InvalidDsn`] and [`PostgresError::InvalidConfig`] are
//! only ever the caller's configuration; a failing or busy server is never
//! reported as one (a position lock held by something outside factum is
//! [`PostgresError::PositionLockUnavailable`]).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod append;
mod atomic;
mod attempt;
mod batch;
mod conn;
mod dead_letters;
mod dsn;
mod error;
mod group;
mod lease;
mod migrate;
mod notify;
mod options;
mod outbox;
mod projection;
mod read;
mod rows;
mod schema;
mod scope;
mod snapshot;
mod statements;
mod store;
mod tenant_role;
mod transaction;

pub use error::PostgresError;
pub use options::{GroupCommit, PostgresOptions};
pub use outbox::{PostgresOutbox, PostgresOutboxClaim};
pub use projection::PostgresProjectionStore;
pub use store::PostgresEventStore;
pub use transaction::PostgresTransaction;

/// The pool type [`PostgresEventStore::from_pool`] takes (deadpool-postgres).
pub use deadpool_postgres::Pool;
/// The connection settings type of tokio-postgres, for
/// [`PostgresOptions::listen_with`].
pub use tokio_postgres::Config;

/// The backend name in [`factum_core::Error::Store`].
pub(crate) const BACKEND: &str = "postgres";
