//! The subscription runner: catches a projection up from its checkpoint,
//! goes live, retries, dead-letters, checkpoints, and stops cleanly.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lease::{DynLease, LeaseConfig};
use super::metrics::MetricsCell;
use super::{
    CheckpointStore, DeadLetter, DeadLetterStore, HandlerError, Lease, PoisonPolicy, Projection,
    ProjectionMetrics, ProjectionStore, RetryPolicy, RunnerStatus, TransactionalProjection,
};
use crate::{Error, EventStore, RecordedEvent};

use sealed::Driver;
use sealed::EventFilter;

/// The two ways a runner applies events and keeps its checkpoint.
mod sealed {
    use std::future::Future;

    use crate::projection::{DeadLetter, HandlerError};
    use crate::{Error, RecordedEvent};

    /// Which events a projection wants, fixed when its runner starts.
    #[derive(Clone, Debug, Default)]
    pub struct EventFilter {
        aggregate_types: Option<Vec<String>>,
        event_types: Option<Vec<String>>,
    }

    impl EventFilter {
        pub fn new(aggregate_types: Option<&[&str]>, event_types: Option<&[&str]>) -> Self {
            let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
            Self {
                aggregate_types: aggregate_types.map(owned),
                event_types: event_types.map(owned),
            }
        }

        pub fn admits(&self, event: &RecordedEvent) -> bool {
            let wanted = |names: &Option<Vec<String>>, name: &str| {
                names
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|wanted| wanted == name))
            };
            wanted(&self.aggregate_types, event.aggregate_type())
                && wanted(&self.event_types, &event.event_type)
        }
    }

    /// A projection with the stores it commits to. Implemented by
    /// [`Plain`](super::Plain) and [`Transactional`](super::Transactional) only.
    pub trait Driver: Send + 'static {
        /// True when `rollback` undoes what the handler did in the unit.
        const UNDOES: bool;

        /// What the handler works in between `begin` and `commit`.
        type Unit: Send;

        fn name(&self) -> &str;

        fn filter(&self) -> EventFilter;

        fn load_checkpoint(&mut self) -> impl Future<Output = Result<u64, Error>> + Send;

        fn begin(&mut self) -> impl Future<Output = Result<Self::Unit, Error>> + Send;

        fn handle(
            &mut self,
            unit: &mut Self::Unit,
            event: &RecordedEvent,
        ) -> impl Future<Output = Result<(), HandlerError>> + Send;

        /// Stores the dead letter; durable before the next commit moves the
        /// checkpoint past its event.
        fn dead_letter(
            &mut self,
            unit: &mut Self::Unit,
            letter: DeadLetter,
        ) -> impl Future<Output = Result<(), Error>> + Send;

        /// Commits the unit with the checkpoint moved from `expected` to `checkpoint`.
        fn commit(
            &mut self,
            unit: Self::Unit,
            expected: u64,
            checkpoint: u64,
        ) -> impl Future<Output = Result<(), Error>> + Send;

        fn rollback(&mut self, unit: Self::Unit) -> impl Future<Output = Result<(), Error>> + Send;

        /// Empties the read model, deletes the dead letters and sets the
        /// checkpoint (at `expected`) back to 0, atomically where the store can.
        fn reset(&mut self, expected: u64) -> impl Future<Output = Result<(), Error>> + Send;

        fn dead_letters(&mut self) -> impl Future<Output = Result<Vec<DeadLetter>, Error>> + Send;

        /// Handles a dead letter's event once more: removes the letter when
        /// it succeeds, records the new failure when it does not.
        fn replay(
            &mut self,
            letter: DeadLetter,
        ) -> impl Future<Output = Result<Option<DeadLetter>, Error>> + Send;
    }
}

/// A [`Projection`] with its [`CheckpointStore`] and [`DeadLetterStore`]:
/// delivery at least once. Built by [`ProjectionRunner::new`].
///
/// ```
/// # use factum_core::{InMemoryCheckpointStore, InMemoryDeadLetterStore, Plain};
/// type Counting<P> = Plain<P, InMemoryCheckpointStore, InMemoryDeadLetterStore>;
/// ```
#[derive(Debug)]
pub struct Plain<P, C, L> {
    projection: P,
    checkpoints: C,
    dead_letters: L,
    name: String,
}

