//! What a running projection reports: its checkpoint, the head of the log,
//! the lag between them, and counters.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::telemetry::ProjectionInstruments;

/// What a projection runner is doing.
///
/// ```
/// # use factum_core::RunnerStatus;
/// assert!(RunnerStatus::Live.is_active());
/// assert!(!RunnerStatus::Standby.is_active());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunnerStatus {
    /// Loading its checkpoint.
    Starting,
    /// Waiting for the lease another instance holds.
    Standby,
    /// Reading stored events in pages.
    CatchingUp,
    /// Caught up, handling events as they are committed.
    Live,
    /// Stopped on request.
    Stopped,
    /// Stopped by an error (see the runner's result).
    Failed,
}

impl RunnerStatus {
    /// True while it handles events (catching up or live).
    pub fn is_active(self) -> bool {
        matches!(self, Self::CatchingUp | Self::Live)
    }

    /// True once the runner has ended, on request or by an error.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Stopped | Self::Failed)
    }
}

/// A snapshot of one projection runner's progress.
///
/// `lag` is how many positions of the global log the committed checkpoint is
/// behind the head: 0 when the read model reflects every committed event.
///
/// ```
/// # use factum_core::{ProjectionMetrics, RunnerStatus};
/// fn report(metrics: &ProjectionMetrics) -> String {
///     format!("{}: {:?}, {} behind", metrics.projection, metrics.status, metrics.lag)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionMetrics {
    /// The projection's name.
    pub projection: String,
    /// What the runner is doing.
    pub status: RunnerStatus,
    /// The committed checkpoint: every event up to it has taken effect.
    pub checkpoint: u64,
    /// The last position handled, committed or not.
    pub position: u64,
    /// The last position the reader has fetched from the log (it runs
    /// ahead of `position` by at most the channel's capacity).
    pub read_position: u64,
    /// The head of the global log.
    pub head: u64,
    /// `head - checkpoint`, in positions.
    pub lag: u64,
    /// Events handled successfully since the runner started.
    pub handled: u64,
    /// Failed attempts that were retried since the runner started.
    pub retries: u64,
    /// Events sent to the dead letters since the runner started.
    pub dead_lettered: u64,
}

/// The counters a runner updates and its handle reads.
#[derive(Debug)]
pub(crate) struct MetricsCell {
    status: watch::Sender<RunnerStatus>,
    position: AtomicU64,
    read_position: AtomicU64,
    handled: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    checkpoint: watch::Sender<u64>,
    /// The newest position of the log the runner knows of: the head when
    /// it started reading, then each position it read.
    newest: AtomicU64,
    /// The runner's metrics in the installed recorder, registered when it
    /// first runs (so a recorder installed after the runner was built, but
    /// before it started, still receives them).
    instruments: OnceLock<ProjectionInstruments>,
}

impl MetricsCell {
    pub(crate) fn new() -> Self {
        Self {
            status: watch::Sender::new(RunnerStatus::Starting),
            position: AtomicU64::new(0),
            read_position: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            checkpoint: watch::Sender::new(0),
            newest: AtomicU64::new(0),
            instruments: OnceLock::new(),
        }
    }

    /// Registers the runner's metrics under `projection`, once.
    pub(crate) fn register(&self, projection: &str) {
        self.instruments
            .get_or_init(|| ProjectionInstruments::register(projection));
    }

    /// Notes that the log reaches `position` at least, for the lag.
    pub(crate) fn note_newest(&self, position: u64) {
        self.newest.fetch_max(position, Ordering::Relaxed);
        self.report_lag();
    }

    fn report_lag(&self) {
        if let Some(instruments) = self.instruments.get() {
            let newest = self.newest.load(Ordering::Relaxed);
            let lag = newest.saturating_sub(*self.checkpoint.borrow());
            instruments.lag.set(lag as f64);
        }
    }

    pub(crate) fn set_status(&self, status: RunnerStatus) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// Marks the reader live, unless the runner has moved on meanwhile.
    pub(crate) fn set_live(&self) {
        self.status.send_if_modified(|current| {
            let catching_up = *current == RunnerStatus::CatchingUp;
            if catching_up {
                *current = RunnerStatus::Live;
            }
            catching_up
        });
    }

    pub(crate) fn status(&self) -> RunnerStatus {
        *self.status.borrow()
    }

    pub(crate) fn statuses(&self) -> watch::Receiver<RunnerStatus> {
        self.status.subscribe()
    }

    pub(crate) fn set_checkpoint(&self, checkpoint: u64) {
        self.checkpoint.send_replace(checkpoint);
        self.report_lag();
    }

    pub(crate) fn checkpoint(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    pub(crate) fn checkpoints(&self) -> watch::Receiver<u64> {
        self.checkpoint.subscribe()
    }

    pub(crate) fn set_position(&self, position: u64) {
        self.position.store(position, Ordering::Relaxed);
    }

    pub(crate) fn set_read_position(&self, position: u64) {
        self.read_position.store(position, Ordering::Relaxed);
        self.note_newest(position);
    }

    pub(crate) fn add_handled(&self, count: u64) {
        self.handled.fetch_add(count, Ordering::Relaxed);
        if let Some(instruments) = self.instruments.get() {
            instruments.handled.increment(count);
        }
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(instruments) = self.instruments.get() {
            instruments.retries.increment(1);
        }
    }

    pub(crate) fn add_dead_letter(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if let Some(instruments) = self.instruments.get() {
            instruments.dead_letters.increment(1);
        }
    }

    pub(crate) fn snapshot(&self, projection: &str, head: u64) -> ProjectionMetrics {
        let checkpoint = *self.checkpoint.borrow();
        ProjectionMetrics {
            projection: projection.to_owned(),
            status: self.status(),
            checkpoint,
            position: self.position.load(Ordering::Relaxed),
            read_position: self.read_position.load(Ordering::Relaxed),
            head,
            lag: head.saturating_sub(checkpoint),
            handled: self.handled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}
