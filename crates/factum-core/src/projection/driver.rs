//! The two ways a runner applies events and keeps its checkpoint: a plain
//! projection with separate stores, or a transactional one with a
//! projection store. Sealed: only these two implement [`Driver`].

use std::future::Future;

use super::{
    CheckpointStore, DeadLetter, DeadLetterStore, HandlerError, Projection, ProjectionStore,
    TransactionalProjection,
};
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
        wanted(&self.aggregate_types, event.aggregate_type()) && wanted(&self.event_types, &event.event_type)
    }
}

/// A projection with the stores it commits to. Implemented by
/// [`Plain`] and [`Transactional`] only.
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

    /// Deletes the dead letter at `position`; false when there was none.
    fn delete_dead_letter(&mut self, position: u64) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Handles a dead letter's event once more: removes the letter when
    /// it succeeds, records the new failure when it does not.
    fn replay(
        &mut self,
        letter: DeadLetter,
    ) -> impl Future<Output = Result<Option<DeadLetter>, Error>> + Send;
}

/// A [`Projection`] with its [`CheckpointStore`] and [`DeadLetterStore`]:
/// delivery at least once. Built by [`ProjectionRunner::new`](crate::ProjectionRunner::new).
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
/// once. Built by [`ProjectionRunner::transactional`](crate::ProjectionRunner::transactional).
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

impl<P: Projection, C, L> Plain<P, C, L> {
    pub(super) fn new(projection: P, checkpoints: C, dead_letters: L) -> Self {
        let name = projection.name().to_owned();
        Self {
            projection,
            checkpoints,
            dead_letters,
            name,
        }
    }
}

impl<P, S> Transactional<P, S>
where
    S: ProjectionStore,
    P: TransactionalProjection<S>,
{
    pub(super) fn new(projection: P, store: S) -> Self {
        let name = projection.name().to_owned();
        Self {
            projection,
            store,
            name,
        }
    }
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

    async fn delete_dead_letter(&mut self, position: u64) -> Result<bool, Error> {
        self.dead_letters.remove(&self.name, position).await
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

    async fn delete_dead_letter(&mut self, position: u64) -> Result<bool, Error> {
        let mut unit = self.store.begin(&self.name).await?;
        let removed = self
            .store
            .remove_dead_letter(&mut unit, &self.name, position)
            .await?;
        self.store.commit(unit).await?;
        Ok(removed)
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
