//! The projection runner on the in-memory stores: catch-up and live,
//! checkpoints, back-pressure, retries and dead letters, rebuilds, leases,
//! exactly-once under kills, and metrics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use factum_core::testing::{Tally, TallyEvent};
use factum_core::{
    DeadLetterStore, Error, EventStore, ExpectedVersion, HandlerError, InMemoryCheckpointStore,
    InMemoryDeadLetterStore, InMemoryEventStore, InMemoryLease, InMemoryProjectionStore, InMemoryTransaction,
    NewEvent, Payload, PoisonPolicy, Projection, ProjectionRunner, ProjectionStore, RecordedEvent,
    RetryPolicy, RunnerStatus, StreamId, TransactionalProjection,
};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(20);

fn added(amount: i64) -> NewEvent {
    NewEvent::new("added", Payload::from(json!({ "amount": amount })))
}

/// Appends `count` events numbered from `first`, one append each, over
/// three streams; returns the last position.
async fn append_numbered(store: &InMemoryEventStore, first: i64, count: i64) -> Result<u64, Error> {
    let mut last = 0;
    for amount in first..first + count {
        let stream = StreamId::new("Tally", format!("t-{}", amount % 3));
        let result = store
            .append(&stream, ExpectedVersion::Any, vec![added(amount)])
            .await?;
        last = result.positions[0];
    }
    Ok(last)
}

async fn append_batch(store: &InMemoryEventStore, count: i64) -> Result<u64, Error> {
    let events = (1..=count).map(added).collect();
    let result = store
        .append(&StreamId::new("Tally", "bulk"), ExpectedVersion::Any, events)
        .await?;
    Ok(result.positions.last().copied().unwrap_or(0))
}

fn amount(event: &RecordedEvent) -> i64 {
    match event.decode::<Tally>() {
        Ok(Some(TallyEvent::Added { amount })) => amount,
        _ => -1,
    }
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(4))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {WAIT:?}"),
    }
}

/// What a test projection saw, shared with the test.
#[derive(Clone, Default)]
struct Seen {
    positions: Arc<Mutex<Vec<u64>>>,
    resets: Arc<AtomicUsize>,
}

impl Seen {
    fn positions(&self) -> Vec<u64> {
        self.positions.lock().map(|seen| seen.clone()).unwrap_or_default()
    }
}

type FailWhen = Arc<dyn Fn(&RecordedEvent, u32) -> bool + Send + Sync>;

/// A plain projection that records positions; fails when `fail` says so
/// (given the event and how many times it failed before); waits for a
/// permit of `gate` before each event when there is one.
struct Recorder {
    name: &'static str,
    seen: Seen,
    fail: Option<FailWhen>,
    failures: HashMap<u64, u32>,
    gate: Option<Arc<Semaphore>>,
    aggregate_types: Option<&'static [&'static str]>,
}

impl Recorder {
    fn new(name: &'static str, seen: &Seen) -> Self {
        Self {
            name,
            seen: seen.clone(),
            fail: None,
            failures: HashMap::new(),
            gate: None,
            aggregate_types: None,
        }
    }

    fn failing(mut self, fail: impl Fn(&RecordedEvent, u32) -> bool + Send + Sync + 'static) -> Self {
        self.fail = Some(Arc::new(fail));
        self
    }

    fn gated(mut self, gate: &Arc<Semaphore>) -> Self {
        self.gate = Some(Arc::clone(gate));
        self
    }
}

