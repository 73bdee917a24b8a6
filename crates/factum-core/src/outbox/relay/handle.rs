//! What a running relay reports, and the handle that stops it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;

/// What a relay has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayMetrics {
    /// Entries published and marked sent.
    pub published: u64,
    /// Entry outcomes of "retry later".
    pub retried: u64,
    /// Entries parked with an error.
    pub parked: u64,
    /// Sent entries pruned.
    pub pruned: u64,
    /// Rounds that failed in a row just now (0: healthy).
    pub failing_rounds: u64,
    /// The last failure, if the relay has had one.
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) published: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) parked: AtomicU64,
    pub(super) pruned: AtomicU64,
    pub(super) failing_rounds: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RelayMetrics {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RelayMetrics {
            published: load(&self.published),
            retried: load(&self.retried),
            parked: load(&self.parked),
            pruned: load(&self.pruned),
            failing_rounds: load(&self.failing_rounds),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Counts a failed round (its error, if any, recorded already) and
    /// returns how many failed in a row.
    pub(super) fn failed(&self) -> u32 {
        let failures = self.failing_rounds.fetch_add(1, Ordering::Relaxed) + 1;
        u32::try_from(failures).unwrap_or(u32::MAX)
    }
}

/// Controls a relay started with [`OutboxRelay::spawn`](crate::OutboxRelay::spawn).
///
/// Dropping the handle leaves the relay running; stop it first.
#[derive(Debug)]
pub struct RelayHandle {
    pub(super) stop: watch::Sender<bool>,
    pub(super) metrics: Arc<Counters>,
    pub(super) task: Mutex<Option<JoinHandle<Result<(), Error>>>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl RelayHandle {
    /// Asks the relay to stop after the round in flight.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// What the relay has done so far.
    pub fn metrics(&self) -> RelayMetrics {
        self.metrics.snapshot()
    }

    /// Stops the relay and waits for it.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.stop();
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        match task {
            Some(task) => task
                .await
                .unwrap_or_else(|error| Err(Error::store("outbox relay", error))),
            None => Ok(()),
        }
    }
}
