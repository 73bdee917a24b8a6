//! The subscription runner: catches a projection up from its checkpoint,
//! goes live, retries, dead-letters, checkpoints, and stops cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::driver::{Driver, Plain, Transactional};
use super::handle::{Control, HeadFn, RunnerHandle};
use super::lease::{DynLease, HeldLease, LeaseConfig, acquire_lease};
use super::metrics::MetricsCell;
use super::reader::{AbortOnDrop, Batch, read_log};
use super::{
    CheckpointStore, DeadLetter, DeadLetterStore, HandlerError, Lease, PoisonPolicy, Projection,
    ProjectionStore, RetryPolicy, RunnerStatus, TransactionalProjection,
};
use crate::{Error, EventStore, RecordedEvent};

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
        let mut store_failures = 0;
        let mut checkpoint_at_failure = 0;
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
                // A lost connection or a busy database: start over from the
                // committed checkpoint after a pause, unless it keeps failing
                // without progress.
                Err(error @ Error::Store { .. }) => {
                    if self.metrics.checkpoint() > checkpoint_at_failure {
                        store_failures = 0;
                    }
                    checkpoint_at_failure = self.metrics.checkpoint();
                    store_failures += 1;
                    if store_failures >= self.options.retry.attempts() {
                        return Err(error);
                    }
                    let delay = self.options.retry.backoff(store_failures);
                    tracing::warn!(projection = %self.name, %error, ?delay, "store failed; restarting from the checkpoint");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = commands.wait_for(|command| matches!(command, Control::Stop | Control::Abort)) => return Ok(()),
                    }
                }
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
            self.options.batch_size,
            self.options.retry,
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
            if let Some(exit) = self.obey(command, &mut state, lease).await? {
                return Ok(exit);
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

    /// Carries out a stop, abort or rebuild; `None` while the command is
    /// to keep running.
    async fn obey(
        &mut self,
        command: Control,
        state: &mut Active<D::Unit>,
        lease: Option<&HeldLease>,
    ) -> Result<Option<Exit>, Error> {
        match command {
            Control::Run => Ok(None),
            Control::Stop => {
                self.commit(state, lease).await?;
                Ok(Some(Exit::Stopped))
            }
            Control::Abort => {
                self.abandon(state).await?;
                Ok(Some(Exit::Stopped))
            }
            Control::Rebuild => {
                self.commit(state, lease).await?;
                self.driver.reset(state.committed).await?;
                self.metrics.set_checkpoint(0);
                tracing::info!(projection = %self.name, "checkpoint reset; rebuilding from the start");
                Ok(Some(Exit::Rebuilt))
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