/// A [`TransactionalProjection`] with its [`ProjectionStore`]: exactly
/// once. Built by [`ProjectionRunner::transactional`].
///
/// ```
/// # use factum_core::{InMemoryProjectionStore, Transactional};
/// type InMemory<P> = Transactional<P, InMemoryProjectionStore<u64>>;
/// ```
#[derive(Debug)]
pub struct Transactional<P, S> {
    projection: P,
    store: S,
    name: String,
}

fn handler_failed(projection: &str, what: &str, error: &HandlerError) -> Error {
    Error::Runner {
        projection: projection.to_owned(),
        message: format!("{what} failed: {error}"),
    }
}

impl<P, C, L> Driver for Plain<P, C, L>
where
    P: Projection,
    C: CheckpointStore,
    L: DeadLetterStore,
{
    const UNDOES: bool = false;
    type Unit = ();

    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> EventFilter {
        EventFilter::new(self.projection.aggregate_types(), self.projection.event_types())
    }

    async fn load_checkpoint(&mut self) -> Result<u64, Error> {
        self.checkpoints.load(&self.name).await
    }

    async fn begin(&mut self) -> Result<(), Error> {
        Ok(())
    }

    async fn handle(&mut self, _unit: &mut (), event: &RecordedEvent) -> Result<(), HandlerError> {
        self.projection.handle(event).await
    }

    async fn dead_letter(&mut self, _unit: &mut (), letter: DeadLetter) -> Result<(), Error> {
        self.dead_letters.put(letter).await
    }

    async fn commit(&mut self, _unit: (), expected: u64, checkpoint: u64) -> Result<(), Error> {
        if checkpoint == expected {
            return Ok(());
        }
        self.checkpoints.save(&self.name, checkpoint).await
    }

    async fn rollback(&mut self, _unit: ()) -> Result<(), Error> {
        Ok(())
    }

    async fn reset(&mut self, _expected: u64) -> Result<(), Error> {
        self.projection
            .reset()
            .await
            .map_err(|error| handler_failed(&self.name, "reset", &error))?;
        self.dead_letters.clear(&self.name).await?;
        self.checkpoints.save(&self.name, 0).await
    }

    async fn dead_letters(&mut self) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters.list(&self.name).await
    }

    async fn replay(&mut self, mut letter: DeadLetter) -> Result<Option<DeadLetter>, Error> {
        match self.projection.handle(&letter.event).await {
            Ok(()) => {
                self.dead_letters.remove(&self.name, letter.position()).await?;
                Ok(None)
            }
            Err(error) => {
                letter.record_failure(&error);
                self.dead_letters.put(letter.clone()).await?;
                Ok(Some(letter))
            }
        }
    }
}

impl<P, S> Driver for Transactional<P, S>
where
    S: ProjectionStore,
    P: TransactionalProjection<S>,
{
    const UNDOES: bool = true;
    type Unit = S::Transaction;

    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> EventFilter {
        EventFilter::new(self.projection.aggregate_types(), self.projection.event_types())
    }

    async fn load_checkpoint(&mut self) -> Result<u64, Error> {
        self.store.checkpoint(&self.name).await
    }

    async fn begin(&mut self) -> Result<S::Transaction, Error> {
        self.store.begin(&self.name).await
    }

    async fn handle(&mut self, unit: &mut S::Transaction, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.projection.handle(unit, event).await
    }

    async fn dead_letter(&mut self, unit: &mut S::Transaction, letter: DeadLetter) -> Result<(), Error> {
        self.store.put_dead_letter(unit, letter).await
    }

    async fn commit(
        &mut self,
        mut unit: S::Transaction,
        expected: u64,
        checkpoint: u64,
    ) -> Result<(), Error> {
        self.store
            .save_checkpoint(&mut unit, &self.name, expected, checkpoint)
            .await?;
        self.store.commit(unit).await
    }

    async fn rollback(&mut self, unit: S::Transaction) -> Result<(), Error> {
        self.store.rollback(unit).await
    }

    async fn reset(&mut self, expected: u64) -> Result<(), Error> {
        let mut unit = self.store.begin(&self.name).await?;
        if let Err(error) = self.projection.reset(&mut unit).await {
            self.store.rollback(unit).await?;
            return Err(handler_failed(&self.name, "reset", &error));
        }
        self.store.clear_dead_letters(&mut unit, &self.name).await?;
        self.store
            .save_checkpoint(&mut unit, &self.name, expected, 0)
            .await?;
        self.store.commit(unit).await
    }

    async fn dead_letters(&mut self) -> Result<Vec<DeadLetter>, Error> {
        self.store.dead_letters(&self.name).await
    }

    async fn replay(&mut self, mut letter: DeadLetter) -> Result<Option<DeadLetter>, Error> {
        let mut unit = self.store.begin(&self.name).await?;
        match self.projection.handle(&mut unit, &letter.event).await {
            Ok(()) => {
                self.store
                    .remove_dead_letter(&mut unit, &self.name, letter.position())
                    .await?;
                self.store.commit(unit).await?;
                Ok(None)
            }
            Err(error) => {
                self.store.rollback(unit).await?;
                letter.record_failure(&error);
                let mut unit = self.store.begin(&self.name).await?;
                self.store.put_dead_letter(&mut unit, letter.clone()).await?;
                self.store.commit(unit).await?;
                Ok(Some(letter))
            }
        }
    }
}

