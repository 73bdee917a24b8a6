//! Atomic saves across aggregates: `Application::save_all` for one type,
//! `UnitOfWork` for several, on the in-memory and SQLite stores.

#![allow(missing_docs)]

use factum::prelude::*;
use factum::{AppendResult, SnapshotStore};
use serde::{Deserialize, Serialize};

factum::id!(AccountId);
factum::id!(LedgerId);

#[aggregate]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub balance: i64,
}

#[aggregate]
impl Account {
    #[event("deposited")]
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("withdrawn")]
    pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
        if amount > self.balance {
            return Err(format!("balance {} does not cover {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(())
    }
}

#[aggregate]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub id: LedgerId,
    pub entries: u32,
}

#[aggregate]
impl Ledger {
    #[event("entry_recorded")]
    pub fn record(&mut self, amount: i64) {
        let _ = amount;
        self.entries += 1;
    }
}

/// Two stored accounts with 100 each, loaded fresh.
async fn two_accounts<S: EventStore>(app: &Application<Account, S>) -> (Account, Account) {
    let mut from = Account::create(AccountId::generate(), 0);
    from.deposit(100);
    let mut to = Account::create(AccountId::generate(), 0);
    to.deposit(100);
    app.save(&mut from).await.unwrap();
    app.save(&mut to).await.unwrap();
    (app.get(from.id).await.unwrap(), app.get(to.id).await.unwrap())
}

fn stream_of(account: &Account) -> StreamId {
    StreamId::new("Account", account.id.to_string())
}

async fn transfer_commits_both<S: EventStore>(store: S) {
    let app = Application::<Account, _>::new(store);
    let (mut from, mut to) = two_accounts(&app).await;
    from.withdraw(30).unwrap();
    to.deposit(30);
    let results = app.save_all([&mut from, &mut to]).await.unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!((results[0].stream_version, results[1].stream_version), (3, 3));
    assert!(from.pending_events().is_empty() && to.pending_events().is_empty());
    assert_eq!((from.version(), to.version()), (3, 3));
    assert_eq!(
        results[1].positions[0],
        results[0].positions[0] + 1,
        "contiguous here"
    );
    assert_eq!(app.get(from.id).await.unwrap().balance, 70);
    assert_eq!(app.get(to.id).await.unwrap().balance, 130);
    // The aggregates go on from where the save left them.
    from.deposit(1);
    assert_eq!(app.save(&mut from).await.unwrap().stream_version, 4);
}

#[tokio::test]
async fn save_all_commits_every_aggregate_in_memory() {
    transfer_commits_both(InMemoryEventStore::new()).await;
}

#[tokio::test]
async fn save_all_commits_every_aggregate_in_sqlite() {
    transfer_commits_both(SqliteEventStore::open_in_memory().await.unwrap()).await;
}

async fn conflict_writes_nothing<S: EventStore>(store: S) {
    let app = Application::<Account, _>::new(store);
    let (mut from, mut to) = two_accounts(&app).await;
    let mut elsewhere = app.get(to.id).await.unwrap();
    elsewhere.deposit(5);
    app.save(&mut elsewhere).await.unwrap();
    let head = app.store().head_position().await.unwrap();

    from.withdraw(30).unwrap();
    to.deposit(30);
    let error = app.save_all([&mut from, &mut to]).await.unwrap_err();
    match &error {
        Error::Conflict { stream, actual, .. } => assert_eq!((stream, *actual), (&stream_of(&to), 3)),
        other => panic!("expected a conflict on the moved account, got {other}"),
    }
    assert_eq!(
        app.store().head_position().await.unwrap(),
        head,
        "a failed save_all wrote"
    );
    assert_eq!((from.pending_events().len(), to.pending_events().len()), (1, 1));
    assert_eq!(app.get(from.id).await.unwrap().balance, 100);

    // Reload the one that moved and run its command again.
    let mut to = app.get(to.id).await.unwrap();
    to.deposit(30);
    app.save_all([&mut from, &mut to]).await.unwrap();
    assert_eq!(app.get(to.id).await.unwrap().balance, 135);
}

