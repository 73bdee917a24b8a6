//! The transactional outbox on PostgreSQL: the shared outbox checks with
//! two stores (two pools, like two processes) on one schema playing two
//! relays, and what is PostgreSQL's own: a relay whose connection dies is
//! taken over at once, the trigger covers SQL callers and is switched off
//! and on, and a missing outbox is a clear error.

mod common;

use std::time::Duration;

use factum_core::testing::outbox as checks;
use factum_core::{
    AppendBatch, EventStore, ExpectedVersion, NewEvent, Outbox, OutboxClaim, Outcome, Payload, StreamId,
};
use factum_postgres::{PostgresError, PostgresEventStore};

/// A fresh schema with the outbox enabled, and a second store on it.
async fn two_stores() -> Option<(PostgresEventStore, PostgresEventStore)> {
    let first = common::fresh_store().await?;
    first.enable_outbox().await.expect("the outbox is enabled");
    let second = PostgresEventStore::connect_with(&common::url(), common::options(schema_of(&first)))
        .await
        .expect("a second store connects");
    Some((first, second))
}

/// The schema of `store`, without its table prefix.
fn schema_of(store: &PostgresEventStore) -> &str {
    store.schema_name().split('.').next().unwrap_or_default()
}

fn event() -> NewEvent {
    NewEvent::new("noted", Payload::parse("{}").expect("valid JSON"))
}

