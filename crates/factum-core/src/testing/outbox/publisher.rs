//! Publishers for outbox tests: a scripted bus, and a wrapper that watches
//! any publisher for the one thing two relays must never do.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use crate::{PublishError, Publisher, RecordedEvent};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bus in memory that takes every event, unless told otherwise: down
/// (every event retriable), refusing one event for good, or slow.
///
/// Clones share their script, so a test keeps one to steer the bus while
/// a relay publishes through another.
///
/// ```
/// use factum_core::Publisher;
/// use factum_core::testing::outbox::ScriptedBus;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let bus = ScriptedBus::new();
/// bus.set_down(true);
/// let event = factum_core::NewEvent::new("added", factum_core::Payload::parse("{}").unwrap())
///     .recorded(factum_core::StreamId::new("Tally", "1"), 1, 1);
/// assert!(bus.publish(&[event]).await[0].as_ref().is_err_and(|error| error.retriable));
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct ScriptedBus {
    script: Arc<Script>,
}

#[derive(Debug, Default)]
struct Script {
    down: AtomicBool,
    refused: Mutex<HashMap<Uuid, String>>,
    delay: Mutex<Duration>,
}

impl ScriptedBus {
    /// A bus that takes everything at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// While down, every event fails with a retriable error.
    pub fn set_down(&self, down: bool) {
        self.script.down.store(down, Ordering::SeqCst);
    }

    /// Refuses the event `event_id` for good (not retriable), with `reason`.
    pub fn refuse(&self, event_id: Uuid, reason: impl Into<String>) {
        lock(&self.script.refused).insert(event_id, reason.into());
    }

    /// Takes back a refusal: the event is accepted from now on.
    pub fn accept(&self, event_id: Uuid) {
        lock(&self.script.refused).remove(&event_id);
    }

    /// Makes each publish call wait `delay` before it answers.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.script.delay) = delay;
    }
}

impl Publisher for ScriptedBus {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        let delay = *lock(&self.script.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.script.down.load(Ordering::SeqCst) {
            return events
                .iter()
                .map(|_| Err(PublishError::retriable("the bus is down")))
                .collect();
        }
        let refused = lock(&self.script.refused);
        events
            .iter()
            .map(|event| match refused.get(&event.event_id) {
                Some(reason) => Err(PublishError::rejected(reason.clone())),
                None => Ok(()),
            })
            .collect()
    }
}

/// Wraps a publisher and records what goes through it: every event handed
/// to it (in call order), every event it published, and every event handed
/// to it while a call still had it in flight — which two relays must never
/// cause.
///
/// Clones share their records: give clones to several relays and check
/// once. Events are told apart by event id.
#[derive(Clone, Debug)]
pub struct Watched<P> {
    inner: P,
    records: Arc<Records>,
}

#[derive(Debug, Default)]
struct Records {
    started: Mutex<Vec<RecordedEvent>>,
    published: Mutex<Vec<RecordedEvent>>,
    in_flight: Mutex<HashSet<Uuid>>,
    overlaps: Mutex<Vec<RecordedEvent>>,
}

impl<P: Publisher> Watched<P> {
    /// Watches `inner`.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            records: Arc::default(),
        }
    }

    /// The publisher watched.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Every event handed to the publisher, in the order of the calls.
    pub fn started(&self) -> Vec<RecordedEvent> {
        lock(&self.records.started).clone()
    }

    /// Every event the publisher answered `Ok` for, call after call.
    pub fn published(&self) -> Vec<RecordedEvent> {
        lock(&self.records.published).clone()
    }

    /// Events handed to the publisher while another call had them in
    /// flight: empty unless two relays published one entry at once.
    pub fn overlaps(&self) -> Vec<RecordedEvent> {
        lock(&self.records.overlaps).clone()
    }
}

impl<P: Publisher> Publisher for Watched<P> {
    async fn publish(&self, events: &[RecordedEvent]) -> Vec<Result<(), PublishError>> {
        {
            let mut in_flight = lock(&self.records.in_flight);
            let mut overlaps = lock(&self.records.overlaps);
            for event in events {
                if !in_flight.insert(event.event_id) {
                    overlaps.push(event.clone());
                }
            }
            lock(&self.records.started).extend_from_slice(events);
        }
        let answers = self.inner.publish(events).await;
        let mut in_flight = lock(&self.records.in_flight);
        let mut published = lock(&self.records.published);
        for (event, answer) in events.iter().zip(&answers) {
            in_flight.remove(&event.event_id);
            if answer.is_ok() {
                published.push(event.clone());
            }
        }
        answers
    }
}
