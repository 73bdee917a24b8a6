//! Wake-ups of live subscriptions: `NOTIFY` after appends, `LISTEN` for
//! other processes' appends.
//!
//! Appends never send `NOTIFY` inside their own transaction: PostgreSQL
//! serialises the commits of all transactions that notify (one lock on the
//! database's notification queue), which would serialise writers. A
//! background task sends one `NOTIFY` per burst of appends instead, on its
//! own short transaction, off the append path, and at most one every
//! few milliseconds.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::store::Shared;

/// The least time between two `NOTIFY`s of one store: appends in between
/// share the next one. Keeps the cost of wake-ups flat under load (at most
/// 200 small transactions a second), for at most this much extra latency
/// for subscribers in other processes.
const NOTIFY_GAP: Duration = Duration::from_millis(5);
/// How often an idle listener checks that someone still subscribes.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// The longest wait between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Asks the notifier task to send one `NOTIFY` (coalesced with any
/// request still pending).
pub(crate) fn request(shared: &Arc<Shared>) {
    let mut slot = shared
        .notifier
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sender) = slot.as_ref() {
        match sender.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => return,
            Err(TrySendError::Closed(())) => {}
        }
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (sender, receiver) = mpsc::channel(1);
    let _ = sender.try_send(());
    *slot = Some(sender);
    runtime.spawn(send_notifications(Arc::downgrade(shared), receiver));
}

async fn send_notifications(shared: Weak<Shared>, mut requests: mpsc::Receiver<()>) {
    while requests.recv().await.is_some() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = notify_once(&shared).await {
            // Best effort by design: subscribers in other processes fall
            // back to polling, and the append itself has succeeded.
            tracing::warn!(address = %shared.address, %error, "factum-postgres could not send NOTIFY");
        }
        drop(shared);
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}

async fn notify_once(shared: &Shared) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = shared.pool.get().await?;
    // NOTIFY gives its transaction an id, so its commit would wait for a WAL
    // flush: an fsync competing with the appends' for nothing (a lost
    // notification costs at most one poll interval). Commit it asynchronously.
    let statement = client
        .prepare_cached("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
        .await?;
    client.execute(&statement, &[&shared.names.channel]).await?;
    Ok(())
}

/// Starts the `LISTEN` task unless it runs already (or the store has no
/// server to listen to, or no runtime is at hand).
pub(crate) fn ensure_listener(shared: &Arc<Shared>) {
    let Some(config) = shared.options.listen.clone() else {
        return;
    };
    if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut slot = shared
        .listener
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot.as_ref().is_some_and(|task| !task.is_finished()) {
        return;
    }
    *slot = Some(runtime.spawn(listen(Arc::downgrade(shared), config)));
}

/// Keeps a `LISTEN` connection open while anyone subscribes, reconnecting
/// with backoff when it drops (subscriptions poll meanwhile).
async fn listen(shared: Weak<Shared>, config: tokio_postgres::Config) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&shared, &config).await {
            Ok(Stop::NoSubscribers) => return,
            Ok(Stop::Dropped) => backoff = Duration::from_millis(100),
            Err(error) => {
                let Some(alive) = shared.upgrade() else {
                    return;
                };
                tracing::warn!(address = %alive.address, %error, ?backoff,
                    "factum-postgres notification connection failed; subscriptions poll until it is back");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if !wanted(&shared) {
            return;
        }
    }
}

enum Stop {
    NoSubscribers,
    Dropped,
}

fn wanted(shared: &Weak<Shared>) -> bool {
    shared
        .upgrade()
        .is_some_and(|shared| shared.head.receiver_count() > 0)
}

fn wake(shared: &Weak<Shared>) {
    if let Some(shared) = shared.upgrade() {
        shared.head.send_modify(|_| {});
    }
}

async fn listen_once(
    shared: &Weak<Shared>,
    config: &tokio_postgres::Config,
) -> Result<Stop, tokio_postgres::Error> {
    let channel = match shared.upgrade() {
        Some(alive) => alive.names.channel.clone(),
        None => return Ok(Stop::NoSubscribers),
    };
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notifications, mut received) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notifications.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN \"{channel}\"")).await?;
    // Appends may have committed while no one listened.
    wake(shared);
    loop {
        tokio::select! {
            notification = received.recv() => match notification {
                Some(()) => wake(shared),
                None => break,
            },
            () = tokio::time::sleep(IDLE_CHECK) => {
                if !wanted(shared) {
                    driver.abort();
                    return Ok(Stop::NoSubscribers);
                }
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(error)) => Err(error),
        _ => Ok(Stop::Dropped),
    }
}