impl DeadLetter {
    fn record_failure(&mut self, error: &HandlerError) {
        self.error = error.to_string();
        self.attempts = self.attempts.saturating_add(1);
        self.failed_at = time::OffsetDateTime::now_utc();
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Run,
    Stop,
    Abort,
    Rebuild,
}

/// Events read from the log in one go, already filtered.
#[derive(Debug)]
struct Batch {
    /// The events the projection wants.
    events: Vec<RecordedEvent>,
    /// The position of the last event read, wanted or not.
    through: u64,
    /// How many events were read, wanted or not.
    read: usize,
}

#[derive(Clone, Debug)]
struct Options {
    batch_size: usize,
    checkpoint_every: usize,
    channel_capacity: usize,
    retry: RetryPolicy,
    poison: PoisonPolicy,
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
        let name = projection.name().to_owned();
        Self::with_driver(
            events,
            Plain {
                projection,
                checkpoints,
                dead_letters,
                name: name.clone(),
            },
            name,
        )
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
        let name = projection.name().to_owned();
        Self::with_driver(
            events,
            Transactional {
                projection,
                store,
                name: name.clone(),
            },
            name,
        )
    }
}

impl<E: EventStore + Clone, D: Driver> ProjectionRunner<E, D> {
    fn with_driver(events: E, driver: D, name: String) -> Self {
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

    /// Sets how many events may be handled between two commits of the
    /// checkpoint (default 1024). The checkpoint is also committed whenever
    /// the runner waits for events, and when it stops.
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

    /// Sets how failing events are retried (and how reads of the log are).
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
        self.metrics.set_checkpoint(0);
        Ok(())
    }