async fn append(store: &PostgresEventStore, stream: &str, count: usize) {
    let events = (0..count).map(|_| event()).collect();
    store
        .append(&StreamId::new("Note", stream), ExpectedVersion::Any, events)
        .await
        .expect("the append succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_path_writes_entries() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    checks::every_append_path_writes_entries(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_views_append_through_the_outbox() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    store
        .ensure_tenant_role()
        .await
        .expect("the tenant role is set up");
    checks::tenant_views_append_through_the_outbox(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_holds_back_the_rest_of_its_aggregates() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    checks::a_claim_holds_back_the_rest_of_its_aggregates(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_behind_the_relays_own_hands_out_what_follows() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    checks::a_claim_behind_the_relays_own_hands_out_what_follows(&first, &first.outbox(), &second.outbox())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_never_share_an_entry() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    checks::claims_never_share_an_entry(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_claim_releases_its_entries() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    checks::a_dropped_claim_releases_its_entries(&first, &first.outbox(), &second.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_recorded() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    checks::outcomes_are_recorded(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_old_sent_entries() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    checks::prune_deletes_only_old_sent_entries(&store, &store.outbox()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_event_once_in_order() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    checks::two_relays_publish_each_event_once_in_order(&first, first.outbox(), second.outbox()).await;
}

/// `FOR UPDATE SKIP LOCKED`: while a relay holds rows another skips them;
/// when the first relay's connection dies (its process killed, the network
/// gone), the server rolls its transaction back and the second relay takes
/// the rows over at once, attempts unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_connection_died_is_taken_over() {
    let Some((first, second)) = two_stores().await else {
        return;
    };
    append(&first, "orphaned", 3).await;
    let orphan = second.outbox().claim(10).await.unwrap();
    let orphaned: Vec<u64> = orphan.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(orphaned.len(), 3);

    let skipped = first.outbox().claim(10).await.unwrap();
    assert!(skipped.entries().is_empty(), "locked rows are skipped");
    skipped.finish(Vec::new()).await.unwrap();

    let admin = common::raw_client().await.unwrap();
    let terminated: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
              WHERE state = 'idle in transaction' AND query LIKE '%' || $1 || '%outbox%'",
            &[&schema_of(&first)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        terminated, 1,
        "the claim's connection is the only one idle in a transaction"
    );

    let taken = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let claim = first.outbox().claim(10).await.unwrap();
            if !claim.entries().is_empty() {
                return claim;
            }
            claim.finish(Vec::new()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the rows of the dead connection are taken over");
    let ids: Vec<u64> = taken.entries().iter().map(|entry| entry.id).collect();
    assert_eq!(ids, orphaned);
    assert!(taken.entries().iter().all(|entry| entry.attempts == 0));
    taken.finish(vec![Outcome::Sent; 3]).await.unwrap();
    assert!(
        orphan.finish(vec![Outcome::Sent; 3]).await.is_err(),
        "the dead relay cannot record anything"
    );
    assert_eq!(first.outbox().pending().await.unwrap(), 0);
}

/// Disabling drops the trigger and keeps the unsent rows; enabling is
/// idempotent and captures again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_keeps_the_unsent_rows() {
    let Some((store, other)) = two_stores().await else {
        return;
    };
    assert!(
        other.outbox_enabled().await.unwrap(),
        "seen by every store on the schema"
    );
    append(&store, "kept", 2).await;
    store.disable_outbox().await.unwrap();
    store.disable_outbox().await.unwrap();
    assert!(!other.outbox_enabled().await.unwrap());
    append(&store, "kept", 1).await;
    assert_eq!(
        store.outbox().pending().await.unwrap(),
        2,
        "no row while off; old rows kept"
    );

    store.enable_outbox().await.unwrap();
    other.enable_outbox().await.unwrap();
    append(&store, "kept", 1).await;
    let claim = store.outbox().claim(10).await.unwrap();
    let versions: Vec<u64> = claim.entries().iter().map(|entry| entry.event.version).collect();
    assert_eq!(versions, [1, 2, 4]);
    claim.finish(vec![Outcome::Sent; 3]).await.unwrap();
}

/// The trigger covers writers that are not this store: a client calling
/// the store's SQL function, and a plain `INSERT` (an older program).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_callers_write_rows_too() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    let schema = schema_of(&store);
    let client = common::raw_client().await.unwrap();
    client
        .batch_execute(&format!(
            "SELECT * FROM \"{schema}\".factum_append('Note', 'from-sql', 0, false,
                 ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['noted', 'noted'], ARRAY[1, 1],
                 ARRAY['{{}}', '{{}}'], ARRAY[NULL, NULL]::text[], ARRAY[now(), now()], 'default');
             INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id,
                 event_type, schema_version, payload, occurred_at, tenant)
             VALUES (nextval('\"{schema}\".factum_position'), 'Note', 'raw', 1, gen_random_uuid(),
                 'noted', 1, '{{}}', now(), 'default');"
        ))
        .await
        .unwrap();
    let claim = store.outbox().claim(10).await.unwrap();
    let streams = factum_core::testing::outbox::named(claim.entries());
    assert_eq!(
        streams,
        [
            ("from-sql".to_owned(), 1),
            ("from-sql".to_owned(), 2),
            ("raw".to_owned(), 1)
        ]
    );
    claim.finish(vec![Outcome::Sent; 3]).await.unwrap();
}

/// Concurrent writers can leave one append's positions apart (each row
/// takes the next value of the sequence as it is inserted): a claim still
/// hands its events out in position order, not entry by entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_hands_out_interleaved_appends_in_position_order() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    let schema = schema_of(&store);
    let insert = |stream: &str, rows: &[(i64, i64)]| {
        let values = rows
            .iter()
            .map(|(position, version)| {
                format!(
                    "({position}, 'Note', '{stream}', {version}, gen_random_uuid(), 'noted', 1, '{{}}', now(), 'default')"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id,
                 event_type, schema_version, payload, occurred_at, tenant) VALUES {values};"
        )
    };
    let client = common::raw_client().await.unwrap();
    client
        .batch_execute(&format!(
            "{}{}SELECT setval('\"{schema}\".factum_position', 6);",
            insert("a", &[(1, 1), (3, 2), (5, 3)]),
            insert("b", &[(2, 1), (4, 2), (6, 3)])
        ))
        .await
        .unwrap();
    let claim = store.outbox().claim(10).await.unwrap();
    let positions: Vec<u64> = claim.entries().iter().map(|entry| entry.event.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        factum_core::testing::outbox::named(claim.entries()),
        [
            ("a".to_owned(), 1),
            ("b".to_owned(), 1),
            ("a".to_owned(), 2),
            ("b".to_owned(), 2),
            ("a".to_owned(), 3),
            ("b".to_owned(), 3)
        ]
    );
    claim.finish(vec![Outcome::Sent; 6]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
}

/// A store whose outbox was never enabled says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_outbox_is_a_clear_error() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    assert!(!store.outbox_enabled().await.unwrap());
    let error = store.outbox().claim(10).await.unwrap_err();
    let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<PostgresError>());
    assert!(
        matches!(source, Some(PostgresError::OutboxMissing { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("enable_outbox"), "{error}");
}

/// The outbox rows of `store`'s schema: (first version, last version,
/// attempts, parked, sent) of `stream`'s entries, in position order.
async fn entries_of(store: &PostgresEventStore, stream: &str) -> Vec<(i64, i64, i32, bool, bool)> {
    let client = common::raw_client().await.unwrap();
    client
        .query(
            &format!(
                "SELECT first_version, last_version, attempts, parked_at IS NOT NULL, sent_at IS NOT NULL
                   FROM \"{}\".factum_outbox WHERE stream_id = $1 ORDER BY position",
                schema_of(store)
            ),
            &[&stream],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect()
}

fn versions(claim: &impl OutboxClaim) -> Vec<u64> {
    claim.entries().iter().map(|entry| entry.event.version).collect()
}

/// The outbox keeps one entry per append and stream: a save of 100 events
/// writes one row, which stands for 100 pending events, handed out one
/// entry per event, each keyed by its event's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_of_100_events_writes_one_row() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    append(&store, "hundred", 100).await;
    append(&store, "one", 1).await;
    assert_eq!(entries_of(&store, "hundred").await, [(1, 100, 0, false, false)]);
    assert_eq!(entries_of(&store, "one").await, [(1, 1, 0, false, false)]);
    assert_eq!(
        store.outbox().pending().await.unwrap(),
        101,
        "pending counts events"
    );

    let claim = store.outbox().claim(1000).await.unwrap();
    assert_eq!(versions(&claim), (1..=100).chain([1]).collect::<Vec<u64>>());
    assert!(
        claim
            .entries()
            .iter()
            .all(|entry| entry.id == entry.event.position && entry.attempts == 0)
    );
    claim.finish(vec![Outcome::Sent; 101]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
    assert_eq!(entries_of(&store, "hundred").await, [(1, 100, 0, false, true)]);
    let pruned = store
        .outbox()
        .prune(time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(pruned, 101, "prune counts events too");
}

/// An atomic append to several streams writes one entry per stream, and
/// concurrent appends (which group commit may store in one statement) one
/// per append and stream too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_to_several_streams_writes_an_entry_per_stream() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    store
        .append_many(vec![
            AppendBatch::new(
                StreamId::new("Note", "many-a"),
                ExpectedVersion::NoStream,
                vec![event(), event()],
            ),
            AppendBatch::new(
                StreamId::new("Note", "many-b"),
                ExpectedVersion::NoStream,
                vec![event()],
            ),
            AppendBatch::new(
                StreamId::new("Note", "many-c"),
                ExpectedVersion::NoStream,
                vec![event(), event(), event()],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(entries_of(&store, "many-a").await, [(1, 2, 0, false, false)]);
    assert_eq!(entries_of(&store, "many-b").await, [(1, 1, 0, false, false)]);
    assert_eq!(entries_of(&store, "many-c").await, [(1, 3, 0, false, false)]);
    let together: Vec<String> = (0..8).map(|index| format!("together-{index}")).collect();
    futures::future::join_all(together.iter().map(|stream| append(&store, stream, 3))).await;
    for stream in &together {
        assert_eq!(entries_of(&store, stream).await, [(1, 3, 0, false, false)]);
    }
    assert_eq!(store.outbox().pending().await.unwrap(), 6 + 24);
    let claim = store.outbox().claim(100).await.unwrap();
    assert_eq!(claim.entries().len(), 30);
    claim.finish(vec![Outcome::Sent; 30]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
}

/// `limit` counts events: a claim takes whole entries while they fit, and
/// the first events of the next one up to `limit` (`Outbox::claim` hands
/// out at most `limit` entries); the rest of that append stays in line,
/// split off into an entry of its own when the claim is finished, and
/// comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_smaller_than_an_append_takes_its_first_events() {
    let Some((store, other)) = two_stores().await else {
        return;
    };
    append(&store, "big", 5).await;
    append(&store, "next", 3).await;
    let claim = store.outbox().claim(2).await.unwrap();
    assert_eq!(versions(&claim), [1, 2]);
    let elsewhere = other.outbox().claim(10).await.unwrap();
    assert_eq!(
        versions(&elsewhere),
        [1, 2, 3],
        "only `next`: the rest of `big` stays locked with the claim"
    );
    elsewhere.finish(vec![Outcome::Sent; 3]).await.unwrap();
    claim.finish(vec![Outcome::Sent; 2]).await.unwrap();
    assert_eq!(
        entries_of(&store, "big").await,
        [(1, 2, 0, false, true), (3, 5, 0, false, false)]
    );
    assert_eq!(store.outbox().pending().await.unwrap(), 3);

    append(&store, "after", 2).await;
    let claim = store.outbox().claim(4).await.unwrap();
    let claimed = factum_core::testing::outbox::named(claim.entries());
    assert_eq!(
        claimed,
        [
            ("big".to_owned(), 3),
            ("big".to_owned(), 4),
            ("big".to_owned(), 5),
            ("after".to_owned(), 1)
        ]
    );
    // Finished with fewer outcomes than entries: the rest is released.
    claim.finish(vec![Outcome::Sent; 3]).await.unwrap();
    assert_eq!(
        entries_of(&store, "big").await,
        [(1, 2, 0, false, true), (3, 5, 0, false, true)]
    );
    assert_eq!(
        entries_of(&store, "after").await,
        [(1, 2, 0, false, false)],
        "released as it was"
    );
    let rest = store.outbox().claim(1).await.unwrap();
    assert_eq!(versions(&rest), [1]);
    rest.finish(vec![Outcome::Sent]).await.unwrap();
    let rest = store.outbox().claim(10).await.unwrap();
    assert_eq!(versions(&rest), [2]);
    rest.finish(vec![Outcome::Sent]).await.unwrap();
    assert_eq!(store.outbox().pending().await.unwrap(), 0);
}

/// Outcomes are per event: an entry whose events had several is split into
/// runs, so the sent events are not published again, the retried ones
/// come back with their attempts counted, and a parked event is an entry
/// of its own, listed and requeued alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_outcomes_split_the_entry() {
    let Some((store, _)) = two_stores().await else {
        return;
    };
    let outbox = store.outbox();
    append(&store, "x", 4).await;
    let claim = outbox.claim(10).await.unwrap();
    assert_eq!(versions(&claim), [1, 2, 3, 4]);
    let retry = || Outcome::Retry("timed out".to_owned());
    claim
        .finish(vec![Outcome::Sent, Outcome::Sent, retry(), retry()])
        .await
        .unwrap();
    assert_eq!(
        entries_of(&store, "x").await,
        [(1, 2, 0, false, true), (3, 4, 1, false, false)]
    );
    assert_eq!(outbox.pending().await.unwrap(), 2);
    let again = outbox.claim(10).await.unwrap();
    assert_eq!(versions(&again), [3, 4], "the sent events are not claimed again");
    assert!(again.entries().iter().all(|entry| entry.attempts == 1));
    again.finish(vec![Outcome::Sent; 2]).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 0);

    append(&store, "y", 5).await;
    let claim = outbox.claim(10).await.unwrap();
    let y2 = claim.entries()[1].id;
    let park = Outcome::Park("message too large".to_owned());
    claim
        .finish(vec![Outcome::Sent, park, Outcome::Sent, Outcome::Sent, retry()])
        .await
        .unwrap();
    assert_eq!(
        entries_of(&store, "y").await,
        [
            (1, 1, 0, false, true),
            (2, 2, 1, true, false),
            (3, 4, 0, false, true),
            (5, 5, 1, false, false)
        ]
    );
    let parked = outbox.parked(10).await.unwrap();
    assert_eq!(parked.len(), 1, "the parked event alone");
    assert_eq!((parked[0].0.id, parked[0].0.event.version), (y2, 2));
    assert_eq!(parked[0].0.attempts, 1);
    assert_eq!(parked[0].1, "message too large");
    assert_eq!(
        outbox.pending().await.unwrap(),
        2,
        "the parked and the retried event"
    );

    let retried = outbox.claim(10).await.unwrap();
    assert_eq!(versions(&retried), [5], "a parked event holds nothing back");
    retried.finish(vec![Outcome::Sent]).await.unwrap();
    assert!(outbox.requeue(y2).await.unwrap());
    assert!(outbox.parked(10).await.unwrap().is_empty());
    let requeued = outbox.claim(10).await.unwrap();
    assert_eq!(versions(&requeued), [2]);
    assert_eq!(requeued.entries()[0].id, y2);
    requeued.finish(vec![Outcome::Sent]).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 0);
    let events: i64 = entries_of(&store, "y")
        .await
        .iter()
        .map(|(first, last, ..)| last - first + 1)
        .sum();
    assert_eq!(events, 5, "every event in exactly one entry");
}
