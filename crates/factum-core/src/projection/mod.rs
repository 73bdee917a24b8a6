//! Read models built from the global log: projections, the runner that
//! feeds them, and the stores that keep their checkpoints, dead letters and
//! leases.
//!
//! Two kinds of projection:
//!
//! - [`Projection`]: the read model lives anywhere (a map, a cache, another
//!   service). The runner saves a checkpoint in a [`CheckpointStore`] after
//!   the handler's effects, so after a crash the events since the last save
//!   are handled again: at least once.
//! - [`TransactionalProjection`]: the read model lives in a
//!   [`ProjectionStore`] (the same PostgreSQL or SQLite database, or
//!   [`InMemoryProjectionStore`]). The handler writes through the store's
//!   transaction, and the checkpoint commits in that same transaction: each
//!   event takes effect exactly once, whenever the process dies.

mod checkpoint;
mod dead_letter;
mod driver;
mod handle;
mod lease;
mod memory;
mod metrics;
mod reader;
mod retry;
mod runner;

use std::future::Future;

pub use checkpoint::{CheckpointStore, InMemoryCheckpointStore};
pub use dead_letter::{DeadLetter, DeadLetterStore, InMemoryDeadLetterStore};
pub use driver::{Plain, Transactional};
pub use handle::RunnerHandle;
pub use lease::{InMemoryLease, Lease};
pub use memory::{InMemoryProjectionStore, InMemoryTransaction};
pub use metrics::{ProjectionMetrics, RunnerStatus};
pub use retry::{PoisonPolicy, RetryPolicy};
pub use runner::{ProjectionRunner, ReplayReport};

use crate::{Error, RecordedEvent};

/// What a handler returns when it fails: any error, boxed.
///
/// `?` converts [`factum::Error`](crate::Error), `std::io::Error`, a `String`
/// or a `&str` into it.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A read model fed by the global log, one event at a time.
///
/// The runner calls [`handle`](Self::handle) for each event that passes the
/// filters, in position order. A failing handler is retried, then its event
/// goes to the dead letters (or the runner stops), per the runner's
/// [`RetryPolicy`] and [`PoisonPolicy`]; an event is never skipped silently.
///
/// Delivery is at least once: after a crash, events since the last saved
/// checkpoint are handled again, so make `handle` idempotent or use a
/// [`TransactionalProjection`].
///
/// ```
/// use factum_core::{HandlerError, Projection, RecordedEvent};
///
/// #[derive(Default)]
/// struct EventCount {
///     events: u64,
/// }
///
/// impl Projection for EventCount {
///     fn name(&self) -> &str {
///         "event_count"
///     }
///
///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
///         self.events += 1;
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + 'static {
    /// The projection's name: the key of its checkpoint, dead letters and
    /// lease. Renaming a projection starts it from the beginning.
    fn name(&self) -> &str;

    /// The aggregate types whose events it wants; `None` (the default): all.
    fn aggregate_types(&self) -> Option<&[&str]> {
        None
    }

    /// The event types it wants; `None` (the default): all.
    ///
    /// Event types are per aggregate (every aggregate has `created`), so
    /// narrow with [`aggregate_types`](Self::aggregate_types) too.
    fn event_types(&self) -> Option<&[&str]> {
        None
    }

    /// Applies one event to the read model.
    fn handle(&mut self, event: &RecordedEvent) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Empties the read model before a rebuild replays the log from the
    /// start. The default does nothing.
    fn reset(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }
}

