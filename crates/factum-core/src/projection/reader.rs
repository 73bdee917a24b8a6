//! The reader task: pages of the log to the head, then the live
//! subscription, into a bounded channel.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::RetryPolicy;
use super::driver::EventFilter;
use super::metrics::MetricsCell;
use crate::{Error, EventStore, RecordedEvent, telemetry};

/// Events read from the log in one go, already filtered.
#[derive(Debug)]
pub(super) struct Batch {
    /// The events the projection wants.
    pub(super) events: Vec<RecordedEvent>,
    /// The position of the last event read, wanted or not.
    pub(super) through: u64,
    /// How many events were read, wanted or not.
    pub(super) read: usize,
}

pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the log after `after` into `sender`: pages of `read_all` to the
/// head, then `subscribe_all` from the last position read.
#[allow(clippy::too_many_arguments)] // one task's whole set-up, passed once
pub(super) async fn read_log<E: EventStore>(
    projection: String,
    events: E,
    mut after: u64,
    filter: EventFilter,
    batch_size: usize,
    retry: RetryPolicy,
    sender: mpsc::Sender<Result<Batch, Error>>,
    metrics: Arc<MetricsCell>,
) {
    let mut failures = 0;
    let batch_of = |page: Vec<RecordedEvent>, through: u64| {
        let read = page.len();
        let events = page.into_iter().filter(|event| filter.admits(event)).collect();
        Batch {
            events,
            through,
            read,
        }
    };
    // Where the head is now, so the lag reported while catching up counts
    // what is still to read. Only the gauge needs it: a failure leaves the
    // lag to follow the positions read.
    match events.head_position().await {
        Ok(head) => metrics.note_newest(head),
        Err(error) => tracing::debug!(%projection, %error, "reading the head for the lag failed"),
    }
    loop {
        let span = telemetry::log_read_span(Some(&projection), after, batch_size);
        let read = events.read_all(after, batch_size).instrument(span.clone()).await;
        telemetry::read_done(&span, read.as_deref());
        match read {
            Ok(page) => {
                failures = 0;
                let full = page.len() >= batch_size;
                if let Some(through) = page.last().map(|event| event.position) {
                    after = through;
                    metrics.set_read_position(through);
                    if sender.send(Ok(batch_of(page, through))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            Err(error) => {
                failures += 1;
                if !read_failed(error, failures, &retry, &sender).await {
                    return;
                }
            }
        }
    }
    metrics.set_live();
    loop {
        let mut live = events.subscribe_all(after).ready_chunks(batch_size);
        while let Some(chunk) = live.next().await {
            let mut page = Vec::with_capacity(chunk.len());
            let mut error = None;
            for item in chunk {
                match item {
                    // The subscription starts after `after`; this only
                    // guards against a store that repeats itself.
                    Ok(event)
                        if event.position
                            > page.last().map_or(after, |last: &RecordedEvent| last.position) =>
                    {
                        page.push(event);
                    }
                    Ok(_) => {}
                    Err(failed) => error = Some(failed),
                }
            }
            if let Some(through) = page.last().map(|event| event.position) {
                after = through;
                failures = 0;
                metrics.set_read_position(through);
                if sender.send(Ok(batch_of(page, through))).await.is_err() {
                    return;
                }
            }
            if let Some(error) = error {
                failures += 1;
                if !read_failed(error, failures, &retry, &sender).await {
                    return;
                }
                break;
            }
        }
        // A subscription ends only after an error; resubscribe after it.
        tokio::time::sleep(retry.delay_after(1)).await;
    }
}

/// Waits before the next read, or hands the error on when the attempts are
/// spent; false when the reader must end.
async fn read_failed(
    error: Error,
    failures: u32,
    retry: &RetryPolicy,
    sender: &mpsc::Sender<Result<Batch, Error>>,
) -> bool {
    if failures >= retry.attempts() {
        // The handler loop ends on it; if it is gone already, so are we.
        let _ = sender.send(Err(error)).await;
        return false;
    }
    tracing::warn!(%error, failures, "reading the log failed; retrying");
    tokio::time::sleep(retry.backoff(failures)).await;
    true
}
