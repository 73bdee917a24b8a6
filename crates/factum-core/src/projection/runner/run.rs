//! The running side of a [`ProjectionRunner`]: the loop that reads the log,
//! hands batches to the projection, retries, dead-letters, checkpoints, and
//! obeys stop, abort and rebuild commands.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::super::driver::Driver;
use super::super::handle::Control;
use super::super::lease::{HeldLease, acquire_lease};
use super::super::reader::{AbortOnDrop, Batch, read_log};
use super::super::{DeadLetter, HandlerError, PoisonPolicy, RunnerStatus};
use super::ProjectionRunner;
use super::requested::{self, Requests};
use crate::{Error, EventStore, RecordedEvent, Start, telemetry};

impl<E: EventStore + Clone, D: Driver> ProjectionRunner<E, D> {
    pub(super) async fn run_with(mut self, control: Arc<watch::Sender<Control>>) -> Result<(), Error> {
        let mut commands = control.subscribe();
        self.metrics.register(&self.name);
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
        let mut state = self.starting_state(lease).await?;
        let checkpoint = state.committed;
        self.metrics.set_checkpoint(checkpoint);
        self.metrics.set_position(checkpoint);
        self.metrics.set_read_position(checkpoint);
        self.metrics.set_status(RunnerStatus::CatchingUp);

        let (sender, mut batches) = mpsc::channel(self.options.channel_capacity);
        let _reader = AbortOnDrop(tokio::spawn(read_log(
            self.name.clone(),
            self.events.clone(),
            checkpoint,
            self.driver.filter(),
            self.options.batch_size,
            self.options.retry,
            sender,
            Arc::clone(&self.metrics),
        )));
        let lease_check = lease.map_or(Duration::from_secs(3600), |held| held.config.interval());
        let mut requests = Requests::new();
        self.replay_requested(&mut requests).await?;
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
                    if requests.due() {
                        self.replay_requested(&mut requests).await?;
                    }
                    tokio::select! {
                        _ = commands.changed() => continue,
                        () = tokio::time::sleep(lease_check.min(requested::LOOK_EVERY)) => continue,
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

    /// The state at the committed checkpoint. A projection without one (0)
    /// starts where [`start_at`](ProjectionRunner::start_at) says, and
    /// commits that position at once: a restart then resumes there instead
    /// of at a head that has moved on.
    async fn starting_state(&mut self, lease: Option<&HeldLease>) -> Result<Active<D::Unit>, Error> {
        let checkpoint = self.driver.load_checkpoint().await?;
        let mut state = Active {
            unit: None,
            uncommitted: Vec::new(),
            since_commit: 0,
            committed: checkpoint,
            position: checkpoint,
        };
        if checkpoint == 0 {
            state.position = self.options.start.after(&self.events).await?;
            self.commit(&mut state, lease).await?;
        }
        Ok(state)
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
                self.options.start = Start::Beginning;
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
        let span = telemetry::projection_batch_span(&self.name, &batch.events, batch.read);
        self.process_events(state, batch, commands).instrument(span).await
    }

    async fn process_events(
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
            let span = telemetry::handler_span(&self.name, &event, 1);
            let handled = self.driver.handle(unit, &event).instrument(span.clone()).await;
            if handled.is_err() {
                telemetry::handler_failed(&span);
            }
            match handled {
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
            let span = telemetry::handler_span(&self.name, &event, failures + 1);
            let handled = self
                .driver
                .handle(&mut unit, &event)
                .instrument(span.clone())
                .await;
            if handled.is_err() {
                telemetry::handler_failed(&span);
            }
            match handled {
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
