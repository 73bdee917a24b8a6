//! `ChaosStore`: any store, with the faults of a real network and database
//! injected on purpose, so that retry loops, idempotent saves and
//! projections are tested against them.

mod schedule;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use schedule::{ChaosSchedule, Fault, Operation};

use schedule::Plan;

/// Wraps any event store and injects faults into its calls: conflicts,
/// delays, transient errors, and appends that commit but lose their answer.
///
/// Faults come from a seeded [`ChaosSchedule`] (rates per call) and from
/// faults queued for the next calls of an operation with
/// [`inject`](Self::inject). Clones share the schedule and the counts, and
/// so does a tenant view ([`Tenancy::for_tenant`](crate::Tenancy::for_tenant)
/// when the inner store has tenants), which wraps the inner store's view.
///
/// What each fault does, so a test knows what it proves:
///
/// - A conflict is [`Error::Conflict`](crate::Error::Conflict) with nothing
///   written, as if another writer had got there first and the stream were
///   then found unchanged (it reports the stream's real version). It is
///   injected only into an append the store would accept: an append with
///   [`ExpectedVersion::Any`](crate::ExpectedVersion::Any), the retry of
///   events already stored, and a real conflict get the store's own answer,
///   because a real store never reports a conflict for them.
/// - A transient error is [`Error::Store`](crate::Error::Store) (backend
///   `"chaos"`, source [`InjectedFault`]) and the call never reaches the
///   inner store.
/// - A lost answer lets the write commit in the inner store, then returns a
///   transient error: the caller must retry with the same event ids, and
///   the retry must return the original positions.
/// - A subscription delivers an error in place of an event (and ends, as a
///   subscription does after an error); the event is delivered again to
///   whoever subscribes after the last position it received.
///
/// ```
/// use factum_core::testing::{ChaosSchedule, ChaosStore, Fault, Operation};
/// use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new("created", Payload::parse("{}")?);
///
/// store.inject(Operation::Append, Fault::LostAnswer);
/// let lost = store.append(&stream, ExpectedVersion::NoStream, vec![event.clone()]).await;
/// assert!(lost.is_err(), "the answer is lost");
/// // The event was stored: the retry with the same event returns its position.
/// let retried = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(retried.positions, vec![1]);
/// assert_eq!(store.injected().lost_answers, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ChaosStore<S> {
    inner: S,
    chaos: Arc<Chaos>,
}

struct Chaos {
    plan: Mutex<Plan>,
    conflicts: AtomicU64,
    transient_errors: AtomicU64,
    lost_answers: AtomicU64,
    delays: AtomicU64,
}

/// How many faults a [`ChaosStore`] has injected so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Appends failed with a conflict.
    pub conflicts: u64,
    /// Calls failed before reaching the store (subscription errors included).
    pub transient_errors: u64,
    /// Writes that committed and then reported an error.
    pub lost_answers: u64,
    /// Calls delayed.
    pub delays: u64,
}

impl FaultCounts {
    /// Every fault that made a call fail (delays excluded).
    pub fn failures(&self) -> u64 {
        self.conflicts + self.transient_errors + self.lost_answers
    }
}

/// The error inside the [`Error::Store`](crate::Error::Store) a
/// [`ChaosStore`] returns for a transient error or a lost answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InjectedFault {
    /// The call that failed.
    pub operation: Operation,
    /// True when the write committed before the answer was lost.
    pub committed: bool,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.committed {
            write!(
                f,
                "injected fault: {} committed but its answer was lost",
                self.operation
            )
        } else {
            write!(
                f,
                "injected fault: {} failed before reaching the store",
                self.operation
            )
        }
    }
}

impl std::error::Error for InjectedFault {}

impl<S> ChaosStore<S> {
    /// Wraps `inner`, injecting faults by `schedule`.
    pub fn new(inner: S, schedule: ChaosSchedule) -> Self {
        Self {
            inner,
            chaos: Arc::new(Chaos {
                plan: Mutex::new(Plan::new(schedule)),
                conflicts: AtomicU64::new(0),
                transient_errors: AtomicU64::new(0),
                lost_answers: AtomicU64::new(0),
                delays: AtomicU64::new(0),
            }),
        }
    }

    /// The store underneath, without faults: for checking what was really
    /// written.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Queues `fault` for the next call of `operation`, ahead of the
    /// schedule. Several queued faults apply to successive calls, in order.
    pub fn inject(&self, operation: Operation, fault: Fault) {
        self.chaos.plan().queue(operation, fault);
    }

    /// Replaces the schedule (and restarts its sequence from its seed);
    /// `ChaosSchedule::none()` stops the random faults, e.g. to let a test
    /// settle before its final checks. Queued faults stay queued.
    pub fn set_schedule(&self, schedule: ChaosSchedule) {
        self.chaos.plan().reschedule(schedule);
    }

    /// The faults injected so far.
    pub fn injected(&self) -> FaultCounts {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultCounts {
            conflicts: count(&self.chaos.conflicts),
            transient_errors: count(&self.chaos.transient_errors),
            lost_answers: count(&self.chaos.lost_answers),
            delays: count(&self.chaos.delays),
        }
    }
}

impl<S> fmt::Debug for ChaosStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosStore")
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

impl Chaos {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        // The plan holds no invariant a panicking holder could break.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, fault: Fault) {
        let counter = match fault {
            Fault::Conflict => &self.conflicts,
            Fault::Transient => &self.transient_errors,
            Fault::LostAnswer => &self.lost_answers,
            Fault::Delay(_) => &self.delays,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
