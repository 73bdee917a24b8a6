//! Application and repository behaviour with a generated aggregate: loading,
//! saving, conflicts, retries, time travel and the test harness.

#![allow(missing_docs)]

use factum::prelude::*;
use factum::testing::AggregateTest;
use factum::{ApplyError, ExpectedVersion, NewEvent, Payload, StreamId};

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default, PartialEq)]
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

    #[event("reset")]
    pub fn reset(&mut self) -> Result<(), String> {
        if self.value == 0 {
            return Err("already at zero".into());
        }
        self.value = 0;
        Ok(())
    }

    pub fn add_checked(&mut self, amount: i64) -> Result<(), String> {
        if amount <= 0 {
            return Err("amount must be positive".into());
        }
        self.add(amount);
        Ok(())
    }
}

fn app() -> Application<Counter, InMemoryEventStore> {
    Application::new(InMemoryEventStore::new())
}

#[tokio::test]
async fn load_or_create_starts_with_created_pending() {
    let app = app();
    let id = CounterId::generate();
    let counter = app.load_or_create(id).await.unwrap();
    assert_eq!(counter.id, id);
    assert_eq!(counter.version(), 1);
    assert_eq!(
        counter.pending_events(),
        &[CounterEvent::Created(CounterCreated { id, value: 0 })]
    );
    assert_eq!(app.store().len(), 0, "nothing is stored before save");
}

#[tokio::test]
async fn save_appends_pending_events_and_clears_them() {
    let app = app();
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(1);
    counter.add(2);
    let saved = app.save(&mut counter).await.unwrap();
    assert_eq!(saved.stream_version, 3);
    assert!(counter.pending_events().is_empty());

    let stored: Vec<_> = app.store().read_all(0, 10).await.unwrap();
    let types: Vec<&str> = stored.iter().map(|event| &*event.event_type).collect();
    assert_eq!(types, ["created", "incremented", "incremented"]);
    assert_eq!(stored[0].stream, StreamId::new("Counter", id.to_string()));
    assert_eq!(
        stored[1].payload.to_value().unwrap(),
        serde_json::json!({ "amount": 1 })
    );

    // Saving again with nothing pending writes nothing.
    let again = app.save(&mut counter).await.unwrap();
    assert!(again.positions.is_empty());
    assert_eq!(app.store().len(), 3);

    // The loaded aggregate continues from where it was saved.
    counter.add(4);
    app.save(&mut counter).await.unwrap();
    assert_eq!(app.get(id).await.unwrap().value, 7);
}

