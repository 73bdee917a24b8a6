//! The transactional outbox on a SQLite file: the shared outbox checks with
//! two store handles on one file playing two relays' processes, and what is
//! SQLite's own (leases that lapse and renew, the outbox switched off and
//! on, appends by a handle that never enabled anything, one entry per
//! append cut and split by claims).

use std::time::Duration;

use factum_core::testing::outbox as checks;
use factum_core::{EventStore, ExpectedVersion, NewEvent, Outbox, OutboxClaim, Outcome, Payload, StreamId};
use factum_sqlite::{Durability, SqliteError, SqliteEventStore, SqliteOptions};
use tempfile::TempDir;

/// Two handles on one fresh file with the outbox enabled: like two
/// processes, each with its own writer.
async fn two_handles() -> (TempDir, SqliteEventStore, SqliteEventStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("outbox.db");
    let options = SqliteOptions::new().durability(Durability::Normal);
    let first = SqliteEventStore::open_with(&path, options.clone())
        .await
        .expect("the file opens");
    first.enable_outbox().await.expect("the outbox is enabled");
    let second = SqliteEventStore::open_with(&path, options)
        .await
        .expect("the file opens again");
    (dir, first, second)
}

fn event() -> NewEvent {
    NewEvent::new("noted", Payload::parse("{}").expect("valid JSON"))
}

