//! Getting saved events out of the process: a [`Notifier`] told after each
//! save, and the [`Publisher`] a transactional outbox relay sends through.
//!
//! The two give different guarantees, side by side:
//!
//! | | `Application::with_notifier` | outbox + relay |
//! |---|---|---|
//! | when | right after the save commits, in the caller's task | by a relay task, after the commit |
//! | whose saves | this application's | every writer of the database (other processes, SQL callers) |
//! | a failure | returned to the caller as [`Error::Notify`](crate::Error::Notify); the events stay saved | retried with backoff until the bus takes the message |
//! | a crash between save and publish | the notification is lost | nothing is lost; a message may repeat |
//! | a message the bus refuses | an error to the caller | parked with its error, listed, requeued by an operator |
//! | delivery | at most once | at least once, in order per aggregate |
//! | several processes | each tells about its own saves | relays share the work, never one entry at once |
//!
//! The outbox side: [`OutboxRelay`](crate::OutboxRelay) over a store's
//! [`Outbox`](crate::Outbox) (`enable_outbox()` on the SQLite and
//! PostgreSQL stores).

mod broadcast;
mod saved;

use std::future::Future;
use std::pin::Pin;

pub use broadcast::{BroadcastNotifier, Notifications, Received};
pub(crate) use saved::SharedNotifier;

use crate::RecordedEvent;

/// What a notifier or publisher returns when it fails: any error, boxed.
pub type NotifyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Told about the events of each successful save.
///
/// An [`Application`](crate::Application) with a notifier calls
/// [`notify`](Self::notify) after the events are committed, with the events
/// as stored (positions, versions and metadata included), in order.
///
/// ```
/// use factum_core::{Notifier, NotifyError, RecordedEvent};
///
/// struct Log;
///
/// impl Notifier for Log {
///     async fn notify(&self, events: &[RecordedEvent]) -> Result<(), NotifyError> {
///         for event in events {
///             println!("{} {} at {}", event.stream, event.event_type, event.position);
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Notifier: Send + Sync + 'static {
    /// Passes on the events of one save.
    fn notify(&self, events: &[RecordedEvent]) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// Why one message was not published.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
#[non_exhaustive]
pub struct PublishError {
    /// True when sending it again later may succeed (the bus is down,
    /// a timeout); false when the bus refused this message for good (too
    /// large, not authorised): retrying it would only repeat the refusal.
    pub retriable: bool,
    /// What the bus said.
    pub reason: String,
}

impl PublishError {
    /// A failure that may pass when retried.
    pub fn retriable(reason: impl Into<String>) -> Self {
        Self {
            retriable: true,
            reason: reason.into(),
        }
    }

    /// A refusal that retrying will not change.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self {
            retriable: false,
            reason: reason.into(),
        }
    }
}

/// Sends stored events to a message bus: what an outbox relay publishes
/// through, so any bus can follow Kafka with no change to the outbox.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `events`, preserving their order per aggregate, and
    /// answers for each one, in the same order.
    ///
    /// An implementation may send them concurrently, but must not let a
    /// later event of an aggregate overtake an earlier one that failed with
    /// a retriable error (Kafka's idempotent producer guarantees it within a
    /// partition).
    fn publish(&self, events: &[RecordedEvent])
    -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;

    /// Hands `events` to the bus and returns once they are on their way;
    /// the [`PendingAnswers`] it returns yields the answers later, as
    /// [`publish`](Self::publish) would.
    ///
    /// A relay hands over its next batch while the bus still answers for
    /// the last one, so a batch does not wait out the bus's round trip
    /// (and Kafka's `linger.ms`) alone. An implementation that overrides
    /// this must keep the order across calls: every event handed over by
    /// one call goes out before those of a later call, and a later event of
    /// an aggregate never overtakes an earlier one that failed retriably.
    /// The relay retries every later event of an aggregate whose event was
    /// retried, so the last copy a consumer sees of each is in order.
    ///
    /// The default publishes the whole batch first, so every batch waits
    /// for the answers of the one before.
    // The answers are a future by design: they are awaited after the next
    // batch has been handed over.
    #[allow(clippy::async_yields_async)]
    fn enqueue(&self, events: &[RecordedEvent]) -> impl Future<Output = PendingAnswers> + Send {
        async move {
            let answers = self.publish(events).await;
            Box::pin(std::future::ready(answers)) as PendingAnswers
        }
    }
}

/// The answers, one per event and in order, of events handed to a
/// [`Publisher`] by [`enqueue`](Publisher::enqueue), to be awaited later.
pub type PendingAnswers = Pin<Box<dyn Future<Output = Vec<Result<(), PublishError>>> + Send>>;
