//! Atomic appends across streams on PostgreSQL: an open call holds readers
//! back like any open append and is delivered whole once it commits, and
//! calls taking the same streams in opposite orders never deadlock.

mod common;

use std::collections::HashMap;

use factum_core::{AppendBatch, EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
use factum_postgres::PostgresEventStore;
use tokio_postgres::Client;
use uuid::Uuid;

fn event(n: usize) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

fn schema_of(store: &PostgresEventStore) -> String {
    store.schema_name().trim_end_matches(".factum_").to_owned()
}

/// Starts an atomic call over streams `A` and `B` on `raw`, inside a
/// transaction it leaves open: the same function the store calls, so this
/// is a real call caught mid-way. Returns its event ids and positions.
async fn open_call(raw: &Client, store: &PostgresEventStore) -> (Vec<Uuid>, Vec<i64>) {
    raw.batch_execute("BEGIN").await.unwrap();
    let ids = vec![Uuid::now_v7(), Uuid::now_v7()];
    let row = raw
        .query_one(
            &format!(
                "SELECT positions FROM \"{}\".factum_append_batches(ARRAY['Counter', 'Counter'], ARRAY['A', 'B'], \
                 ARRAY[NULL, 0]::bigint[], ARRAY[1, 2], ARRAY[1, 1], $1, ARRAY['opened', 'opened'], ARRAY[1, 1], \
                 ARRAY['{{}}', '{{}}'], ARRAY[NULL, NULL]::text[], ARRAY[now(), now()], 'default')",
                schema_of(store)
            ),
            &[&ids],
        )
        .await
        .unwrap();
    (ids, row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_call_holds_readers_back_and_is_delivered_whole() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let (ids, positions) = open_call(&raw, &store).await;
    let later = store
        .append(
            &StreamId::new("Counter", "C"),
            ExpectedVersion::NoStream,
            vec![event(1)],
        )
        .await
        .unwrap();
    assert!(
        positions
            .iter()
            .all(|&position| position < later.positions[0] as i64)
    );
    assert!(
        store.read_all(0, 100).await.unwrap().is_empty(),
        "a reader passed an open atomic call"
    );
    // Waits for the call's turn on A, then appends after its event.
    let behind = {
        let store = store.clone();
        tokio::spawn(async move {
            let stream = StreamId::new("Counter", "A");
            store.append(&stream, ExpectedVersion::Any, vec![event(2)]).await
        })
    };
    raw.batch_execute("COMMIT").await.unwrap();
    assert_eq!(behind.await.unwrap().unwrap().stream_version, 2);
    let all = store.read_all(0, 100).await.unwrap();
    let order: Vec<Uuid> = all.iter().take(2).map(|event| event.event_id).collect();
    assert_eq!(order, ids, "the call comes first, whole, in its order");
    assert_eq!(all[2].position, later.positions[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_shared_streams_in_opposite_orders_never_deadlock() {
    const TASKS: usize = 8;
    const ROUNDS: usize = 30;
    let Some(store) = common::fresh_store_with(|options| options.pool_size(TASKS + 2)).await else {
        return;
    };
    let streams: Vec<StreamId> = (0..4)
        .map(|n| StreamId::new("Counter", format!("shared-{n}")))
        .collect();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, streams) = (store.clone(), streams.clone());
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    // Two different streams: the second is 1 to 3 after the first.
                    let mut pair = [&streams[round % 4], &streams[(round + 1 + task % 3) % 4]];
                    if task % 2 == 1 {
                        pair.reverse();
                    }
                    let call = pair
                        .iter()
                        .map(|stream| {
                            AppendBatch::new((*stream).clone(), ExpectedVersion::Any, vec![event(task)])
                        })
                        .collect();
                    // A deadlock would surface here as the server's error.
                    store.append_many(call).await.unwrap();
                    let single = &streams[(task + round) % 4];
                    store
                        .append(single, ExpectedVersion::Any, vec![event(task)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.read_all(0, 10_000).await.unwrap();
    assert_eq!(all.len(), TASKS * ROUNDS * 3);
    let mut versions: HashMap<&StreamId, Vec<u64>> = HashMap::new();
    for event in &all {
        versions.entry(&event.stream).or_default().push(event.version);
    }
    for (stream, versions) in versions {
        let gapless: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, gapless, "versions of {stream} in log order");
    }
}
