//! `subscribe_stream` catching up on one stream of 100,000 events, beside
//! `read_stream` of the same stream in the same run, on each backend: the
//! subscription reads the same pages, so the ratio is the cost of
//! following (the hand-over machinery) over a plain read.
//!
//! ```text
//! cargo bench -p factum-benches --bench subscribe
//! FACTUM_POSTGRES_URL=postgres://... cargo bench -p factum-benches --bench subscribe
//! ```
//!
//! PostgreSQL is skipped, with a message, when it cannot be reached.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use factum::prelude::*;
use factum::{
    ExpectedVersion, NewEvent, Payload, PostgresEventStore, PostgresOptions, SqliteEventStore, StreamId,
};
use futures::StreamExt;

const EVENTS: usize = 100_000;
const APPEND_BATCH: usize = 1_000;
const POSTGRES_SCHEMA: &str = "factum_bench_subscribe";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a benchmark runtime")
}

fn stream() -> StreamId {
    StreamId::new("Counter", "followed")
}

async fn fill<S: EventStore>(store: &S) {
    for _ in 0..EVENTS / APPEND_BATCH {
        let events = (0..APPEND_BATCH)
            .map(|amount| {
                NewEvent::new(
                    "incremented",
                    Payload::from(serde_json::json!({ "amount": amount })),
                )
            })
            .collect();
        store
            .append(&stream(), ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
}

async fn read_whole_stream<S: EventStore>(store: &S) {
    let mut events = store.read_stream(&stream(), 1);
    let mut count = 0;
    while let Some(event) = events.next().await {
        std::hint::black_box(event.expect("read_stream"));
        count += 1;
    }
    assert_eq!(count, EVENTS);
}

async fn catch_up<S: EventStore>(store: &S) {
    let mut events = store.subscribe_stream(&stream(), 1).take(EVENTS);
    let mut count = 0;
    while let Some(event) = events.next().await {
        std::hint::black_box(event.expect("subscribe_stream"));
        count += 1;
    }
    assert_eq!(count, EVENTS);
}

fn bench_backend<S: EventStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    backend: &str,
    store: &S,
) {
    group.bench_function(format!("{backend}: read_stream"), |b| {
        b.iter(|| runtime.block_on(read_whole_stream(store)));
    });
    group.bench_function(format!("{backend}: subscribe_stream catch-up"), |b| {
        b.iter(|| runtime.block_on(catch_up(store)));
    });
}

async fn postgres() -> Option<PostgresEventStore> {
    let url = std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let options = PostgresOptions::new().schema(POSTGRES_SCHEMA);
    let store = match PostgresEventStore::connect_with(&url, options).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("SKIPPED: PostgreSQL at {url}: {error}");
            return None;
        }
    };
    let client = store.pool().get().await.expect("a connection");
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{POSTGRES_SCHEMA}\" CASCADE"))
        .await
        .expect("drop the benchmark's schema");
    drop(client);
    store.ensure_schema().await.expect("the schema");
    fill(&store).await;
    Some(store)
}

fn catch_up_benchmarks(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group(format!("subscribe_stream/{EVENTS} events"));
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));

    let memory = InMemoryEventStore::new();
    runtime.block_on(fill(&memory));
    bench_backend(&mut group, &runtime, "in-memory", &memory);

    let path = std::env::temp_dir().join(format!("factum-subscribe-bench-{}.db", std::process::id()));
    let sqlite = runtime.block_on(async {
        let store = SqliteEventStore::open(&path).await.expect("open SQLite");
        fill(&store).await;
        store
    });
    bench_backend(&mut group, &runtime, "sqlite", &sqlite);
    runtime.block_on(sqlite.close()).expect("close SQLite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    if let Some(postgres) = runtime.block_on(postgres()) {
        bench_backend(&mut group, &runtime, "postgres", &postgres);
        runtime.block_on(postgres.close()).expect("close PostgreSQL");
    }
    group.finish();
}

criterion_group!(benches, catch_up_benchmarks);
criterion_main!(benches);
