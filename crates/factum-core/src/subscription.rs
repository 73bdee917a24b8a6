//! Catch-up-then-live subscriptions built from reads and a wake-up signal,
//! written once for every backend: the global log from a position, and one
//! stream from a version.

mod generator;
mod one_stream;

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::{EventStore, EventStream, RecordedEvent};

/// How a catch-up-then-live subscription reads the global log.
#[derive(Clone, Debug)]
pub struct SubscriptionOptions {
    /// Events read per `read_all` call while catching up.
    pub batch_size: usize,
    /// How often to look for new events when no wake-up arrives; `None`
    /// waits for wake-ups only. Backends whose wake-ups can be missed (a
    /// dropped notification connection, another process writing) set it.
    pub poll_interval: Option<Duration>,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            poll_interval: None,
        }
    }
}

/// Catch-up-then-live subscriptions built from reads and a wake-up signal:
/// the shape every backend's `subscribe_all` and `subscribe_stream` reuse.
///
/// [`stream`](Self::stream) reads pages of the global log after the last
/// delivered position until a page comes back empty, then waits until the
/// store signals a new head (or the poll interval passes) and reads again.
/// Because every page starts strictly after the last delivered position,
/// the hand-over from catch-up to live has neither gap nor duplicate.
/// [`stream_of`](Self::stream_of) does the same for one stream, by version.
#[derive(Debug)]
pub struct PollingSubscription;

struct State<S> {
    store: S,
    after: u64,
    buffer: VecDeque<RecordedEvent>,
    waiter: Waiter,
    batch_size: usize,
    failed: bool,
}

impl PollingSubscription {
    /// Subscribes to `store` after position `after`, woken by `wake` (the
    /// store's head position, sent after each commit).
    pub fn stream<S>(
        store: S,
        after: u64,
        wake: Option<watch::Receiver<u64>>,
        options: SubscriptionOptions,
    ) -> EventStream<'static>
    where
        S: EventStore + Clone,
    {
        let state = State {
            store,
            after,
            buffer: VecDeque::new(),
            waiter: Waiter::new(wake, options.poll_interval),
            batch_size: options.batch_size.max(1),
            failed: false,
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                if state.failed {
                    return None;
                }
                if let Some(event) = state.buffer.pop_front() {
                    state.after = event.position;
                    return Some((Ok(event), state));
                }
                state.waiter.mark_seen();
                let span = crate::telemetry::log_read_span(None, state.after, state.batch_size);
                let read = state
                    .store
                    .read_all(state.after, state.batch_size)
                    .instrument(span.clone())
                    .await;
                crate::telemetry::read_done(&span, read.as_deref());
                match read {
                    Ok(batch) if !batch.is_empty() => state.buffer.extend(batch),
                    Ok(_) => state.waiter.wait().await,
                    Err(error) => {
                        state.failed = true;
                        return Some((Err(error), state));
                    }
                }
            }
        })
        .boxed()
    }
}

/// Waits for the store's wake-up signal or the poll interval, whichever
/// comes first.
struct Waiter {
    wake: Option<watch::Receiver<u64>>,
    poll_interval: Option<Duration>,
}

impl Waiter {
    fn new(wake: Option<watch::Receiver<u64>>, poll_interval: Option<Duration>) -> Self {
        Self { wake, poll_interval }
    }

    /// Marks the signal seen; call it before reading, so a commit that
    /// lands between the read and the wait still wakes the next wait.
    fn mark_seen(&mut self) {
        if let Some(wake) = self.wake.as_mut() {
            wake.borrow_and_update();
        }
    }

    async fn wait(&mut self) {
        match (self.wake.as_mut(), self.poll_interval) {
            (Some(wake), Some(interval)) => {
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { self.wake = None },
                    () = tokio::time::sleep(interval) => {}
                }
            }
            (Some(wake), None) => {
                if wake.changed().await.is_err() {
                    // The store is gone; fall back to polling rather than spin.
                    self.wake = None;
                    self.poll_interval = Some(Duration::from_millis(100));
                }
            }
            (None, Some(interval)) => tokio::time::sleep(interval).await,
            (None, None) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
