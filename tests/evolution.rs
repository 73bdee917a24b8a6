//! Schema evolution on every backend (in memory, a SQLite file, a
//! PostgreSQL schema): the README's "Evolving your aggregates" guide, each
//! step reading data written by the old code. Old payloads are appended raw
//! through each store, at the schema versions and names old code wrote.

#![allow(missing_docs)]

use factum::prelude::*;
use factum::{ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotStore};
use futures::TryStreamExt;
use serde_json::{Value, json};

/// Takes `field` out of an object payload and puts it back as `renamed`.
fn rename_field(mut payload: Value, field: &str, renamed: &str) -> Result<Value, UpcastError> {
    let value = payload
        .as_object_mut()
        .and_then(|fields| fields.remove(field))
        .ok_or_else(|| format!("`{field}` is missing"))?;
    payload[renamed] = value;
    Ok(payload)
}

/// Renaming a field of an event: `incremented` was `{"by": n}` at schema
/// version 1 and is `{"amount": n}` at version 2.
pub mod renamed_field {
    use super::*;

    #[aggregate(name = "Meter")]
    #[derive(Debug, Clone, Default)]
    pub struct Meter {
        pub id: String,
        pub value: i64,
    }

    #[aggregate]
    impl Meter {
        #[event("incremented", version = 2)]
        pub fn add(&mut self, amount: i64) {
            self.value += amount;
        }

        #[upcast("incremented", from = 1)]
        fn incremented_v1(payload: Value) -> Result<Value, UpcastError> {
            rename_field(payload, "by", "amount")
        }
    }
}

/// Splitting an event: `details_changed { email, phone }` became
/// `email_changed` and `phone_changed`; old streams still replay it.
pub mod split_event {
    use super::*;

    #[aggregate(name = "Contact")]
    #[derive(Debug, Clone, Default)]
    pub struct Contact {
        pub id: String,
        pub email: String,
        pub phone: String,
    }

    #[aggregate]
    impl Contact {
        #[event("email_changed")]
        pub fn change_email(&mut self, email: String) {
            self.email = email;
        }

        #[event("phone_changed")]
        pub fn change_phone(&mut self, phone: String) {
            self.phone = phone;
        }

        // Recorded by the old code only; commands now record the two above.
        #[event("details_changed")]
        #[allow(dead_code)]
        fn change_details(&mut self, email: String, phone: String) {
            self.email = email;
            self.phone = phone;
        }
    }
}

/// Renaming an aggregate: the struct `Counter` became `Tally`, and keeps
/// its stored name.
pub mod renamed_aggregate {
    pub mod old {
        use factum::prelude::*;

        #[aggregate]
        #[derive(Debug, Clone, Default)]
        pub struct Counter {
            pub id: String,
            pub value: i64,
        }

        #[aggregate]
        impl Counter {
            #[event("incremented")]
            pub fn add(&mut self, amount: i64) {
                self.value += amount;
            }
        }
    }

    pub mod new {
        use factum::prelude::*;

        #[aggregate(name = "Counter")]
        #[derive(Debug, Clone, Default)]
        pub struct Tally {
            pub id: String,
            pub value: i64,
        }

        #[aggregate]
        impl Tally {
            #[event("incremented")]
            pub fn add(&mut self, amount: i64) {
                self.value += amount;
            }
        }
    }
}

/// Retiring an event: `viewed` no longer exists in the code.
pub mod retired_event {
    use super::*;

    #[aggregate(name = "Ticket")]
    #[derive(Debug, Clone, Default)]
    pub struct Ticket {
        pub id: String,
        pub title: String,
    }

    #[aggregate(retired = ["viewed"])]
    impl Ticket {
        #[event("renamed")]
        pub fn rename(&mut self, title: String) {
            self.title = title;
        }
    }
}

/// Changing the snapshot shape: the field `value` became `count`, so the
/// shape is version 2, and `created` (which holds every field) too.
pub mod reshaped {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[aggregate(name = "Gauge", snapshot_version = 2)]
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Gauge {
        pub id: String,
        pub count: i64,
    }

    #[aggregate]
    impl Gauge {
        #[event("raised")]
        pub fn raise(&mut self, by: i64) {
            self.count += by;
        }

        #[upcast("created", from = 1)]
        fn created_v1(payload: Value) -> Result<Value, UpcastError> {
            rename_field(payload, "value", "count")
        }

        #[upcast(snapshot, from = 1)]
        fn snapshot_v1(state: Value) -> Result<Value, UpcastError> {
            rename_field(state, "value", "count")
        }
    }
}

fn old(event_type: &str, schema_version: u32, payload: Value) -> NewEvent {
    NewEvent::new(event_type, Payload::from(payload)).with_schema_version(schema_version)
}

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7())
}

