//! The guarantees every [`ProjectionStore`] must keep, one async check each:
//! what makes a transactional projection take effect exactly once.
//!
//! Run them all with [`projection_store_suite!`](crate::projection_store_suite).
//! Each check takes a fresh store and a [`Ledger`]: the smallest read model,
//! a list of positions per projection, written through the store's
//! transactions. Every check uses its own projection names, so a database
//! can be shared between checks.

mod start;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

mod tenants;

pub use tenants::{
    a_projection_on_a_tenant_view_counts_only_its_events, leases_of_tenants_are_apart,
    plain_stores_keep_tenants_apart, tenant_checkpoints_and_dead_letters_are_apart,
};

use crate::{
    CheckpointStore, DeadLetter, DeadLetterStore, Error, EventStore, ExpectedVersion, HandlerError,
    InMemoryEventStore, InMemoryProjectionStore, InMemoryTransaction, Lease, NewEvent, Payload,
    ProjectionRunner, ProjectionStore, RecordedEvent, RetryPolicy, StreamId, TransactionalProjection,
};

/// The read model the suite writes: for each projection, the positions its
/// handler recorded, in order. A backend implements it over a table of its
/// own (`projection TEXT, position BIGINT`, appended in the transaction).
///
/// ```
/// use factum_core::testing::projection::{InMemoryLedger, Ledger};
/// use factum_core::{InMemoryProjectionStore, ProjectionStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryProjectionStore::default();
/// let mut transaction = store.begin("p").await?;
/// InMemoryLedger.record(&mut transaction, "p", 7).await.map_err(|e| factum_core::Error::store("test", e))?;
/// store.commit(transaction).await?;
/// assert_eq!(InMemoryLedger.read(&store, "p").await?, [7]);
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait Ledger<S: ProjectionStore>: Send + Sync + 'static {
    /// Appends `position` to the ledger of `projection`, in `transaction`.
    fn record(
        &self,
        transaction: &mut S::Transaction,
        projection: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The committed ledger of `projection`, in the order recorded.
    fn read(&self, store: &S, projection: &str) -> impl Future<Output = Result<Vec<u64>, Error>> + Send;
}

/// The ledger of an [`InMemoryProjectionStore`] whose read model maps each
/// projection to its positions.
///
/// ```
/// # use factum_core::testing::projection::InMemoryLedger;
/// let ledger = InMemoryLedger;
/// # let _ = ledger;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct InMemoryLedger;

/// The read model [`InMemoryLedger`] writes.
pub type LedgerModel = BTreeMap<String, Vec<u64>>;

impl Ledger<InMemoryProjectionStore<LedgerModel>> for InMemoryLedger {
    async fn record(
        &self,
        transaction: &mut InMemoryTransaction<LedgerModel>,
        projection: &str,
        position: u64,
    ) -> Result<(), HandlerError> {
        transaction
            .read_model_mut()
            .entry(projection.to_owned())
            .or_default()
            .push(position);
        Ok(())
    }

    async fn read(
        &self,
        store: &InMemoryProjectionStore<LedgerModel>,
        projection: &str,
    ) -> Result<Vec<u64>, Error> {
        Ok(store.with_read_model(|model| model.get(projection).cloned().unwrap_or_default()))
    }
}

pub use start::a_new_projection_can_start_at_the_end;

fn projection_name(check: &str) -> String {
    format!("{check}-{}", Uuid::now_v7())
}

fn letter(projection: &str, position: u64) -> DeadLetter {
    let event = NewEvent::new("added", Payload::from(json!({ "amount": 1 }))).recorded(
        StreamId::new("Tally", "dead"),
        1,
        position,
    );
    DeadLetter::new(projection, event, "handler failed", 3)
}

async fn record<S: ProjectionStore, L: Ledger<S>>(
    ledger: &L,
    transaction: &mut S::Transaction,
    projection: &str,
    position: u64,
) {
    ledger
        .record(transaction, projection, position)
        .await
        .unwrap_or_else(|error| panic!("recording {position} in the ledger failed: {error}"));
}

