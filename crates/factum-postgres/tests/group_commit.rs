//! Group commit: appends made while others are in flight share one
//! transaction, and each of them still succeeds or fails on its own: a
//! conflict, a value the server refuses, an idempotent retry, a connection
//! killed mid-group.
//!
//! Each test keeps one append in flight (it waits on a row a raw
//! transaction holds), so that the appends under test, made together
//! within the group's window, gather in groups rather than run alone.
//! Which appends shared a transaction is read from `xmin`.

mod common;

use std::time::{Duration, Instant};

use factum_core::{Error, EventStore, ExpectedVersion, NewEvent, Payload, RecordedEvent, StreamId, Tenancy};
use factum_postgres::{GroupCommit, PostgresEventStore};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

async fn one_slot_store() -> Option<PostgresEventStore> {
    common::fresh_store_with(|options| {
        options.group_commit(
            GroupCommit::new()
                .in_flight(1)
                .alone(0)
                .window(Duration::from_millis(300)),
        )
    })
    .await
}

fn schema_of(store: &PostgresEventStore) -> String {
    store.schema_name().trim_end_matches(".factum_").to_owned()
}

/// Inserts version `version` of `Gate-{id}` in an open transaction of
/// `client`, so that an append of that version waits for it.
async fn hold_row(client: &Client, schema: &str, id: &str, version: i64, position: i64) {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, \
                 event_type, schema_version, payload, occurred_at, tenant) \
                 VALUES ($1, 'Gate', $2, $3, $4, 'held', 1, '{{}}', now(), 'default')"
            ),
            &[&position, &id, &version, &Uuid::now_v7()],
        )
        .await
        .unwrap();
}

/// The backend of this database whose statement contains `marker` and
/// waits for a lock.
async fn waiting_backend(observer: &Client, marker: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = observer
            .query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() \
                 AND application_name = 'factum' AND strpos(query, $1) > 0",
                &[&marker],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        if Instant::now() > deadline {
            let rows = observer
                .query(
                    "SELECT coalesce(wait_event_type, '-') || ' ' || coalesce(state, '-') || ' ' || left(query, 60) \
                     FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'factum'",
                    &[],
                )
                .await
                .unwrap();
            let seen: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            panic!("no append waits on the held row ({marker}); backends: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps an append in flight: one to `Gate-slot` that waits on
/// `holder`'s row; returns it once it waits.
async fn take_the_slot(
    store: &PostgresEventStore,
    holder: &Client,
    observer: &Client,
) -> JoinHandle<Result<factum_core::AppendResult, Error>> {
    hold_row(holder, &schema_of(store), "slot", 1, 100_000_000_000).await;
    let slot = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(
                    &StreamId::new("Gate", "slot"),
                    ExpectedVersion::NoStream,
                    vec![event(0)],
                )
                .await
        })
    };
    waiting_backend(observer, "factum_events").await;
    slot
}

