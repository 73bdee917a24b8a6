//! Replay with upcasting: 100,000 events that each need a two-step upcast
//! against the same events stored at the current schema version, in the
//! same run, in memory and in a SQLite file; and the decoding of one such
//! event, lifted as a `Value` once (factum) or written back to text and
//! parsed again (the way upcasting worked before).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factum::prelude::*;
use factum::{ExpectedVersion, NewEvent, Payload, StreamId};
use factum_benches::{CounterId, EvolvedCounter, events_at_version_1, events_at_version_3};

const STREAM_LENGTH: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a benchmark runtime")
}

/// Writes a counter's history: `created`, then `events`.
fn history<S: EventStore>(runtime: &tokio::runtime::Runtime, store: &S, events: Vec<NewEvent>) -> CounterId {
    let id = CounterId::generate();
    let created = NewEvent::new(
        "created",
        Payload::encode(&serde_json::json!({ "id": id, "value": 0 })).expect("payload"),
    );
    let mut history = vec![created];
    history.extend(events);
    runtime
        .block_on(store.append(
            &StreamId::new("EvolvedCounter", id.to_string()),
            ExpectedVersion::NoStream,
            history,
        ))
        .expect("append");
    id
}

/// Both replays of one store, one benchmark each.
fn replay_both<S: EventStore>(c: &mut Criterion, group: &str, runtime: &tokio::runtime::Runtime, store: S) {
    let current = history(runtime, &store, events_at_version_3(STREAM_LENGTH - 1));
    let old = history(runtime, &store, events_at_version_1(STREAM_LENGTH - 1));
    let app = Application::<EvolvedCounter, _>::new(store);
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(STREAM_LENGTH as u64));
    group.sample_size(20);
    for (name, id) in [("at the current schema version", current), ("2-step upcast", old)] {
        group.bench_function(format!("{STREAM_LENGTH} events, {name}"), |b| {
            b.iter(|| {
                let counter = runtime.block_on(app.get(id)).expect("replay");
                assert_eq!(counter.value, STREAM_LENGTH as i64 - 1);
            });
        });
    }
    group.finish();
}

fn replay_in_memory(c: &mut Criterion) {
    let runtime = runtime();
    replay_both(c, "evolution/replay/memory", &runtime, InMemoryEventStore::new());
}

fn replay_from_sqlite(c: &mut Criterion) {
    let runtime = runtime();
    let dir = std::env::temp_dir().join(format!("factum-bench-evolution-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let store = runtime
        .block_on(factum::SqliteEventStore::open(dir.join("events.db")))
        .expect("a SQLite store");
    replay_both(c, "evolution/replay/sqlite", &runtime, store.clone());
    runtime.block_on(store.close()).expect("close");
    let _ = std::fs::remove_dir_all(dir);
}

/// One event's decoding: what the replay above does per event, alone.
fn decode(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    let stream = StreamId::new("EvolvedCounter", "decode");
    let recorded = |events: Vec<NewEvent>| -> Vec<_> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| event.recorded(stream.clone(), index as u64 + 2, index as u64 + 2))
            .collect()
    };
    let current = recorded(events_at_version_3(EVENTS));
    let old = recorded(events_at_version_1(EVENTS));
    let evolution = EvolvedCounter::EVOLUTION;
    let steps: Vec<_> = evolution.upcasters().to_vec();
    let mut group = c.benchmark_group("evolution/decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("at the current schema version", |b| {
        b.iter(|| {
            for event in &current {
                black_box(event.decode::<EvolvedCounter>().expect("decode"));
            }
        });
    });
    group.bench_function("2-step upcast, lifted once as a Value", |b| {
        b.iter(|| {
            for event in &old {
                black_box(event.decode::<EvolvedCounter>().expect("decode"));
            }
        });
    });
    // Before: text → Value → the steps → text → parse.
    group.bench_function("2-step upcast, back to text and parsed again", |b| {
        b.iter(|| {
            for event in &old {
                let mut value = event.payload.to_value().expect("parse");
                for upcaster in &steps {
                    value = upcaster.lift(value).expect("lift");
                }
                let text = Payload::from(&value);
                black_box(
                    <EvolvedCounter as Aggregate>::Event::from_payload("incremented", &text).expect("decode"),
                );
            }
        });
    });
    group.finish();
}

criterion_group!(benches, replay_in_memory, replay_from_sqlite, decode);
criterion_main!(benches);