#[tokio::test]
async fn concurrent_save_conflicts_and_writes_nothing() {
    let app = app();
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    app.save(&mut counter).await.unwrap();

    let mut first = app.get(id).await.unwrap();
    let mut second = app.get(id).await.unwrap();
    first.add(1);
    second.add(10);
    app.save(&mut first).await.unwrap();
    match app.save(&mut second).await {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream, StreamId::new("Counter", id.to_string()));
            assert_eq!(expected, ExpectedVersion::Exact(1));
            assert_eq!(actual, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(app.store().len(), 2);
    assert_eq!(
        second.pending_events().len(),
        1,
        "events stay pending after a conflict"
    );
    assert_eq!(app.get(id).await.unwrap().value, 1);
}

#[tokio::test]
async fn retrying_a_save_whose_outcome_was_lost_is_idempotent() {
    let app = app();
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(5);
    // A copy taken before saving stands for a save whose answer never arrived.
    let mut unacknowledged = counter.clone();
    let first = app.save(&mut counter).await.unwrap();
    let retried = app.save(&mut unacknowledged).await.unwrap();
    assert_eq!(retried, first);
    assert_eq!(app.store().len(), 2);
}

#[tokio::test]
async fn get_of_an_empty_stream_is_not_found() {
    let app = app();
    let id = CounterId::generate();
    match app.get(id).await {
        Err(Error::NotFound { stream }) => assert_eq!(stream.aggregate_id(), id.to_string()),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn get_at_travels_in_time() {
    let app = app();
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(1);
    counter.add(2);
    counter.add(3);
    app.save(&mut counter).await.unwrap();

    let values: Vec<i64> = futures::future::try_join_all((1..=4).map(|version| app.get_at(id, version)))
        .await
        .unwrap()
        .into_iter()
        .map(|counter| counter.value)
        .collect();
    assert_eq!(values, [0, 1, 3, 6]);
    assert_eq!(app.get_at(id, 2).await.unwrap().version(), 2);
    assert!(matches!(
        app.get_at(id, 9).await,
        Err(Error::VersionNotFound {
            requested: 9,
            actual: 4,
            ..
        })
    ));
    assert!(matches!(app.get_at(id, 0).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn load_or_else_works_without_default() {
    let app = app();
    let id = CounterId::generate();
    let counter = app.load_or_else(id, |id| Counter::create(id, 41)).await.unwrap();
    assert_eq!(counter.value, 41);
}

#[tokio::test]
async fn metadata_is_stored_with_every_event() {
    let app = app();
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(1);
    let metadata = Metadata::default().with("user", "ada");
    app.save_with(&mut counter, metadata.clone()).await.unwrap();
    let stored = app.store().read_all(0, 10).await.unwrap();
    // Read back with the tenant the events live in.
    let expected = metadata.with_tenant(Tenant::DEFAULT);
    assert!(stored.iter().all(|event| event.metadata == expected));
}

#[tokio::test]
async fn replay_errors_name_stream_version_and_event_type() {
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let stream = StreamId::new("Counter", id.to_string());
    let created = Payload::encode(&CounterCreated { id, value: 0 }).unwrap();
    let history = vec![
        NewEvent::new("created", created),
        // The reset body refuses to run at zero: the history is one the
        // aggregate cannot replay.
        NewEvent::new("reset", Payload::parse("{}").unwrap()),
    ];
    store
        .append(&stream, ExpectedVersion::NoStream, history)
        .await
        .unwrap();
    match app.get(id).await {
        Err(Error::Replay {
            stream: reported,
            version,
            event_type,
            source,
        }) => {
            assert_eq!(reported, stream);
            assert_eq!(version, 2);
            assert_eq!(event_type, "reset");
            // A `String` error is not a `std::error::Error`: its text is
            // kept, as an `ApplyError`.
            assert_eq!(source.to_string(), "already at zero");
            let apply = source.downcast_ref::<ApplyError>().expect("an ApplyError");
            assert_eq!(apply.message(), "already at zero");
        }
        other => panic!("expected a replay error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_history_that_does_not_start_with_created_is_a_replay_error() {
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let stream = StreamId::new("Counter", id.to_string());
    let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap());
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event])
        .await
        .unwrap();
    assert!(matches!(app.get(id).await, Err(Error::Replay { version: 1, .. })));
}

#[test]
fn harness_given_when_then() {
    let id = CounterId::generate();
    AggregateTest::<Counter>::given([
        CounterEvent::Created(CounterCreated { id, value: 0 }),
        CounterEvent::Incremented { amount: 2 },
    ])
    .when(|counter| counter.add_checked(3))
    .then_expect_events([CounterEvent::Incremented { amount: 3 }]);

    AggregateTest::<Counter>::given([CounterEvent::Created(CounterCreated { id, value: 0 })])
        .when(|counter| counter.add_checked(-1))
        .then_expect_error("amount must be positive".to_owned());

    AggregateTest::<Counter>::given([CounterEvent::Created(CounterCreated { id, value: 0 })])
        .when(Counter::reset)
        .then_expect_error_message("already at zero");

    let counter = AggregateTest::<Counter>::given_no_history()
        .when_creating(|| Counter::create(id, 7))
        .then_expect_events([CounterEvent::Created(CounterCreated { id, value: 7 })]);
    assert_eq!(counter.value, 7);
}

#[test]
#[should_panic(expected = "the command recorded other events")]
fn harness_reports_unexpected_events() {
    let id = CounterId::generate();
    AggregateTest::<Counter>::given([CounterEvent::Created(CounterCreated { id, value: 0 })])
        .when(|counter| counter.add_checked(3))
        .then_expect_events([CounterEvent::Incremented { amount: 4 }]);
}
