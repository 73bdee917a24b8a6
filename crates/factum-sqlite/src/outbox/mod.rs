//! The transactional outbox in the store's file: a table of entries, one
//! per append, that the writer fills in the append's transaction, and the
//! [`Outbox`] a relay claims from (see the crate documentation).

mod claim;
mod finish;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use factum_core::backend::query_bound;
use factum_core::{Error, Outbox, OutboxEntry};
use time::OffsetDateTime;
use uuid::Uuid;

pub use claim::SqliteOutboxClaim;
pub(crate) use sql::CAPTURE;

use crate::SqliteEventStore;
use crate::decode::Decoder;
use crate::encode::nanos;
use crate::error::{SqliteError, sqlite};

/// [`SqliteError::OutboxMissing`] unless the outbox of the file was ever
/// switched on: a relay on a file that never had one is a mistake, not an
/// empty outbox.
pub(crate) fn require_outbox(connection: &rusqlite::Connection) -> Result<(), Error> {
    let switched: i64 = connection
        .prepare_cached(sql::EVER_ENABLED)
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(sqlite)?;
    if switched == 0 {
        return Err(SqliteError::OutboxMissing.into());
    }
    Ok(())
}

/// The lease of a claim when none is set.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl SqliteEventStore {
    /// Switches the transactional outbox on for this file: from now on
    /// every append writes an entry in `factum_outbox` (one per append and
    /// stream, however many events) in the transaction that stores its
    /// events, whichever process appends. Idempotent; one durable write.
    ///
    /// Events stored before this call have no rows: the outbox publishes
    /// what is saved from now on.
    ///
    /// ```
    /// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Outbox, Payload, StreamId};
    /// # use factum_sqlite::SqliteEventStore;
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let store = SqliteEventStore::open(dir.path().join("app.db")).await?;
    /// store.enable_outbox().await?;
    /// let event = NewEvent::new("opened", Payload::parse("{}")?);
    /// store.append(&StreamId::new("Account", "1"), ExpectedVersion::NoStream, vec![event]).await?;
    /// assert_eq!(store.outbox().pending().await?, 1);
    /// # store.close().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn enable_outbox(&self) -> Result<(), Error> {
        self.write(|connection| connection.execute(sql::ENABLE, []).map(drop).map_err(sqlite))
            .await
    }

    /// Switches the outbox off: new appends write no entries. The entries
    /// not yet sent stay, for a relay to drain;
    /// [`enable_outbox`](Self::enable_outbox) switches it on again.
    pub async fn disable_outbox(&self) -> Result<(), Error> {
        self.write(|connection| connection.execute(sql::DISABLE, []).map(drop).map_err(sqlite))
            .await
    }

    /// Whether the outbox is on for this file (by any process).
    pub async fn outbox_enabled(&self) -> Result<bool, Error> {
        self.read(|connection| {
            let enabled: i64 = connection
                .query_row(sql::ENABLED, [], |row| row.get(0))
                .map_err(sqlite)?;
            Ok(enabled != 0)
        })
        .await
    }

    /// The outbox of this file, for an [`OutboxRelay`](factum_core::OutboxRelay)
    /// (or an operator: [`Outbox::parked`], [`Outbox::requeue`]).
    pub fn outbox(&self) -> SqliteOutbox {
        SqliteOutbox::new(self)
    }
}

/// The outbox of a [`SqliteEventStore`], as a relay claims from it.
///
/// A claim leases entries for [`lease`](Self::lease) (default 30 s),
/// renewed while the claim is alive: relays in other processes on the same
/// file skip leased entries, and take them over once a lease lapses (its
/// relay died). A claim hands out an aggregate's events only when no
/// earlier waiting event of the aggregate is leased elsewhere, so relays
/// never reorder an aggregate.
///
/// An entry is one append's events to one stream, and a claim leases
/// whole entries, so a batch of a thousand events costs a claim one row.
/// An entry holding more events than the claim has room for is cut, the
/// rest left in line; when a claim's events end differently (some sent,
/// one refused), the entry is split so that each part keeps its own
/// state, a parked event in an entry of its own.
///
/// ```
/// # use std::time::Duration;
/// # use factum_core::{OutboxRelay, testing::outbox::ScriptedBus};
/// # use factum_sqlite::SqliteEventStore;
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let store = SqliteEventStore::open(dir.path().join("app.db")).await?;
/// store.enable_outbox().await?;
/// let outbox = store.outbox().holder("billing-relay").lease(Duration::from_secs(10));
/// let relay = OutboxRelay::new(outbox, ScriptedBus::new()).spawn();
/// relay.shutdown().await?;
/// # store.close().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOutbox {
    store: SqliteEventStore,
    holder: Arc<str>,
    lease: Duration,
}

