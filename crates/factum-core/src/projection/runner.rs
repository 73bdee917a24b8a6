//! The subscription runner: catches a projection up from its checkpoint,
//! goes live, retries, dead-letters, checkpoints, and stops cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::driver::{Driver, Plain, Transactional};
use super::handle::{Control, HeadFn, RunnerHandle};
use super::lease::{DynLease, LeaseConfig};
use super::metrics::MetricsCell;
use super::{
    CheckpointStore, DeadLetter, DeadLetterStore, Lease, PoisonPolicy, Projection, ProjectionStore,
    RetryPolicy, TransactionalProjection,
};
use crate::{Error, EventStore, Start};

mod requested;
mod run;

/// What replaying a projection's dead letters did.
///
/// ```
/// # use factum_core::ReplayReport;
/// fn all_fixed(report: &ReplayReport) -> bool {
///     report.still_failing.is_empty()
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Events handled this time; their dead letters are deleted.
    pub replayed: usize,
    /// Dead letters whose events failed again, with the new error; they
    /// stay stored.
    pub still_failing: Vec<DeadLetter>,
}

#[derive(Clone, Debug)]
struct Options {
    batch_size: usize,
    checkpoint_every: usize,
    channel_capacity: usize,
    retry: RetryPolicy,
    poison: PoisonPolicy,
    start: Start,
}

/// Feeds a projection from the global log `$all`, from its checkpoint to
/// the head and then live, and keeps its checkpoint.
///
/// A reader task pages through the log with `read_all`, then follows
/// `subscribe_all` from the last position it read, so the hand-over has
/// neither gap nor duplicate; it sends batches over a bounded channel, so a
/// slow projection holds the reader back instead of filling memory (at most
/// `channel_capacity + 2` batches are in memory). The handler loop applies
/// each batch, retries failing events with backoff, dead-letters or stops
/// on poisoned ones, and commits the checkpoint every `checkpoint_every`
/// events and whenever it has nothing else to do.
///
/// ```
/// use factum_core::{
///     EventStore, ExpectedVersion, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore,
///     InMemoryEventStore, NewEvent, Payload, Projection, ProjectionRunner, RecordedEvent, StreamId,
/// };
///
/// struct EventCount(u64);
///
/// impl Projection for EventCount {
///     fn name(&self) -> &str {
///         "event_count"
///     }
///
///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
///         self.0 += 1;
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let events = InMemoryEventStore::new();
/// let stream = StreamId::new("Counter", "1");
/// let new = NewEvent::new("created", Payload::parse("{}")?);
/// let appended = events.append(&stream, ExpectedVersion::NoStream, vec![new]).await?;
///
/// let checkpoints = InMemoryCheckpointStore::new();
/// let runner = ProjectionRunner::new(events, EventCount(0), checkpoints.clone(), InMemoryDeadLetterStore::new())
///     .batch_size(500);
/// let handle = runner.spawn();
/// handle.wait_for_checkpoint(appended.positions[0]).await?;
/// handle.shutdown().await?;
/// assert_eq!(checkpoints.get("event_count"), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ProjectionRunner<E, D> {
    events: E,
    driver: D,
    name: String,
    options: Options,
    lease: Option<LeaseConfig>,
    metrics: Arc<MetricsCell>,
}

impl<E: std::fmt::Debug, D> std::fmt::Debug for ProjectionRunner<E, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.name)
            .field("events", &self.events)
            .field("options", &self.options)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<E, P, C, L> ProjectionRunner<E, Plain<P, C, L>>
where
    E: EventStore + Clone,
    P: Projection,
    C: CheckpointStore,
    L: DeadLetterStore,
{
    /// A runner feeding `projection` from `events`, keeping its checkpoint in
    /// `checkpoints` and its poisoned events in `dead_letters`.
    pub fn new(events: E, projection: P, checkpoints: C, dead_letters: L) -> Self {
        Self::with_driver(events, Plain::new(projection, checkpoints, dead_letters))
    }
}

impl<E, P, S> ProjectionRunner<E, Transactional<P, S>>
where
    E: EventStore + Clone,
    S: ProjectionStore,
    P: TransactionalProjection<S>,
{
    /// A runner feeding `projection` from `events`, committing its read
    /// model, checkpoint and dead letters together in `store`: each event
    /// takes effect exactly once.
    pub fn transactional(events: E, projection: P, store: S) -> Self {
        Self::with_driver(events, Transactional::new(projection, store))
    }
}

impl<E: EventStore + Clone, D: Driver> ProjectionRunner<E, D> {
    fn with_driver(events: E, driver: D) -> Self {
        let name = driver.name().to_owned();
        Self {
            events,
            driver,
            name,
            options: Options {
                batch_size: 1024,
                checkpoint_every: 1024,
                channel_capacity: 4,
                retry: RetryPolicy::default(),
                poison: PoisonPolicy::default(),
                start: Start::Beginning,
            },
            lease: None,
            metrics: Arc::new(MetricsCell::new()),
        }
    }

