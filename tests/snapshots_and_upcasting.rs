//! Snapshots (loads start from the latest one) and upcasting (old payloads
//! lifted to the current schema while reading), with the run-time registry
//! and with upcasters declared in the code.

#![allow(missing_docs)]

use factum::prelude::*;
use factum::{ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counter {
    pub id: CounterId,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

fn stream_of(id: CounterId) -> StreamId {
    StreamId::new("Counter", id.to_string())
}

async fn saved_counter(app: &Application<Counter, InMemoryEventStore>, increments: usize) -> CounterId {
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    for _ in 0..increments {
        counter.add(1);
        app.save(&mut counter).await.unwrap();
    }
    id
}

#[tokio::test]
async fn snapshots_are_taken_at_the_interval() {
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(3));
    let id = saved_counter(&app, 7).await;
    let snapshot = store.load_snapshot(&stream_of(id)).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 6);
    assert_eq!(snapshot.state.to_value().unwrap()["value"], 5);
    assert_eq!(app.get(id).await.unwrap().value, 7);
}

#[tokio::test]
async fn loads_start_from_the_snapshot() {
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    let id = saved_counter(&app, 5).await;
    // A snapshot whose state the events could never produce shows it was used.
    store
        .save_snapshot(Snapshot {
            stream: stream_of(id),
            version: 4,
            schema_version: Counter::EVOLUTION.snapshot_version(),
            state: Payload::encode(&json!({ "id": id, "value": 1000 })).unwrap(),
            taken_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    let counter = app.get(id).await.unwrap();
    assert_eq!(
        counter.value, 1002,
        "state at version 4 from the snapshot, then versions 5 and 6"
    );
    assert_eq!(counter.version(), 6);

    // Going back before the snapshot replays from the start instead.
    assert_eq!(app.get_at(id, 3).await.unwrap().value, 2);
    // Without snapshots, the events alone decide.
    let plain = Application::<Counter, _>::new(store.clone());
    assert_eq!(plain.get(id).await.unwrap().value, 5);

    // A save continues from the restored version.
    let mut counter = counter;
    counter.add(1);
    app.save(&mut counter).await.unwrap();
    assert_eq!(plain.get(id).await.unwrap().value, 6);
}

#[tokio::test]
async fn a_snapshot_that_no_longer_deserializes_is_ignored() {
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(1000));
    let id = saved_counter(&app, 3).await;
    store
        .save_snapshot(Snapshot {
            stream: stream_of(id),
            version: 2,
            schema_version: Counter::EVOLUTION.snapshot_version(),
            state: Payload::encode(&json!({ "old_shape": true })).unwrap(),
            taken_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    assert_eq!(app.get(id).await.unwrap().value, 3);
}

fn renamed_field() -> Upcasters {
    // Schema 1 of `incremented` called the amount `by`.
    Upcasters::new().register("incremented", 1, |mut payload: Value| {
        let by = payload
            .as_object_mut()
            .and_then(|fields| fields.remove("by"))
            .ok_or("`by` is missing")?;
        payload["amount"] = by;
        Ok(payload)
    })
}

async fn old_history(store: &InMemoryEventStore, id: CounterId, increments: &[Value]) {
    let mut history = vec![NewEvent::new(
        "created",
        Payload::encode(&CounterCreated { id, value: 0 }).unwrap(),
    )];
    history.extend(
        increments
            .iter()
            .map(|payload| NewEvent::new("incremented", Payload::from(payload))),
    );
    store
        .append(&stream_of(id), ExpectedVersion::NoStream, history)
        .await
        .unwrap();
}

#[tokio::test]
async fn old_payloads_are_upcast_while_reading() {
    let store = InMemoryEventStore::new();
    let id = CounterId::generate();
    old_history(&store, id, &[json!({ "by": 2 }), json!({ "by": 3 })]).await;

    let without = Application::<Counter, _>::new(store.clone());
    assert!(matches!(
        without.get(id).await,
        Err(Error::Serialization { version: 2, .. })
    ));

    let app = Application::<Counter, _>::new(store.clone())
        .with_upcasters(renamed_field())
        .expect("the registry fits the counter");
    let mut counter = app.get(id).await.unwrap();
    assert_eq!(counter.value, 5);

    // New events are written at the current schema version, and not upcast again.
    counter.add(10);
    app.save(&mut counter).await.unwrap();
    let stored = store.read_all(0, 10).await.unwrap();
    let versions: Vec<u32> = stored.iter().map(|event| event.schema_version).collect();
    assert_eq!(versions, [1, 1, 1, 2]);
    assert_eq!(app.get(id).await.unwrap().value, 15);
    // Stored events are never rewritten.
    assert_eq!(stored[1].payload.to_value().unwrap(), json!({ "by": 2 }));
}

#[tokio::test]
async fn a_failing_upcaster_is_a_typed_error() {
    let store = InMemoryEventStore::new();
    let id = CounterId::generate();
    old_history(&store, id, &[json!({ "amount_was_never_by": 2 })]).await;
    let app = Application::<Counter, _>::new(store)
        .with_upcasters(renamed_field())
        .expect("the registry fits the counter");
    match app.get(id).await {
        Err(Error::Upcast {
            version,
            event_type,
            schema_version,
            reason,
            ..
        }) => {
            assert_eq!(
                (version, event_type.as_str(), schema_version),
                (2, "incremented", 1)
            );
            assert!(reason.contains("`by` is missing"), "{reason}");
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

/// The same counter, with its versions declared in the code.
pub mod declared {
    use factum::prelude::*;
    use serde_json::Value;

    #[aggregate(name = "Counter")]
    #[derive(Debug, Clone, Default)]
    pub struct Counter {
        pub id: super::CounterId,
        pub value: i64,
    }

    #[aggregate]
    impl Counter {
        #[event("added", version = 2, aliases = ["incremented"])]
        pub fn add(&mut self, amount: i64) {
            self.value += amount;
        }

        #[upcast("added", from = 1)]
        fn added_v1(mut payload: Value) -> Result<Value, UpcastError> {
            let by = payload
                .as_object_mut()
                .and_then(|fields| fields.remove("by"))
                .ok_or("`by` is missing")?;
            payload["amount"] = by;
            Ok(payload)
        }
    }
}

#[tokio::test]
async fn declared_upcasters_and_old_names_apply_to_projections_too() {
    let store = InMemoryEventStore::new();
    let id = CounterId::generate();
    old_history(&store, id, &[json!({ "by": 2 })]).await;
    let stored = store.read_all(0, 10).await.unwrap();
    assert_eq!(
        stored[1].decode::<declared::Counter>().unwrap(),
        Some(declared::CounterEvent::Added { amount: 2 }),
        "`incremented` at schema version 1 reads as `added` at version 2"
    );
    let app = Application::<declared::Counter, _>::new(store.clone());
    let mut counter = app.get(id).await.unwrap();
    assert_eq!(counter.value, 2);
    counter.add(1);
    app.save(&mut counter).await.unwrap();
    let last = store.read_all(2, 10).await.unwrap();
    assert_eq!(
        (&*last[0].event_type, last[0].schema_version),
        ("added", 2),
        "new events under the current name and version"
    );
}

#[test]
fn the_registry_is_checked_when_the_application_is_built() {
    let store = InMemoryEventStore::new();
    // The code declares `added` and its upcaster: the registry may not lift it too.
    match Application::<declared::Counter, _>::new(store.clone())
        .with_upcasters(Upcasters::new().register("added", 1, Ok))
    {
        Err(Error::Evolution {
            aggregate_type,
            event_type,
            schema_version,
            reason,
        }) => {
            assert_eq!(
                (aggregate_type, event_type.as_str(), schema_version),
                ("Counter", "added", 2)
            );
            assert!(reason.contains("keep the chain in one place"), "{reason}");
        }
        other => panic!("expected an evolution error, got {:?}", other.map(|_| ())),
    }
    // A gap in a chain of the registry names the missing version.
    match Application::<Counter, _>::new(store).with_upcasters(Upcasters::new().register(
        "incremented",
        2,
        Ok,
    )) {
        Err(Error::Evolution {
            event_type,
            schema_version,
            ..
        }) => assert_eq!((event_type.as_str(), schema_version), ("incremented", 1)),
        other => panic!("expected an evolution error, got {:?}", other.map(|_| ())),
    }
}