impl SqliteOutbox {
    /// The outbox of `store`'s file.
    pub fn new(store: &SqliteEventStore) -> Self {
        Self {
            store: store.clone(),
            holder: format!("pid-{}", std::process::id()).into(),
            lease: DEFAULT_LEASE,
        }
    }

    /// The name a claim leaves in `claimed_by` (followed by a claim id),
    /// for an operator looking at the table (default `pid-<process id>`).
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into().into();
        self
    }

    /// How long a claim's lease lasts without renewal (default 30 s, at
    /// least 3 ms): how soon another relay takes over the rows of a relay
    /// that died. Live claims renew every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(3));
        self
    }
}

impl Outbox for SqliteOutbox {
    type Claim = SqliteOutboxClaim;

    /// One durable write: the waiting entries read and leased together.
    async fn claim(&self, limit: usize) -> Result<SqliteOutboxClaim, Error> {
        self.claim_after(limit, &[]).await
    }

    async fn claim_after(&self, limit: usize, ahead: &[u64]) -> Result<SqliteOutboxClaim, Error> {
        let token: Arc<str> = format!("{}/{}", self.holder, Uuid::now_v7().simple()).into();
        SqliteOutboxClaim::take(&self.store, token, limit, ahead.to_vec(), self.lease).await
    }

    async fn prune(&self, sent_before: OffsetDateTime) -> Result<u64, Error> {
        let cutoff = nanos(sent_before).map_err(|reason| Error::store(crate::BACKEND, reason))?;
        self.store
            .write(move |connection| {
                require_outbox(connection)?;
                let mut statement = connection.prepare_cached(sql::PRUNE).map_err(sqlite)?;
                let sizes = statement
                    .query_map([cutoff], |row| row.get::<_, i64>(0))
                    .map_err(sqlite)?;
                let mut deleted = 0_u64;
                for size in sizes {
                    deleted += u64::try_from(size.map_err(sqlite)?).unwrap_or(0);
                }
                Ok(deleted)
            })
            .await
    }

    async fn parked(&self, limit: usize) -> Result<Vec<(OutboxEntry, String)>, Error> {
        self.store
            .read(move |connection| {
                require_outbox(connection)?;
                let mut statement = connection.prepare_cached(&sql::PARKED).map_err(sqlite)?;
                let mut rows = statement.query([query_bound(limit as u64)]).map_err(sqlite)?;
                let mut decoder = Decoder::default();
                let mut parked = Vec::new();
                while let Some(row) = rows.next().map_err(sqlite)? {
                    let event = decoder.log_event(row)?;
                    let attempts: i64 = row.get(sql::after_envelope()).map_err(sqlite)?;
                    let error: Option<String> = row.get(sql::after_envelope() + 1).map_err(sqlite)?;
                    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                    parked.push((
                        OutboxEntry::new(event.position, event, attempts),
                        error.unwrap_or_default(),
                    ));
                }
                Ok(parked)
            })
            .await
    }

    async fn requeue(&self, id: u64) -> Result<bool, Error> {
        self.store
            .write(move |connection| {
                require_outbox(connection)?;
                let changed = connection
                    .prepare_cached(sql::REQUEUE)
                    .and_then(|mut statement| statement.execute([query_bound(id)]))
                    .map_err(sqlite)?;
                Ok(changed > 0)
            })
            .await
    }

    async fn pending(&self) -> Result<u64, Error> {
        self.store
            .read(|connection| {
                require_outbox(connection)?;
                let pending: i64 = connection
                    .query_row(sql::PENDING, [], |row| row.get(0))
                    .map_err(sqlite)?;
                Ok(u64::try_from(pending).unwrap_or(0))
            })
            .await
    }
}
