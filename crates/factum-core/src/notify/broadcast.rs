//! An in-process notifier: every receiver gets every event, for tests and
//! single-process applications.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;

use super::{Notifier, NotifyError};
use crate::RecordedEvent;

/// Broadcasts the events of each save to every [`Notifications`] receiver
/// in this process.
///
/// Bounded, and it never holds a save back: it keeps the last `capacity`
/// events. A receiver that falls further behind loses the oldest events it
/// has not read: its next [`recv`](Notifications::recv) reports how many
/// ([`Received::Lagged`]) and they add to [`lagged`](Self::lagged). Saves
/// are never slowed by a slow receiver, and a lost notification is always
/// reported, never silent. Use the outbox where every event must arrive.
///
/// ```
/// use factum_core::{BroadcastNotifier, Notifier, Received};
/// # use factum_core::{NewEvent, Payload, StreamId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let notifier = BroadcastNotifier::new(1024);
/// let mut receiver = notifier.subscribe();
/// # let event = NewEvent::new("created", Payload::parse("{}")?).recorded(StreamId::new("Counter", "1"), 1, 1);
/// notifier.notify(&[event]).await?;
/// match receiver.recv().await {
///     Some(Received::Event(event)) => assert_eq!(&*event.event_type, "created"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct BroadcastNotifier {
    sender: broadcast::Sender<RecordedEvent>,
    lagged: Arc<AtomicU64>,
}

/// One receiver of a [`BroadcastNotifier`].
#[derive(Debug)]
pub struct Notifications {
    receiver: broadcast::Receiver<RecordedEvent>,
    lagged: Arc<AtomicU64>,
}

/// What a [`Notifications`] receiver got.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// The next event.
    Event(RecordedEvent),
    /// The receiver fell behind by more than the capacity: this many of the
    /// oldest events were dropped for it. The next call returns the oldest
    /// event still kept.
    Lagged(u64),
}

impl BroadcastNotifier {
    /// A notifier keeping up to `capacity` events (at least 1) for slow
    /// receivers.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            lagged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A new receiver: it gets the events of saves from now on.
    pub fn subscribe(&self) -> Notifications {
        Notifications {
            receiver: self.sender.subscribe(),
            lagged: Arc::clone(&self.lagged),
        }
    }

    /// Events dropped for lagging receivers so far, summed over receivers.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Receivers listening now.
    pub fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl Notifier for BroadcastNotifier {
    async fn notify(&self, events: &[RecordedEvent]) -> Result<(), NotifyError> {
        for event in events {
            // No receiver is not a failure: nobody asked to be told.
            let _ = self.sender.send(event.clone());
        }
        Ok(())
    }
}

impl Notifications {
    /// The next event, or how many were dropped; `None` once the notifier
    /// and all its clones are gone.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::RecvError::Lagged(dropped)) => {
                self.lagged.fetch_add(dropped, Ordering::Relaxed);
                Some(Received::Lagged(dropped))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEvent, Payload, StreamId};

    fn event(version: u64) -> RecordedEvent {
        NewEvent::new("added", Payload::parse("{}").unwrap()).recorded(
            StreamId::new("Tally", "1"),
            version,
            version,
        )
    }

    /// The version of an event received, or the count of a lag.
    fn seen(received: Option<Received>) -> Option<(&'static str, u64)> {
        match received? {
            Received::Event(event) => Some(("event", event.version)),
            Received::Lagged(dropped) => Some(("lagged", dropped)),
        }
    }

    #[tokio::test]
    async fn every_receiver_gets_every_event_in_order() {
        let notifier = BroadcastNotifier::new(8);
        let mut first = notifier.subscribe();
        let mut second = notifier.subscribe();
        notifier.notify(&[event(1), event(2)]).await.unwrap();
        for receiver in [&mut first, &mut second] {
            assert_eq!(seen(receiver.recv().await), Some(("event", 1)));
            assert_eq!(seen(receiver.recv().await), Some(("event", 2)));
        }
    }

    #[tokio::test]
    async fn a_slow_receiver_is_told_what_it_lost_and_it_is_counted() {
        let notifier = BroadcastNotifier::new(2);
        let mut slow = notifier.subscribe();
        let events: Vec<_> = (1..=5).map(event).collect();
        notifier.notify(&events).await.unwrap();
        assert_eq!(seen(slow.recv().await), Some(("lagged", 3)));
        assert_eq!(seen(slow.recv().await), Some(("event", 4)));
        assert_eq!(notifier.lagged(), 3);
    }

    #[tokio::test]
    async fn notifying_without_receivers_succeeds() {
        let notifier = BroadcastNotifier::new(2);
        notifier.notify(&[event(1)]).await.unwrap();
        assert_eq!(notifier.receivers(), 0);
    }

    #[tokio::test]
    async fn receivers_end_when_the_notifier_is_gone() {
        let notifier = BroadcastNotifier::new(2);
        let mut receiver = notifier.subscribe();
        drop(notifier);
        assert_eq!(receiver.recv().await, None);
    }
}
