//! The store's lifecycle: connect, ensure the schema, work, close. After
//! `close` every call fails at once with a typed error; nothing hangs.

mod common;

use std::time::Duration;

use factum_core::{
    Error, EventStore, ExpectedVersion, NewEvent, Payload, ProjectionStore, SnapshotStore, StreamId,
};
use factum_postgres::{PostgresError, PostgresProjectionStore};
use futures::StreamExt;

fn event() -> NewEvent {
    NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap())
}

#[track_caller]
fn assert_closed<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::Store { source, .. }) => match source.downcast_ref::<PostgresError>() {
            Some(PostgresError::Closed { address }) => {
                assert_eq!(*address, common::address(), "{what}");
                assert!(source.to_string().contains("closed"), "{what}: {source}");
            }
            other => panic!("{what}: expected PostgresError::Closed, got {other:?}"),
        },
        other => panic!("{what}: expected a store error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_every_call_fails_at_once_and_closing_again_is_fine() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let stream = StreamId::new("Counter", "closing");
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event()])
        .await
        .unwrap();
    let mut live = store.subscribe_all(0);
    assert!(matches!(live.next().await, Some(Ok(_))));
    let projections = PostgresProjectionStore::new(&store);
    let clone = store.clone();
    let in_flight = projections.begin("totals").await.unwrap();
    in_flight.execute("SELECT 1", &[]).await.unwrap();

    store.close().await.unwrap();
    assert!(clone.is_closed(), "clones share the lifecycle");

    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let outcome = live.next().await;
        (outcome, live.next().await)
    })
    .await
    .expect("a live subscription ends promptly after close");
    match ended {
        (Some(closed), None) => assert_closed(closed, "the live subscription"),
        other => panic!("expected one error then the end, got {other:?}"),
    }
    let calls = async {
        assert_closed(
            clone.append(&stream, ExpectedVersion::Any, vec![event()]).await,
            "append",
        );
        assert_closed(clone.read_all(0, 10).await, "read_all");
        assert_closed(clone.stream_version(&stream).await, "stream_version");
        assert_closed(clone.head_position().await, "head_position");
        assert_closed(clone.ensure_schema().await, "ensure_schema");
        assert_closed(clone.load_snapshot(&stream).await, "load_snapshot");
        let first = clone.read_stream(&stream, 1).next().await;
        assert_closed(first.expect("a read yields its error"), "read_stream");
        let page = clone.read_stream_pages(&stream, 1).next().await;
        assert_closed(page.expect("a read yields its error"), "read_stream_pages");
        let subscribed = clone.subscribe_all(0).next().await;
        assert_closed(
            subscribed.expect("a subscription yields its error"),
            "subscribe_all",
        );
        let followed = clone.subscribe_stream(&stream, 0).next().await;
        assert_closed(
            followed.expect("a subscription yields its error"),
            "subscribe_stream",
        );
        assert_closed(projections.query("SELECT 1", &[]).await, "projection query");
        assert_closed(projections.begin("totals").await, "a new transaction");
        assert_closed(
            in_flight.execute("SELECT 1", &[]).await,
            "a transaction begun before",
        );
        assert_closed(projections.commit(in_flight).await, "its commit");
    };
    tokio::time::timeout(Duration::from_secs(5), calls)
        .await
        .expect("no call hangs on a closed store");
    store.close().await.unwrap();
    clone.close().await.unwrap();
}
