//! The handle of a spawned runner: stop, abort, rebuild, metrics, join.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::MetricsCell;
use super::{ProjectionMetrics, RunnerStatus};
use crate::Error;

/// What the handle asks of the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    Run,
    Stop,
    Abort,
    Rebuild,
}

pub(super) type HeadFn = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, Error>> + Send + Sync>;

/// Controls a runner started with [`ProjectionRunner::spawn`](crate::ProjectionRunner::spawn): stop it,
/// rebuild it, read its metrics, wait for it.
///
/// Dropping the handle leaves the runner running; stop it first.
///
/// ```
/// # use factum_core::{Error, RunnerHandle};
/// // With tokio's `signal` feature, pass `async { tokio::signal::ctrl_c().await.ok(); }`.
/// async fn stop_on_signal(handle: RunnerHandle, signal: tokio::sync::oneshot::Receiver<()>) -> Result<(), Error> {
///     handle.stop_when(async {
///         signal.await.ok();
///     });
///     handle.join().await
/// }
/// ```
pub struct RunnerHandle {
    name: String,
    control: Arc<watch::Sender<Control>>,
    metrics: Arc<MetricsCell>,
    head: HeadFn,
    task: Mutex<Option<JoinHandle<Result<(), Error>>>>,
}

impl std::fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("projection", &self.name)
            .field("status", &self.metrics.status())
            .finish_non_exhaustive()
    }
}

impl RunnerHandle {
    pub(super) fn new(
        name: String,
        control: Arc<watch::Sender<Control>>,
        metrics: Arc<MetricsCell>,
        head: HeadFn,
        task: JoinHandle<Result<(), Error>>,
    ) -> Self {
        Self {
            name,
            control,
            metrics,
            head,
            task: Mutex::new(Some(task)),
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the runner to stop gracefully: it finishes and commits the
    /// batch in flight (an event waiting for a retry is left for the next
    /// run, its checkpoint not passed), releases its lease and ends.
    pub fn stop(&self) {
        self.control.send_replace(Control::Stop);
    }

    /// Asks the runner to stop at the next event: what is not committed is
    /// rolled back (a plain projection's checkpoint stays where it was, so
    /// those events are handled again at the next start).
    pub fn abort(&self) {
        self.control.send_replace(Control::Abort);
    }

    /// Asks the runner to rebuild: it commits the batch in flight, resets the
    /// read model, the dead letters and the checkpoint, and replays the log
    /// from the start.
    pub fn rebuild(&self) {
        self.control.send_if_modified(|command| {
            let running = *command == Control::Run;
            if running {
                *command = Control::Rebuild;
            }
            running
        });
    }

    /// Stops the runner gracefully when `signal` completes (for example
    /// `tokio::signal::ctrl_c()`, or a server's shutdown future).
    pub fn stop_when(&self, signal: impl Future<Output = ()> + Send + 'static) {
        let control = Arc::clone(&self.control);
        tokio::spawn(async move {
            signal.await;
            control.send_replace(Control::Stop);
        });
    }

    /// What the runner is doing now.
    pub fn status(&self) -> RunnerStatus {
        self.metrics.status()
    }

    /// The runner's progress, with the head of the log read now.
    pub async fn metrics(&self) -> Result<ProjectionMetrics, Error> {
        let head = (self.head)().await?;
        Ok(self.metrics.snapshot(&self.name, head))
    }

    /// Waits until the committed checkpoint reaches `position`: the read
    /// model then reflects every event up to it.
    ///
    /// Fails with [`Error::Runner`] when the runner ends first.
    pub async fn wait_for_checkpoint(&self, position: u64) -> Result<(), Error> {
        let mut checkpoints = self.metrics.checkpoints();
        let mut statuses = self.metrics.statuses();
        tokio::select! {
            _ = checkpoints.wait_for(|checkpoint| *checkpoint >= position) => {}
            _ = statuses.wait_for(|status| status.is_finished()) => {}
        }
        // It may have committed the position on its way out.
        if self.metrics.checkpoint() >= position {
            Ok(())
        } else {
            Err(self.ended_before(position))
        }
    }

    /// Waits until the runner's status satisfies `wanted`, and returns it.
    pub async fn wait_for_status(&self, wanted: impl Fn(RunnerStatus) -> bool) -> RunnerStatus {
        let mut statuses = self.metrics.statuses();
        match statuses.wait_for(|status| wanted(*status)).await {
            Ok(status) => *status,
            // The sender lives in the metrics this handle holds.
            Err(_) => self.metrics.status(),
        }
    }

    /// Waits for the runner to end and returns its result.
    pub async fn join(&self) -> Result<(), Error> {
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(task) = task else {
            return Err(Error::Runner {
                projection: self.name.clone(),
                message: "the runner was already joined".to_owned(),
            });
        };
        task.await.unwrap_or_else(|error| {
            Err(Error::Runner {
                projection: self.name.clone(),
                message: error.to_string(),
            })
        })
    }

    /// Stops the runner gracefully and waits for it: [`stop`](Self::stop)
    /// then [`join`](Self::join).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.stop();
        self.join().await
    }

    fn ended_before(&self, position: u64) -> Error {
        Error::Runner {
            projection: self.name.clone(),
            message: format!(
                "the runner ended ({:?}) before its checkpoint reached {position}",
                self.metrics.status()
            ),
        }
    }
}
