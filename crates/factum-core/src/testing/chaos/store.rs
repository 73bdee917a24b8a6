//! The store traits on `ChaosStore`: each call draws its fault, then
//! reaches (or does not reach) the inner store.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, stream};

use super::{Chaos, ChaosStore, Fault, InjectedFault, Operation};
use crate::{
    AppendBatch, AppendResult, Error, EventPages, EventStore, EventStream, ExpectedVersion, NewEvent,
    RecordedEvent, Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
};

const BACKEND: &str = "chaos";

fn injected(operation: Operation, committed: bool) -> Error {
    Error::store(BACKEND, InjectedFault { operation, committed })
}

impl Chaos {
    fn draw(&self, operation: Operation) -> Option<Fault> {
        self.plan().next(operation)
    }

    /// Applies a fault that does not need the inner store: waits out a
    /// delay, or fails the call before it reaches the store.
    async fn suffer(&self, operation: Operation, fault: Option<Fault>) -> Result<(), Error> {
        match fault {
            None => Ok(()),
            Some(Fault::Delay(delay)) => {
                self.count(Fault::Delay(delay));
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Some(_) => {
                self.count(Fault::Transient);
                Err(injected(operation, false))
            }
        }
    }
}

/// `inner`, unless the call's fault fails it first (then one error).
fn guarded<'a, T: Send + 'a>(
    chaos: Arc<Chaos>,
    operation: Operation,
    inner: BoxStream<'a, Result<T, Error>>,
) -> BoxStream<'a, Result<T, Error>> {
    let fault = chaos.draw(operation);
    stream::once(async move {
        match chaos.suffer(operation, fault).await {
            Ok(()) => inner,
            Err(error) => stream::iter([Err(error)]).boxed(),
        }
    })
    .flatten()
    .boxed()
}

/// A subscription that may fail before each event. The fault is drawn
/// before the event is awaited, so a failing subscription drops an event it
/// has not delivered: resubscribing after the last delivered one gets it
/// again.
fn faulty(chaos: Arc<Chaos>, inner: EventStream<'static>) -> EventStream<'static> {
    stream::unfold(Some((inner, chaos)), |state| async move {
        let (mut inner, chaos) = state?;
        let fault = chaos.draw(Operation::Subscription);
        if let Err(error) = chaos.suffer(Operation::Subscription, fault).await {
            return Some((Err(error), None));
        }
        let item = inner.next().await?;
        let next = item.is_ok().then_some((inner, chaos));
        Some((item, next))
    })
    .boxed()
}

impl<S: EventStore> EventStore for ChaosStore<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        match self.chaos.draw(Operation::Append) {
            Some(Fault::Conflict) => {
                // Only a write that would succeed can lose a race: a retry of
                // stored events or a real conflict gets the store's answer.
                let actual = self.inner.stream_version(stream).await?;
                if expected == ExpectedVersion::Any || !expected.admits(actual) {
                    return self.inner.append(stream, expected, events).await;
                }
                self.chaos.count(Fault::Conflict);
                Err(Error::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                })
            }
            Some(Fault::LostAnswer) => {
                self.inner.append(stream, expected, events).await?;
                self.chaos.count(Fault::LostAnswer);
                Err(injected(Operation::Append, true))
            }
            fault => {
                self.chaos.suffer(Operation::Append, fault).await?;
                self.inner.append(stream, expected, events).await
            }
        }
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        match self.chaos.draw(Operation::Append) {
            Some(Fault::Conflict) => match self.conflict_of(&batches).await? {
                Some(conflict) => {
                    self.chaos.count(Fault::Conflict);
                    Err(conflict)
                }
                None => self.inner.append_many(batches).await,
            },
            Some(Fault::LostAnswer) => {
                self.inner.append_many(batches).await?;
                self.chaos.count(Fault::LostAnswer);
                Err(injected(Operation::Append, true))
            }
            fault => {
                self.chaos.suffer(Operation::Append, fault).await?;
                self.inner.append_many(batches).await
            }
        }
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        let inner = self.inner.read_stream(stream, from_version);
        guarded(Arc::clone(&self.chaos), Operation::ReadStream, inner)
    }

    fn read_stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        let inner = self.inner.read_stream_pages(stream, from_version);
        guarded(Arc::clone(&self.chaos), Operation::ReadStream, inner)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let fault = self.chaos.draw(Operation::ReadAll);
        self.chaos.suffer(Operation::ReadAll, fault).await?;
        self.inner.read_all(after, limit).await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        faulty(Arc::clone(&self.chaos), self.inner.subscribe_all(after))
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        faulty(
            Arc::clone(&self.chaos),
            self.inner.subscribe_stream(stream, from_version),
        )
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let fault = self.chaos.draw(Operation::StreamVersion);
        self.chaos.suffer(Operation::StreamVersion, fault).await?;
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, Error> {
        let fault = self.chaos.draw(Operation::HeadPosition);
        self.chaos.suffer(Operation::HeadPosition, fault).await?;
        self.inner.head_position().await
    }
}

impl<S: EventStore> ChaosStore<S> {
    /// The conflict to inject into a call of `batches`, naming its first
    /// checked stream; `None` when the store would not accept the call as a
    /// fresh write (see the rule for single appends).
    async fn conflict_of(&self, batches: &[AppendBatch]) -> Result<Option<Error>, Error> {
        let mut conflict = None;
        for batch in batches {
            let actual = self.inner.stream_version(&batch.stream).await?;
            if !batch.expected.admits(actual) {
                return Ok(None);
            }
            if conflict.is_none() && batch.expected != ExpectedVersion::Any {
                conflict = Some(Error::Conflict {
                    stream: batch.stream.clone(),
                    expected: batch.expected,
                    actual,
                });
            }
        }
        Ok(conflict)
    }
}

impl<S: SnapshotStore> SnapshotStore for ChaosStore<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        match self.chaos.draw(Operation::SaveSnapshot) {
            Some(Fault::LostAnswer) => {
                self.inner.save_snapshot(snapshot).await?;
                self.chaos.count(Fault::LostAnswer);
                Err(injected(Operation::SaveSnapshot, true))
            }
            fault => {
                self.chaos.suffer(Operation::SaveSnapshot, fault).await?;
                self.inner.save_snapshot(snapshot).await
            }
        }
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let fault = self.chaos.draw(Operation::LoadSnapshot);
        self.chaos.suffer(Operation::LoadSnapshot, fault).await?;
        self.inner.load_snapshot(stream).await
    }
}

/// A view of the inner store's tenant that draws from the same schedule and
/// counts into the same totals: faults keep coming whichever tenant a call
/// is for, as they would from one shared database.
impl<S: Tenancy> Tenancy for ChaosStore<S> {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            inner: self.inner.for_tenant(tenant)?,
            chaos: Arc::clone(&self.chaos),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.inner.tenant()
    }
}