    /// Sets how many events are read from the log at once (default 1024).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.options.batch_size = events.max(1);
        self
    }

    /// Sets how many events are handled between two commits of the
    /// checkpoint (default 1024): the runner commits after the batch that
    /// reaches this count (a batch is never split), whenever it waits for
    /// events, and when it stops. A transactional projection keeps these
    /// events in memory until the commit, to redo them if one fails.
    pub fn checkpoint_every(mut self, events: usize) -> Self {
        self.options.checkpoint_every = events.max(1);
        self
    }

    /// Sets how many batches may wait between the reader and the handler
    /// (default 4): the bound that turns a slow projection into back-pressure.
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.options.channel_capacity = batches.max(1);
        self
    }

    /// Sets where a projection that has no checkpoint yet starts (default
    /// [`Start::Beginning`]): [`Start::End`] skips the history and handles
    /// only events committed after the runner starts, for a read model that
    /// cares about what happens from now on.
    ///
    /// A stored checkpoint always wins: this applies only while the
    /// projection's checkpoint is 0 (checkpoint stores keep no other mark
    /// of a projection that never ran). The runner reads the head when it
    /// starts and commits it as the checkpoint before handling anything,
    /// so a restart resumes there. A [`rebuild`](Self::rebuild) (or
    /// [`RunnerHandle::rebuild`]) replays from the beginning whatever this
    /// says: the runner that rebuilds starts over from [`Start::Beginning`].
    ///
    /// ```
    /// # use factum_core::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore, Projection,
    /// #     ProjectionRunner, HandlerError, RecordedEvent, Start};
    /// # struct Alerts;
    /// # impl Projection for Alerts {
    /// #     fn name(&self) -> &str { "alerts" }
    /// #     async fn handle(&mut self, _: &RecordedEvent) -> Result<(), HandlerError> { Ok(()) }
    /// # }
    /// let runner = ProjectionRunner::new(
    ///     InMemoryEventStore::new(),
    ///     Alerts,
    ///     InMemoryCheckpointStore::new(),
    ///     InMemoryDeadLetterStore::new(),
    /// )
    /// .start_at(Start::End);
    /// ```
    pub fn start_at(mut self, start: Start) -> Self {
        self.options.start = start;
        self
    }

    /// Sets how failing events are retried; store failures (reads of the
    /// log, commits) are retried by the same policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// Sets what happens to an event that failed on every attempt.
    pub fn on_poison(mut self, policy: PoisonPolicy) -> Self {
        self.options.poison = policy;
        self
    }

    /// Runs the projection only while holding `lease` as `holder`, renewed
    /// every third of `ttl`: of several instances, one is active and the
    /// others wait, and one of them takes over within `ttl` plus a third
    /// when the active one dies.
    pub fn lease(mut self, lease: impl Lease, holder: impl Into<String>, ttl: Duration) -> Self {
        let lease: Arc<dyn DynLease> = Arc::new(lease);
        self.lease = Some(LeaseConfig {
            lease,
            holder: holder.into(),
            ttl,
        });
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The projection's dead letters, in position order.
    pub async fn dead_letters(&mut self) -> Result<Vec<DeadLetter>, Error> {
        self.driver.dead_letters().await
    }

    /// Deletes the dead letter at `position` without handling its event
    /// (the event is known to be irrelevant); false when there was none.
    pub async fn delete_dead_letter(&mut self, position: u64) -> Result<bool, Error> {
        self.driver.delete_dead_letter(position).await
    }

    /// Handles each dead letter's event once more, in position order (after
    /// the handler was fixed): the ones that succeed are deleted, the others
    /// stay with their new error.
    ///
    /// Call it before [`run`](Self::run) or [`spawn`](Self::spawn).
    pub async fn replay_dead_letters(&mut self) -> Result<ReplayReport, Error> {
        let mut report = ReplayReport::default();
        for letter in self.driver.dead_letters().await? {
            match self.driver.replay(letter).await? {
                None => report.replayed += 1,
                Some(failed) => report.still_failing.push(failed),
            }
        }
        Ok(report)
    }

    /// Resets the projection for a rebuild: empties its read model
    /// ([`Projection::reset`]), deletes its dead letters and sets its
    /// checkpoint to 0, so the next run replays the whole log.
    ///
    /// Call it before [`run`](Self::run) or [`spawn`](Self::spawn); a
    /// running projection rebuilds with [`RunnerHandle::rebuild`].
    pub async fn rebuild(&mut self) -> Result<(), Error> {
        let checkpoint = self.driver.load_checkpoint().await?;
        self.driver.reset(checkpoint).await?;
        self.options.start = Start::Beginning;
        self.metrics.set_checkpoint(0);
        Ok(())
    }

    /// Runs the projection in this task until `shutdown` completes, then
    /// stops gracefully (the batch in flight is finished and committed).
    ///
    /// A store failure ([`Error::Store`]: a lost connection, a busy
    /// database) restarts it from the committed checkpoint after a backoff;
    /// it returns the error when the retry policy's attempts fail in a row
    /// without progress, or when an event is poisoned under
    /// [`PoisonPolicy::Stop`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let control = Arc::new(watch::Sender::new(Control::Run));
        let running = self.run_with(Arc::clone(&control));
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => return result,
            () = shutdown => {
                control.send_replace(Control::Stop);
            }
        }
        running.await
    }

    /// Runs the projection on a new tokio task; the handle stops it, waits
    /// for it and reads its metrics.
    pub fn spawn(self) -> RunnerHandle {
        let control = Arc::new(watch::Sender::new(Control::Run));
        let metrics = Arc::clone(&self.metrics);
        let name = self.name.clone();
        let events = self.events.clone();
        let head: HeadFn = Arc::new(move || {
            let events = events.clone();
            Box::pin(async move { events.head_position().await })
        });
        let task = tokio::spawn(self.run_with(Arc::clone(&control)));
        RunnerHandle::new(name, control, metrics, head, task)
    }
}