async fn read<S: ProjectionStore, L: Ledger<S>>(ledger: &L, store: &S, projection: &str) -> Vec<u64> {
    ledger
        .read(store, projection)
        .await
        .unwrap_or_else(|error| panic!("reading the ledger failed: {error}"))
}

async fn checkpoint<S: ProjectionStore>(store: &S, projection: &str) -> u64 {
    store
        .checkpoint(projection)
        .await
        .unwrap_or_else(|error| panic!("reading the checkpoint failed: {error}"))
}

async fn begin<S: ProjectionStore>(store: &S, projection: &str) -> S::Transaction {
    store
        .begin(projection)
        .await
        .unwrap_or_else(|error| panic!("begin failed: {error}"))
}

async fn commit<S: ProjectionStore>(store: &S, transaction: S::Transaction) {
    store
        .commit(transaction)
        .await
        .unwrap_or_else(|error| panic!("commit failed: {error}"));
}

async fn save<S: ProjectionStore>(
    store: &S,
    transaction: &mut S::Transaction,
    projection: &str,
    expected: u64,
    position: u64,
) {
    store
        .save_checkpoint(transaction, projection, expected, position)
        .await
        .unwrap_or_else(|error| panic!("saving checkpoint {expected} -> {position} failed: {error}"));
}

/// A new projection starts at checkpoint 0 with nothing recorded.
pub async fn a_new_projection_starts_from_zero<S: ProjectionStore, L: Ledger<S>>(store: S, ledger: L) {
    let projection = projection_name("fresh");
    assert_eq!(checkpoint(&store, &projection).await, 0);
    assert!(read(&ledger, &store, &projection).await.is_empty());
    let letters = store
        .dead_letters(&projection)
        .await
        .unwrap_or_else(|error| panic!("listing dead letters failed: {error}"));
    assert!(letters.is_empty());
}

/// The read model and the checkpoint become visible together at commit,
/// not before.
pub async fn commit_makes_read_model_and_checkpoint_visible_together<S: ProjectionStore, L: Ledger<S>>(
    store: S,
    ledger: L,
) {
    let projection = projection_name("commit");
    let mut transaction = begin(&store, &projection).await;
    record(&ledger, &mut transaction, &projection, 1).await;
    record(&ledger, &mut transaction, &projection, 2).await;
    save(&store, &mut transaction, &projection, 0, 2).await;
    commit(&store, transaction).await;
    assert_eq!(read(&ledger, &store, &projection).await, [1, 2]);
    assert_eq!(checkpoint(&store, &projection).await, 2);

    let mut transaction = begin(&store, &projection).await;
    record(&ledger, &mut transaction, &projection, 3).await;
    save(&store, &mut transaction, &projection, 2, 3).await;
    commit(&store, transaction).await;
    assert_eq!(read(&ledger, &store, &projection).await, [1, 2, 3]);
    assert_eq!(checkpoint(&store, &projection).await, 3);
}

/// A transaction rolled back, or dropped without commit (the process
/// died), leaves neither read-model changes, nor checkpoint, nor dead letters.
pub async fn rolled_back_or_dropped_transactions_leave_nothing<S: ProjectionStore, L: Ledger<S>>(
    store: S,
    ledger: L,
) {
    let projection = projection_name("rollback");
    let mut transaction = begin(&store, &projection).await;
    record(&ledger, &mut transaction, &projection, 1).await;
    save(&store, &mut transaction, &projection, 0, 1).await;
    put_letter(&store, &mut transaction, letter(&projection, 1)).await;
    store
        .rollback(transaction)
        .await
        .unwrap_or_else(|error| panic!("rollback failed: {error}"));

    let mut transaction = begin(&store, &projection).await;
    record(&ledger, &mut transaction, &projection, 2).await;
    save(&store, &mut transaction, &projection, 0, 2).await;
    put_letter(&store, &mut transaction, letter(&projection, 2)).await;
    drop(transaction);

    assert!(read(&ledger, &store, &projection).await.is_empty());
    assert_eq!(checkpoint(&store, &projection).await, 0);
    assert!(dead_letters(&store, &projection).await.is_empty());

    // The store is still usable after a dropped transaction.
    let mut transaction = begin(&store, &projection).await;
    record(&ledger, &mut transaction, &projection, 3).await;
    save(&store, &mut transaction, &projection, 0, 3).await;
    commit(&store, transaction).await;
    assert_eq!(read(&ledger, &store, &projection).await, [3]);
}

