//! Live subscriptions: LISTEN/NOTIFY wakes them for appends made elsewhere,
//! and polling carries them while the notification connection is down.

mod common;

use std::time::{Duration, Instant};

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, RecordedEvent, StreamId};
use factum_postgres::PostgresEventStore;
use futures::StreamExt;

fn event() -> NewEvent {
    NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap())
}

/// A second store value over the same tables: its appends reach the first
/// store's subscribers only through PostgreSQL, as another process's would.
async fn other_process(store: &PostgresEventStore) -> PostgresEventStore {
    let schema = store.schema_name().trim_end_matches(".factum_").to_owned();
    PostgresEventStore::connect_with(&common::url(), common::options(&schema))
        .await
        .unwrap()
}

async fn next_within(live: &mut factum_core::EventStream<'static>, limit: Duration) -> Option<RecordedEvent> {
    match tokio::time::timeout(limit, live.next()).await {
        Ok(Some(Ok(event))) => Some(event),
        Ok(other) => panic!("the subscription ended or failed: {other:?}"),
        Err(_) => None,
    }
}

async fn listener_pid(raw: &tokio_postgres::Client, store: &PostgresEventStore) -> Option<i32> {
    let listen = format!("LISTEN \"factum:{}\"", store.schema_name());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = raw
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'factum-listener' \
                 AND query = $1",
                &[&listen],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            return Some(row.get(0));
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wake_subscribers_for_appends_made_elsewhere() {
    // Polling so slow that only a notification can deliver in time.
    let Some(store) =
        common::fresh_store_with(|options| options.poll_interval(Duration::from_secs(60))).await
    else {
        return;
    };
    let writer = other_process(&store).await;
    let mut live = store.subscribe_all(0);
    // Let the listener start before the append (it also wakes once on start).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(next_within(&mut live, Duration::from_millis(100)).await.is_none());
    let started = Instant::now();
    let appended = writer
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::NoStream,
            vec![event()],
        )
        .await
        .unwrap();
    let delivered = next_within(&mut live, Duration::from_secs(5))
        .await
        .expect("no notification woke the subscriber");
    assert_eq!(delivered.position, appended.positions[0]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wake_stream_subscribers_for_appends_made_elsewhere() {
    // Polling so slow that only a notification can deliver in time.
    let Some(store) =
        common::fresh_store_with(|options| options.poll_interval(Duration::from_secs(60))).await
    else {
        return;
    };
    let writer = other_process(&store).await;
    let followed = StreamId::new("Counter", "followed");
    let mut live = store.subscribe_stream(&followed, 0);
    for round in 1..=3 {
        // Caught up and waiting, so only a wake-up can deliver.
        assert!(next_within(&mut live, Duration::from_millis(200)).await.is_none());
        writer
            .append(
                &StreamId::new("Counter", format!("other-{round}")),
                ExpectedVersion::NoStream,
                vec![event()],
            )
            .await
            .unwrap();
        let appended = writer
            .append(&followed, ExpectedVersion::Any, vec![event()])
            .await
            .unwrap();
        let delivered = next_within(&mut live, Duration::from_secs(10))
            .await
            .expect("no notification woke the stream's subscriber");
        assert_eq!(
            (delivered.stream.clone(), delivered.version, delivered.position),
            (followed.clone(), round, appended.positions[0])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_carries_subscribers_while_the_notification_connection_is_down() {
    let Some(store) =
        common::fresh_store_with(|options| options.poll_interval(Duration::from_millis(200))).await
    else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let writer = other_process(&store).await;
    let mut live = store.subscribe_all(0);
    assert!(next_within(&mut live, Duration::from_millis(300)).await.is_none());
    let pid = listener_pid(&raw, &store)
        .await
        .expect("the subscription started no listener");
    raw.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();

    for round in 0..3 {
        let appended = writer
            .append(
                &StreamId::new("Counter", format!("{round}")),
                ExpectedVersion::NoStream,
                vec![event()],
            )
            .await
            .unwrap();
        let delivered = next_within(&mut live, Duration::from_secs(5))
            .await
            .expect("the subscription stalled without its notification connection");
        assert_eq!(delivered.position, appended.positions[0]);
    }
    // The listener comes back on its own.
    assert!(
        listener_pid(&raw, &store)
            .await
            .is_some_and(|new_pid| new_pid != pid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_the_same_store_wake_its_subscribers_at_once() {
    let Some(store) =
        common::fresh_store_with(|options| options.poll_interval(Duration::from_secs(60)).notify(false))
            .await
    else {
        return;
    };
    let mut live = store.subscribe_all(0);
    let mut positions = Vec::new();
    for n in 0..20 {
        let appended = store
            .append(
                &StreamId::new("Counter", format!("{n}")),
                ExpectedVersion::NoStream,
                vec![event()],
            )
            .await
            .unwrap();
        positions.push(appended.positions[0]);
    }
    for expected in positions {
        let delivered = next_within(&mut live, Duration::from_secs(5))
            .await
            .expect("not woken");
        assert_eq!(delivered.position, expected);
    }
}
