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