async fn put_letter<S: ProjectionStore>(store: &S, transaction: &mut S::Transaction, letter: DeadLetter) {
    store
        .put_dead_letter(transaction, letter)
        .await
        .unwrap_or_else(|error| panic!("storing a dead letter failed: {error}"));
}

async fn dead_letters<S: ProjectionStore>(store: &S, projection: &str) -> Vec<DeadLetter> {
    store
        .dead_letters(projection)
        .await
        .unwrap_or_else(|error| panic!("listing dead letters failed: {error}"))
}

/// Saving a checkpoint is a compare-and-set: a stale instance cannot move
/// the checkpoint of a projection another instance has moved.
pub async fn checkpoint_is_a_compare_and_set<S: ProjectionStore, L: Ledger<S>>(store: S, ledger: L) {
    let projection = projection_name("cas");
    let mut newer = begin(&store, &projection).await;
    record(&ledger, &mut newer, &projection, 10).await;
    save(&store, &mut newer, &projection, 0, 10).await;
    commit(&store, newer).await;

    let mut stale = begin(&store, &projection).await;
    record(&ledger, &mut stale, &projection, 5).await;
    let outcome = match store.save_checkpoint(&mut stale, &projection, 0, 5).await {
        Ok(()) => store.commit(stale).await,
        Err(error) => {
            drop(stale);
            Err(error)
        }
    };
    assert!(
        matches!(outcome, Err(Error::Checkpoint { .. })),
        "a checkpoint saved over a moved one must fail with Error::Checkpoint, got {outcome:?}"
    );
    assert_eq!(checkpoint(&store, &projection).await, 10);
    assert_eq!(
        read(&ledger, &store, &projection).await,
        [10],
        "the stale write was discarded"
    );
}

/// Dead letters are written, replaced, removed and cleared in the
/// transaction, listed in position order, and kept per projection.
pub async fn dead_letters_commit_with_the_transaction<S: ProjectionStore, L: Ledger<S>>(
    store: S,
    _ledger: L,
) {
    let projection = projection_name("letters");
    let other = projection_name("other-letters");
    let mut transaction = begin(&store, &projection).await;
    put_letter(&store, &mut transaction, letter(&projection, 9)).await;
    put_letter(&store, &mut transaction, letter(&projection, 4)).await;
    put_letter(&store, &mut transaction, letter(&other, 4)).await;
    save(&store, &mut transaction, &projection, 0, 9).await;
    assert!(
        dead_letters(&store, &projection).await.is_empty(),
        "nothing before the commit"
    );
    commit(&store, transaction).await;

    let listed = dead_letters(&store, &projection).await;
    let positions: Vec<u64> = listed.iter().map(DeadLetter::position).collect();
    assert_eq!(positions, [4, 9]);
    let first = &listed[0];
    assert_eq!(
        (first.projection.as_str(), first.error.as_str(), first.attempts),
        (projection.as_str(), "handler failed", 3)
    );
    assert_eq!(first.event.event_type.as_ref(), "added");
    assert_eq!(first.event.stream, StreamId::new("Tally", "dead"));

    let mut transaction = begin(&store, &projection).await;
    let mut replaced = letter(&projection, 9);
    replaced.error = "failed again".to_owned();
    replaced.attempts = 4;
    put_letter(&store, &mut transaction, replaced).await;
    let removed = store
        .remove_dead_letter(&mut transaction, &projection, 4)
        .await
        .unwrap_or_else(|error| panic!("removing a dead letter failed: {error}"));
    assert!(removed);
    commit(&store, transaction).await;
    let listed = dead_letters(&store, &projection).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].error.as_str(), listed[0].attempts),
        ("failed again", 4)
    );

    let mut transaction = begin(&store, &projection).await;
    store
        .clear_dead_letters(&mut transaction, &projection)
        .await
        .unwrap_or_else(|error| panic!("clearing dead letters failed: {error}"));
    commit(&store, transaction).await;
    assert!(dead_letters(&store, &projection).await.is_empty());
    assert_eq!(
        dead_letters(&store, &other).await.len(),
        1,
        "another projection's letters stay"
    );
}

