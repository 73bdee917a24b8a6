//! The hidden bookkeeping field of an aggregate: version and pending events.

use std::any::Any;
use std::fmt::{self, Debug};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use time::OffsetDateTime;
use uuid::Uuid;

use super::Aggregate;

/// The hidden bookkeeping field `#[aggregate]` adds to the struct: the version
/// and the events recorded but not yet saved.
///
/// It takes no part in the user's derives: every value compares equal, hashes
/// to nothing, debug-prints the version, and serde skips it. It asks nothing
/// of `A` either, so those derives compile whatever else is wrong with the
/// aggregate (a missing impl block is reported once, by the generated code):
/// the pending events are kept as a `Vec<A::Event>` behind `dyn Any`.
#[doc(hidden)]
pub struct AggregateState<A> {
    version: u64,
    persisted_version: u64,
    pending: Option<Box<dyn PendingEvents>>,
    // Ids and times are fixed when an event is recorded, so retrying a save
    // whose outcome is unknown is an idempotent append, not a duplicate.
    pending_ids: Vec<(Uuid, OffsetDateTime)>,
    aggregate: PhantomData<fn() -> A>,
}

/// A `Vec` of one aggregate's events, its element type erased.
trait PendingEvents: Any + Send + Sync {
    fn clear(&mut self);
    fn clone_box(&self) -> Box<dyn PendingEvents>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<E: Clone + Send + Sync + 'static> PendingEvents for Vec<E> {
    fn clear(&mut self) {
        Vec::clear(self);
    }

    fn clone_box(&self) -> Box<dyn PendingEvents> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

const ONE_EVENT_TYPE: &str = "the pending events of an aggregate are all of its one event type (`Aggregate::Event`, which is `AggregateEvents::Event` for generated code)";

impl<A> AggregateState<A> {
    /// The version including pending events.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version the stream was at when loaded or last saved.
    pub fn persisted_version(&self) -> u64 {
        self.persisted_version
    }

    /// The id and time fixed for each pending event.
    pub fn pending_ids(&self) -> &[(Uuid, OffsetDateTime)] {
        &self.pending_ids
    }

    /// Marks the aggregate as replayed up to `version`, with nothing pending.
    pub fn loaded_at(&mut self, version: u64) {
        self.version = version;
        self.persisted_version = version;
        // Cleared, not dropped: the next save reuses the allocation.
        if let Some(pending) = &mut self.pending {
            pending.clear();
        }
        self.pending_ids.clear();
    }

    fn events<E: 'static>(&self) -> &[E] {
        match &self.pending {
            Some(pending) => pending.as_any().downcast_ref::<Vec<E>>().expect(ONE_EVENT_TYPE),
            None => &[],
        }
    }

    pub(super) fn push<E: Clone + Send + Sync + 'static>(&mut self, event: E) {
        let pending = self.pending.get_or_insert_with(|| Box::new(Vec::<E>::new()));
        let events = pending
            .as_any_mut()
            .downcast_mut::<Vec<E>>()
            .expect(ONE_EVENT_TYPE);
        events.push(event);
        self.version += 1;
        self.pending_ids.push((Uuid::now_v7(), OffsetDateTime::now_utc()));
    }
}

impl<A: Aggregate> AggregateState<A> {
    /// Events recorded and not yet saved.
    pub fn pending(&self) -> &[A::Event] {
        self.events::<A::Event>()
    }

    /// Records a new event.
    pub fn record(&mut self, event: A::Event) {
        self.push(event);
    }
}

impl<A> Default for AggregateState<A> {
    fn default() -> Self {
        Self {
            version: 0,
            persisted_version: 0,
            pending: None,
            pending_ids: Vec::new(),
            aggregate: PhantomData,
        }
    }
}

impl<A> Clone for AggregateState<A> {
    fn clone(&self) -> Self {
        Self {
            version: self.version,
            persisted_version: self.persisted_version,
            pending: self.pending.as_ref().map(|pending| pending.clone_box()),
            pending_ids: self.pending_ids.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A> Debug for AggregateState<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateState")
            .field("version", &self.version)
            .field("pending", &self.pending_ids.len())
            .finish()
    }
}

impl<A> PartialEq for AggregateState<A> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<A> Eq for AggregateState<A> {}

impl<A> PartialOrd for AggregateState<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for AggregateState<A> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<A> Hash for AggregateState<A> {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}
