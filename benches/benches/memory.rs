//! In-memory store: append and replay throughput for a small event.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factum::prelude::*;
use factum::{ExpectedVersion, NewEvent, Payload, StreamId};
use factum_benches::{Counter, CounterId, small_events};

const BATCH: usize = 1_000;
const STREAM_LENGTH: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a benchmark runtime")
}

fn append(c: &mut Criterion) {
    /// Batches per store: a store that grew for the whole run would measure
    /// page faults of a multi-gigabyte heap rather than appends.
    const BATCHES_PER_STORE: u64 = 1_000;
    let runtime = runtime();
    let mut group = c.benchmark_group("memory/append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("batch of {BATCH}"), |b| {
        b.iter_custom(|iterations| {
            let mut store = InMemoryEventStore::new();
            let mut elapsed = Duration::ZERO;
            for iteration in 0..iterations {
                if iteration % BATCHES_PER_STORE == 0 {
                    store = InMemoryEventStore::new();
                }
                let stream = StreamId::new("Counter", iteration.to_string());
                let events = small_events(BATCH);
                let started = Instant::now();
                runtime
                    .block_on(store.append(&stream, ExpectedVersion::NoStream, events))
                    .expect("append");
                elapsed += started.elapsed();
            }
            elapsed
        });
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let runtime = runtime();
    let store = InMemoryEventStore::new();
    let id = CounterId::generate();
    let stream = StreamId::new("Counter", id.to_string());
    let created = NewEvent::new(
        "created",
        Payload::encode(&serde_json::json!({ "id": id, "value": 0 })).expect("payload"),
    );
    let mut history = vec![created];
    history.extend(small_events(STREAM_LENGTH - 1));
    runtime
        .block_on(store.append(&stream, ExpectedVersion::NoStream, history))
        .expect("append");
    let app = Application::<Counter, _>::new(store);

    let mut group = c.benchmark_group("memory/replay");
    group.throughput(Throughput::Elements(STREAM_LENGTH as u64));
    group.sample_size(20);
    group.bench_function(format!("{STREAM_LENGTH} events into a Counter"), |b| {
        b.iter(|| {
            let counter = runtime.block_on(app.get(id)).expect("replay");
            assert_eq!(counter.value, STREAM_LENGTH as i64 - 1);
        });
    });
    group.finish();
}

/// Events of one aggregate in the save and load benchmarks: a typical
/// command's worth, so fixed costs per call (spans, metrics) would show.
const SHORT_STREAM: usize = 10;

fn save(c: &mut Criterion) {
    /// Saves per store, as in `append`: the heap stays small.
    const SAVES_PER_STORE: u64 = 10_000;
    let runtime = runtime();
    let mut group = c.benchmark_group("memory/save");
    group.throughput(Throughput::Elements(SHORT_STREAM as u64));
    group.bench_function(format!("new Counter, {SHORT_STREAM} events"), |b| {
        b.iter_custom(|iterations| {
            let mut app = Application::<Counter, _>::new(InMemoryEventStore::new());
            let mut elapsed = Duration::ZERO;
            for iteration in 0..iterations {
                if iteration % SAVES_PER_STORE == 0 {
                    app = Application::new(InMemoryEventStore::new());
                }
                let mut counter = Counter::create(CounterId::generate(), 0);
                for _ in 1..SHORT_STREAM {
                    counter.add(1);
                }
                let started = Instant::now();
                runtime.block_on(app.save(&mut counter)).expect("save");
                elapsed += started.elapsed();
            }
            elapsed
        });
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let runtime = runtime();
    let app = Application::<Counter, _>::new(InMemoryEventStore::new());
    let id = CounterId::generate();
    let mut counter = Counter::create(id, 0);
    for _ in 1..SHORT_STREAM {
        counter.add(1);
    }
    runtime.block_on(app.save(&mut counter)).expect("save");

    let mut group = c.benchmark_group("memory/load");
    group.throughput(Throughput::Elements(SHORT_STREAM as u64));
    group.bench_function(format!("{SHORT_STREAM} events into a Counter"), |b| {
        b.iter(|| {
            let counter = runtime.block_on(app.get(id)).expect("load");
            assert_eq!(counter.value, SHORT_STREAM as i64 - 1);
        });
    });
    group.finish();
}

criterion_group!(benches, append, replay, save, load);
criterion_main!(benches);
