//! The relay: claims outbox entries, publishes them, marks them, and keeps
//! going through a broker outage with backoff.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Outbox, OutboxClaim, OutboxEntry, Outcome};
use crate::{Error, PublishError, Publisher, RetryPolicy, StreamId};

/// Publishes a store's outbox through a [`Publisher`]: at least once, in
/// order per aggregate.
///
/// Each round claims up to `batch_size` entries, publishes them in one
/// call, and records each outcome: sent, retried later (the bus is down; the
/// entry's attempts go up), or parked (the bus refused it for good, e.g. too
/// large: kept with its error, never dropped, listed by
/// [`Outbox::parked`]). When an entry is to be retried, the later entries
/// of its aggregate in the same round are retried too, even if they went
/// out, so the last copy a consumer sees of each is in order.
///
/// Rounds overlap: up to [`in_flight`](Self::in_flight) batches are with
/// the publisher at once ([`Publisher::enqueue`]), and while the bus
/// answers for them, at the same time, the oldest is marked, the batch
/// claimed before is handed over and the next one is claimed
/// ([`Outbox::claim_after`]), so neither the bus's round trip nor the
/// database's work is paid once per batch. Batches go to the publisher in
/// order and are marked in order; an entry to be retried makes every
/// later entry of its aggregate in flight a retry too.
///
/// While rounds fail (broker or database down) it waits with exponential
/// backoff and jitter, and goes on forever: an outage delays messages, it
/// never loses them. Sent entries older than the retention are pruned.
/// It stops gracefully: the round in flight is finished and recorded.
///
/// ```no_run
/// # use factum_core::{OutboxRelay, Outbox, Publisher};
/// # async fn demo(outbox: impl Outbox, publisher: impl Publisher) -> Result<(), factum_core::Error> {
/// let relay = OutboxRelay::new(outbox, publisher).batch_size(500).spawn();
/// // ... until the application shuts down:
/// relay.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct OutboxRelay<O, P> {
    /// Shared with the task that claims the next batch.
    outbox: Arc<O>,
    publisher: P,
    options: Options,
    metrics: Arc<Counters>,
}

#[derive(Clone, Debug)]
struct Options {
    batch_size: usize,
    in_flight: usize,
    poll_interval: Duration,
    backoff: RetryPolicy,
    retention: Option<Duration>,
    prune_every: Duration,
}

impl<O, P> std::fmt::Debug for OutboxRelay<O, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How one round went.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    claimed: usize,
    retried: usize,
}

impl<O: Outbox, P: Publisher> OutboxRelay<O, P> {
    /// A relay publishing `outbox` through `publisher`: batches of 1,024,
    /// up to 4 of them in flight, a look every 100 ms when idle, backoff
    /// from 100 ms to 30 s, sent entries kept 7 days.
    pub fn new(outbox: O, publisher: P) -> Self {
        Self {
            outbox: Arc::new(outbox),
            publisher,
            options: Options {
                batch_size: 1024,
                in_flight: 4,
                poll_interval: Duration::from_millis(100),
                backoff: RetryPolicy::default(),
                retention: Some(Duration::from_secs(7 * 24 * 3600)),
                prune_every: Duration::from_secs(60),
            },
            metrics: Arc::default(),
        }
    }

