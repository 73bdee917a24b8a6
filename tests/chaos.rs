//! `ChaosStore` in use: saves with retries and a projection, under a seeded
//! schedule where about one call in ten fails, end with every event stored
//! once and counted once.

#![allow(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use factum::prelude::*;
use factum::testing::{ChaosSchedule, ChaosStore, Fault, Operation};
use factum::{
    Error, EventStore, HandlerError, InMemoryProjectionStore, InMemoryTransaction, ProjectionRunner,
    RecordedEvent, SnapshotPolicy, TransactionalProjection,
};
use futures::TryStreamExt;
use uuid::Uuid;

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

type Store = ChaosStore<InMemoryEventStore>;

/// About 10% of calls fail (conflict, lost answer or transient error), and
/// 5% are slowed down.
fn ten_percent_faults(seed: u64) -> ChaosSchedule {
    ChaosSchedule::seeded(seed)
        .conflicts(0.03)
        .lost_answers(0.03)
        .transient_errors(0.04)
        .delays(0.05, Duration::from_millis(2))
}

/// One command with the retry loop a user writes: reload on a conflict,
/// save the same pending events again on a store error.
async fn increment(app: &Application<Counter, Store>, id: CounterId) -> Result<(), Error> {
    loop {
        let mut counter = match app.load_or_create(id).await {
            Ok(counter) => counter,
            Err(Error::Store { .. }) => continue,
            Err(error) => return Err(error),
        };
        counter.add(1);
        loop {
            match app.save(&mut counter).await {
                Ok(_) => return Ok(()),
                Err(error) if error.is_conflict() => break,
                Err(Error::Store { .. }) => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Totals {
    per_counter: HashMap<String, i64>,
    seen: HashSet<Uuid>,
    counted_twice: Vec<Uuid>,
}

struct CountIncrements;

impl TransactionalProjection<InMemoryProjectionStore<Totals>> for CountIncrements {
    fn name(&self) -> &str {
        "increments"
    }

    async fn handle(
        &mut self,
        transaction: &mut InMemoryTransaction<Totals>,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let totals = transaction.read_model_mut();
        if !totals.seen.insert(event.event_id) {
            totals.counted_twice.push(event.event_id);
        }
        if &*event.event_type == "incremented" {
            *totals
                .per_counter
                .entry(event.stream.aggregate_id().to_owned())
                .or_default() += 1;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saves_and_a_projection_survive_ten_percent_faults() {
    const COUNTERS: usize = 4;
    const WRITERS: usize = 8;
    const COMMANDS_PER_WRITER: usize = 40;

    let store = ChaosStore::new(InMemoryEventStore::new(), ten_percent_faults(20261129));
    let app = Application::<Counter, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(7));
    let projections = InMemoryProjectionStore::new(Totals::default());
    let runner = ProjectionRunner::transactional(store.clone(), CountIncrements, projections.clone())
        .batch_size(16)
        .spawn();

    let ids: Vec<CounterId> = (0..COUNTERS).map(|_| CounterId::generate()).collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let app = app.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                for command in 0..COMMANDS_PER_WRITER {
                    // Writers share counters, so real conflicts mix with injected ones.
                    increment(&app, ids[(writer + command) % COUNTERS]).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .expect("writer task")
            .expect("every command succeeds after retries");
    }

    let inner = store.inner();
    let head = inner.head_position().await.unwrap();
    runner
        .wait_for_checkpoint(head)
        .await
        .expect("the projection catches up");
    runner.shutdown().await.expect("the projection stops cleanly");

    let injected = store.injected();
    assert!(
        injected.conflicts > 0 && injected.lost_answers > 0 && injected.transient_errors > 0,
        "the schedule must inject every kind of fault: {injected:?}"
    );

    let mut stored_ids = HashSet::new();
    let mut increments = 0;
    for id in &ids {
        let stream = StreamId::new("Counter", id.to_string());
        let events: Vec<RecordedEvent> = inner.read_stream(&stream, 1).try_collect().await.unwrap();
        for event in &events {
            assert!(
                stored_ids.insert(event.event_id),
                "event {} stored twice",
                event.event_id
            );
        }
        let counter: Counter = Application::new(inner.clone()).get(*id).await.unwrap();
        assert_eq!(
            counter.value as usize,
            events.len() - 1,
            "{stream}: one increment per event"
        );
        increments += counter.value as usize;
    }
    assert_eq!(
        increments,
        WRITERS * COMMANDS_PER_WRITER,
        "every command stored exactly once"
    );

    let totals = projections.read_model();
    assert!(
        totals.counted_twice.is_empty(),
        "counted twice: {:?}",
        totals.counted_twice
    );
    assert_eq!(
        totals.seen, stored_ids,
        "the projection counted every stored event"
    );
    for id in &ids {
        let stored: Counter = Application::new(inner.clone()).get(*id).await.unwrap();
        assert_eq!(
            totals.per_counter.get(&id.to_string()).copied().unwrap_or(0),
            stored.value
        );
    }
}

#[tokio::test]
async fn a_lost_answer_is_recovered_by_saving_again() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(5);

    store.inject(Operation::Append, Fault::LostAnswer);
    let lost = app.save(&mut counter).await.expect_err("the answer is lost");
    assert!(lost.to_string().contains("answer was lost"), "{lost}");
    assert_eq!(store.inner().len(), 2, "but the events were stored");

    let saved = app.save(&mut counter).await.expect("the retry is recognised");
    assert_eq!(
        saved.positions,
        vec![1, 2],
        "the retry returns the original positions"
    );
    assert_eq!(store.inner().len(), 2, "and writes nothing more");
    assert!(counter.pending_events().is_empty());
}

#[tokio::test]
async fn an_injected_conflict_writes_nothing_and_a_reload_succeeds() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    counter.add(1);
    app.save(&mut counter).await.unwrap();

    store.inject(Operation::Append, Fault::Conflict);
    counter.add(1);
    let conflict = app.save(&mut counter).await.expect_err("the injected conflict");
    assert!(conflict.is_conflict(), "{conflict}");
    assert_eq!(store.inner().len(), 2, "nothing written");
    assert_eq!(store.injected().conflicts, 1);

    let mut reloaded = app.get(id).await.unwrap();
    reloaded.add(1);
    app.save(&mut reloaded).await.unwrap();
    assert_eq!(app.get(id).await.unwrap().value, 2);
}

#[tokio::test]
async fn a_transient_read_error_fails_only_that_call() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    app.save(&mut counter).await.unwrap();

    store.inject(Operation::ReadStream, Fault::Transient);
    let failed = app.get(id).await.expect_err("the injected read error");
    assert!(
        matches!(failed, Error::Store { backend: "chaos", .. }),
        "{failed}"
    );
    assert_eq!(app.get(id).await.unwrap().id, id, "the next read succeeds");
}

#[tokio::test]
async fn a_lost_answer_of_an_atomic_save_is_recovered_for_every_aggregate() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let app = Application::<Counter, _>::new(store.clone());
    let mut first = app.load_or_create(CounterId::generate()).await.unwrap();
    let mut second = app.load_or_create(CounterId::generate()).await.unwrap();
    first.add(1);
    second.add(2);

    store.inject(Operation::Append, Fault::LostAnswer);
    app.save_all([&mut first, &mut second])
        .await
        .expect_err("the answer is lost");
    assert_eq!(store.inner().len(), 4, "but both aggregates' events were stored");

    let saved = app
        .save_all([&mut first, &mut second])
        .await
        .expect("the retry is recognised");
    let positions: Vec<Vec<u64>> = saved.into_iter().map(|result| result.positions).collect();
    assert_eq!(positions, vec![vec![1, 2], vec![3, 4]], "the original positions");
    assert_eq!(store.inner().len(), 4, "and nothing more is written");
}

#[tokio::test]
async fn an_injected_conflict_on_an_atomic_save_writes_nothing() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let app = Application::<Counter, _>::new(store.clone());
    let mut first = app.load_or_create(CounterId::generate()).await.unwrap();
    let mut second = app.load_or_create(CounterId::generate()).await.unwrap();

    store.inject(Operation::Append, Fault::Conflict);
    let conflict = app
        .save_all([&mut first, &mut second])
        .await
        .expect_err("the injected conflict");
    assert!(conflict.is_conflict(), "{conflict}");
    assert_eq!(store.inner().len(), 0, "nothing written");
    app.save_all([&mut first, &mut second])
        .await
        .expect("the next try succeeds");
    assert_eq!(store.inner().len(), 2);
}

#[tokio::test]
async fn a_tenant_view_shares_the_schedule_and_the_counts() {
    let store = ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none());
    let acme = store.for_tenant("acme").unwrap();
    assert_eq!(acme.tenant().map(Tenant::as_str), Some("acme"));
    assert!(acme.for_tenant("globex").is_err(), "a view cannot be widened");
    let app = Application::<Counter, _>::new(acme.clone());
    let mut first = app.load_or_create(CounterId::generate()).await.unwrap();
    let mut second = app.load_or_create(CounterId::generate()).await.unwrap();
    first.add(1);
    second.add(2);

    // Queued on the unscoped store, suffered by the view's next call.
    store.inject(Operation::Append, Fault::LostAnswer);
    app.save_all([&mut first, &mut second])
        .await
        .expect_err("the answer is lost");
    assert_eq!(
        store.injected().lost_answers,
        1,
        "the view counts into the same totals"
    );
    assert_eq!(acme.injected(), store.injected());
    let saved = app
        .save_all([&mut first, &mut second])
        .await
        .expect("the retry is recognised");
    assert_eq!(saved[1].positions, vec![3, 4], "the original positions");

    let stored = acme.inner().read_all(0, 10).await.unwrap();
    assert_eq!(stored.len(), 4);
    assert!(
        stored
            .iter()
            .all(|event| event.metadata.tenant.as_ref().map(Tenant::as_str) == Some("acme"))
    );
    assert_eq!(store.inner().len(), 4, "nothing but acme's four events is stored");
    assert_eq!(
        store.inner().stream_version(&saved_stream(&first)).await.unwrap(),
        0,
        "the unscoped store's default tenant has none of acme's streams"
    );
}

fn saved_stream(counter: &Counter) -> factum::StreamId {
    factum::StreamId::new("Counter", counter.id.to_string())
}
