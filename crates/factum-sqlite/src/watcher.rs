//! One watcher per store for appends that other processes make to the same
//! file: while anyone subscribes, it reads the head position every poll
//! interval and, when it has moved past what this store has seen, wakes
//! every subscription through the store's head channel. Subscriptions
//! themselves only wait for that channel, so N subscriptions cost one
//! cheap query per interval, not N reads of the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use factum_core::EventStore;
use tokio::task::JoinHandle;

use crate::SqliteEventStore;
use crate::store::Inner;

/// The watcher task of one store, started by the first subscription.
#[derive(Default)]
pub(crate) struct Watcher {
    task: Mutex<Option<JoinHandle<()>>>,
    /// Head reads made by the watcher, for tests and `Debug`.
    checks: AtomicU64,
}

impl Watcher {
    /// Starts the watcher of `inner` unless it runs already; false when it
    /// cannot run (no tokio runtime at hand), and the caller must poll.
    ///
    /// Call it after subscribing to the head channel: the watcher stops
    /// only when, under the same lock, it finds no subscriber.
    pub(crate) fn ensure(inner: &Arc<Inner>, interval: Duration) -> bool {
        let mut task = inner.watcher.lock();
        // A finished task was not stopped by us: its runtime shut down.
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        *task = Some(runtime.spawn(watch(Arc::downgrade(inner), interval)));
        true
    }

    /// Stops the watcher, for good when the store is closed.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.lock().take() {
            task.abort();
        }
    }

    /// How many times the watcher has read the head.
    pub(crate) fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the head every `interval` while the store lives, is open and has
/// subscribers.
async fn watch(inner: Weak<Inner>, interval: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        let store = SqliteEventStore::from_inner(inner);
        if store.is_closed() || !still_wanted(&store) {
            return;
        }
        store.inner.watcher.checks.fetch_add(1, Ordering::Relaxed);
        match store.head_position().await {
            Ok(head) => {
                if failing {
                    tracing::info!(path = ?store.path(), "factum-sqlite watcher reads the head again");
                    failing = false;
                }
                store.inner.head.send_if_modified(|seen| {
                    let moved = head > *seen;
                    *seen = (*seen).max(head);
                    moved
                });
            }
            Err(_) if store.is_closed() => return,
            Err(error) => {
                if !failing {
                    tracing::warn!(path = ?store.path(), %error,
                        "factum-sqlite watcher cannot read the head; subscriptions read for themselves");
                    failing = true;
                }
                // Each subscription reads the store and meets the failure
                // itself (and ends with it), or finds it passed.
                store.inner.head.send_modify(|_| {});
            }
        }
    }
}

/// False, and the watcher forgotten, when no one subscribes any more: the
/// next subscription starts a new one.
fn still_wanted(store: &SqliteEventStore) -> bool {
    let mut task = store.inner.watcher.lock();
    if store.inner.head.receiver_count() > 0 {
        return true;
    }
    task.take();
    false
}

