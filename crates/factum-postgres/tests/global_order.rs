//! The global log's order under concurrency (DESIGN.md, "Global order and
//! subscriptions"): no reader passes an open append, unrelated transactions
//! never stall delivery, and many writers lose, duplicate and reorder nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, RecordedEvent, StreamId};
use factum_postgres::{GroupCommit, PostgresEventStore};
use futures::StreamExt;
use tokio_postgres::Client;
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

fn schema_of(store: &PostgresEventStore) -> String {
    store.schema_name().trim_end_matches(".factum_").to_owned()
}

/// Starts a factum append on `raw` inside a transaction it leaves open: the
/// same function the store calls, so this is a real writer caught mid-way.
async fn open_append(raw: &Client, store: &PostgresEventStore, stream_id: &str) -> (Uuid, i64) {
    raw.batch_execute("BEGIN").await.unwrap();
    let event_id = Uuid::now_v7();
    let row = raw
        .query_one(
            &format!(
                "SELECT positions[1] FROM \"{}\".factum_append('Counter', $1, NULL, false, ARRAY[$2::uuid], ARRAY['opened'], \
                 ARRAY[1], ARRAY['{{}}'], ARRAY[NULL]::text[], ARRAY[now()], 'default')",
                schema_of(store)
            ),
            &[&stream_id, &event_id],
        )
        .await
        .unwrap();
    (event_id, row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_do_not_pass_an_open_append_and_deliver_it_first_once_committed() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(writer_a) = common::raw_client().await else {
        return;
    };
    let mut live = store.subscribe_all(0);

    let (a_id, a_position) = open_append(&writer_a, &store, "A").await;
    let b = store
        .append(
            &StreamId::new("Counter", "B"),
            ExpectedVersion::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    let b_position = b.positions[0];
    assert!(u64::try_from(a_position).unwrap() < b_position);

    // B is committed and visible, but A is open below it: nobody passes A.
    assert!(store.read_all(0, 100).await.unwrap().is_empty());
    assert!(store.head_position().await.unwrap() < b_position);
    let early = tokio::time::timeout(Duration::from_millis(600), live.next()).await;
    assert!(
        early.is_err(),
        "the subscription delivered past an open append: {early:?}"
    );

    writer_a.batch_execute("COMMIT").await.unwrap();
    let all = store.read_all(0, 100).await.unwrap();
    let order: Vec<(Uuid, u64)> = all.iter().map(|event| (event.event_id, event.position)).collect();
    assert_eq!(order.len(), 2);
    assert_eq!(order[0], (a_id, u64::try_from(a_position).unwrap()));
    assert_eq!(order[1].1, b_position);
    assert_eq!(store.head_position().await.unwrap(), b_position);

    let first = next_event(&mut live).await;
    let second = next_event(&mut live).await;
    assert_eq!((first.event_id, second.position), (a_id, b_position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_a_hole_and_releases_readers() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(writer_a) = common::raw_client().await else {
        return;
    };
    let (_, a_position) = open_append(&writer_a, &store, "A").await;
    let b = store
        .append(
            &StreamId::new("Counter", "B"),
            ExpectedVersion::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    assert!(store.read_all(0, 100).await.unwrap().is_empty());
    writer_a.batch_execute("ROLLBACK").await.unwrap();
    let all = store.read_all(0, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].position, b.positions[0]);
    assert!(u64::try_from(a_position).unwrap() < all[0].position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_transaction_on_an_unrelated_table_does_not_stall_delivery() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(idle) = common::raw_client().await else {
        return;
    };
    let table = format!("\"{}\".unrelated", schema_of(&store));
    idle.batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    // An open transaction with an xid, holding row and table locks: the kind
    // that stalls readers capped at the oldest running transaction.
    idle.batch_execute(&format!(
        "BEGIN; INSERT INTO {table} VALUES (1); SELECT txid_current();"
    ))
    .await
    .unwrap();
    let mut live = store.subscribe_all(0);
    let appended = store
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    assert_eq!(store.head_position().await.unwrap(), appended.positions[0]);
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
    let delivered = next_event(&mut live).await;
    assert_eq!(delivered.position, appended.positions[0]);
    idle.batch_execute("ROLLBACK").await.unwrap();
}

async fn next_event(live: &mut factum_core::EventStream<'static>) -> RecordedEvent {
    tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("the subscription delivered nothing within 10 s")
        .expect("the subscription ended")
        .expect("the subscription failed")
}

const WRITERS: usize = 16;
/// A multiple of `WRITERS`: each writes an equal share.
const TOTAL_EVENTS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_and_two_readers_lose_duplicate_and_reorder_nothing() {
    sixteen_writers_and_two_readers(GroupCommit::off()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_and_two_readers_with_group_commit() {
    sixteen_writers_and_two_readers(GroupCommit::new()).await;
}

async fn sixteen_writers_and_two_readers(group_commit: GroupCommit) {
    let Some(store) =
        common::fresh_store_with(|options| options.pool_size(24).group_commit(group_commit)).await
    else {
        return;
    };

    // Reader 1: a live subscription. Reader 2: a loop of read_all pages,
    // checkpointing at the last position it delivered.
    let subscriber = {
        let live = store.subscribe_all(0);
        tokio::spawn(async move {
            let mut live = live;
            let mut delivered = Vec::with_capacity(TOTAL_EVENTS);
            while delivered.len() < TOTAL_EVENTS {
                let event = tokio::time::timeout(Duration::from_secs(30), live.next())
                    .await
                    .expect("subscription stalled")
                    .expect("subscription ended")
                    .expect("subscription failed");
                delivered.push(event.position);
            }
            delivered
        })
    };
    let poller = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut delivered = Vec::with_capacity(TOTAL_EVENTS);
            let mut checkpoint = 0;
            let started = std::time::Instant::now();
            while delivered.len() < TOTAL_EVENTS {
                assert!(started.elapsed() < Duration::from_secs(120), "poller stalled");
                let page = store.read_all(checkpoint, 500).await.expect("read_all failed");
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                for event in page {
                    checkpoint = event.position;
                    delivered.push(event.position);
                }
            }
            delivered
        })
    };

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let quota = TOTAL_EVENTS / WRITERS;
            let mut positions = Vec::with_capacity(quota);
            let mut written = 0;
            let mut round = 0;
            while written < quota {
                // Single events (every third append: the one-statement path)
                // and batches of up to 11 events, on the writer's own streams
                // and (with `Any`) on one stream shared by all writers.
                let size = if round % 3 == 0 {
                    1
                } else {
                    1 + (writer * 7 + round * 3) % 11
                };
                let size = size.min(quota - written);
                let stream = if round % 4 == 0 {
                    StreamId::new("Shared", "all")
                } else {
                    StreamId::new("Counter", format!("{writer}-{}", round % 16))
                };
                let events = (0..size).map(|n| event(n as u64)).collect();
                let result = store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .expect("append failed");
                positions.extend(result.positions);
                written += size;
                round += 1;
            }
            positions
        }));
    }
    let mut committed = BTreeSet::new();
    for writer in writers {
        for position in writer.await.unwrap() {
            assert!(committed.insert(position), "position {position} handed out twice");
        }
    }
    assert_eq!(committed.len(), TOTAL_EVENTS);
    let expected: Vec<u64> = committed.into_iter().collect();
    for (name, reader) in [("subscription", subscriber), ("read_all loop", poller)] {
        let delivered = reader.await.unwrap();
        assert!(
            delivered.windows(2).all(|pair| pair[0] < pair[1]),
            "the {name} delivered out of order or twice"
        );
        assert_eq!(delivered, expected, "the {name} lost or invented events");
    }
}
