//! Replays an operator asked for from outside the process (`factum
//! dead-letters NAME replay` marks letters with
//! [`DeadLetter::replay_requested`](crate::DeadLetter::replay_requested)):
//! only the runner has the handler, so it is the one to replay them.

use std::time::Duration;

use tokio::time::Instant;

use super::super::driver::Driver;
use super::ProjectionRunner;
use crate::{Error, EventStore};

/// How often an idle runner looks for requested replays: an operator
/// waits at most this long, and an idle store sees one small query per
/// projection in that time.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(2);

/// When the runner last looked for requested replays.
pub(super) struct Requests {
    looked_at: Option<Instant>,
}

impl Requests {
    pub(super) fn new() -> Self {
        Self { looked_at: None }
    }

    /// True when the runner has not looked for [`LOOK_EVERY`].
    pub(super) fn due(&self) -> bool {
        self.looked_at.is_none_or(|at| at.elapsed() >= LOOK_EVERY)
    }
}

impl<E: EventStore + Clone, D: Driver> ProjectionRunner<E, D> {
    /// Handles every dead letter marked for replay once more, in position
    /// order: one that succeeds is deleted, one that fails is kept with its
    /// new error and an attempt count of 1 (no longer marked).
    pub(super) async fn replay_requested(&mut self, requests: &mut Requests) -> Result<(), Error> {
        requests.looked_at = Some(Instant::now());
        for letter in self.driver.dead_letters().await? {
            if !letter.replay_requested() {
                continue;
            }
            let position = letter.position();
            match self.driver.replay(letter).await? {
                None => tracing::info!(projection = %self.name, position, "requested replay succeeded"),
                Some(failed) => {
                    tracing::warn!(projection = %self.name, position, error = %failed.error, "requested replay failed again");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::{
        DeadLetterStore, ExpectedVersion, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore,
        InMemoryEventStore, NewEvent, Payload, Projection, RecordedEvent, RetryPolicy, StreamId,
    };

    /// Fails every event until `fixed`, then counts them.
    struct Flaky {
        fixed: Arc<AtomicBool>,
        handled: Arc<AtomicU64>,
    }

    impl Projection for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }

        async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
            if !self.fixed.load(Ordering::SeqCst) {
                return Err("not yet".into());
            }
            self.handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_runner_replays_the_letters_marked_for_replay_and_only_those() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("Order", "1");
        let events = (0..2)
            .map(|_| NewEvent::new("placed", Payload::parse("{}").unwrap()))
            .collect();
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        let letters = InMemoryDeadLetterStore::new();
        let (fixed, handled) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let projection = Flaky {
            fixed: fixed.clone(),
            handled: handled.clone(),
        };
        let runner = ProjectionRunner::new(
            store.clone(),
            projection,
            InMemoryCheckpointStore::new(),
            letters.clone(),
        )
        .retry(RetryPolicy::no_retry())
        .spawn();
        runner.wait_for_checkpoint(2).await.unwrap();
        assert_eq!(letters.all().len(), 2, "both events failed");

        fixed.store(true, Ordering::SeqCst);
        let mut marked = letters.all().remove(1);
        marked.attempts = 0;
        letters.put(marked).await.unwrap();
        tokio::time::sleep(LOOK_EVERY * 2).await;

        let left = letters.all();
        assert_eq!(
            left.iter().map(|letter| letter.position()).collect::<Vec<_>>(),
            [1],
            "the marked one was replayed"
        );
        assert!(!left[0].replay_requested());
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        runner.stop();
        runner.join().await.unwrap();
    }
}
