//! Atomic saves across aggregates against plain saves, on every store, in
//! one process: `save_all` of two aggregates with one event each, beside
//! one save of one event, two saves of one event, and one save of two
//! events to one stream. The four cases take turns, one operation each,
//! so they meet the same neighbours on a shared machine; the ratios are
//! what to read.
//!
//! Run: `cargo bench -p factum-benches --bench atomic`. `BENCH_SCALE=0.2`
//! shortens every case; `BENCH_ONLY=memory` (or `sqlite`, `postgres`) runs
//! one store, and `BENCH_CASE=3` (0 to 3, in the order printed) one case,
//! for a profiler. PostgreSQL is read from `FACTUM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) in a schema of its own,
//! dropped afterwards; the store is skipped when the server is unreachable.

use std::time::{Duration, Instant};

use factum::prelude::*;
use factum::{Durability, PostgresOptions, SqliteOptions};
use factum_benches::{Counter, CounterId, scale, wanted};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each case runs this many times its per-store count.
const ROUNDS: usize = 10;

/// The cases, in the order they run in each round.
const CASES: [&str; 4] = [
    "one save, 1 event",
    "two saves, 1 event each",
    "one save, 2 events to one stream",
    "save_all, 2 aggregates x 1 event",
];

/// Two saved counters, loaded: what each case changes and saves again.
async fn counters<S: EventStore>(app: &Application<Counter, S>) -> Result<[Counter; 2], BoxError> {
    let mut first = Counter::create(CounterId::generate(), 0);
    let mut second = Counter::create(CounterId::generate(), 0);
    app.save(&mut first).await?;
    app.save(&mut second).await?;
    Ok([first, second])
}

/// One operation of `case` on `pair`: the time it took.
async fn run_case<S: EventStore>(
    app: &Application<Counter, S>,
    case: usize,
    pair: &mut [Counter; 2],
) -> Result<Duration, BoxError> {
    let [first, second] = pair;
    let started = Instant::now();
    match case {
        0 => {
            first.add(1);
            app.save(first).await?;
        }
        1 => {
            first.add(1);
            app.save(first).await?;
            second.add(1);
            app.save(second).await?;
        }
        2 => {
            first.add(1);
            first.add(1);
            app.save(first).await?;
        }
        _ => {
            first.add(1);
            second.add(1);
            app.save_all([first, second]).await?;
        }
    }
    Ok(started.elapsed())
}

/// Runs every case `ROUNDS * per_round` times, the cases taking turns;
/// prints the mean time of each and the ratios of the atomic save.
async fn measure<S: EventStore>(name: &str, store: S, per_round: usize) -> Result<(), BoxError> {
    let app = Application::<Counter, _>::new(store);
    let mut pairs = Vec::with_capacity(CASES.len());
    for _ in CASES {
        pairs.push(counters(&app).await?);
    }
    // Warm up: prepared statements, caches, the first pages of each stream.
    for (case, pair) in pairs.iter_mut().enumerate() {
        for _ in 0..per_round.div_ceil(4) {
            run_case(&app, case, pair).await?;
        }
    }
    let only: Option<usize> = std::env::var("BENCH_CASE")
        .ok()
        .and_then(|case| case.parse().ok());
    let mut totals = [Duration::ZERO; CASES.len()];
    // One operation of each case in turn: a disk or a neighbour that slows
    // down for a while slows every case alike.
    for _ in 0..ROUNDS * per_round {
        for (case, pair) in pairs.iter_mut().enumerate() {
            if only.is_none_or(|only| only == case) {
                totals[case] += run_case(&app, case, pair).await?;
            }
        }
    }
    let operations = (ROUNDS * per_round) as f64;
    let mean: Vec<f64> = totals
        .iter()
        .map(|total| total.as_secs_f64() * 1e6 / operations)
        .collect();
    println!("{name} ({operations} operations per case):");
    for (case, micros) in CASES.iter().zip(&mean) {
        println!("  {case:<34} {micros:>10.2} µs");
    }
    let atomic = mean[3];
    println!(
        "  save_all 2x1 / one single-stream save of as many events: {:.2}x (goal <= 1.3x); / two saves: {:.2}x; / one save of 1 event: {:.2}x",
        atomic / mean[2],
        atomic / mean[1],
        atomic / mean[0]
    );
    Ok(())
}

async fn postgres(per_round: usize) -> Result<(), BoxError> {
    let url = std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = format!("factum_bench_atomic_{}", std::process::id());
    let options = PostgresOptions::new().schema(schema.clone());
    let store = match PostgresEventStore::connect_with(&url, options).await {
        Ok(store) => store,
        Err(error) => {
            println!("postgres: skipped, the server is unreachable: {error}");
            return Ok(());
        }
    };
    store.ensure_schema().await?;
    let measured = measure("postgres", store.clone(), per_round).await;
    let dropped = store
        .pool()
        .get()
        .await?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
    store.close().await?;
    measured?;
    Ok(dropped?)
}

async fn sqlite(durability: Durability, per_round: usize) -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("factum-bench-atomic-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{durability:?}.db"));
    let store = SqliteEventStore::open_with(&path, SqliteOptions::new().durability(durability)).await?;
    let measured = measure(&format!("sqlite, {durability:?}"), store.clone(), per_round).await;
    store.close().await?;
    std::fs::remove_dir_all(&dir)?;
    measured
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if wanted("memory") {
            measure("memory", InMemoryEventStore::new(), scale(20_000)).await?;
        }
        if wanted("sqlite") {
            sqlite(Durability::Full, scale(100)).await?;
            sqlite(Durability::Normal, scale(1_000)).await?;
        }
        if wanted("postgres") {
            postgres(scale(200)).await?;
        }
        Ok(())
    })
}