#[cfg(test)]
impl Watcher {
    /// The running task's abort handle, to see it end.
    pub(crate) fn running(&self) -> Option<tokio::task::AbortHandle> {
        self.lock().as_ref().map(JoinHandle::abort_handle)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use factum_core::{ExpectedVersion, NewEvent, Payload, StreamId};
    use futures::StreamExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::SqliteOptions;

    const SUBSCRIPTIONS: usize = 4;
    const INTERVAL: Duration = Duration::from_millis(10);

    fn event() -> NewEvent {
        NewEvent::new("added", Payload::parse(r#"{"amount":1}"#).unwrap())
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..5_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the condition never held");
    }

    /// Waits for the watcher's next `checks` reads.
    async fn watcher_checks(store: &SqliteEventStore, checks: u64) {
        let target = store.inner.watcher.checks() + checks;
        until(|| store.inner.watcher.checks() >= target).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_watcher_wakes_every_subscription_and_only_it_reads_while_idle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let watched = SqliteEventStore::open_with(&path, SqliteOptions::new().poll_interval(INTERVAL))
            .await
            .unwrap();
        // Another process, as far as `watched` can tell: a separate open
        // with its own writer, whose commits reach `watched` only through
        // the file.
        let elsewhere = SqliteEventStore::open(&path).await.unwrap();
        let stream = StreamId::new("Counter", "1");

        let (sender, mut delivered) = mpsc::unbounded_channel();
        for number in 0..2 * SUBSCRIPTIONS {
            let mut subscription = if number < SUBSCRIPTIONS {
                watched.subscribe_all(0)
            } else {
                watched.subscribe_stream(&stream, 0)
            };
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Some(event) = subscription.next().await {
                    let position = event.expect("the subscription reads").position;
                    if sender.send((number, position)).is_err() {
                        return;
                    }
                }
            });
        }
        assert!(watched.inner.watcher.running().is_some(), "no watcher runs");

        for round in 1..=3 {
            elsewhere
                .append(&stream, ExpectedVersion::Any, vec![event()])
                .await
                .unwrap();
            let mut woken = BTreeSet::new();
            while woken.len() < 2 * SUBSCRIPTIONS {
                let (number, position) = tokio::time::timeout(Duration::from_secs(10), delivered.recv())
                    .await
                    .expect("a subscription was not woken")
                    .unwrap();
                assert_eq!(position, round, "subscription {number}");
                woken.insert(number);
            }
        }

        // Idle: every read is the watcher's. The subscriptions' last reads
        // after the events may still run in the first window.
        let mut windows = 0;
        loop {
            let reads = watched.inner.reads.load(Ordering::SeqCst);
            let checks = watched.inner.watcher.checks();
            watcher_checks(&watched, 10).await;
            let read = watched.inner.reads.load(Ordering::SeqCst) - reads;
            let checked = watched.inner.watcher.checks() - checks;
            if read == checked {
                break;
            }
            windows += 1;
            assert!(
                windows < 50,
                "subscriptions keep reading while idle: {read} reads for {checked} watcher checks"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_ends_when_the_store_is_closed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let options = SqliteOptions::new().poll_interval(INTERVAL);

        let store = SqliteEventStore::open_with(&path, options.clone()).await.unwrap();
        let mut live = store.subscribe_all(0);
        let watcher = store.inner.watcher.running().expect("a watcher runs");
        watcher_checks(&store, 1).await;
        store.close().await.unwrap();
        until(|| watcher.is_finished()).await;
        let ended = live.next().await.expect("a live subscription yields the closing");
        assert!(ended.is_err(), "{ended:?}");
        assert!(
            live.next().await.is_none(),
            "the subscription ends after its error"
        );

        let store = SqliteEventStore::open_with(&path, options).await.unwrap();
        let live = store.subscribe_stream(&StreamId::new("Counter", "1"), 0);
        let watcher = store.inner.watcher.running().expect("a watcher runs");
        let inner = Arc::downgrade(&store.inner);
        watcher_checks(&store, 1).await;
        drop(live);
        drop(store);
        until(|| watcher.is_finished()).await;
        assert!(inner.upgrade().is_none(), "the watcher kept the store alive");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_stops_without_subscribers_and_the_next_one_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let watched = SqliteEventStore::open_with(&path, SqliteOptions::new().poll_interval(INTERVAL))
            .await
            .unwrap();
        let elsewhere = SqliteEventStore::open(&path).await.unwrap();
        let first = watched.subscribe_all(0);
        let watcher = watched.inner.watcher.running().expect("a watcher runs");
        drop(first);
        until(|| watcher.is_finished()).await;
        assert!(watched.inner.watcher.running().is_none());

        let mut second = watched.subscribe_all(0);
        assert!(watched.inner.watcher.running().is_some(), "not restarted");
        woken_by_an_append_elsewhere(&mut second, &elsewhere).await;
    }

    /// Checks that `live` is caught up and waiting, then that an append
    /// through `elsewhere` (another handle on the file) reaches it.
    async fn woken_by_an_append_elsewhere(
        live: &mut factum_core::EventStream<'static>,
        elsewhere: &SqliteEventStore,
    ) {
        let early = tokio::time::timeout(Duration::from_millis(100), live.next()).await;
        assert!(early.is_err(), "{early:?}");
        elsewhere
            .append(
                &StreamId::new("Counter", "1"),
                ExpectedVersion::Any,
                vec![event()],
            )
            .await
            .unwrap();
        let delivered = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("no watcher woke the subscription")
            .unwrap()
            .unwrap();
        assert_eq!(delivered.position, 1);
    }

    #[test]
    fn a_watcher_whose_runtime_ended_is_started_again() {
        let runtime = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let first = runtime();
        let (watched, elsewhere) = first.block_on(async {
            let options = SqliteOptions::new().poll_interval(INTERVAL);
            let watched = SqliteEventStore::open_with(&path, options).await.unwrap();
            let elsewhere = SqliteEventStore::open(&path).await.unwrap();
            drop(watched.subscribe_all(0));
            (watched, elsewhere)
        });
        assert!(watched.inner.watcher.running().is_some());
        drop(first);

        runtime().block_on(async {
            let mut live = watched.subscribe_all(0);
            woken_by_an_append_elsewhere(&mut live, &elsewhere).await;
        });
    }
}
