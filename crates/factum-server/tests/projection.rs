//! A projection fed through a `RemoteEventStore` handles every event once,
//! in order, even when the server restarts under it. (The projection-store
//! suite itself does not apply: projection state stays with the client's
//! own projection store; the server serves events and snapshots.)

mod common;

use std::sync::{Arc, Mutex};

use factum_core::{
    EventStore, ExpectedVersion, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore,
    InMemoryEventStore, NewEvent, Payload, Projection, ProjectionRunner, RecordedEvent, StreamId,
};
use factum_remote::RemoteOptions;
use factum_server::Server;

struct Positions(Arc<Mutex<Vec<u64>>>);

impl Projection for Positions {
    fn name(&self) -> &str {
        "positions"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.0
            .lock()
            .map_err(|_| HandlerError::from("a poisoned lock"))?
            .push(event.position);
        Ok(())
    }
}

async fn append(store: &InMemoryEventStore, count: usize) {
    let stream = StreamId::new("Tally", "1");
    let events = (0..count)
        .map(|amount| NewEvent::new("added", Payload::from(serde_json::json!({ "amount": amount }))))
        .collect();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .expect("an append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_over_the_wire_survives_a_server_restart() {
    let store = InMemoryEventStore::new();
    append(&store, 300).await;
    let first = common::start(Server::new(store.clone())).await;
    let address = first.local_addr();
    let remote = common::connect(&first, RemoteOptions::new()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let checkpoints = InMemoryCheckpointStore::new();
    let runner = ProjectionRunner::new(
        remote,
        Positions(Arc::clone(&seen)),
        checkpoints.clone(),
        InMemoryDeadLetterStore::new(),
    )
    .spawn();
    runner.wait_for_checkpoint(300).await.expect("the catch-up");

    first.shutdown().await.expect("the first server stops");
    append(&store, 200).await;
    let second = Server::new(store.clone())
        .start(address)
        .await
        .expect("the same port again");
    append(&store, 100).await;
    runner
        .wait_for_checkpoint(600)
        .await
        .expect("the projection resumes on the new server");
    runner.shutdown().await.expect("the runner stops");

    let seen = seen.lock().expect("the lock").clone();
    assert_eq!(seen, (1..=600).collect::<Vec<u64>>(), "each event once, in order");
    assert_eq!(checkpoints.get("positions"), 600);
    second.shutdown().await.expect("a clean shutdown");
}
