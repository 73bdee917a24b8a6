//! The transactional outbox: events saved together with a row saying "to be
//! published", and the relay that publishes them.
//!
//! A store with its outbox on writes an outbox row in the transaction that
//! appends events (the SQLite and PostgreSQL stores write one per append
//! and stream, however many events it holds), so a commit cannot store an
//! event and forget to publish it, nor publish an event that was never
//! stored. The [`OutboxRelay`] then claims entries (one per event, whatever
//! the rows), publishes them through a [`Publisher`](crate::Publisher), and
//! marks them sent: at least once, in order per aggregate. A crash between
//! publish and mark repeats a message; it never loses one.

mod relay;

use std::future::Future;

use time::OffsetDateTime;

pub use relay::{OutboxRelay, RelayHandle, RelayMetrics};

use crate::{Error, RecordedEvent};

/// One event waiting in an outbox.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// The entry's id: the global position of its event (so no sequence
    /// of its own).
    pub id: u64,
    /// The event to publish, as stored.
    pub event: RecordedEvent,
    /// Failed publish attempts so far.
    pub attempts: u32,
}

impl OutboxEntry {
    /// An entry for `event` (stores build them from their rows).
    pub fn new(id: u64, event: RecordedEvent, attempts: u32) -> Self {
        Self { id, event, attempts }
    }
}

/// What became of one claimed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Published: mark it sent.
    Sent,
    /// Not published, may succeed later: release it with the error, its
    /// attempt count raised.
    Retry(String),
    /// Refused by the bus for good: keep it aside with the error (parked),
    /// listed by [`Outbox::parked`] until requeued.
    Park(String),
}

/// Entries claimed by one relay: no other relay publishes them until they
/// are finished or the claim lapses (the relay died).
pub trait OutboxClaim: Send + 'static {
    /// The claimed entries, in outbox order. For each aggregate they are its
    /// earliest unsent entries: no earlier one is waiting elsewhere.
    fn entries(&self) -> &[OutboxEntry];

    /// Records the outcome of each entry (same order as
    /// [`entries`](Self::entries)) and releases the claim.
    fn finish(self, outcomes: Vec<Outcome>) -> impl Future<Output = Result<(), Error>> + Send;
}

/// A store's outbox, as an [`OutboxRelay`] sees it.
///
/// Implemented by the SQLite and PostgreSQL stores (with their outbox
/// enabled). The rules every implementation keeps:
///
/// - Only committed events have entries, and every committed event has one.
/// - A claim holds, for each aggregate it touches, the earliest unsent
///   entries of that aggregate, so a relay never publishes an event before
///   an earlier one of the same aggregate that is still unsent (parked
///   entries excepted: they no longer hold the aggregate back).
/// - Two live claims never share an entry; a claim whose relay died lapses,
///   and its entries can be claimed again.
pub trait Outbox: Send + Sync + 'static {
    /// A claim on some entries.
    type Claim: OutboxClaim;

    /// Claims up to `limit` unsent entries, oldest first.
    fn claim(&self, limit: usize) -> impl Future<Output = Result<Self::Claim, Error>> + Send;

    /// Claims like [`claim`](Self::claim), for a relay that still holds
    /// earlier claims of its own (`ahead`: the ids of their entries),
    /// published or being published, which it finishes before this one.
    /// Their entries count as part of this claim when deciding what to hold
    /// back, so the relay can claim its next batch while it publishes the
    /// last one.
    ///
    /// The relay keeps the order this allows: it publishes the claims one
    /// after another, finishes them in the same order, and retries this
    /// claim's entries of an aggregate whose entry ahead was retried. The
    /// default ignores `ahead` (correct, but a claim then holds back every
    /// aggregate with an entry ahead).
    fn claim_after(
        &self,
        limit: usize,
        ahead: &[u64],
    ) -> impl Future<Output = Result<Self::Claim, Error>> + Send {
        let _ = ahead;
        self.claim(limit)
    }

    /// Deletes entries sent before `sent_before`; returns how many.
    fn prune(&self, sent_before: OffsetDateTime) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Entries parked with the error that parked them, oldest first.
    fn parked(&self, limit: usize) -> impl Future<Output = Result<Vec<(OutboxEntry, String)>, Error>> + Send;

    /// Puts a parked entry back in line; false when no such entry is parked.
    fn requeue(&self, id: u64) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Entries not yet sent (parked ones included).
    fn pending(&self) -> impl Future<Output = Result<u64, Error>> + Send;
}
