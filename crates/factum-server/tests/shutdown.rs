//! A graceful shutdown lets an append already in flight finish and answer.

mod common;

use std::time::Duration;

use factum_core::testing::{ChaosSchedule, ChaosStore, Fault, Operation};
use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId};
use factum_remote::RemoteOptions;
use factum_server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_flight_finishes_during_shutdown() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let server = common::start(Server::new(store.clone())).await;
    let remote = common::connect(&server, RemoteOptions::new().reconnect_attempts(0)).await;
    // The store takes half a second over this append: long enough for the
    // shutdown to begin while the call is in the server.
    store.inject(Operation::Append, Fault::Delay(Duration::from_millis(500)));
    let stream = StreamId::new("Tally", "1");
    let appending = tokio::spawn({
        let stream = stream.clone();
        async move {
            let event = NewEvent::new("added", Payload::parse("{}").expect("JSON"));
            remote
                .append(&stream, ExpectedVersion::NoStream, vec![event])
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.shutdown().await.expect("a clean shutdown");
    let appended = appending
        .await
        .expect("the append task")
        .expect("the in-flight append answered");
    assert_eq!(appended.stream_version, 1);
    assert_eq!(store.inner().stream_version(&stream).await.expect("a version"), 1);
}