/// Where a kill plan stops the process: at the `step`-th step point.
struct KillPlan {
    countdown: AtomicUsize,
    armed: AtomicBool,
    killed: Notify,
}

impl KillPlan {
    fn at(step: usize) -> Arc<Self> {
        Arc::new(Self {
            countdown: AtomicUsize::new(step),
            armed: AtomicBool::new(true),
            killed: Notify::new(),
        })
    }

    async fn step(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if self.countdown.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.armed.store(false, Ordering::SeqCst);
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// A transactional projection that records each position in the ledger;
/// it can be killed at a step, and fail once (after writing) on some events.
struct LedgerProjection<L> {
    name: String,
    ledger: Arc<L>,
    kill: Option<Arc<KillPlan>>,
    fail_once: HashSet<u64>,
}

impl<S: ProjectionStore, L: Ledger<S>> TransactionalProjection<S> for LedgerProjection<L> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(
        &mut self,
        transaction: &mut S::Transaction,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        if let Some(kill) = &self.kill {
            kill.step().await;
        }
        self.ledger
            .record(transaction, &self.name, event.position)
            .await?;
        if self.fail_once.remove(&event.position) {
            return Err(format!("transient failure at {}", event.position).into());
        }
        if let Some(kill) = &self.kill {
            kill.step().await;
        }
        Ok(())
    }
}

const EVENTS: u64 = 14;

async fn event_log() -> InMemoryEventStore {
    let events = InMemoryEventStore::new();
    for amount in 0..EVENTS {
        let stream = StreamId::new("Tally", format!("t-{}", amount % 3));
        let event = NewEvent::new("added", Payload::from(json!({ "amount": amount })));
        events
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap_or_else(|error| panic!("appending to the in-memory log failed: {error}"));
    }
    events
}

async fn until_checkpoint<S: ProjectionStore>(store: &S, projection: &str, position: u64) {
    while checkpoint(store, projection).await < position {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The runner on this store, killed before and after the handler of every
/// event of every batch (a transaction dropped in flight), then restarted,
/// leaves the read model one clean run leaves: each event exactly once,
/// even with handlers that write and then fail once.
pub async fn killed_at_every_step_then_restarted_equals_a_clean_run<S, L>(store: S, ledger: L)
where
    S: ProjectionStore + Clone,
    L: Ledger<S>,
{
    let events = event_log().await;
    let ledger = Arc::new(ledger);
    let expected: Vec<u64> = (1..=EVENTS).collect();
    let projection_for = |name: &str, kill: Option<Arc<KillPlan>>| LedgerProjection {
        name: name.to_owned(),
        ledger: Arc::clone(&ledger),
        kill,
        fail_once: HashSet::from([3, 10]),
    };
    let runner = |projection: LedgerProjection<L>| {
        ProjectionRunner::transactional(events.clone(), projection, store.clone())
            .batch_size(4)
            .checkpoint_every(4)
            .retry(
                RetryPolicy::default()
                    .max_attempts(3)
                    .base_delay(Duration::from_millis(1)),
            )
    };

    let clean = projection_name("clean");
    runner(projection_for(&clean, None))
        .run(until_checkpoint(&store, &clean, EVENTS))
        .await
        .unwrap_or_else(|error| panic!("the clean run failed: {error}"));
    assert_eq!(read(&*ledger, &store, &clean).await, expected, "the clean run");

    let mut step = 0;
    loop {
        let projection = projection_name(&format!("killed-{step}"));
        let plan = KillPlan::at(step);
        let run = tokio::spawn(
            runner(projection_for(&projection, Some(Arc::clone(&plan)))).run(std::future::pending()),
        );
        let killed = tokio::select! {
            () = plan.killed.notified() => true,
            () = until_checkpoint(&store, &projection, EVENTS) => false,
        };
        run.abort();
        // A run that returned an error would show in the comparison below.
        let _ = run.await;
        if !killed {
            break;
        }
        let killed_at = checkpoint(&store, &projection).await;
        runner(projection_for(&projection, None))
            .run(until_checkpoint(&store, &projection, EVENTS))
            .await
            .unwrap_or_else(|error| panic!("the run restarted after step {step} failed: {error}"));
        assert_eq!(
            read(&*ledger, &store, &projection).await,
            expected,
            "killed at step {step} (checkpoint {killed_at}), then restarted"
        );
        step += 1;
    }
    // Two steps per handled event, plus the two failed attempts.
    assert!(step as u64 >= 2 * EVENTS, "only {step} kill points were reached");
}

/// A [`Lease`] is exclusive, renewable by its holder, released only by its
/// holder, and taken over once its holder stops renewing for a time to live.
///
/// ```
/// # use factum_core::InMemoryLease;
/// factum_core::testing::run(
///     || async { Some(InMemoryLease::new()) },
///     factum_core::testing::projection::lease_is_exclusive_and_expires,
/// );
/// ```
pub async fn lease_is_exclusive_and_expires<L: Lease>(lease: L) {
    const TTL: Duration = Duration::from_millis(400);
    let projection = projection_name("lease");
    let acquire = |holder: &'static str| {
        let lease = &lease;
        let projection = projection.clone();
        async move {
            lease
                .acquire(&projection, holder, TTL)
                .await
                .unwrap_or_else(|error| panic!("acquiring as {holder} failed: {error}"))
        }
    };
    let release = |holder: &'static str| {
        let lease = &lease;
        let projection = projection.clone();
        async move {
            lease
                .release(&projection, holder)
                .await
                .unwrap_or_else(|error| panic!("releasing as {holder} failed: {error}"));
        }
    };
    assert!(acquire("a").await, "a free lease is taken");
    assert!(!acquire("b").await, "a held lease is not");
    assert!(acquire("a").await, "the holder renews");
    release("b").await;
    assert!(!acquire("b").await, "only the holder releases");
    release("a").await;
    assert!(acquire("b").await, "a released lease is free at once");

    // b stops renewing: a takes over after the time to live, not before.
    tokio::time::sleep(TTL / 4).await;
    assert!(!acquire("a").await, "taken over before it expired");
    tokio::time::sleep(TTL + TTL / 4).await;
    assert!(acquire("a").await, "not taken over after it expired");
    assert!(!acquire("b").await);
}

/// A [`CheckpointStore`] keeps each projection's checkpoint, and a
/// [`DeadLetterStore`] its dead letters, apart from other projections'.
///
/// ```
/// # use factum_core::{InMemoryCheckpointStore, InMemoryDeadLetterStore};
/// factum_core::testing::run(
///     || async { Some((InMemoryCheckpointStore::new(), InMemoryDeadLetterStore::new())) },
///     |(checkpoints, letters)| factum_core::testing::projection::plain_stores_keep_checkpoints_and_dead_letters(checkpoints, letters),
/// );
/// ```
pub async fn plain_stores_keep_checkpoints_and_dead_letters<C: CheckpointStore, D: DeadLetterStore>(
    checkpoints: C,
    letters: D,
) {
    let projection = projection_name("plain");
    let other = projection_name("plain-other");
    let load = |name: &str| {
        let checkpoints = &checkpoints;
        let name = name.to_owned();
        async move {
            checkpoints
                .load(&name)
                .await
                .unwrap_or_else(|error| panic!("loading a checkpoint failed: {error}"))
        }
    };
    assert_eq!(load(&projection).await, 0);
    for position in [5, 12] {
        checkpoints
            .save(&projection, position)
            .await
            .unwrap_or_else(|error| panic!("saving a checkpoint failed: {error}"));
    }
    assert_eq!((load(&projection).await, load(&other).await), (12, 0));
    checkpoints
        .save(&projection, 0)
        .await
        .unwrap_or_else(|error| panic!("resetting a checkpoint failed: {error}"));
    assert_eq!(load(&projection).await, 0, "a rebuild saves 0");

    let list = |name: &str| {
        let letters = &letters;
        let name = name.to_owned();
        async move {
            letters
                .list(&name)
                .await
                .unwrap_or_else(|error| panic!("listing dead letters failed: {error}"))
        }
    };
    for letter in [letter(&projection, 9), letter(&projection, 4), letter(&other, 4)] {
        letters
            .put(letter)
            .await
            .unwrap_or_else(|error| panic!("storing a dead letter failed: {error}"));
    }
    let mut replaced = letter(&projection, 9);
    replaced.attempts = 4;
    letters
        .put(replaced)
        .await
        .unwrap_or_else(|error| panic!("replacing a dead letter failed: {error}"));
    let listed = list(&projection).await;
    let keys: Vec<(u64, u32)> = listed
        .iter()
        .map(|letter| (letter.position(), letter.attempts))
        .collect();
    assert_eq!(keys, [(4, 3), (9, 4)]);
    assert_eq!(listed[0].event.payload, letter(&projection, 4).event.payload);
    let removed = letters
        .remove(&projection, 4)
        .await
        .unwrap_or_else(|error| panic!("removing a dead letter failed: {error}"));
    assert!(removed);
    let removed_again = letters
        .remove(&projection, 4)
        .await
        .unwrap_or_else(|error| panic!("removing a dead letter failed: {error}"));
    assert!(!removed_again);
    letters
        .clear(&projection)
        .await
        .unwrap_or_else(|error| panic!("clearing dead letters failed: {error}"));
    assert!(list(&projection).await.is_empty());
    assert_eq!(list(&other).await.len(), 1, "another projection's letters stay");
}

/// Expands to one `#[test]` per guarantee of the [`ProjectionStore`]
/// contract, each on a fresh store and ledger made by `$factory`.
///
/// `$factory` is an `async fn() -> Option<(S, L)>` (`S: ProjectionStore +
/// Tenancy + Clone`, `L: Ledger<S>`), returning `None` when the backend's
/// server is unreachable (see [`service_unavailable`](crate::testing::service_unavailable)).
///
/// ```
/// use factum_core::InMemoryProjectionStore;
/// use factum_core::testing::projection::{InMemoryLedger, LedgerModel};
///
/// async fn fresh() -> Option<(InMemoryProjectionStore<LedgerModel>, InMemoryLedger)> {
///     Some((InMemoryProjectionStore::default(), InMemoryLedger))
/// }
///
/// factum_core::projection_store_suite!(fresh);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! projection_store_suite {
    ($factory:path) => {
        $crate::__projection_store_tests!(
            $factory;
            a_new_projection_starts_from_zero,
            commit_makes_read_model_and_checkpoint_visible_together,
            rolled_back_or_dropped_transactions_leave_nothing,
            checkpoint_is_a_compare_and_set,
            dead_letters_commit_with_the_transaction,
            killed_at_every_step_then_restarted_equals_a_clean_run,
        );
        $crate::__projection_store_tests!($factory; a_new_projection_can_start_at_the_end);
        $crate::__projection_store_tests!(
            $factory;
            tenant_checkpoints_and_dead_letters_are_apart,
            a_projection_on_a_tenant_view_counts_only_its_events,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __projection_store_tests {
    ($factory:path; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::run($factory, |(store, ledger)| {
                    $crate::testing::projection::$check(store, ledger)
                });
            }
        )*
    };
}