impl Projection for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn aggregate_types(&self) -> Option<&[&str]> {
        self.aggregate_types
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        let failures = self.failures.entry(event.position).or_default();
        if self.fail.as_ref().is_some_and(|fail| fail(event, *failures)) {
            *failures += 1;
            return Err(format!("cannot handle amount {}", amount(event)).into());
        }
        self.seen
            .positions
            .lock()
            .map_err(|_| "poisoned")?
            .push(event.position);
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), HandlerError> {
        self.seen.positions.lock().map_err(|_| "poisoned")?.clear();
        self.seen.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn plain_runner(
    events: &InMemoryEventStore,
    projection: Recorder,
    checkpoints: &InMemoryCheckpointStore,
    letters: &InMemoryDeadLetterStore,
) -> ProjectionRunner<
    InMemoryEventStore,
    factum_core::Plain<Recorder, InMemoryCheckpointStore, InMemoryDeadLetterStore>,
> {
    ProjectionRunner::new(events.clone(), projection, checkpoints.clone(), letters.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_goes_live_without_gap_or_duplicate_while_writes_continue() -> TestResult {
    let events = InMemoryEventStore::new();
    append_batch(&events, 1500).await?;
    let seen = Seen::default();
    let checkpoints = InMemoryCheckpointStore::new();
    let handle = plain_runner(
        &events,
        Recorder::new("all", &seen),
        &checkpoints,
        &InMemoryDeadLetterStore::new(),
    )
    .batch_size(64)
    .checkpoint_every(100)
    .spawn();
    let writer = tokio::spawn({
        let events = events.clone();
        async move {
            let mut last = 0;
            for round in 0..30 {
                last = append_numbered(&events, round * 50, 50).await?;
                tokio::task::yield_now().await;
            }
            Ok::<u64, Error>(last)
        }
    });
    let last = writer.await??;
    assert_eq!(last, 3000);
    within("catching up with 3000 events", handle.wait_for_checkpoint(last)).await?;
    assert_eq!(handle.status(), RunnerStatus::Live);
    handle.shutdown().await?;
    assert_eq!(seen.positions(), (1..=3000).collect::<Vec<u64>>());
    assert_eq!(checkpoints.get("all"), 3000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_from_its_checkpoint() -> TestResult {
    let events = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let letters = InMemoryDeadLetterStore::new();
    append_batch(&events, 100).await?;
    let first = Seen::default();
    let handle = plain_runner(&events, Recorder::new("resume", &first), &checkpoints, &letters)
        .batch_size(30)
        .spawn();
    within("the first run", handle.wait_for_checkpoint(100)).await?;
    handle.shutdown().await?;
    assert_eq!(checkpoints.get("resume"), 100);

    let last = append_numbered(&events, 0, 50).await?;
    let second = Seen::default();
    let handle = plain_runner(&events, Recorder::new("resume", &second), &checkpoints, &letters).spawn();
    within("the second run", handle.wait_for_checkpoint(last)).await?;
    handle.shutdown().await?;
    assert_eq!(first.positions(), (1..=100).collect::<Vec<u64>>());
    assert_eq!(
        second.positions(),
        (101..=150).collect::<Vec<u64>>(),
        "resumed after 100, once each"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_projection_holds_the_reader_back() -> TestResult {
    const BATCH: usize = 10;
    const CAPACITY: usize = 2;
    let events = InMemoryEventStore::new();
    append_batch(&events, 5000).await?;
    let gate = Arc::new(Semaphore::new(0));
    let seen = Seen::default();
    let handle = plain_runner(
        &events,
        Recorder::new("slow", &seen).gated(&gate),
        &InMemoryCheckpointStore::new(),
        &InMemoryDeadLetterStore::new(),
    )
    .batch_size(BATCH)
    .channel_capacity(CAPACITY)
    .spawn();
    within("the reader to start", async {
        while handle.metrics().await.map_or(0, |metrics| metrics.read_position) < BATCH as u64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // Time for an unbounded reader to run far ahead.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stalled = handle.metrics().await?;
    // One batch in the handler, CAPACITY in the channel, one in the reader's hands.
    let bound = ((CAPACITY + 2) * BATCH) as u64;
    assert!(
        stalled.read_position <= bound,
        "the reader ran ahead to {} with the handler stuck on its first event (bound {bound})",
        stalled.read_position
    );
    assert!(
        stalled.read_position >= BATCH as u64,
        "the reader did not start: {stalled:?}"
    );
    assert_eq!(stalled.handled, 0);
    assert_eq!(stalled.lag, 5000);

    gate.add_permits(5000);
    within("draining", handle.wait_for_checkpoint(5000)).await?;
    handle.shutdown().await?;
    assert_eq!(seen.positions().len(), 5000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_letters_and_goes_on() -> TestResult {
    let events = InMemoryEventStore::new();
    let last = append_numbered(&events, 0, 30).await?;
    let checkpoints = InMemoryCheckpointStore::new();
    let letters = InMemoryDeadLetterStore::new();
    let seen = Seen::default();
    // 13 always fails; 7 fails twice, then works.
    let projection = Recorder::new("poison", &seen).failing(|event, failures| match amount(event) {
        13 => true,
        7 => failures < 2,
        _ => false,
    });
    let handle = plain_runner(&events, projection, &checkpoints, &letters)
        .batch_size(8)
        .retry(fast_retry(3))
        .spawn();
    within(
        "handling around the poisoned event",
        handle.wait_for_checkpoint(last),
    )
    .await?;
    let metrics = handle.metrics().await?;
    handle.shutdown().await?;

    let dead = letters.list("poison").await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(amount(&dead[0].event), 13);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "cannot handle amount 13");
    let expected: Vec<u64> = (1..=30)
        .filter(|&position| position != dead[0].position())
        .collect();
    assert_eq!(
        seen.positions(),
        expected,
        "7 handled after its retries; everything but 13 once"
    );
    assert_eq!(
        (metrics.retries, metrics.dead_lettered, metrics.handled),
        (4, 1, 29)
    );
    assert_eq!(checkpoints.get("poison"), 30);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_policy_stops_before_the_poisoned_event() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 20).await?;
    let checkpoints = InMemoryCheckpointStore::new();
    let letters = InMemoryDeadLetterStore::new();
    let seen = Seen::default();
    let projection = Recorder::new("strict", &seen).failing(|event, _| amount(event) == 13);
    let handle = plain_runner(&events, projection, &checkpoints, &letters)
        .batch_size(5)
        .retry(fast_retry(2))
        .on_poison(PoisonPolicy::Stop)
        .spawn();
    let result = within("the runner to stop", handle.join()).await;
    match result {
        Err(Error::Projection {
            projection,
            position,
            message,
            ..
        }) => {
            assert_eq!((projection.as_str(), position), ("strict", 14));
            assert_eq!(message, "cannot handle amount 13");
        }
        other => panic!("expected a projection error, got {other:?}"),
    }
    assert_eq!(handle.status(), RunnerStatus::Failed);
    assert_eq!(
        checkpoints.get("strict"),
        13,
        "the checkpoint stays just before the event"
    );
    assert!(letters.list("strict").await?.is_empty());

    // Fixed, it goes on from the poisoned event.
    let fixed = Seen::default();
    let handle = plain_runner(&events, Recorder::new("strict", &fixed), &checkpoints, &letters).spawn();
    within("the fixed run", handle.wait_for_checkpoint(20)).await?;
    handle.shutdown().await?;
    assert_eq!(fixed.positions(), (14..=20).collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_after_a_fix() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 10).await?;
    let checkpoints = InMemoryCheckpointStore::new();
    let letters = InMemoryDeadLetterStore::new();
    let seen = Seen::default();
    let broken = Recorder::new("replay", &seen).failing(|event, _| matches!(amount(event), 3 | 5));
    let handle = plain_runner(&events, broken, &checkpoints, &letters)
        .retry(RetryPolicy::no_retry())
        .spawn();
    within("the first run", handle.wait_for_checkpoint(10)).await?;
    handle.shutdown().await?;
    assert_eq!(letters.list("replay").await?.len(), 2);

    // Half fixed: 3 now works, 5 still fails and stays listed.
    let half_fixed = Recorder::new("replay", &seen).failing(|event, _| amount(event) == 5);
    let mut runner = plain_runner(&events, half_fixed, &checkpoints, &letters);
    let report = runner.replay_dead_letters().await?;
    assert_eq!(report.replayed, 1);
    assert_eq!(report.still_failing.len(), 1);
    let remaining = runner.dead_letters().await?;
    assert_eq!(remaining.len(), 1);
    assert_eq!((amount(&remaining[0].event), remaining[0].attempts), (5, 2));
    assert!(seen.positions().contains(&4), "amount 3 sits at position 4");
    assert!(!seen.positions().contains(&6));

    let mut runner = plain_runner(&events, Recorder::new("replay", &seen), &checkpoints, &letters);
    let report = runner.replay_dead_letters().await?;
    assert_eq!((report.replayed, report.still_failing.len()), (1, 0));
    assert!(letters.list("replay").await?.is_empty());
    let mut positions = seen.positions();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=10).collect::<Vec<u64>>(),
        "every event handled exactly once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_resets_and_replays_from_the_start() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 40).await?;
    let checkpoints = InMemoryCheckpointStore::new();
    let letters = InMemoryDeadLetterStore::new();
    let seen = Seen::default();
    let handle = plain_runner(&events, Recorder::new("rebuilt", &seen), &checkpoints, &letters)
        .batch_size(7)
        .spawn();
    within("the first pass", handle.wait_for_checkpoint(40)).await?;
    assert_eq!(seen.positions().len(), 40);

    let mut checkpoints_seen = handle.metrics().await?.checkpoint;
    assert_eq!(checkpoints_seen, 40);
    handle.rebuild();
    within("the reset", async {
        while seen.resets.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    append_numbered(&events, 40, 5).await?;
    within("the rebuild", handle.wait_for_checkpoint(45)).await?;
    checkpoints_seen = checkpoints.get("rebuilt");
    handle.shutdown().await?;
    assert_eq!(checkpoints_seen, 45);
    assert_eq!(
        seen.positions(),
        (1..=45).collect::<Vec<u64>>(),
        "the read model was emptied, then rebuilt once"
    );
    assert_eq!(seen.resets.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_skip_events_but_the_checkpoint_passes_them() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 10).await?;
    let other = StreamId::new("Other", "1");
    let last = events
        .append(&other, ExpectedVersion::Any, vec![added(99), added(100)])
        .await?
        .positions[1];
    let checkpoints = InMemoryCheckpointStore::new();
    let seen = Seen::default();
    let mut projection = Recorder::new("others", &seen);
    projection.aggregate_types = Some(&["Other"]);
    let handle = plain_runner(&events, projection, &checkpoints, &InMemoryDeadLetterStore::new()).spawn();
    within("the filtered run", handle.wait_for_checkpoint(last)).await?;
    handle.shutdown().await?;
    assert_eq!(seen.positions(), [11, 12]);
    assert_eq!(checkpoints.get("others"), 12);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_finishes_the_batch_in_flight_and_abort_abandons_it() -> TestResult {
    let events = InMemoryEventStore::new();
    append_batch(&events, 100).await?;

    // Graceful: the batch of 10 in flight is finished and committed.
    let store = InMemoryProjectionStore::new(Model::default());
    let gate = Arc::new(Semaphore::new(3));
    let handle =
        ProjectionRunner::transactional(events.clone(), Ledger::gated("ledger", &gate), store.clone())
            .batch_size(10)
            .spawn();
    within("the first three events", async {
        while handle.metrics().await.map(|metrics| metrics.handled).unwrap_or(0) < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    handle.stop();
    gate.add_permits(1000);
    handle.join().await?;
    assert_eq!(store.checkpoint_of("ledger"), 10);
    assert_eq!(store.read_model().positions, (1..=10).collect::<Vec<u64>>());

    // Abort: the half-done batch is rolled back, nothing of it is committed.
    let gate = Arc::new(Semaphore::new(3));
    let handle =
        ProjectionRunner::transactional(events.clone(), Ledger::gated("ledger", &gate), store.clone())
            .batch_size(10)
            .spawn();
    within("three more events", async {
        while handle.metrics().await.map(|metrics| metrics.handled).unwrap_or(0) < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    handle.abort();
    gate.add_permits(1000);
    handle.join().await?;
    assert_eq!(store.checkpoint_of("ledger"), 10);
    assert_eq!(store.read_model().positions, (1..=10).collect::<Vec<u64>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_checkpoint_head_and_lag() -> TestResult {
    let events = InMemoryEventStore::new();
    append_batch(&events, 100).await?;
    let gate = Arc::new(Semaphore::new(0));
    let handle = plain_runner(
        &events,
        Recorder::new("lagging", &Seen::default()).gated(&gate),
        &InMemoryCheckpointStore::new(),
        &InMemoryDeadLetterStore::new(),
    )
    .batch_size(25)
    .spawn();
    let before = handle.metrics().await?;
    assert_eq!(
        (
            before.projection.as_str(),
            before.head,
            before.checkpoint,
            before.lag
        ),
        ("lagging", 100, 0, 100)
    );

    gate.add_permits(100);
    within("catching up", handle.wait_for_checkpoint(100)).await?;
    append_batch(&events, 20).await?;
    let after = handle.metrics().await?;
    assert_eq!(after.head, 120);
    assert_eq!(after.lag, after.head - after.checkpoint);
    assert!(after.checkpoint >= 100, "{after:?}");
    assert!(after.handled >= 100 && after.handled <= 120, "{after:?}");
    gate.add_permits(20);
    within("the last events", handle.wait_for_checkpoint(120)).await?;
    let done = handle.metrics().await?;
    assert_eq!((done.lag, done.handled, done.checkpoint), (0, 120, 120));
    handle.shutdown().await?;
    assert_eq!(handle.status(), RunnerStatus::Stopped);
    Ok(())
}

#[test]
fn decode_matches_the_aggregate_enum() -> TestResult {
    let tally = StreamId::new("Tally", "t");
    let event = added(5).recorded(tally.clone(), 2, 9);
    assert_eq!(event.decode::<Tally>()?, Some(TallyEvent::Added { amount: 5 }));
    let elsewhere = added(5).recorded(StreamId::new("Order", "o"), 2, 9);
    assert_eq!(elsewhere.decode::<Tally>()?, None, "another aggregate's event");
    let damaged =
        NewEvent::new("added", Payload::from(json!({ "amount": "five" }))).recorded(tally.clone(), 3, 10);
    assert!(matches!(
        damaged.decode::<Tally>(),
        Err(Error::Serialization { .. })
    ));
    let unknown = NewEvent::new("renamed", Payload::from(json!({}))).recorded(tally.clone(), 4, 11);
    assert!(matches!(
        unknown.decode::<Tally>(),
        Err(Error::UnknownEventType { .. })
    ));

    // Schema version 1 called it `value`; version 2 calls it `amount`.
    let old = NewEvent::new("added", Payload::from(json!({ "value": 7 }))).recorded(tally, 5, 12);
    let upcasters = factum_core::Upcasters::new().register("added", 1, |mut payload| {
        let value = payload.get("value").cloned().ok_or("no value")?;
        payload["amount"] = value;
        Ok(payload)
    });
    assert!(
        old.decode::<Tally>().is_err(),
        "without upcasters the old payload does not decode"
    );
    assert_eq!(
        old.decode_with::<Tally>(&upcasters)?,
        Some(TallyEvent::Added { amount: 7 })
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Transactional projections on the in-memory projection store.

/// A read model that shows any loss, duplicate or reordering.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    positions: Vec<u64>,
    total: i64,
    handled_by: HashMap<String, usize>,
}

/// Where a kill plan stops the process.
#[derive(Default)]
struct KillPlan {
    /// Steps left before the kill; the kill happens when it reaches zero.
    countdown: AtomicUsize,
    armed: std::sync::atomic::AtomicBool,
    killed: Notify,
}

impl KillPlan {
    fn at(step: usize) -> Arc<Self> {
        let plan = Self::default();
        plan.countdown.store(step, Ordering::SeqCst);
        plan.armed.store(true, Ordering::SeqCst);
        Arc::new(plan)
    }

    /// Counts a step; true when the process dies here.
    fn dies_here(&self) -> bool {
        if !self.armed.load(Ordering::SeqCst) {
            return false;
        }
        if self.countdown.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.armed.store(false, Ordering::SeqCst);
            self.killed.notify_one();
            return true;
        }
        false
    }

    async fn step(&self) {
        if self.dies_here() {
            std::future::pending::<()>().await;
        }
    }
}

struct Ledger {
    name: &'static str,
    instance: String,
    kill: Option<Arc<KillPlan>>,
    fail_once: HashSet<i64>,
    gate: Option<Arc<Semaphore>>,
}

impl Ledger {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            instance: String::new(),
            kill: None,
            fail_once: HashSet::new(),
            gate: None,
        }
    }

    fn gated(name: &'static str, gate: &Arc<Semaphore>) -> Self {
        Self {
            gate: Some(Arc::clone(gate)),
            ..Self::new(name)
        }
    }
}

impl TransactionalProjection<InMemoryProjectionStore<Model>> for Ledger {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(
        &mut self,
        transaction: &mut InMemoryTransaction<Model>,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        if let Some(kill) = &self.kill {
            kill.step().await;
        }
        let model = transaction.read_model_mut();
        // Half the event's writes land before it may fail: a retry in the
        // same transaction would count it twice.
        model.positions.push(event.position);
        let amount = amount(event);
        if self.fail_once.remove(&amount) {
            return Err(format!("transient failure on {amount}").into());
        }
        model.total += amount;
        *model.handled_by.entry(self.instance.clone()).or_default() += 1;
        if let Some(kill) = &self.kill {
            kill.step().await;
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut InMemoryTransaction<Model>) -> Result<(), HandlerError> {
        *transaction.read_model_mut() = Model::default();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_step_of_a_batch_then_restarted_equals_a_clean_run() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 24).await?;
    let head = events.head_position().await?;
    let runner = |store: &InMemoryProjectionStore<Model>, ledger: Ledger| {
        ProjectionRunner::transactional(events.clone(), ledger, store.clone())
            .batch_size(5)
            .checkpoint_every(5)
            .retry(fast_retry(3))
    };
    // Failing once, then working, sends a batch through the rollback and
    // one-event-per-transaction redo; it must not count anything twice.
    let flaky = || Ledger {
        fail_once: HashSet::from([8, 17]),
        ..Ledger::new("ledger")
    };

    let clean = InMemoryProjectionStore::new(Model::default());
    within(
        "the clean run",
        runner(&clean, flaky()).run(run_until_checkpoint(&clean, head)),
    )
    .await?;
    let clean_model = clean.read_model();
    assert_eq!(
        clean_model.positions,
        (1..=24).collect::<Vec<u64>>(),
        "the writes of the two failed attempts were rolled back"
    );

    let mut step = 0;
    let mut killed_runs = 0;
    loop {
        let store = InMemoryProjectionStore::new(Model::default());
        let plan = KillPlan::at(step);
        let hook_plan = Arc::clone(&plan);
        store.hold_commits_when(move |_| hook_plan.dies_here());
        let ledger = Ledger {
            kill: Some(Arc::clone(&plan)),
            ..flaky()
        };
        let run = tokio::spawn(runner(&store, ledger).run(std::future::pending()));
        let killed = tokio::select! {
            () = plan.killed.notified() => true,
            () = run_until_checkpoint(&store, head) => false,
        };
        run.abort();
        let _ = run.await;
        if !killed {
            break;
        }
        killed_runs += 1;
        store.clear_commit_hook();
        let before_restart = store.checkpoint_of("ledger");
        let restarted = tokio::spawn(runner(&store, flaky()).run(std::future::pending()));
        within("the restarted run", run_until_checkpoint(&store, head)).await;
        restarted.abort();
        let _ = restarted.await;
        assert_eq!(
            store.read_model(),
            clean_model,
            "killed at step {step} with the checkpoint at {before_restart}, then restarted"
        );
        step += 1;
    }
    // 24 events × (before + after handle) + commits + the two failed attempts.
    assert!(killed_runs >= 50, "only {killed_runs} kill points exercised");
    Ok(())
}

async fn run_until_checkpoint(store: &InMemoryProjectionStore<Model>, position: u64) {
    while store.checkpoint_of("ledger") < position {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_dead_letters_commit_with_the_checkpoint_and_replay() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 12).await?;
    let store = InMemoryProjectionStore::new(Model::default());
    let broken = Ledger::new("ledger");
    struct AlwaysFailsOn4(Ledger);
    impl TransactionalProjection<InMemoryProjectionStore<Model>> for AlwaysFailsOn4 {
        fn name(&self) -> &str {
            self.0.name
        }
        async fn handle(
            &mut self,
            transaction: &mut InMemoryTransaction<Model>,
            event: &RecordedEvent,
        ) -> Result<(), HandlerError> {
            if amount(event) == 4 {
                transaction.read_model_mut().total += 1000;
                return Err("four is broken".into());
            }
            self.0.handle(transaction, event).await
        }
    }
    let handle = ProjectionRunner::transactional(events.clone(), AlwaysFailsOn4(broken), store.clone())
        .batch_size(4)
        .retry(fast_retry(2))
        .spawn();
    within("the broken run", handle.wait_for_checkpoint(12)).await?;
    handle.shutdown().await?;
    let letters = store.dead_letters("ledger").await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (amount(&letters[0].event), letters[0].error.as_str()),
        (4, "four is broken")
    );
    let model = store.read_model();
    assert_eq!(
        model.total,
        (0..12).sum::<i64>() - 4,
        "no write of the failed attempts survived"
    );

    let mut runner = ProjectionRunner::transactional(events.clone(), Ledger::new("ledger"), store.clone());
    let report = runner.replay_dead_letters().await?;
    assert_eq!((report.replayed, report.still_failing.len()), (1, 0));
    assert!(store.dead_letters("ledger").await?.is_empty());
    assert_eq!(store.read_model().total, (0..12).sum::<i64>());
    assert_eq!(
        store.checkpoint_of("ledger"),
        12,
        "replay does not move the checkpoint"
    );

    // Deleting: the letter goes, its event is not handled.
    let mut transaction = store.begin("ledger").await?;
    store
        .put_dead_letter(&mut transaction, letters[0].clone())
        .await?;
    store.commit(transaction).await?;
    let before = store.read_model();
    assert!(runner.delete_dead_letter(letters[0].position()).await?);
    assert!(!runner.delete_dead_letter(letters[0].position()).await?);
    assert!(store.dead_letters("ledger").await?.is_empty());
    assert_eq!(store.read_model(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_rebuild_resets_the_read_model_in_the_same_transaction() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 30).await?;
    let store = InMemoryProjectionStore::new(Model::default());
    let handle = ProjectionRunner::transactional(events.clone(), Ledger::new("ledger"), store.clone())
        .batch_size(8)
        .spawn();
    within("the first pass", handle.wait_for_checkpoint(30)).await?;
    handle.shutdown().await?;
    let first = store.read_model();

    let mut runner = ProjectionRunner::transactional(events.clone(), Ledger::new("ledger"), store.clone());
    runner.rebuild().await?;
    assert_eq!(
        (store.read_model(), store.checkpoint_of("ledger")),
        (Model::default(), 0)
    );
    let handle = runner.spawn();
    within("the rebuild", handle.wait_for_checkpoint(30)).await?;
    handle.shutdown().await?;
    assert_eq!(store.read_model(), first);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_runners_one_active_and_a_takeover_when_it_dies() -> TestResult {
    const TTL: Duration = Duration::from_millis(300);
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 50).await?;
    let store = InMemoryProjectionStore::new(Model::default());
    let lease = InMemoryLease::new();
    let instance = |name: &str| Ledger {
        instance: name.to_owned(),
        ..Ledger::new("ledger")
    };

    // `a` runs in a task we can kill: it never releases its lease.
    let a = tokio::spawn(
        ProjectionRunner::transactional(events.clone(), instance("a"), store.clone())
            .lease(lease.clone(), "a", TTL)
            .batch_size(10)
            .run(std::future::pending()),
    );
    within("a holding the lease", async {
        while lease.holder("ledger").as_deref() != Some("a") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let b = ProjectionRunner::transactional(events.clone(), instance("b"), store.clone())
        .lease(lease.clone(), "b", TTL)
        .batch_size(10)
        .spawn();
    within("a catching up", run_until_checkpoint(&store, 50)).await;
    let last = append_numbered(&events, 50, 20).await?;
    within("a handling live events", run_until_checkpoint(&store, last)).await;
    assert_eq!(b.status(), RunnerStatus::Standby);
    assert_eq!(store.read_model().handled_by.get("b"), None, "b stayed passive");

    a.abort();
    let killed_at = tokio::time::Instant::now();
    let status = within("b taking over", b.wait_for_status(RunnerStatus::is_active)).await;
    let takeover = killed_at.elapsed();
    assert!(status.is_active());
    assert!(
        takeover <= TTL + TTL / 3 + Duration::from_millis(200),
        "takeover took {takeover:?} with a ttl of {TTL:?}"
    );
    let last = append_numbered(&events, 70, 20).await?;
    b.wait_for_checkpoint(last).await?;
    b.shutdown().await?;
    assert_eq!(lease.holder("ledger"), None, "b released its lease on stop");

    let model = store.read_model();
    assert_eq!(
        model.positions,
        (1..=90).collect::<Vec<u64>>(),
        "each event once across the takeover"
    );
    assert_eq!(model.handled_by.get("b"), Some(&20));
    assert_eq!(model.handled_by.get("a"), Some(&70));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_ends_without_taking_the_lease() -> TestResult {
    let events = InMemoryEventStore::new();
    let lease = InMemoryLease::new();
    let ttl = Duration::from_secs(30);
    assert!(factum_core::Lease::acquire(&lease, "ledger", "someone-else", ttl).await?);
    let store = InMemoryProjectionStore::new(Model::default());
    let handle = ProjectionRunner::transactional(events, Ledger::new("ledger"), store)
        .lease(lease.clone(), "me", ttl)
        .spawn();
    within(
        "standby",
        handle.wait_for_status(|status| status == RunnerStatus::Standby),
    )
    .await;
    within("stopping", handle.shutdown()).await?;
    assert_eq!(lease.holder("ledger").as_deref(), Some("someone-else"));
    Ok(())
}

/// Checkpoints whose first `failures` saves fail as a lost connection would.
#[derive(Clone, Default)]
struct FlakyCheckpoints {
    inner: InMemoryCheckpointStore,
    failures: Arc<AtomicUsize>,
}

impl factum_core::CheckpointStore for FlakyCheckpoints {
    async fn load(&self, projection: &str) -> Result<u64, Error> {
        self.inner.load(projection).await
    }

    async fn save(&self, projection: &str, position: u64) -> Result<(), Error> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::store("flaky", std::io::Error::other("connection reset")));
        }
        self.inner.save(projection, position).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_restarts_from_the_checkpoint_and_too_many_end_the_runner() -> TestResult {
    let events = InMemoryEventStore::new();
    append_numbered(&events, 0, 20).await?;

    // Two failed saves: restarted twice, then it gets through.
    let checkpoints = FlakyCheckpoints::default();
    checkpoints.failures.store(2, Ordering::SeqCst);
    let seen = Seen::default();
    let handle = ProjectionRunner::new(
        events.clone(),
        Recorder::new("flaky", &seen),
        checkpoints.clone(),
        InMemoryDeadLetterStore::new(),
    )
    .retry(fast_retry(4))
    .spawn();
    within("getting through", handle.wait_for_checkpoint(20)).await?;
    handle.shutdown().await?;
    assert_eq!(checkpoints.inner.get("flaky"), 20);
    let mut positions = seen.positions();
    assert!(positions.len() >= 20, "at least once");
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions, (1..=20).collect::<Vec<u64>>());

    // Failing every time: it gives up with the store's error.
    let checkpoints = FlakyCheckpoints::default();
    checkpoints.failures.store(usize::MAX, Ordering::SeqCst);
    let handle = ProjectionRunner::new(
        events.clone(),
        Recorder::new("down", &Seen::default()),
        checkpoints,
        InMemoryDeadLetterStore::new(),
    )
    .retry(fast_retry(3))
    .spawn();
    let result = within("giving up", handle.join()).await;
    assert!(
        matches!(result, Err(Error::Store { backend: "flaky", .. })),
        "{result:?}"
    );
    assert_eq!(handle.status(), RunnerStatus::Failed);
    Ok(())
}