/// Spawns `appends`, gives their groups time to form and commit, then
/// rolls back `holder`'s row so that the append in flight finishes.
///
/// Each append is polled once here before it is spawned: an append enters
/// the group gate on its first poll, so they enter in the order given,
/// whichever order the runtime's workers would have started them in.
async fn queue_then_release<T: Send + 'static>(
    appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>>,
    holder: &Client,
) -> Vec<JoinHandle<T>> {
    let mut handles = Vec::with_capacity(appends.len());
    for mut append in appends {
        handles.push(match futures::poll!(append.as_mut()) {
            std::task::Poll::Ready(done) => tokio::spawn(async move { done }),
            std::task::Poll::Pending => tokio::spawn(append),
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder.batch_execute("ROLLBACK").await.unwrap();
    handles
}

/// The global log of `store` once `count` events are below its horizon
/// (or after 30 s). The tests of this file run at once, each in a schema of
/// its own, and hold a writer open for half a second; a store whose lock
/// tag another's shares (one byte of a hash of the names) has its readers
/// held back meanwhile, by design, so an immediate read could come short.
async fn log_of<S: EventStore>(store: &S, count: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.read_all(0, 1_000).await.unwrap();
        if log.len() >= count || Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many transactions wrote the events of streams of `stream_type`.
async fn transactions(observer: &Client, store: &PostgresEventStore, stream_type: &str) -> i64 {
    count(observer, store, "count(DISTINCT xmin::text)", stream_type).await
}

/// How many events of streams of `stream_type` are stored (committed).
async fn stored(observer: &Client, store: &PostgresEventStore, stream_type: &str) -> i64 {
    count(observer, store, "count(*)", stream_type).await
}

/// The aggregate `what` over the stored events of streams of `stream_type`.
async fn count(observer: &Client, store: &PostgresEventStore, what: &str, stream_type: &str) -> i64 {
    observer
        .query_one(
            &format!(
                "SELECT {what} FROM \"{}\".factum_events WHERE stream_type = $1",
                schema_of(store)
            ),
            &[&stream_type],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_made_together_share_transactions_and_keep_their_own_versions() {
    let Some(store) = one_slot_store().await else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    for n in 0..8 {
        store
            .append(
                &StreamId::new("Old", n.to_string()),
                ExpectedVersion::NoStream,
                vec![event(n)],
            )
            .await
            .unwrap();
    }
    let slot = take_the_slot(&store, &holder, &observer).await;
    let mut appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    for n in 0..32_u64 {
        let store = store.clone();
        appends.push(Box::pin(async move {
            // New streams, existing streams at their version, and batches.
            let (stream, expected, events) = match n % 4 {
                0 => (
                    StreamId::new("G", format!("new-{n}")),
                    ExpectedVersion::NoStream,
                    vec![event(n)],
                ),
                1 => (
                    StreamId::new("Old", (n / 4).to_string()),
                    ExpectedVersion::Exact(1),
                    vec![event(n), event(n + 1)],
                ),
                2 => (
                    StreamId::new("G", format!("any-{n}")),
                    ExpectedVersion::Any,
                    vec![event(n)],
                ),
                _ => (
                    StreamId::new("G", format!("batch-{n}")),
                    ExpectedVersion::NoStream,
                    (0..5).map(event).collect(),
                ),
            };
            let count = events.len() as u64;
            let result = store.append(&stream, expected, events).await;
            (stream, count, result)
        }));
    }
    let handles = queue_then_release(appends, &holder).await;
    slot.await.unwrap().unwrap();
    let mut positions = Vec::new();
    for handle in handles {
        let (stream, count, result) = handle.await.unwrap();
        let result = result.unwrap_or_else(|error| panic!("{stream}: {error}"));
        let base = if stream.aggregate_type() == "Old" { 1 } else { 0 };
        assert_eq!(result.stream_version, base + count, "{stream}");
        assert_eq!(result.positions.len() as u64, count);
        assert!(
            result.positions.windows(2).all(|pair| pair[0] < pair[1]),
            "{stream}"
        );
        let stored: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(store.read_stream(&stream, base + 1))
                .await
                .unwrap();
        let stored_positions: Vec<u64> = stored.iter().map(|event| event.position).collect();
        assert_eq!(stored_positions, result.positions, "{stream}");
        positions.extend(result.positions);
    }
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 8 * 2 + 8 + 8 + 8 * 5);
    // The global log holds every event once, in position order.
    let log = log_of(&store, 8 + 1 + positions.len()).await;
    assert_eq!(log.len(), 8 + 1 + positions.len());
    assert!(log.windows(2).all(|pair| pair[0].position < pair[1].position));
    // Queued behind the one append in flight, all 32 gathered in one
    // group, which waited for that append's place past its window.
    let shared = transactions(&observer, &store, "G").await;
    assert_eq!(shared, 1, "{shared} transactions for the 24 appends to `G`");
    let old_and_new = observer
        .query_one(
            &format!(
                "SELECT count(DISTINCT xmin::text) FROM \"{}\".factum_events WHERE version > 1 OR stream_type = 'G'",
                schema_of(&store)
            ),
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(old_and_new, 1, "the appends to `Old` and `G` were not one group");
}

/// Spawns a single-event append to a new stream `G-{n}` of `store`.
fn append_new(store: &PostgresEventStore, n: u64) -> JoinHandle<Result<factum_core::AppendResult, Error>> {
    let store = store.clone();
    tokio::spawn(async move {
        store
            .append(
                &StreamId::new("G", n.to_string()),
                ExpectedVersion::NoStream,
                vec![event(n)],
            )
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gathers_until_a_place_is_free_not_for_a_fixed_time() {
    // One place, none beside it, no window; patience long enough not to
    // act here.
    let Some(store) = common::fresh_store_with(|options| {
        options.group_commit(GroupCommit::new().alone(0).patience(Duration::from_secs(5)))
    })
    .await
    else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    let slot = take_the_slot(&store, &holder, &observer).await;
    // Two waves, apart: with the place taken, neither commits, and the
    // second joins the group the first opened.
    let mut handles: Vec<_> = (0..8).map(|n| append_new(&store, n)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handles.extend((8..16).map(|n| append_new(&store, n)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stored(&observer, &store, "G").await,
        0,
        "a group committed while the place was taken"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    slot.await.unwrap().unwrap();
    for handle in handles {
        assert_eq!(handle.await.unwrap().unwrap().stream_version, 1);
    }
    assert_eq!(stored(&observer, &store, "G").await, 16);
    assert_eq!(transactions(&observer, &store, "G").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_stalled_on_a_lock_holds_the_others_back_only_for_the_patience() {
    // One place, none beside it, the default 20 ms of patience.
    let Some(store) =
        common::fresh_store_with(|options| options.group_commit(GroupCommit::new().alone(0))).await
    else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    let slot = take_the_slot(&store, &holder, &observer).await;
    let handles: Vec<_> = (0..16).map(|n| append_new(&store, n)).collect();
    // They commit while the append holding the place still waits.
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the appends waited for the stalled one")
            .unwrap()
            .unwrap();
        assert_eq!(result.stream_version, 1);
    }
    assert!(!slot.is_finished());
    assert_eq!(stored(&observer, &store, "G").await, 16);
    holder.batch_execute("ROLLBACK").await.unwrap();
    slot.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_or_a_retry_in_a_group_is_that_appends_alone() {
    let Some(store) = one_slot_store().await else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    let retried = StreamId::new("G", "retried");
    let retried_events = vec![event(1), event(2)];
    let original = store
        .append(&retried, ExpectedVersion::NoStream, retried_events.clone())
        .await
        .unwrap();
    let slot = take_the_slot(&store, &holder, &observer).await;
    let mut appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    for n in 0..6_u64 {
        let store = store.clone();
        appends.push(Box::pin(async move {
            store
                .append(
                    &StreamId::new("G", format!("good-{n}")),
                    ExpectedVersion::NoStream,
                    vec![event(n)],
                )
                .await
        }));
    }
    {
        let store = store.clone();
        appends.push(Box::pin(async move {
            store
                .append(
                    &StreamId::new("G", "wrong"),
                    ExpectedVersion::Exact(5),
                    vec![event(7)],
                )
                .await
        }));
    }
    {
        let store = store.clone();
        let retried = retried.clone();
        appends.push(Box::pin(async move {
            store
                .append(&retried, ExpectedVersion::NoStream, retried_events)
                .await
        }));
    }
    let handles = queue_then_release(appends, &holder).await;
    slot.await.unwrap().unwrap();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    let retry = results.pop().unwrap().unwrap();
    assert_eq!(
        retry, original,
        "an idempotent retry returns the original positions"
    );
    match results.pop().unwrap() {
        Err(Error::Conflict {
            stream,
            expected: ExpectedVersion::Exact(5),
            actual: 0,
        }) => assert_eq!(stream, StreamId::new("G", "wrong")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    for result in results {
        assert_eq!(result.unwrap().stream_version, 1);
    }
    // The six good appends committed together with the retried stream's
    // original append's one: fewer transactions than appends.
    let shared = transactions(&observer, &store, "G").await;
    assert!(
        shared < 7,
        "{shared} transactions: the conflict broke the group up"
    );
    assert_eq!(
        store.stream_version(&StreamId::new("G", "wrong")).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_server_refuses_fails_its_append_and_the_group_commits() {
    let Some(store) = one_slot_store().await else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    let slot = take_the_slot(&store, &holder, &observer).await;
    let mut appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    for n in 0..8_u64 {
        let store = store.clone();
        appends.push(Box::pin(async move {
            let events = match n {
                // Not JSON: the group's statement fails on it.
                3 => vec![NewEvent::new("broken", Payload::from_stored("{not json"))],
                // A NUL character, which PostgreSQL refuses in text: kept
                // out of groups and refused alone.
                5 => vec![NewEvent::new("with\0nul", Payload::parse("{}").unwrap())],
                _ => vec![event(n)],
            };
            store
                .append(
                    &StreamId::new("G", format!("s-{n}")),
                    ExpectedVersion::NoStream,
                    events,
                )
                .await
        }));
    }
    let handles = queue_then_release(appends, &holder).await;
    slot.await.unwrap().unwrap();
    for (n, handle) in handles.into_iter().enumerate() {
        let result = handle.await.unwrap();
        let stream = StreamId::new("G", format!("s-{n}"));
        match n {
            3 | 5 => {
                match result {
                    Err(Error::InvalidRequest {
                        stream: named,
                        reason,
                    }) => {
                        assert_eq!(named, stream);
                        assert!(reason.contains("PostgreSQL refused"), "{reason}");
                    }
                    other => panic!("append {n}: expected a refused value, got {other:?}"),
                }
                assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
            }
            _ => assert_eq!(result.unwrap().stream_version, 1, "append {n}"),
        }
    }
    assert_eq!(log_of(&store, 7).await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_group_leaves_no_partial_append_and_answers_everyone() {
    let Some(store) = one_slot_store().await else {
        return;
    };
    let (Some(holder), Some(observer), Some(blocker)) = (
        common::raw_client().await,
        common::raw_client().await,
        common::raw_client().await,
    ) else {
        return;
    };
    // The group will wait on version 1 of `Gate-blocked`, held here, in
    // the middle of its inserts (a group writes its streams in order, and
    // the `A` streams come first).
    hold_row(&blocker, &schema_of(&store), "blocked", 1, 100_000_000_001).await;
    let slot = take_the_slot(&store, &holder, &observer).await;
    let mut appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    for n in 0..8_u64 {
        let store = store.clone();
        appends.push(Box::pin(async move {
            let stream = if n == 4 {
                StreamId::new("Gate", "blocked")
            } else {
                StreamId::new("A", format!("s-{n}"))
            };
            store
                .append(&stream, ExpectedVersion::NoStream, vec![event(n), event(n + 100)])
                .await
        }));
    }
    let handles = queue_then_release(appends, &holder).await;
    slot.await.unwrap().unwrap();
    // (The start of the group's statement: `pg_stat_activity` cuts long ones.)
    let group = waiting_backend(&observer, "appends AS MATERIALIZED").await;
    let killed: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&group])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    // Every append runs again alone; the blocked one waits for its row
    // again, and gets it once the blocker rolls back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    for (n, handle) in handles.into_iter().enumerate() {
        let result = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .unwrap_or_else(|_| panic!("append {n} was never answered"))
            .unwrap()
            .unwrap_or_else(|error| panic!("append {n}: {error}"));
        assert_eq!(result.stream_version, 2);
    }
    // Each stream holds its two events once: nothing partial, nothing twice.
    let log = log_of(&store, 1 + 8 * 2).await;
    assert_eq!(log.len(), 1 + 8 * 2);
    for n in 0..8_u64 {
        let stream = if n == 4 {
            StreamId::new("Gate", "blocked")
        } else {
            StreamId::new("A", format!("s-{n}"))
        };
        let versions: Vec<u64> = log
            .iter()
            .filter(|event| event.stream == stream)
            .map(|event| event.version)
            .collect();
        assert_eq!(versions, [1, 2], "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_keep_to_one_tenant_under_row_level_security() {
    let Some(store) = one_slot_store().await else {
        return;
    };
    let (Some(holder), Some(observer)) = (common::raw_client().await, common::raw_client().await) else {
        return;
    };
    let tenants = [
        store.for_tenant("acme").unwrap(),
        store.for_tenant("globex").unwrap(),
    ];
    let slot = take_the_slot(&store, &holder, &observer).await;
    let mut appends: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    // A group takes one tenant's appends, and an append of another tenant
    // closes it: each tenant's appends are queued together, so that groups
    // form however the tasks are scheduled (alternating tenants formed
    // groups of one whenever the tasks ran in the order they were queued).
    for n in 0..12_u64 {
        let view = tenants[usize::from(n >= 6)].clone();
        appends.push(Box::pin(async move {
            view.append(
                &StreamId::new("T", format!("s-{n}")),
                ExpectedVersion::NoStream,
                vec![event(n)],
            )
            .await
        }));
    }
    let handles = queue_then_release(appends, &holder).await;
    slot.await.unwrap().unwrap();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    for (index, view) in tenants.iter().enumerate() {
        let log = log_of(view, 6).await;
        let mut ids: Vec<String> = log
            .iter()
            .map(|event| event.stream.aggregate_id().to_owned())
            .collect();
        ids.sort();
        let mut expected: Vec<String> = (0..12)
            .filter(|n| usize::from(*n >= 6) == index)
            .map(|n| format!("s-{n}"))
            .collect();
        expected.sort();
        assert_eq!(ids, expected);
        for event in &log {
            assert_eq!(
                event.metadata.tenant.as_ref().map(|t| t.as_str()),
                Some(view.tenant().unwrap().as_str())
            );
        }
    }
    let shared = transactions(&observer, &store, "T").await;
    assert!(
        shared < 12,
        "{shared} transactions for 12 appends: no group was formed"
    );
}