#[tokio::test]
async fn a_conflict_on_one_aggregate_saves_none_in_memory() {
    conflict_writes_nothing(InMemoryEventStore::new()).await;
}

#[tokio::test]
async fn a_conflict_on_one_aggregate_saves_none_in_sqlite() {
    conflict_writes_nothing(SqliteEventStore::open_in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn retrying_save_all_after_a_lost_answer_returns_the_original_positions() {
    let app = Application::<Account, _>::new(InMemoryEventStore::new());
    let (mut from, mut to) = two_accounts(&app).await;
    from.withdraw(10).unwrap();
    to.deposit(10);
    // Copies taken before the save carry the same pending events and ids:
    // what a caller holds when the answer was lost.
    let (mut from_again, mut to_again) = (from.clone(), to.clone());
    let original = app.save_all([&mut from, &mut to]).await.unwrap();
    let retried = app.save_all([&mut from_again, &mut to_again]).await.unwrap();
    assert_eq!(retried, original);
    assert_eq!(app.store().len(), 6, "the retry wrote events");
    assert_eq!(from_again.version(), 3);
}

#[tokio::test]
async fn the_same_aggregate_twice_is_a_typed_error() {
    let app = Application::<Account, _>::new(InMemoryEventStore::new());
    let (mut account, mut other) = two_accounts(&app).await;
    let mut copy = account.clone();
    account.deposit(1);
    copy.deposit(2);
    other.deposit(3);
    let error = app
        .save_all([&mut account, &mut other, &mut copy])
        .await
        .unwrap_err();
    match &error {
        Error::DuplicateStream { stream } => assert_eq!(stream, &stream_of(&account)),
        other => panic!("expected DuplicateStream, got {other}"),
    }
    assert!(
        error.to_string().contains(&stream_of(&account).to_string()),
        "{error}"
    );
    assert_eq!(app.store().len(), 4, "nothing of the call was written");
    assert_eq!(account.pending_events().len(), 1);
}

#[tokio::test]
async fn aggregates_with_nothing_pending_are_left_out() {
    let app = Application::<Account, _>::new(InMemoryEventStore::new());
    let (mut idle, mut busy) = two_accounts(&app).await;
    let nothing: [&mut Account; 0] = [];
    assert!(app.save_all(nothing).await.unwrap().is_empty());
    let results = app.save_all([&mut idle]).await.unwrap();
    assert_eq!(
        results,
        [AppendResult {
            stream_version: 2,
            positions: vec![]
        }]
    );
    busy.deposit(1);
    let results = app.save_all(vec![&mut idle, &mut busy]).await.unwrap();
    assert_eq!(
        results[0],
        AppendResult {
            stream_version: 2,
            positions: vec![]
        }
    );
    assert_eq!(results[1].stream_version, 3);
    assert_eq!(app.store().len(), 5);

    // An idle one between two that change keeps its place in the results.
    let (mut first, mut last) = two_accounts(&app).await;
    first.deposit(1);
    last.deposit(2);
    let results = app.save_all([&mut first, &mut idle, &mut last]).await.unwrap();
    let versions: Vec<u64> = results.iter().map(|result| result.stream_version).collect();
    assert_eq!(versions, [3, 2, 3]);
    assert!(results[1].positions.is_empty());
    assert_eq!(results[2].positions, [results[0].positions[0] + 1]);
}

#[tokio::test]
async fn save_all_takes_snapshots_by_policy() {
    let app =
        Application::<Account, _>::new(InMemoryEventStore::new()).with_snapshots(SnapshotPolicy::Every(3));
    let (mut from, mut to) = two_accounts(&app).await;
    from.withdraw(1).unwrap();
    to.deposit(1);
    to.deposit(1);
    app.save_all([&mut from, &mut to]).await.unwrap();
    for (account, version) in [(&from, 3), (&to, 4)] {
        let snapshot = app.store().load_snapshot(&stream_of(account)).await.unwrap();
        assert_eq!(snapshot.map(|taken| taken.version), Some(version));
    }
    assert_eq!(app.get(to.id).await.unwrap().balance, 102);
}

async fn unit_of_work_saves_mixed_types<S: EventStore + SnapshotStore + Clone>(store: S) {
    let accounts = Application::<Account, _>::new(store.clone());
    let ledgers = Application::<Ledger, _>::new(store).with_snapshots(SnapshotPolicy::Every(2));
    let (mut account, _) = two_accounts(&accounts).await;
    let mut ledger = Ledger::create(LedgerId::generate(), 0);
    account.withdraw(40).unwrap();
    ledger.record(-40);

    let mut work = UnitOfWork::new();
    work.add(&accounts, &mut account).unwrap();
    work.add(&ledgers, &mut ledger).unwrap();
    assert_eq!(work.len(), 2);
    let results = work.commit().await.unwrap();
    assert_eq!((results[0].stream_version, results[1].stream_version), (3, 2));
    assert!(account.pending_events().is_empty() && ledger.pending_events().is_empty());
    assert_eq!((account.version(), ledger.version()), (3, 2));
    let ledger_stream = StreamId::new("Ledger", ledger.id.to_string());
    let snapshot = ledgers.store().load_snapshot(&ledger_stream).await.unwrap();
    assert_eq!(
        snapshot.map(|taken| taken.version),
        Some(2),
        "the ledger's policy applies"
    );
    assert_eq!(ledgers.get(ledger.id).await.unwrap().entries, 1);
    assert_eq!(accounts.get(account.id).await.unwrap().balance, 60);
}

#[tokio::test]
async fn a_unit_of_work_saves_aggregates_of_different_types_in_memory() {
    unit_of_work_saves_mixed_types(InMemoryEventStore::new()).await;
}

#[tokio::test]
async fn a_unit_of_work_saves_aggregates_of_different_types_in_sqlite() {
    unit_of_work_saves_mixed_types(SqliteEventStore::open_in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn a_failed_unit_of_work_keeps_every_aggregate_pending() {
    let store = InMemoryEventStore::new();
    let accounts = Application::<Account, _>::new(store.clone());
    let ledgers = Application::<Ledger, _>::new(store.clone());
    let (mut account, _) = two_accounts(&accounts).await;
    let mut ledger = Ledger::create(LedgerId::generate(), 0);
    ledgers.save(&mut ledger).await.unwrap();
    let mut stale = ledgers.get(ledger.id).await.unwrap();
    ledger.record(1);
    ledgers.save(&mut ledger).await.unwrap();
    account.deposit(7);
    stale.record(7);

    let mut work = UnitOfWork::new();
    work.add(&accounts, &mut account)
        .unwrap()
        .add(&ledgers, &mut stale)
        .unwrap();
    let error = work.commit().await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(store.len(), 6, "a failed unit of work wrote");
    assert_eq!(
        (account.pending_events().len(), stale.pending_events().len()),
        (1, 1)
    );
    assert_eq!(account.version(), 3, "the version still counts the pending event");
}

#[tokio::test]
async fn a_unit_of_work_refuses_a_stream_twice_and_empty_work_writes_nothing() {
    let store = InMemoryEventStore::new();
    let accounts = Application::<Account, _>::new(store.clone());
    let (mut account, _) = two_accounts(&accounts).await;
    let mut copy = account.clone();
    account.deposit(1);
    copy.deposit(1);
    let stream = stream_of(&account);
    let mut work = UnitOfWork::new();
    work.add(&accounts, &mut account).unwrap();
    let error = work.add(&accounts, &mut copy).unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateStream { stream: named } if *named == stream),
        "{error}"
    );
    assert_eq!(work.len(), 1);
    drop(work);

    let empty: UnitOfWork<'_, InMemoryEventStore> = UnitOfWork::new();
    assert!(empty.is_empty());
    assert!(empty.commit().await.unwrap().is_empty());
    assert_eq!(store.len(), 4);
}