/// A read model kept in a [`ProjectionStore`], updated in the same
/// transaction as its checkpoint: each event takes effect exactly once.
///
/// The handler must write only through `transaction`: what it keeps in
/// `self` is not rolled back, and may see an event more than once when a
/// batch is retried.
///
/// ```
/// use factum_core::{HandlerError, InMemoryProjectionStore, InMemoryTransaction, RecordedEvent, TransactionalProjection};
///
/// struct EventCount;
///
/// impl TransactionalProjection<InMemoryProjectionStore<u64>> for EventCount {
///     fn name(&self) -> &str {
///         "event_count"
///     }
///
///     async fn handle(
///         &mut self,
///         transaction: &mut InMemoryTransaction<u64>,
///         _event: &RecordedEvent,
///     ) -> Result<(), HandlerError> {
///         *transaction.read_model_mut() += 1;
///         Ok(())
///     }
/// }
/// ```
pub trait TransactionalProjection<S: ProjectionStore>: Send + 'static {
    /// The projection's name: the key of its checkpoint, dead letters and
    /// lease.
    fn name(&self) -> &str;

    /// The aggregate types whose events it wants; `None` (the default): all.
    fn aggregate_types(&self) -> Option<&[&str]> {
        None
    }

    /// The event types it wants; `None` (the default): all.
    fn event_types(&self) -> Option<&[&str]> {
        None
    }

    /// Applies one event to the read model, through `transaction`.
    fn handle(
        &mut self,
        transaction: &mut S::Transaction,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Empties the read model, in the transaction that resets the
    /// checkpoint, before a rebuild. The default does nothing.
    fn reset(
        &mut self,
        transaction: &mut S::Transaction,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = transaction;
        async { Ok(()) }
    }
}

/// A store that keeps read models, checkpoints and dead letters together, and
/// commits them in one transaction: what a backend implements so that a
/// [`TransactionalProjection`] sees each event take effect exactly once.
///
/// The runner's unit of work: [`begin`](Self::begin), the handler's writes
/// through the transaction, [`save_checkpoint`](Self::save_checkpoint)
/// (and [`put_dead_letter`](Self::put_dead_letter) for a poisoned event),
/// then [`commit`](Self::commit). A transaction dropped without `commit`
/// (the process died, the task was cancelled) must leave no trace, as does
/// [`rollback`](Self::rollback).
///
/// `save_checkpoint` is a compare-and-set: it fails with
/// [`Error::Checkpoint`] (at once or at commit) when the stored checkpoint is
/// not `expected`, which fences out a second instance of the projection that
/// lost its lease without noticing.
///
/// ```
/// # use factum_core::{InMemoryProjectionStore, ProjectionStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryProjectionStore::new(0_u64);
/// let mut transaction = store.begin("count").await?;
/// *transaction.read_model_mut() += 1;
/// store.save_checkpoint(&mut transaction, "count", 0, 1).await?;
/// store.commit(transaction).await?;
/// assert_eq!((store.read_model(), store.checkpoint("count").await?), (1, 1));
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait ProjectionStore: Send + Sync + 'static {
    /// The unit of work handed to handlers (for SQL backends: a pooled
    /// connection inside `BEGIN`).
    type Transaction: Send + 'static;

    /// The committed checkpoint of `projection` (0: nothing handled yet).
    fn checkpoint(&self, projection: &str) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Starts a unit of work for `projection`.
    fn begin(&self, projection: &str) -> impl Future<Output = Result<Self::Transaction, Error>> + Send;

    /// Sets the checkpoint of `projection` to `position` in `transaction`,
    /// if it is `expected` (compare-and-set); [`Error::Checkpoint`] if not.
    fn save_checkpoint(
        &self,
        transaction: &mut Self::Transaction,
        projection: &str,
        expected: u64,
        position: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores `letter` in `transaction`, replacing one of the same
    /// projection and position.
    fn put_dead_letter(
        &self,
        transaction: &mut Self::Transaction,
        letter: DeadLetter,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deletes the dead letter of `projection` at `position` in
    /// `transaction`; false when there was none.
    fn remove_dead_letter(
        &self,
        transaction: &mut Self::Transaction,
        projection: &str,
        position: u64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Deletes every dead letter of `projection` in `transaction` (a
    /// rebuild meets their events again).
    fn clear_dead_letters(
        &self,
        transaction: &mut Self::Transaction,
        projection: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Makes everything done in `transaction` durable and visible, at once.
    fn commit(&self, transaction: Self::Transaction) -> impl Future<Output = Result<(), Error>> + Send;

    /// Discards everything done in `transaction`.
    fn rollback(&self, transaction: Self::Transaction) -> impl Future<Output = Result<(), Error>> + Send;

    /// The committed dead letters of `projection`, in position order.
    fn dead_letters(&self, projection: &str) -> impl Future<Output = Result<Vec<DeadLetter>, Error>> + Send;
}
