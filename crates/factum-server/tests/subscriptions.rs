//! Subscriptions over the wire: a client that stops reading does not grow
//! the server's memory, a restarted server is resumed without a gap or a
//! duplicate, and the number of open subscriptions is limited.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use factum_core::{
    AppendBatch, AppendResult, Error, EventStore, EventStream, ExpectedVersion, InMemoryEventStore, NewEvent,
    Payload, RecordedEvent, Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
};
use factum_remote::RemoteOptions;
use factum_remote::proto::SubscribeAllRequest;
use factum_remote::proto::event_store_client::EventStoreClient;
use factum_server::{Limits, Server};
use futures::StreamExt;
use tonic::Code;

/// The in-memory store, counting the events its subscriptions hand out:
/// how much of the log the server has pulled for its subscribers.
#[derive(Clone)]
struct Counting {
    store: InMemoryEventStore,
    pulled: Arc<AtomicU64>,
}

impl EventStore for Counting {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        self.store.append(stream, expected, events).await
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        self.store.append_many(batches).await
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        self.store.read_stream(stream, from_version)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        self.store.read_all(after, limit).await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        let pulled = Arc::clone(&self.pulled);
        self.store
            .subscribe_all(after)
            .inspect(move |_| {
                pulled.fetch_add(1, Ordering::Relaxed);
            })
            .boxed()
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        self.store.subscribe_stream(stream, from_version)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        self.store.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, Error> {
        self.store.head_position().await
    }
}

impl SnapshotStore for Counting {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        self.store.load_snapshot(stream).await
    }
}

impl Tenancy for Counting {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            store: self.store.for_tenant(tenant)?,
            pulled: Arc::clone(&self.pulled),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.store.tenant()
    }
}

fn kilobyte_event(index: usize) -> NewEvent {
    let payload = serde_json::json!({ "index": index, "filler": "x".repeat(1000) });
    NewEvent::new("added", Payload::from(payload))
}

async fn append_events<S: EventStore>(store: &S, stream: &StreamId, from: usize, count: usize) {
    for chunk_start in (from..from + count).step_by(500) {
        let events = (chunk_start..(chunk_start + 500).min(from + count))
            .map(kilobyte_event)
            .collect();
        store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("appending to the store");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_grow_the_server() {
    const TOTAL: usize = 40_000;
    let pulled = Arc::new(AtomicU64::new(0));
    let store = Counting {
        store: InMemoryEventStore::new(),
        pulled: Arc::clone(&pulled),
    };
    let server = common::start(Server::new(store.clone())).await;
    let remote = common::connect(&server, RemoteOptions::new()).await;
    let stream = StreamId::new("Tally", "1");

    let mut subscription = remote.subscribe_all(0);
    append_events(&store, &stream, 0, 10).await;
    let first = subscription
        .next()
        .await
        .expect("a first event")
        .expect("no error");
    assert_eq!(first.position, 1);

    // 40 MB of events while the client reads nothing: what the server pulls
    // from the store is bounded by HTTP/2 flow control (a few MB), not by the log.
    append_events(&store, &stream, 10, TOTAL - 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_stalled = pulled.load(Ordering::Relaxed);
    eprintln!("events pulled for a stalled subscriber: {while_stalled} of {TOTAL}");
    assert!(
        while_stalled < (TOTAL / 2) as u64,
        "the server pulled {while_stalled} of {TOTAL} events for a subscriber that reads nothing"
    );

    // Nothing was lost while it stalled: every event comes, once, in order.
    let mut expected_position = 2;
    while expected_position <= TOTAL as u64 {
        let event = subscription
            .next()
            .await
            .expect("the subscription goes on")
            .expect("no error");
        assert_eq!(event.position, expected_position);
        expected_position += 1;
    }
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_on_a_restarted_server_without_gap_or_duplicate() {
    let store = InMemoryEventStore::new();
    let stream = StreamId::new("Tally", "1");
    let first = common::start(Server::new(store.clone())).await;
    let address = first.local_addr();
    let remote = common::connect(&first, RemoteOptions::new()).await;
    let mut all = remote.subscribe_all(0);
    let mut one = remote.subscribe_stream(&stream, 1);
    append_events(&store, &stream, 0, 100).await;
    for position in 1..=50 {
        assert_eq!(
            all.next().await.expect("an event").expect("no error").position,
            position
        );
        assert_eq!(
            one.next().await.expect("an event").expect("no error").version,
            position
        );
    }

    first
        .shutdown()
        .await
        .expect("the subscriptions end and the server stops");
    append_events(&store, &stream, 100, 100).await;
    let second = Server::new(store.clone())
        .start(address)
        .await
        .expect("the same port again");

    for position in 51..=200 {
        assert_eq!(
            all.next().await.expect("an event").expect("no error").position,
            position
        );
        assert_eq!(
            one.next().await.expect("an event").expect("no error").version,
            position
        );
    }
    append_events(&store, &stream, 200, 1).await;
    assert_eq!(
        all.next().await.expect("an event").expect("no error").position,
        201
    );
    second.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_subscriptions_are_limited() {
    let server =
        common::start(Server::new(InMemoryEventStore::new()).limits(Limits::new().max_subscriptions(2)))
            .await;
    let mut client = EventStoreClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("the server answers");
    let first = client
        .subscribe_all(SubscribeAllRequest { after: 0 })
        .await
        .expect("a first subscription");
    let _second = client
        .subscribe_all(SubscribeAllRequest { after: 0 })
        .await
        .expect("a second subscription");
    let refused = client
        .subscribe_all(SubscribeAllRequest { after: 0 })
        .await
        .map(|_| ());
    assert_eq!(
        refused.map_err(|status| status.code()),
        Err(Code::ResourceExhausted)
    );

    // Closing one frees its slot (once the server sees the stream reset).
    drop(first);
    let mut attempts = 0;
    loop {
        match client.subscribe_all(SubscribeAllRequest { after: 0 }).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("a slot should be free again: {status}"),
        }
    }
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_subscriptions_with_unavailable() {
    let server = common::start(Server::new(InMemoryEventStore::new())).await;
    let mut client = EventStoreClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("the server answers");
    let mut pages = client
        .subscribe_all(SubscribeAllRequest { after: 0 })
        .await
        .expect("a subscription")
        .into_inner();
    let stopping = tokio::spawn(server.shutdown());
    let ended = pages.message().await;
    assert_eq!(
        ended.map(|_| ()).map_err(|status| status.code()),
        Err(Code::Unavailable)
    );
    stopping
        .await
        .expect("the shutdown task")
        .expect("a clean shutdown");
}
