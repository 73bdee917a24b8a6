//! The event store over gRPC against the same store used directly, in one
//! process: a factum-server on 127.0.0.1 over the store, and a
//! `RemoteEventStore` talking to it. Direct and remote take turns in each
//! workload, so a busy neighbour slows both alike; the ratios are what to
//! read. Client and server share the process (and the machine's 2 cores).
//!
//! Workloads: 16 tasks appending one event at a time; batches of 100
//! events; `read_all` of the whole log; one unary round trip (`Head`),
//! the floor of every call; subscription latency (append to
//! delivery) at 1,000 events/s.
//!
//! Run: `cargo bench -p factum-benches --bench remote`. `BENCH_SCALE=0.2`
//! shortens it; `BENCH_ONLY=memory` (or `sqlite`) runs one backing store.

use std::future::Future;
use std::time::{Duration, Instant};

use factum::{
    EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, SqliteEventStore, StreamId,
};
use factum::{SnapshotStore, Tenancy};
use factum_benches::{scale, wanted};
use factum_remote::{RemoteEventStore, RemoteOptions};
use factum_server::Server;
use futures::StreamExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn event(amount: u64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::from(serde_json::json!({ "amount": amount })),
    )
}

fn stream(name: &str) -> StreamId {
    StreamId::new("Counter", format!("{name}-{}", uuid::Uuid::now_v7()))
}

/// Events per second of `work`, which handles `events` events.
async fn rate<F: Future<Output = Result<(), BoxError>>>(events: usize, work: F) -> Result<f64, BoxError> {
    let started = Instant::now();
    work.await?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

async fn concurrent_appends<S: EventStore + Clone>(store: &S, per_task: usize) -> Result<f64, BoxError> {
    rate(16 * per_task, async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let stream = stream("single");
                    for version in 0..per_task as u64 {
                        store
                            .append(&stream, ExpectedVersion::Exact(version), vec![event(version)])
                            .await?;
                    }
                    Ok::<_, factum::Error>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(())
    })
    .await
}

async fn batches<S: EventStore>(store: &S, count: usize) -> Result<f64, BoxError> {
    rate(count * 100, async {
        let stream = stream("batch");
        for _ in 0..count {
            store
                .append(&stream, ExpectedVersion::Any, (0..100).map(event).collect())
                .await?;
        }
        Ok(())
    })
    .await
}

async fn read_all<S: EventStore>(store: &S, expected: usize) -> Result<f64, BoxError> {
    rate(expected, async {
        let events = store.read_all(0, usize::MAX).await?;
        if events.len() < expected {
            return Err(format!("read {} events, expected {expected}", events.len()).into());
        }
        Ok(())
    })
    .await
}

/// Append-to-delivery latencies (µs) of `count` events appended 1 ms apart
/// through `writer`, as `reader`'s subscription delivers them.
async fn latencies<W: EventStore + Clone, R: EventStore>(
    writer: &W,
    reader: &R,
    count: usize,
) -> Result<Vec<f64>, BoxError> {
    let base = Instant::now();
    let mut subscription = reader.subscribe_all(reader.head_position().await?);
    let writer = writer.clone();
    let appending = tokio::spawn(async move {
        let stream = stream("latency");
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..count {
            tick.tick().await;
            let sent = base.elapsed().as_nanos() as u64;
            writer
                .append(&stream, ExpectedVersion::Any, vec![event(sent)])
                .await?;
        }
        Ok::<_, factum::Error>(())
    });
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count {
        let delivered = subscription.next().await.ok_or("the subscription ended")??;
        let now = base.elapsed().as_nanos() as u64;
        let sent = delivered.payload.to_value()?["amount"]
            .as_u64()
            .ok_or("a send time")?;
        samples.push((now.saturating_sub(sent)) as f64 / 1000.0);
    }
    appending.await??;
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    sorted[index]
}

async fn measure<S>(name: &str, store: S, scale_by: f64) -> Result<(), BoxError>
where
    S: EventStore + SnapshotStore + Tenancy + Clone,
{
    let server = Server::new(store.clone()).start("127.0.0.1:0".parse()?).await?;
    let remote =
        RemoteEventStore::connect_with(&format!("http://{}", server.local_addr()), RemoteOptions::new())
            .await?;
    let rounds = 3;
    let n = |count: usize| scale((count as f64 * scale_by) as usize);
    let (mut direct, mut over) = ([0.0; 3], [0.0; 3]);
    for _ in 0..rounds {
        direct[0] += concurrent_appends(&store, n(200)).await? / rounds as f64;
        over[0] += concurrent_appends(&remote, n(200)).await? / rounds as f64;
        direct[1] += batches(&store, n(200)).await? / rounds as f64;
        over[1] += batches(&remote, n(200)).await? / rounds as f64;
    }
    let total = store.head_position().await? as usize;
    let fill = n(200_000).saturating_sub(total);
    batches(&store, fill.div_ceil(100)).await?;
    let total = store.read_all(0, usize::MAX).await?.len();
    for _ in 0..rounds {
        direct[2] += read_all(&store, total).await? / rounds as f64;
        over[2] += read_all(&remote, total).await? / rounds as f64;
    }
    println!("{name}:");
    let cases = [
        "16 concurrent single-event appends",
        "100-event batches",
        "read_all",
    ];
    for (case, (direct, over)) in cases.iter().zip(direct.iter().zip(over)) {
        println!(
            "  {case:<36} direct {:>12.0} events/s   remote {:>12.0} events/s   remote/direct {:>5.1}%",
            direct,
            over,
            over / direct * 100.0
        );
    }
    println!("  read_all read {total} events per call");
    // The floor of every unary call: a sequential batch cannot cost less
    // over the wire than one of these.
    let calls = scale(2000);
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(remote.head_position().await?);
    }
    println!(
        "  one round trip (Head), mean of {calls}: {:.0} µs",
        started.elapsed().as_secs_f64() * 1e6 / calls as f64
    );
    let count = scale(3000);
    let local = latencies(&store, &store, count).await?;
    let wire = latencies(&store, &remote, count).await?;
    println!(
        "  subscription latency at 1,000 events/s ({count} events): direct p50 {:.0} µs p99 {:.0} µs; remote p50 {:.0} µs p99 {:.0} µs",
        percentile(&local, 0.5),
        percentile(&local, 0.99),
        percentile(&wire, 0.5),
        percentile(&wire, 0.99),
    );
    server.shutdown().await?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if wanted("memory") {
            measure("in-memory store", InMemoryEventStore::new(), 1.0).await?;
        }
        if wanted("sqlite") {
            let dir = tempfile::tempdir()?;
            let store = SqliteEventStore::open(dir.path().join("bench.db")).await?;
            measure("SQLite file", store.clone(), 0.5).await?;
            store.close().await?;
        }
        Ok(())
    })
}