    /// Entries claimed and published per round (at least 1).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.options.batch_size = size.max(1);
        self
    }

    /// How many batches may be with the publisher at once, their answers
    /// not yet in (at least 1). Each holds its claim until it is marked, and
    /// the next batch is claimed while the oldest is marked: on PostgreSQL
    /// that is a pooled connection each, `batches + 1` at once, so keep it
    /// below the pool's size.
    pub fn in_flight(mut self, batches: usize) -> Self {
        self.options.in_flight = batches.max(1);
        self
    }

    /// How long an idle relay waits before looking again.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval;
        self
    }

    /// The delays between failing rounds (its attempt count is ignored: a
    /// relay never gives up).
    pub fn backoff(mut self, policy: RetryPolicy) -> Self {
        self.options.backoff = policy;
        self
    }

    /// How long sent entries are kept before they are pruned; `None` keeps
    /// them.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.options.retention = retention;
        self
    }

    /// How often pruning runs.
    pub fn prune_every(mut self, interval: Duration) -> Self {
        self.options.prune_every = interval;
        self
    }

    /// Runs one round: claims, publishes and records up to a batch.
    /// Returns how many entries it claimed (0: the outbox was empty).
    pub async fn run_once(&self) -> Result<usize, Error> {
        self.round().await.map(|round| round.claimed)
    }

    async fn round(&self) -> Result<Round, Error> {
        let claim = self.outbox.claim(self.options.batch_size).await?;
        if claim.entries().is_empty() {
            claim.finish(Vec::new()).await?;
            return Ok(Round::default());
        }
        let outcomes = self.publish_entries(claim.entries()).await;
        self.finish(claim, outcomes).await
    }

    /// Runs until `shutdown` completes, then finishes the round in flight
    /// and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let (stop, stopped) = watch::channel(false);
        let running = self.run_until(stopped);
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => return result,
            () = shutdown => {
                stop.send_replace(true);
            }
        }
        running.await
    }

    /// Runs on a new tokio task; the handle stops it and reads its metrics.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let metrics = Arc::clone(&self.metrics);
        let task = tokio::spawn(self.run_until(stopped));
        RelayHandle {
            stop,
            metrics,
            task: Mutex::new(Some(task)),
        }
    }

    /// Claims, publishes and finishes batches in a pipeline (see
    /// `pipeline.rs`) until `stopped`, pausing when idle or failing.
    async fn run_until(self, mut stopped: watch::Receiver<bool>) -> Result<(), Error> {
        let mut next_prune = tokio::time::Instant::now();
        let mut pipeline = Pipeline::default();
        while !*stopped.borrow_and_update() {
            let pause = match self.step(&mut pipeline).await {
                // Whether the bus takes it is known when it is finished.
                Ok(Step::Working) => Duration::ZERO,
                Ok(Step::Busy) => {
                    self.metrics.failing_rounds.store(0, Ordering::Relaxed);
                    Duration::ZERO
                }
                Ok(Step::Idle) => {
                    self.metrics.failing_rounds.store(0, Ordering::Relaxed);
                    self.options.poll_interval
                }
                Ok(Step::Retrying) => self.options.backoff.backoff(self.metrics.failed()),
                Err(error) => {
                    *self
                        .metrics
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                    let failures = self.metrics.failed();
                    tracing::warn!(%error, failures, "outbox relay round failed; retrying");
                    self.options.backoff.backoff(failures)
                }
            };
            if tokio::time::Instant::now() >= next_prune {
                self.prune().await;
                next_prune = tokio::time::Instant::now() + self.options.prune_every;
            }
            if !pause.is_zero() {
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        // The batches in flight are answered and recorded.
        self.drain(&mut pipeline).await
    }

    async fn prune(&self) {
        let Some(retention) = self.options.retention else {
            return;
        };
        let cutoff = OffsetDateTime::now_utc() - retention;
        match self.outbox.prune(cutoff).await {
            Ok(pruned) => {
                self.metrics.pruned.fetch_add(pruned, Ordering::Relaxed);
            }
            // Pruning only reclaims space; the next attempt will do.
            Err(error) => tracing::warn!(%error, "pruning the outbox failed"),
        }
    }
}

/// The outcome of each entry from the publisher's answers. An aggregate
/// whose entry is to be retried (`held`, carried over from the batches in
/// flight before this one) holds back its later entries, so its order
/// survives the retry.
fn outcomes(
    entries: &[OutboxEntry],
    results: Vec<Result<(), PublishError>>,
    held: &mut HashSet<StreamId>,
) -> Vec<Outcome> {
    let mut results = results.into_iter();
    entries
        .iter()
        .map(|entry| {
            let result = results.next().unwrap_or_else(|| {
                Err(PublishError::retriable(
                    "the publisher gave no answer for this event",
                ))
            });
            let stream = &entry.event.stream;
            if held.contains(stream) {
                return Outcome::Retry("an earlier event of the same aggregate is to be retried".to_owned());
            }
            match result {
                Ok(()) => Outcome::Sent,
                Err(error) if error.retriable => {
                    held.insert(stream.clone());
                    Outcome::Retry(error.reason)
                }
                Err(error) => Outcome::Park(error.reason),
            }
        })
        .collect()
}

mod handle;
mod pipeline;

use handle::Counters;
pub use handle::{RelayHandle, RelayMetrics};
use pipeline::{Pipeline, Step};

#[cfg(test)]
mod tests;