async fn append(store: &SqliteEventStore, stream: &str, count: usize) {
    let events = (0..count).map(|_| event()).collect();
    store
        .append(&StreamId::new("Note", stream), ExpectedVersion::Any, events)
        .await
        .expect("the append succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_path_writes_entries() {
    let (_dir, store, _) = two_handles().await;
    checks::every_append_path_writes_entries(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_views_append_through_the_outbox() {
    let (_dir, store, _) = two_handles().await;
    checks::tenant_views_append_through_the_outbox(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_holds_back_the_rest_of_its_aggregates() {
    let (_dir, first, second) = two_handles().await;
    checks::a_claim_holds_back_the_rest_of_its_aggregates(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_behind_the_relays_own_hands_out_what_follows() {
    let (_dir, first, second) = two_handles().await;
    checks::a_claim_behind_the_relays_own_hands_out_what_follows(&first, &first.outbox(), &second.outbox())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_never_share_an_entry() {
    let (_dir, first, second) = two_handles().await;
    checks::claims_never_share_an_entry(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_claim_releases_its_entries() {
    let (_dir, first, second) = two_handles().await;
    checks::a_dropped_claim_releases_its_entries(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_recorded() {
    let (_dir, store, _) = two_handles().await;
    checks::outcomes_are_recorded(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_old_sent_entries() {
    let (_dir, store, _) = two_handles().await;
    checks::prune_deletes_only_old_sent_entries(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_event_once_in_order() {
    let (_dir, first, second) = two_handles().await;
    checks::two_relays_publish_each_event_once_in_order(&first, first.outbox(), second.outbox()).await;
}

/// A relay whose process died stops renewing: once its lease lapses,
/// another relay claims its rows. A live claim keeps its rows past the
/// lease, renewing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_claimed_again_and_a_live_one_is_renewed() {
    let (_dir, first, second) = two_handles().await;
    append(&first, "leased", 2).await;
    let lease = Duration::from_millis(300);

    let live = second.outbox().lease(lease).claim(10).await.unwrap();
    assert_eq!(live.entries().len(), 2);
    tokio::time::sleep(lease * 3).await;
    let meanwhile = first.outbox().claim(10).await.unwrap();
    assert!(meanwhile.entries().is_empty(), "the live claim renewed its lease");
    meanwhile.finish(Vec::new()).await.unwrap();
    live.finish(vec![Outcome::Retry("no bus".into()); 2])
        .await
        .unwrap();

    let orphan = second.outbox().lease(lease).claim(10).await.unwrap();
    let orphaned: Vec<u64> = orphan.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(orphaned.len(), 2);
    // The process dies: its store goes away, no renewal, no release.
    second.close().await.unwrap();
    drop(orphan);
    let early = first.outbox().claim(10).await.unwrap();
    assert!(early.entries().is_empty(), "the lease has not lapsed yet");
    early.finish(Vec::new()).await.unwrap();

    let taken = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::time::sleep(lease / 2).await;
            let claim = first.outbox().claim(10).await.unwrap();
            if !claim.entries().is_empty() {
                return claim;
            }
            claim.finish(Vec::new()).await.unwrap();
        }
    })
    .await
    .expect("the lapsed lease is taken over");
    let ids: Vec<u64> = taken.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(ids, orphaned);
    assert!(taken.entries().iter().all(|entry| entry.attempts == 1));
    taken.finish(vec![Outcome::Sent; 2]).await.unwrap();
    assert_eq!(first.outbox().pending().await.unwrap(), 0);
}

/// Disabling stops new entries and keeps the unsent ones; enabling is
/// idempotent and captures again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_keeps_the_unsent_rows() {
    let (_dir, store, _) = two_handles().await;
    assert!(store.outbox_enabled().await.unwrap());
    append(&store, "kept", 2).await;
    store.disable_outbox().await.unwrap();
    store.disable_outbox().await.unwrap();
    assert!(!store.outbox_enabled().await.unwrap());
    append(&store, "kept", 1).await;
    assert_eq!(
        store.outbox().pending().await.unwrap(),
        2,
        "no row while off; old rows kept"
    );

    store.enable_outbox().await.unwrap();
    store.enable_outbox().await.unwrap();
    append(&store, "kept", 1).await;
    let claim = store.outbox().claim(10).await.unwrap();
    let versions: Vec<u64> = claim.entries().iter().map(|entry| entry.event.version).collect();
    assert_eq!(versions, [1, 2, 4]);
    claim.finish(vec![Outcome::Sent; 3]).await.unwrap();
}

/// The outbox belongs to the file: a handle (another process, an older
/// program) that never enabled it writes rows too, and a handle opened
/// before it was enabled sees it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writer_of_the_file_writes_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let early = SqliteEventStore::open(&path).await.unwrap();
    append(&early, "before", 1).await;
    let enabling = SqliteEventStore::open(&path).await.unwrap();
    enabling.enable_outbox().await.unwrap();
    assert!(early.outbox_enabled().await.unwrap());
    append(&early, "after", 2).await;
    early
        .append_many(vec![factum_core::AppendBatch::new(
            StreamId::new("Note", "many"),
            ExpectedVersion::NoStream,
            vec![event()],
        )])
        .await
        .unwrap();
    let claim = enabling.outbox().claim(10).await.unwrap();
    let streams: Vec<String> = claim
        .entries()
        .iter()
        .map(|entry| entry.event.aggregate_id().to_owned())
        .collect();
    assert_eq!(
        streams,
        ["after", "after", "many"],
        "events from before have no rows"
    );
    claim.finish(vec![Outcome::Sent; 3]).await.unwrap();
    early.close().await.unwrap();
    enabling.close().await.unwrap();
}

/// A file whose outbox was never enabled says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_outbox_is_a_clear_error() {
    let store = SqliteEventStore::open_in_memory().await.unwrap();
    assert!(!store.outbox_enabled().await.unwrap());
    let error = store.outbox().claim(10).await.unwrap_err();
    let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<SqliteError>());
    assert!(matches!(source, Some(SqliteError::OutboxMissing)), "{error}");
    assert!(error.to_string().contains("enable_outbox"), "{error}");
}

/// The rows of an outbox table, as an operator would count them.
fn rows(path: &std::path::Path, table: &str) -> i64 {
    rusqlite::Connection::open(path)
        .expect("the file opens")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
        .expect("the outbox tables are there")
}

/// An append of 100 events is one entry, and a claim with room for fewer
/// takes the first ones and leaves the rest in line, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_is_one_entry_and_a_smaller_claim_cuts_it() {
    let (dir, store, _other) = two_handles().await;
    let path = dir.path().join("outbox.db");
    append(&store, "big", 100).await;
    assert_eq!(rows(&path, "factum_outbox"), 1, "one entry for the append");
    assert_eq!(store.outbox().pending().await.unwrap(), 100);

    let first = store.outbox().claim(30).await.unwrap();
    let versions = |claim: &factum_sqlite::SqliteOutboxClaim| -> Vec<u64> {
        claim.entries().iter().map(|entry| entry.event.version).collect()
    };
    assert_eq!(versions(&first), (1..=30).collect::<Vec<_>>());
    let rest = store.outbox().claim(100).await.unwrap();
    assert!(
        rest.entries().is_empty(),
        "the rest waits for the first 30, held by a live claim"
    );
    drop(rest);
    first.finish(vec![Outcome::Sent; 30]).await.unwrap();
    let rest = store.outbox().claim(100).await.unwrap();
    assert_eq!(versions(&rest), (31..=100).collect::<Vec<_>>());
    rest.finish(vec![Outcome::Sent; 70]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
    assert_eq!(rows(&path, "factum_outbox"), 0);
    assert_eq!(rows(&path, "factum_outbox_sent"), 2, "the cut made two entries");
}

/// A claim whose events end differently splits their entry: what was sent
/// is not published again, a parked event is listed alone and can be
/// requeued alone, and the retried rest comes back with its attempt
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_outcomes_split_an_entry() {
    let (_dir, store, _other) = two_handles().await;
    append(&store, "mixed", 5).await;
    let claim = store.outbox().claim(10).await.unwrap();
    let ids: Vec<u64> = claim.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(ids.len(), 5);
    claim
        .finish(vec![
            Outcome::Sent,
            Outcome::Park("too large".to_owned()),
            Outcome::Sent,
            Outcome::Retry("broker down".to_owned()),
            Outcome::Retry("broker down".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.outbox().pending().await.unwrap(),
        3,
        "one parked, two to retry"
    );
    let parked = store.outbox().parked(10).await.unwrap();
    let parked: Vec<(u64, u32, &str)> = parked
        .iter()
        .map(|(entry, error)| (entry.id, entry.attempts, error.as_str()))
        .collect();
    assert_eq!(parked, [(ids[1], 1, "too large")]);

    let again = store.outbox().claim(10).await.unwrap();
    let retried: Vec<(u64, u32)> = again
        .entries()
        .iter()
        .map(|entry| (entry.id, entry.attempts))
        .collect();
    assert_eq!(retried, [(ids[3], 1), (ids[4], 1)]);
    again.finish(vec![Outcome::Sent; 2]).await.unwrap();

    assert!(store.outbox().requeue(ids[1]).await.unwrap());
    let requeued = store.outbox().claim(10).await.unwrap();
    let requeued_ids: Vec<u64> = requeued.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(requeued_ids, [ids[1]], "the sent events never come back");
    requeued.finish(vec![Outcome::Sent]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
}
