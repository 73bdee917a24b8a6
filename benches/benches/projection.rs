//! Projection catch-up: a projection that counts events, fed by the runner
//! from the start of a log of one million events, checkpointing every 50,000:
//! in memory, from SQLite with the count in memory (at least once), and from
//! SQLite with the count in a table of the same file, updated in the
//! checkpoint's transaction (exactly once, one SQL statement per event).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factum::prelude::*;
use factum::{
    ExpectedVersion, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore, NewEvent, Payload,
    Projection, ProjectionRunner, ProjectionStore, RecordedEvent, SqliteEventStore, SqliteProjectionStore,
    SqliteTransaction, TransactionalProjection,
};

const EVENTS: u64 = 1_000_000;
const APPEND_BATCH: u64 = 1_000;

struct Count(u64);

impl Projection for Count {
    fn name(&self) -> &str {
        "count"
    }

    async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
        self.0 += 1;
        Ok(())
    }
}

/// The count in a table, one UPDATE per event in the runner's transaction.
struct CountInTable;

impl TransactionalProjection<SqliteProjectionStore> for CountInTable {
    fn name(&self) -> &str {
        "count_in_table"
    }

    async fn handle(
        &mut self,
        transaction: &mut SqliteTransaction,
        _event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        transaction
            .execute("UPDATE event_count SET events = events + 1", ())
            .await?;
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut SqliteTransaction) -> Result<(), HandlerError> {
        transaction
            .execute("UPDATE event_count SET events = 0", ())
            .await?;
        Ok(())
    }
}

async fn catch_up_exactly_once(events: &SqliteEventStore, store: &SqliteProjectionStore) {
    let mut runner = ProjectionRunner::transactional(events.clone(), CountInTable, store.clone())
        .batch_size(5_000)
        .checkpoint_every(50_000);
    runner.rebuild().await.expect("reset");
    let handle = runner.spawn();
    handle.wait_for_checkpoint(EVENTS).await.expect("catch-up");
    handle.shutdown().await.expect("shutdown");
    assert_eq!(
        store.checkpoint("count_in_table").await.expect("checkpoint"),
        EVENTS
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a benchmark runtime")
}

async fn fill<S: EventStore>(store: &S) {
    for stream_number in 0..EVENTS / APPEND_BATCH {
        let events = (0..APPEND_BATCH)
            .map(|amount| {
                NewEvent::new(
                    "incremented",
                    Payload::from(serde_json::json!({ "amount": amount })),
                )
            })
            .collect();
        let stream = StreamId::new("Counter", stream_number.to_string());
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .expect("append");
    }
}

async fn catch_up<S: EventStore + Clone>(store: &S) {
    let handle = ProjectionRunner::new(
        store.clone(),
        Count(0),
        InMemoryCheckpointStore::new(),
        InMemoryDeadLetterStore::new(),
    )
    .batch_size(5_000)
    .checkpoint_every(50_000)
    .spawn();
    handle.wait_for_checkpoint(EVENTS).await.expect("catch-up");
    handle.shutdown().await.expect("shutdown");
}

fn catch_up_benchmarks(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("projection/catch-up");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    let memory = InMemoryEventStore::new();
    runtime.block_on(fill(&memory));
    group.bench_function("in-memory, 1M events", |b| {
        b.iter(|| runtime.block_on(catch_up(&memory)));
    });

    let path = std::env::temp_dir().join(format!("factum-projection-bench-{}.db", std::process::id()));
    let sqlite = runtime.block_on(async {
        let store = SqliteEventStore::open(&path).await.expect("open SQLite");
        fill(&store).await;
        store
    });
    group.bench_function("sqlite, 1M events", |b| {
        b.iter(|| runtime.block_on(catch_up(&sqlite)));
    });
    let store = SqliteProjectionStore::new(&sqlite);
    runtime
        .block_on(store.execute_batch(
            "CREATE TABLE IF NOT EXISTS event_count (events INTEGER NOT NULL); \
             INSERT INTO event_count SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM event_count);",
        ))
        .expect("the count table");
    group.bench_function("sqlite, exactly once, 1M events", |b| {
        b.iter(|| runtime.block_on(catch_up_exactly_once(&sqlite, &store)));
    });
    group.finish();
    runtime.block_on(sqlite.close()).expect("close SQLite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

criterion_group!(benches, catch_up_benchmarks);
criterion_main!(benches);
