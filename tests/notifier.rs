//! `Application::with_notifier`: told after each successful save, with the
//! events as stored; a failing notifier fails the call but not the save.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use factum::prelude::*;
use factum::{BroadcastNotifier, Notifier, NotifyError, Received, UnitOfWork};
use uuid::Uuid;

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default)]
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

factum::id!(LedgerId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub id: LedgerId,
    pub lines: u32,
}

#[aggregate]
impl Ledger {
    #[event("line_added")]
    pub fn add_line(&mut self) {
        self.lines += 1;
    }
}

/// Keeps what it is told; fails when asked to.
#[derive(Clone, Default)]
struct Recorder {
    told: Arc<Mutex<Vec<Vec<RecordedEvent>>>>,
    fail: bool,
}

impl Notifier for Recorder {
    async fn notify(&self, events: &[RecordedEvent]) -> Result<(), NotifyError> {
        if self.fail {
            return Err("the bus is down".into());
        }
        self.told.lock().unwrap().push(events.to_vec());
        Ok(())
    }
}

impl Recorder {
    fn calls(&self) -> Vec<Vec<(String, u64, u64, String)>> {
        self.told
            .lock()
            .unwrap()
            .iter()
            .map(|call| {
                call.iter()
                    .map(|event| {
                        (
                            event.stream.to_string(),
                            event.version,
                            event.position,
                            event.event_type.to_string(),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

#[tokio::test]
async fn a_save_tells_the_notifier_the_events_as_stored() {
    let recorder = Recorder::default();
    let store = InMemoryEventStore::new();
    let app = Application::<Counter, _>::new(store.clone()).with_notifier(recorder.clone());
    let mut counter = app.load_or_create(CounterId::generate()).await.unwrap();
    counter.add(2);
    let correlation = Uuid::now_v7();
    app.save_with(&mut counter, Metadata::default().with_correlation_id(correlation))
        .await
        .unwrap();

    let stream = format!("Counter-{}", counter.id);
    assert_eq!(
        recorder.calls(),
        vec![vec![
            (stream.clone(), 1, 1, "created".to_owned()),
            (stream, 2, 2, "incremented".to_owned()),
        ]]
    );
    let told = recorder.told.lock().unwrap()[0].clone();
    let stored: Vec<RecordedEvent> = store.read_all(0, 10).await.unwrap();
    assert_eq!(told, stored, "ids, payloads, metadata and times as stored");
    assert_eq!(told[0].metadata.correlation_id, Some(correlation));
}

#[tokio::test]
async fn on_a_tenant_view_the_notifier_is_told_the_tenant_as_stored() {
    let store = InMemoryEventStore::new();
    let acme = store.for_tenant("acme").unwrap();
    let recorder = Recorder::default();
    let counters = Application::<Counter, _>::new(acme.clone()).with_notifier(recorder.clone());
    let ledgers = Application::<Ledger, _>::new(acme.clone()).with_notifier(recorder.clone());
    let mut first = counters.load_or_create(CounterId::generate()).await.unwrap();
    counters.save(&mut first).await.unwrap();
    let mut second = counters.load_or_create(CounterId::generate()).await.unwrap();
    first.add(1);
    counters.save_all([&mut first, &mut second]).await.unwrap();
    let mut ledger = ledgers.load_or_create(LedgerId::generate()).await.unwrap();
    first.add(2);
    let mut work = UnitOfWork::new();
    work.add(&counters, &mut first).unwrap();
    work.add(&ledgers, &mut ledger).unwrap();
    work.commit().await.unwrap();

    let told: Vec<RecordedEvent> = recorder.told.lock().unwrap().concat();
    let mut stored = acme.read_all(0, 100).await.unwrap();
    let mut told_sorted = told.clone();
    told_sorted.sort_by_key(|event| event.position);
    stored.sort_by_key(|event| event.position);
    assert_eq!(told_sorted, stored, "every saved event, as acme's log holds it");
    let acme_tenant = Tenant::new("acme").unwrap();
    assert!(
        told.iter()
            .all(|event| event.metadata.tenant.as_ref() == Some(&acme_tenant)),
        "notified events name acme"
    );

    let unscoped = Recorder::default();
    let default = Application::<Counter, _>::new(store.clone()).with_notifier(unscoped.clone());
    let mut counter = default.load_or_create(CounterId::generate()).await.unwrap();
    default.save(&mut counter).await.unwrap();
    let told = unscoped.told.lock().unwrap()[0].clone();
    assert_eq!(told[0].metadata.tenant, Some(Tenant::DEFAULT));
}

#[tokio::test]
async fn nothing_is_told_when_a_save_fails_or_has_nothing_to_save() {
    let recorder = Recorder::default();
    let app = Application::<Counter, _>::new(InMemoryEventStore::new()).with_notifier(recorder.clone());
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await.unwrap();
    let mut rival = app.load_or_create(id).await.unwrap();
    app.save(&mut counter).await.unwrap();
    rival.add(1);
    assert!(app.save(&mut rival).await.unwrap_err().is_conflict());
    app.save(&mut counter).await.unwrap();
    assert_eq!(recorder.calls().len(), 1, "only the first save stored something");
}

#[tokio::test]
async fn a_failing_notifier_fails_the_call_but_the_events_stay_saved() {
    let store = InMemoryEventStore::new();
    let failing = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let app = Application::<Counter, _>::new(store.clone()).with_notifier(failing);
    let mut counter = app.load_or_create(CounterId::generate()).await.unwrap();
    counter.add(1);
    let error = app.save(&mut counter).await.unwrap_err();
    assert!(matches!(error, Error::Notify { version: 2, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "events of stream Counter-{} up to version 2 are saved, but notifying failed: the bus is down",
            counter.id
        )
    );
    assert_eq!(store.len(), 2, "the events are stored");
    assert!(counter.pending_events().is_empty(), "and the aggregate knows it");
    assert_eq!(counter.version(), 2);
}

#[tokio::test]
async fn save_all_tells_each_stored_aggregate() {
    let recorder = Recorder::default();
    let app = Application::<Counter, _>::new(InMemoryEventStore::new()).with_notifier(recorder.clone());
    let mut first = app.load_or_create(CounterId::generate()).await.unwrap();
    let mut idle = app.load_or_create(CounterId::generate()).await.unwrap();
    app.save(&mut idle).await.unwrap();
    let mut second = app.load_or_create(CounterId::generate()).await.unwrap();
    first.add(1);
    second.add(2);
    recorder.told.lock().unwrap().clear();

    app.save_all([&mut first, &mut idle, &mut second]).await.unwrap();
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "one call per stored aggregate: {calls:?}");
    assert_eq!(calls[0][0].0, format!("Counter-{}", first.id));
    assert_eq!(calls[1][0].0, format!("Counter-{}", second.id));
    assert_eq!(calls[1][1].2, 5, "positions as stored");
}

#[tokio::test]
async fn a_unit_of_work_tells_each_application_its_own_aggregates() {
    let store = InMemoryEventStore::new();
    let counters_told = Recorder::default();
    let counters = Application::<Counter, _>::new(store.clone()).with_notifier(counters_told.clone());
    let ledgers = Application::<Ledger, _>::new(store.clone());
    let mut counter = counters.load_or_create(CounterId::generate()).await.unwrap();
    let mut ledger = ledgers.load_or_create(LedgerId::generate()).await.unwrap();
    counter.add(3);
    ledger.add_line();

    let mut work = UnitOfWork::new();
    work.add(&counters, &mut counter).unwrap();
    work.add(&ledgers, &mut ledger).unwrap();
    work.commit().await.unwrap();
    let calls = counters_told.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].iter().all(|(stream, ..)| stream.starts_with("Counter-")));
}

#[tokio::test]
async fn a_failed_notification_in_a_unit_of_work_still_updates_every_aggregate() {
    let store = InMemoryEventStore::new();
    let failing = Recorder {
        fail: true,
        ..Recorder::default()
    };
    let counters = Application::<Counter, _>::new(store.clone()).with_notifier(failing);
    let ledgers = Application::<Ledger, _>::new(store.clone());
    let mut counter = counters.load_or_create(CounterId::generate()).await.unwrap();
    let mut ledger = ledgers.load_or_create(LedgerId::generate()).await.unwrap();

    let mut work = UnitOfWork::new();
    work.add(&counters, &mut counter).unwrap();
    work.add(&ledgers, &mut ledger).unwrap();
    let error = work.commit().await.unwrap_err();
    assert!(matches!(error, Error::Notify { .. }), "{error}");
    assert_eq!(store.len(), 2);
    assert!(counter.pending_events().is_empty() && ledger.pending_events().is_empty());
}

#[tokio::test]
async fn a_broadcast_notifier_feeds_every_receiver() {
    let notifier = BroadcastNotifier::new(64);
    let mut receiver = notifier.subscribe();
    let app = Application::<Counter, _>::new(InMemoryEventStore::new()).with_notifier(notifier.clone());
    let mut counter = app.load_or_create(CounterId::generate()).await.unwrap();
    counter.add(1);
    app.save(&mut counter).await.unwrap();
    for version in 1..=2 {
        match receiver.recv().await {
            Some(Received::Event(event)) => assert_eq!(event.version, version),
            other => panic!("expected version {version}, got {other:?}"),
        }
    }
    assert_eq!(notifier.lagged(), 0);
}