    /// Runs the projection in this task until `shutdown` completes, then
    /// stops gracefully (the batch in flight is finished and committed).
    ///
    /// Returns the error that stopped it otherwise: a store failure, or a
    /// poisoned event under [`PoisonPolicy::Stop`].
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
        RunnerHandle {
            name,
            control,
            metrics,
            head,
            task: Mutex::new(Some(task)),
        }
    }

    async fn run_with(mut self, control: Arc<watch::Sender<Control>>) -> Result<(), Error> {
        let mut commands = control.subscribe();
        let result = self.run_loop(&control, &mut commands).await;
        match &result {
            Ok(()) => self.metrics.set_status(RunnerStatus::Stopped),
            Err(error) => {
                tracing::error!(projection = %self.name, %error, "projection runner failed");
                self.metrics.set_status(RunnerStatus::Failed);
            }
        }
        result
    }

    async fn run_loop(
        &mut self,
        control: &watch::Sender<Control>,
        commands: &mut watch::Receiver<Control>,
    ) -> Result<(), Error> {
        loop {
            let lease = match self.lease.clone() {
                None => None,
                Some(config) => match acquire_lease(&self.name, &self.metrics, config, commands).await? {
                    Some(held) => Some(held),
                    None => return Ok(()),
                },
            };
            let outcome = loop {
                let outcome = self.run_active(commands, lease.as_ref()).await;
                if matches!(outcome, Ok(Exit::Rebuilt)) {
                    control.send_if_modified(|command| {
                        let rebuilding = *command == Control::Rebuild;
                        if rebuilding {
                            *command = Control::Run;
                        }
                        rebuilding
                    });
                    continue;
                }
                break outcome;
            };
            let outcome = match outcome {
                // Another instance committed a checkpoint: with a lease, that
                // means ours lapsed; go back to waiting for it.
                Err(Error::Checkpoint { .. }) if lease.is_some() => Ok(Exit::LeaseLost),
                other => other,
            };
            if let Some(held) = lease {
                held.release().await;
            }
            match outcome {
                Ok(Exit::LeaseLost) => {
                    tracing::warn!(projection = %self.name, "lease lost; waiting to take it back");
                    continue;
                }
                Ok(Exit::Stopped | Exit::Rebuilt) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    async fn run_active(
        &mut self,
        commands: &mut watch::Receiver<Control>,
        lease: Option<&HeldLease>,
    ) -> Result<Exit, Error> {
        self.metrics.set_status(RunnerStatus::Starting);
        let checkpoint = self.driver.load_checkpoint().await?;
        self.metrics.set_checkpoint(checkpoint);
        self.metrics.set_position(checkpoint);
        self.metrics.set_read_position(checkpoint);
        self.metrics.set_status(RunnerStatus::CatchingUp);

        let (sender, mut batches) = mpsc::channel(self.options.channel_capacity);
        let _reader = AbortOnDrop(tokio::spawn(read_log(
            self.events.clone(),
            checkpoint,
            self.driver.filter(),
            self.options.clone(),
            sender,
            Arc::clone(&self.metrics),
        )));
        let mut state = Active {
            unit: None,
            uncommitted: Vec::new(),
            since_commit: 0,
            committed: checkpoint,
            position: checkpoint,
        };
        let lease_check = lease.map_or(Duration::from_secs(3600), |held| held.config.interval());
        loop {
            if lease.is_some_and(|held| !held.is_valid()) {
                self.abandon(&mut state).await?;
                return Ok(Exit::LeaseLost);
            }
            let command = *commands.borrow_and_update();
            match command {
                Control::Run => {}
                Control::Stop => {
                    self.commit(&mut state, lease).await?;
                    return Ok(Exit::Stopped);
                }
                Control::Abort => {
                    self.abandon(&mut state).await?;
                    return Ok(Exit::Stopped);
                }
                Control::Rebuild => {
                    self.commit(&mut state, lease).await?;
                    self.driver.reset(state.committed).await?;
                    self.metrics.set_checkpoint(0);
                    tracing::info!(projection = %self.name, "checkpoint reset; rebuilding from the start");
                    return Ok(Exit::Rebuilt);
                }
            }
            let received = match batches.try_recv() {
                Ok(received) => received,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing to do: a good moment to make progress durable.
                    self.commit(&mut state, lease).await?;
                    tokio::select! {
                        _ = commands.changed() => continue,
                        () = tokio::time::sleep(lease_check) => continue,
                        received = batches.recv() => match received {
                            Some(received) => received,
                            None => return Err(self.reader_gone()),
                        },
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(self.reader_gone()),
            };
            let batch = match received {
                Ok(batch) => batch,
                Err(error) => {
                    self.commit(&mut state, lease).await?;
                    return Err(error);
                }
            };
            match self.process(&mut state, batch, commands).await? {
                Flow::Continue => {
                    if state.since_commit >= self.options.checkpoint_every {
                        self.commit(&mut state, lease).await?;
                    }
                }
                // A stop, abort or rebuild came while an event waited for
                // its retry: the loop's top carries it out.
                Flow::Interrupted => {}
            }
        }
    }

    fn reader_gone(&self) -> Error {
        Error::Runner {
            projection: self.name.clone(),
            message: "the log reader ended unexpectedly".to_owned(),
        }
    }

    async fn process(
        &mut self,
        state: &mut Active<D::Unit>,
        batch: Batch,
        commands: &mut watch::Receiver<Control>,
    ) -> Result<Flow, Error> {
        let Batch {
            events,
            through,
            read,
        } = batch;
        for event in events {
            if event.position <= state.position {
                continue;
            }
            if *commands.borrow() == Control::Abort {
                return Ok(Flow::Interrupted);
            }
            let unit = match state.unit.as_mut() {
                Some(unit) => unit,
                None => state.unit.insert(self.driver.begin().await?),
            };
            match self.driver.handle(unit, &event).await {
                Ok(()) => {
                    state.position = event.position;
                    self.metrics.add_handled(1);
                    if D::UNDOES {
                        state.uncommitted.push(event);
                    }
                }
                Err(error) => {
                    if let Flow::Interrupted = self.recover(state, event, error, commands).await? {
                        return Ok(Flow::Interrupted);
                    }
                }
            }
        }
        state.position = state.position.max(through);
        state.since_commit += read;
        self.metrics.set_position(state.position);
        Ok(Flow::Continue)
    }

    /// Takes over after the first failure of `failed`.
    async fn recover(
        &mut self,
        state: &mut Active<D::Unit>,
        failed: RecordedEvent,
        error: HandlerError,
        commands: &mut watch::Receiver<Control>,
    ) -> Result<Flow, Error> {
        if D::UNDOES {
            // The unit may hold part of the failed handler's writes: discard
            // it, and redo what it held, one committed event at a time, so
            // no retry ever sees half an event.
            if let Some(unit) = state.unit.take() {
                self.driver.rollback(unit).await?;
            }
            state.position = state.committed;
            for event in std::mem::take(&mut state.uncommitted) {
                if let Flow::Interrupted = self.one_by_one(state, event, 0, None, commands).await? {
                    return Ok(Flow::Interrupted);
                }
            }
        }
        self.one_by_one(state, failed, 1, Some(error), commands).await
    }

    /// Handles `event` with retries, committing it on its own (when the
    /// store can undo), dead-lettering it or stopping when it is poisoned.
    async fn one_by_one(
        &mut self,
        state: &mut Active<D::Unit>,
        event: RecordedEvent,
        mut failures: u32,
        mut last_error: Option<HandlerError>,
        commands: &mut watch::Receiver<Control>,
    ) -> Result<Flow, Error> {
        loop {
            if failures > 0 {
                if failures >= self.options.retry.attempts() {
                    return self.poisoned(state, event, failures, last_error).await;
                }
                self.metrics.add_retry();
                let delay = self.options.retry.backoff(failures);
                tracing::debug!(
                    projection = %self.name,
                    position = event.position,
                    failures,
                    ?delay,
                    "handler failed; retrying"
                );
                let interrupted = tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    _ = commands.wait_for(|command| *command != Control::Run) => true,
                };
                if interrupted {
                    return Ok(Flow::Interrupted);
                }
            }
            let mut unit = match state.unit.take() {
                Some(unit) => unit,
                None => self.driver.begin().await?,
            };
            match self.driver.handle(&mut unit, &event).await {
                Ok(()) => {
                    self.metrics.add_handled(1);
                    if D::UNDOES {
                        self.driver.commit(unit, state.committed, event.position).await?;
                        state.committed = event.position;
                        self.metrics.set_checkpoint(event.position);
                    } else {
                        state.unit = Some(unit);
                    }
                    state.position = event.position;
                    self.metrics.set_position(event.position);
                    return Ok(Flow::Continue);
                }
                Err(error) => {
                    failures += 1;
                    last_error = Some(error);
                    if D::UNDOES {
                        self.driver.rollback(unit).await?;
                    } else {
                        state.unit = Some(unit);
                    }
                }
            }
        }
    }

    async fn poisoned(
        &mut self,
        state: &mut Active<D::Unit>,
        event: RecordedEvent,
        attempts: u32,
        error: Option<HandlerError>,
    ) -> Result<Flow, Error> {
        let message = error.map_or_else(String::new, |error| error.to_string());
        match self.options.poison {
            PoisonPolicy::DeadLetter => {
                tracing::warn!(
                    projection = %self.name,
                    position = event.position,
                    stream = %event.stream,
                    version = event.version,
                    event_type = %event.event_type,
                    error = %message,
                    attempts,
                    "event dead-lettered"
                );
                let position = event.position;
                let letter = DeadLetter::new(self.name.clone(), event, message, attempts);
                let mut unit = match state.unit.take() {
                    Some(unit) => unit,
                    None => self.driver.begin().await?,
                };
                self.driver.dead_letter(&mut unit, letter).await?;
                if D::UNDOES {
                    self.driver.commit(unit, state.committed, position).await?;
                    state.committed = position;
                    self.metrics.set_checkpoint(position);
                } else {
                    state.unit = Some(unit);
                }
                state.position = position;
                self.metrics.set_position(position);
                self.metrics.add_dead_letter();
                Ok(Flow::Continue)
            }
            PoisonPolicy::Stop => {
                // Everything before the event is done: keep it, and leave the
                // checkpoint just before the event.
                self.commit(state, None).await?;
                Err(Error::Projection {
                    projection: self.name.clone(),
                    position: event.position,
                    event_type: event.event_type.to_string(),
                    stream: event.stream.clone(),
                    version: event.version,
                    message,
                })
            }
        }
    }

    /// Commits the open unit, or just the checkpoint, when there is progress.
    async fn commit(&mut self, state: &mut Active<D::Unit>, lease: Option<&HeldLease>) -> Result<(), Error> {
        if state.position == state.committed && state.unit.is_none() {
            return Ok(());
        }
        if lease.is_some_and(|held| !held.is_valid()) {
            // Not ours to commit any more; the new holder will redo it.
            self.abandon(state).await?;
            return Err(Error::Checkpoint {
                projection: self.name.clone(),
                message: "the lease lapsed before the commit".to_owned(),
            });
        }
        let unit = match state.unit.take() {
            Some(unit) => unit,
            None => self.driver.begin().await?,
        };
        self.driver.commit(unit, state.committed, state.position).await?;
        state.committed = state.position;
        state.uncommitted.clear();
        state.since_commit = 0;
        self.metrics.set_checkpoint(state.committed);
        Ok(())
    }

    /// Drops what is not committed (a plain projection's effects stay; its
    /// checkpoint does not move, so they are redone after a restart).
    async fn abandon(&mut self, state: &mut Active<D::Unit>) -> Result<(), Error> {
        state.uncommitted.clear();
        state.position = state.committed;
        match state.unit.take() {
            Some(unit) => self.driver.rollback(unit).await,
            None => Ok(()),
        }
    }
}

/// What the handler loop has not committed yet.
struct Active<U> {
    unit: Option<U>,
    /// Events handled in `unit`, kept to redo them when the unit is rolled
    /// back after a failure (only when the store can undo).
    uncommitted: Vec<RecordedEvent>,
    /// Events read since the last commit.
    since_commit: usize,
    /// The committed checkpoint.
    committed: u64,
    /// The last position handled (or skipped by the filter).
    position: u64,
}

enum Flow {
    Continue,
    Interrupted,
}

enum Exit {
    Stopped,
    Rebuilt,
    LeaseLost,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the log after `after` into `sender`: pages of `read_all` to the
/// head, then `subscribe_all` from the last position read.
async fn read_log<E: EventStore>(
    events: E,
    mut after: u64,
    filter: EventFilter,
    options: Options,
    sender: mpsc::Sender<Result<Batch, Error>>,
    metrics: Arc<MetricsCell>,
) {
    let batch_size = options.batch_size;
    let mut failures = 0;
    let batch_of = |page: Vec<RecordedEvent>, through: u64| {
        let read = page.len();
        let events = page.into_iter().filter(|event| filter.admits(event)).collect();
        Batch {
            events,
            through,
            read,
        }
    };
    loop {
        match events.read_all(after, batch_size).await {
            Ok(page) => {
                failures = 0;
                let full = page.len() >= batch_size;
                if let Some(through) = page.last().map(|event| event.position) {
                    after = through;
                    metrics.set_read_position(through);
                    if sender.send(Ok(batch_of(page, through))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            Err(error) => {
                failures += 1;
                if !read_failed(error, failures, &options, &sender).await {
                    return;
                }
            }
        }
    }
    metrics.set_live();
    loop {
        let mut live = events.subscribe_all(after).ready_chunks(batch_size);
        while let Some(chunk) = live.next().await {
            let mut page = Vec::with_capacity(chunk.len());
            let mut error = None;
            for item in chunk {
                match item {
                    // The subscription starts after `after`; this only
                    // guards against a store that repeats itself.
                    Ok(event)
                        if event.position
                            > page.last().map_or(after, |last: &RecordedEvent| last.position) =>
                    {
                        page.push(event);
                    }
                    Ok(_) => {}
                    Err(failed) => error = Some(failed),
                }
            }
            if let Some(through) = page.last().map(|event| event.position) {
                after = through;
                failures = 0;
                metrics.set_read_position(through);
                if sender.send(Ok(batch_of(page, through))).await.is_err() {
                    return;
                }
            }
            if let Some(error) = error {
                failures += 1;
                if !read_failed(error, failures, &options, &sender).await {
                    return;
                }
                break;
            }
        }
        // A subscription ends only after an error; resubscribe after it.
        tokio::time::sleep(options.retry.delay_after(1)).await;
    }
}

/// Waits before the next read, or hands the error on when the attempts are
/// spent; false when the reader must end.
async fn read_failed(
    error: Error,
    failures: u32,
    options: &Options,
    sender: &mpsc::Sender<Result<Batch, Error>>,
) -> bool {
    if failures >= options.retry.attempts() {
        // The handler loop ends on it; if it is gone already, so are we.
        let _ = sender.send(Err(error)).await;
        return false;
    }
    tracing::warn!(%error, failures, "reading the log failed; retrying");
    tokio::time::sleep(options.retry.backoff(failures)).await;
    true
}

/// Waits until the lease is ours; `None` when told to stop meanwhile.
async fn acquire_lease(
    name: &str,
    metrics: &MetricsCell,
    config: LeaseConfig,
    commands: &mut watch::Receiver<Control>,
) -> Result<Option<HeldLease>, Error> {
    loop {
        if matches!(*commands.borrow_and_update(), Control::Stop | Control::Abort) {
            return Ok(None);
        }
        let asked_at = Instant::now();
        if config.lease.acquire(name, &config.holder, config.ttl).await? {
            tracing::info!(projection = %name, holder = %config.holder, "lease acquired");
            return Ok(Some(HeldLease::start(config, name.to_owned(), asked_at)));
        }
        metrics.set_status(RunnerStatus::Standby);
        tokio::select! {
            () = tokio::time::sleep(config.interval()) => {}
            _ = commands.changed() => {}
        }
    }
}

/// The lease while a runner holds it, renewed in the background.
struct HeldLease {
    config: LeaseConfig,
    projection: String,
    valid_until: Arc<Mutex<Instant>>,
    renewal: JoinHandle<()>,
}

impl HeldLease {
    fn start(config: LeaseConfig, projection: String, asked_at: Instant) -> Self {
        let valid_until = Arc::new(Mutex::new(Self::safe_until(&config, asked_at)));
        let renewal = tokio::spawn({
            let config = config.clone();
            let projection = projection.clone();
            let valid_until = Arc::clone(&valid_until);
            async move {
                loop {
                    tokio::time::sleep(config.interval()).await;
                    let asked_at = Instant::now();
                    match config
                        .lease
                        .acquire(&projection, &config.holder, config.ttl)
                        .await
                    {
                        Ok(true) => {
                            *valid_until.lock().unwrap_or_else(PoisonError::into_inner) =
                                Self::safe_until(&config, asked_at);
                        }
                        Ok(false) => {
                            *valid_until.lock().unwrap_or_else(PoisonError::into_inner) = asked_at;
                            return;
                        }
                        // The lease runs out on its own unless a later renewal works.
                        Err(error) => tracing::warn!(%projection, %error, "renewing the lease failed"),
                    }
                }
            }
        });
        Self {
            config,
            projection,
            valid_until,
            renewal,
        }
    }

    // A fifth of the time to live is kept as margin for clock drift and the
    // time a commit takes.
    fn safe_until(config: &LeaseConfig, asked_at: Instant) -> Instant {
        asked_at + config.ttl - config.ttl / 5
    }

    fn is_valid(&self) -> bool {
        Instant::now() < *self.valid_until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn release(self) {
        self.renewal.abort();
        if let Err(error) = self
            .config
            .lease
            .release(&self.projection, &self.config.holder)
            .await
        {
            // Not fatal: the lease expires on its own.
            tracing::warn!(projection = %self.projection, %error, "releasing the lease failed");
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

type HeadFn = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, Error>> + Send + Sync>;

/// Controls a runner started with [`ProjectionRunner::spawn`]: stop it,
/// rebuild it, read its metrics, wait for it.
///
/// Dropping the handle leaves the runner running; stop it first.
///
/// ```
/// # use factum_core::{Error, RunnerHandle};
/// // With tokio's `signal` feature, pass `async { tokio::signal::ctrl_c().await.ok(); }`.
/// async fn stop_on_signal(handle: RunnerHandle, signal: tokio::sync::oneshot::Receiver<()>) -> Result<(), Error> {
///     handle.stop_when(async {
///         signal.await.ok();
///     });
///     handle.join().await
/// }
/// ```
pub struct RunnerHandle {
    name: String,
    control: Arc<watch::Sender<Control>>,
    metrics: Arc<MetricsCell>,
    head: HeadFn,
    task: Mutex<Option<JoinHandle<Result<(), Error>>>>,
}

impl std::fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("projection", &self.name)
            .field("status", &self.metrics.status())
            .finish_non_exhaustive()
    }
}

impl RunnerHandle {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the runner to stop gracefully: it finishes and commits the
    /// batch in flight (an event waiting for a retry is left for the next
    /// run, its checkpoint not passed), releases its lease and ends.
    pub fn stop(&self) {
        self.control.send_replace(Control::Stop);
    }

    /// Asks the runner to stop at the next event: what is not committed is
    /// rolled back (a plain projection's checkpoint stays where it was, so
    /// those events are handled again at the next start).
    pub fn abort(&self) {
        self.control.send_replace(Control::Abort);
    }

    /// Asks the runner to rebuild: it commits the batch in flight, resets the
    /// read model, the dead letters and the checkpoint, and replays the log
    /// from the start.
    pub fn rebuild(&self) {
        self.control.send_if_modified(|command| {
            let running = *command == Control::Run;
            if running {
                *command = Control::Rebuild;
            }
            running
        });
    }

    /// Stops the runner gracefully when `signal` completes (for example
    /// `tokio::signal::ctrl_c()`, or a server's shutdown future).
    pub fn stop_when(&self, signal: impl Future<Output = ()> + Send + 'static) {
        let control = Arc::clone(&self.control);
        tokio::spawn(async move {
            signal.await;
            control.send_replace(Control::Stop);
        });
    }

    /// What the runner is doing now.
    pub fn status(&self) -> RunnerStatus {
        self.metrics.status()
    }

    /// The runner's progress, with the head of the log read now.
    pub async fn metrics(&self) -> Result<ProjectionMetrics, Error> {
        let head = (self.head)().await?;
        Ok(self.metrics.snapshot(&self.name, head))
    }

    /// Waits until the committed checkpoint reaches `position`: the read
    /// model then reflects every event up to it.
    ///
    /// Fails with [`Error::Runner`] when the runner ends first.
    pub async fn wait_for_checkpoint(&self, position: u64) -> Result<(), Error> {
        let mut checkpoints = self.metrics.checkpoints();
        let mut statuses = self.metrics.statuses();
        tokio::select! {
            _ = checkpoints.wait_for(|checkpoint| *checkpoint >= position) => {}
            _ = statuses.wait_for(|status| status.is_finished()) => {}
        }
        // It may have committed the position on its way out.
        if self.metrics.checkpoint() >= position {
            Ok(())
        } else {
            Err(self.ended_before(position))
        }
    }

    /// Waits until the runner's status satisfies `wanted`, and returns it.
    pub async fn wait_for_status(&self, wanted: impl Fn(RunnerStatus) -> bool) -> RunnerStatus {
        let mut statuses = self.metrics.statuses();
        match statuses.wait_for(|status| wanted(*status)).await {
            Ok(status) => *status,
            // The sender lives in the metrics this handle holds.
            Err(_) => self.metrics.status(),
        }
    }

    /// Waits for the runner to end and returns its result.
    pub async fn join(&self) -> Result<(), Error> {
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(task) = task else {
            return Err(Error::Runner {
                projection: self.name.clone(),
                message: "the runner was already joined".to_owned(),
            });
        };
        task.await.unwrap_or_else(|error| {
            Err(Error::Runner {
                projection: self.name.clone(),
                message: error.to_string(),
            })
        })
    }

    /// Stops the runner gracefully and waits for it: [`stop`](Self::stop)
    /// then [`join`](Self::join).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.stop();
        self.join().await
    }

    fn ended_before(&self, position: u64) -> Error {
        Error::Runner {
            projection: self.name.clone(),
            message: format!(
                "the runner ended ({:?}) before its checkpoint reached {position}",
                self.metrics.status()
            ),
        }
    }
}