async fn write_old<S: EventStore>(store: &S, stream: &StreamId, events: Vec<NewEvent>) {
    store
        .append(stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap_or_else(|error| panic!("writing the old history of {stream} failed: {error}"));
}

async fn schema_versions<S: EventStore>(store: &S, stream: &StreamId) -> Vec<u32> {
    let events: Vec<_> = store.read_stream(stream, 1).try_collect().await.unwrap();
    events.iter().map(|event| event.schema_version).collect()
}

async fn rename_a_field<S: EventStore + Clone>(store: S) {
    use renamed_field::Meter;
    let id = unique("meter");
    let stream = StreamId::new("Meter", id.clone());
    write_old(
        &store,
        &stream,
        vec![
            old("created", 1, json!({ "id": id, "value": 0 })),
            old("incremented", 1, json!({ "by": 2 })),
            old("incremented", 2, json!({ "amount": 3 })),
        ],
    )
    .await;
    let app = Application::<Meter, _>::new(store.clone());
    let mut meter = app.get(id.clone()).await.unwrap();
    assert_eq!((meter.value, meter.version()), (5, 3));
    meter.add(4);
    app.save(&mut meter).await.unwrap();
    assert_eq!(schema_versions(&store, &stream).await, [1, 1, 2, 2]);
    assert_eq!(app.get(id).await.unwrap().value, 9);

    // Bad input: a payload the upcaster refuses, and a version from the future.
    let broken = unique("meter-broken");
    let broken_stream = StreamId::new("Meter", broken.clone());
    write_old(
        &store,
        &broken_stream,
        vec![
            old("created", 1, json!({ "id": broken, "value": 0 })),
            old("incremented", 1, json!({ "bye": 2 })),
        ],
    )
    .await;
    match app.get(broken).await {
        Err(Error::Upcast {
            stream,
            version,
            event_type,
            schema_version,
            current_version,
            reason,
        }) => {
            assert_eq!(stream, broken_stream);
            assert_eq!(
                (version, event_type.as_str(), schema_version, current_version),
                (2, "incremented", 1, 2)
            );
            assert!(reason.contains("`by` is missing"), "{reason}");
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
    let future = unique("meter-future");
    write_old(
        &store,
        &StreamId::new("Meter", future.clone()),
        vec![
            old("created", 1, json!({ "id": future, "value": 0 })),
            old("incremented", 3, json!({ "amount": 1, "unit": "kWh" })),
        ],
    )
    .await;
    match app.get(future).await {
        Err(Error::SchemaTooNew {
            version,
            event_type,
            schema_version,
            current_version,
            ..
        }) => assert_eq!(
            (version, event_type.as_str(), schema_version, current_version),
            (2, "incremented", 3, 2)
        ),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn split_an_event<S: EventStore + Clone>(store: S) {
    use split_event::{Contact, ContactEvent};
    let id = unique("contact");
    write_old(
        &store,
        &StreamId::new("Contact", id.clone()),
        vec![
            old("created", 1, json!({ "id": id, "email": "", "phone": "" })),
            old(
                "details_changed",
                1,
                json!({ "email": "ann@example.com", "phone": "555-0100" }),
            ),
        ],
    )
    .await;
    let app = Application::<Contact, _>::new(store);
    let mut contact = app.get(id.clone()).await.unwrap();
    assert_eq!(
        (contact.email.as_str(), contact.phone.as_str()),
        ("ann@example.com", "555-0100")
    );
    contact.change_phone("555-0199".into());
    contact.change_email("ann@example.org".into());
    assert_eq!(
        contact.pending_events(),
        [
            ContactEvent::PhoneChanged {
                phone: "555-0199".into()
            },
            ContactEvent::EmailChanged {
                email: "ann@example.org".into()
            },
        ],
        "new code records the two new events"
    );
    app.save(&mut contact).await.unwrap();
    let reloaded = app.get(id).await.unwrap();
    assert_eq!(
        (
            reloaded.email.as_str(),
            reloaded.phone.as_str(),
            reloaded.version()
        ),
        ("ann@example.org", "555-0199", 4)
    );
}

async fn rename_an_aggregate<S: EventStore + Clone>(store: S) {
    use renamed_aggregate::{new::Tally, old::Counter};
    let id = unique("counter");
    let before = Application::<Counter, _>::new(store.clone());
    let mut counter = before.load_or_create(id.clone()).await.unwrap();
    counter.add(2);
    before.save(&mut counter).await.unwrap();

    assert_eq!(<Tally as Aggregate>::TYPE, "Counter");
    let after = Application::<Tally, _>::new(store);
    let mut tally = after.load_or_create(id.clone()).await.unwrap();
    assert_eq!(
        (tally.value, tally.version()),
        (2, 2),
        "the old stream, not a new aggregate"
    );
    tally.add(3);
    after.save(&mut tally).await.unwrap();
    assert_eq!(before.get(id).await.unwrap().value, 5, "one stream for both");
}

async fn retire_an_event<S: EventStore + Clone>(store: S) {
    use retired_event::Ticket;
    let id = unique("ticket");
    write_old(
        &store,
        &StreamId::new("Ticket", id.clone()),
        vec![
            old("created", 1, json!({ "id": id, "title": "a" })),
            old("viewed", 1, json!({ "by": "ann" })),
            old("renamed", 1, json!({ "title": "b" })),
            old("viewed", 1, json!({})),
        ],
    )
    .await;
    let app = Application::<Ticket, _>::new(store);
    let mut ticket = app.get(id.clone()).await.unwrap();
    assert_eq!((ticket.title.as_str(), ticket.version()), ("b", 4));
    assert_eq!(app.retired_skipped(), 2, "every skipped event is counted");
    ticket.rename("c".into());
    assert_eq!(app.save(&mut ticket).await.unwrap().stream_version, 5);
    assert_eq!(app.get(id).await.unwrap().title, "c");
    assert_eq!(app.retired_skipped(), 4);
}

async fn change_the_snapshot_shape<S: EventStore + SnapshotStore + Clone>(store: S) {
    use reshaped::Gauge;
    let app = Application::<Gauge, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(100));
    let old_history = |id: &str| {
        vec![
            old("created", 1, json!({ "id": id, "value": 10 })),
            old("raised", 1, json!({ "by": 1 })),
            old("raised", 1, json!({ "by": 2 })),
        ]
    };
    let old_snapshot = |stream: &StreamId, schema_version: u32| Snapshot {
        stream: stream.clone(),
        version: 2,
        schema_version,
        // A state the events do not explain shows whether it was used.
        state: Payload::from(json!({ "id": stream.aggregate_id(), "value": 500 })),
        taken_at: time::OffsetDateTime::now_utc(),
    };

    // A snapshot of shape 1 is lifted by the snapshot upcaster.
    let id = unique("gauge");
    let stream = StreamId::new("Gauge", id.clone());
    write_old(&store, &stream, old_history(&id)).await;
    store.save_snapshot(old_snapshot(&stream, 1)).await.unwrap();
    let gauge = app.get(id.clone()).await.unwrap();
    assert_eq!(
        (gauge.count, gauge.version()),
        (502, 3),
        "snapshot lifted, then version 3"
    );

    // One of a shape no upcaster leads from is rebuilt from the events, and
    // a fresh snapshot replaces it.
    let id = unique("gauge-stale");
    let stream = StreamId::new("Gauge", id.clone());
    write_old(&store, &stream, old_history(&id)).await;
    store.save_snapshot(old_snapshot(&stream, 7)).await.unwrap();
    let mut gauge = app.get(id.clone()).await.unwrap();
    assert_eq!((gauge.count, gauge.version()), (13, 3), "the events' state");
    let fresh = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((fresh.version, fresh.schema_version), (3, 2));
    assert_eq!(fresh.state.to_value().unwrap(), json!({ "id": id, "count": 13 }));

    gauge.raise(1);
    app.save(&mut gauge).await.unwrap();
    let created = Gauge::create(unique("gauge-new"), 1);
    let mut created = created;
    app.save(&mut created).await.unwrap();
    let new_stream = StreamId::new("Gauge", created.id.clone());
    assert_eq!(
        schema_versions(&store, &new_stream).await,
        [2],
        "`created` is written at the version its upcasters reach"
    );
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(factum::InMemoryEventStore::new()).await;
                }
            )*
        }

        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = factum::SqliteEventStore::open(dir.path().join("events.db"))
                        .await
                        .unwrap();
                    super::$scenario(store.clone()).await;
                    store.close().await.unwrap();
                }
            )*
        }

        mod postgres_schema {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(store) = super::postgres().await else {
                        return;
                    };
                    super::$scenario(store).await;
                }
            )*
        }
    };
}

on_every_backend!(
    rename_a_field,
    split_an_event,
    rename_an_aggregate,
    retire_an_event,
    change_the_snapshot_shape,
);

/// A store in a schema of its own (named like the backend's tests' schemas,
/// so their clean-up drops it once this process is gone); `None` (skipped)
/// when the server is unreachable, a failure under `CI=true`.
async fn postgres() -> Option<factum::PostgresEventStore> {
    let url = std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let random = uuid::Uuid::now_v7().simple().to_string();
    let schema = format!("ft_{}_ev_{}", std::process::id(), &random[random.len() - 10..]);
    let options = factum::PostgresOptions::new().schema(schema).pool_size(2);
    let store = match factum::PostgresEventStore::connect_with(&url, options).await {
        Ok(store) => store,
        Err(error) => return factum::testing::service_unavailable("PostgreSQL", error),
    };
    if let Err(error) = store.ensure_schema().await {
        return factum::testing::service_unavailable("PostgreSQL", error);
    }
    Some(store)
}
