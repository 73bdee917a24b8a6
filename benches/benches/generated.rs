//! Generated aggregate code against a hand-written equivalent: recording
#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! events through the wrappers, and decoding + applying stored events.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factum::Payload;
use factum::prelude::*;
use factum_benches::{Counter, CounterId, HandCounter, HandCounterEvent};

const EVENTS: usize = 10_000;

fn stored_payloads() -> Vec<Payload> {
    (0..EVENTS)
        .map(|amount| Payload::encode(&serde_json::json!({ "amount": amount })).expect("payload"))
        .collect()
}

fn apply(c: &mut Criterion) {
    let payloads = stored_payloads();
    let mut group = c.benchmark_group("decode+apply");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("generated", |b| {
        b.iter(|| {
            let mut counter = Counter::create(CounterId::default(), 0);
            for payload in &payloads {
                let event =
                    <Counter as Aggregate>::Event::from_payload("incremented", payload).expect("decode");
                counter.apply(event).expect("apply");
            }
            black_box(counter.value)
        });
    });
    group.bench_function("hand-written", |b| {
        b.iter(|| {
            let mut counter = HandCounter::from_first_event(HandCounterEvent::Created {
                id: CounterId::default(),
                value: 0,
            })
            .expect("created");
            for payload in &payloads {
                let event = HandCounterEvent::from_payload("incremented", payload).expect("decode");
                counter.apply(event).expect("apply");
            }
            black_box(counter.value)
        });
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("generated", |b| {
        b.iter(|| {
            let mut counter = Counter::create(CounterId::default(), 0);
            for amount in 0..EVENTS as i64 {
                counter.add(black_box(amount));
            }
            black_box(counter.pending_events().len())
        });
    });
    group.bench_function("hand-written", |b| {
        b.iter(|| {
            let mut counter = HandCounter::from_first_event(HandCounterEvent::Created {
                id: CounterId::default(),
                value: 0,
            })
            .expect("created");
            for amount in 0..EVENTS as i64 {
                counter.add(black_box(amount));
            }
            black_box(counter.pending_events().len())
        });
    });
    group.finish();
}

fn to_payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    let generated: Vec<_> = {
        let mut counter = Counter::create(CounterId::default(), 0);
        for amount in 0..EVENTS as i64 {
            counter.add(amount);
        }
        counter.pending_events()[1..].to_vec()
    };
    let hand: Vec<_> = (0..EVENTS as i64)
        .map(|amount| HandCounterEvent::Incremented { amount })
        .collect();
    group.bench_function("generated", |b| {
        b.iter(|| {
            for event in &generated {
                black_box(event.to_payload().expect("encode"));
            }
        })
    });
    group.bench_function("hand-written", |b| {
        b.iter(|| {
            for event in &hand {
                black_box(event.to_payload().expect("encode"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, apply, record, to_payload);
criterion_main!(benches);
