//! The transactional outbox: what it adds to a save, and how fast a relay
//! empties it into Kafka beside a raw rdkafka producer.
//!
//! **Save cost**: on each store, a save with the outbox enabled against
//! the same save without (another file or schema of the same store), for
//! saves of 1 event and of 100 events. The four cases take turns one
//! operation at a time, each going first in turn, so a slow spell of the
//! disk or a neighbour hits them alike; the ratios are what to read.
//!
//! **Relay throughput**: 20,000 events of 100 aggregates wait in the
//! outbox; an `OutboxRelay` publishing through a `KafkaNotifier` empties it
//! (claims, publishes, marks sent), against a raw rdkafka `FutureProducer`
//! that sends the same messages (the same bytes, key and headers, the
//! producer settings of the notifier) in one go: queue everything, then
//! await every delivery report. A second reference, the same producer
//! sending the messages a batch at a time and awaiting each batch's
//! reports before the next, was the pace of a relay that waits for a
//! batch's answers before publishing what follows; the relay now keeps
//! several batches in flight (`OutboxRelay::in_flight`) and can pass it.
//! The same relays into a bus that takes every event at once give the
//! store's ceiling: the pace of the claims and marks alone. The last
//! column is the rate a relay would reach if each message cost the sum of
//! its store time and its bus time (`1 / (1/raw + 1/ceiling)`), as when
//! the relay, the database and the broker keep the same cores busy. The
//! CPU columns are the whole machine's, from `/proc/stat`: what every
//! process (the relay, the broker, PostgreSQL) spent during the stretch,
//! per message and as the cores kept busy on average.
//! Raw and relays take turns for three rounds.
//!
//! Run: `cargo bench -p factum-benches --bench outbox`. `BENCH_ONLY=save`
//! or `relay` runs one part; `BENCH_SCALE=0.2` shortens every case;
//! `BENCH_BATCHES=256,2048` sets the relay batch sizes measured and
//! `BENCH_LINGER_MS=1` the `linger.ms` of both producers (default 5,
//! librdkafka's); `BENCH_IN_FLIGHT=8` the relays' batches in flight
//! (default 4, the relay's). Needs
//! PostgreSQL at `FACTUM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; schemas of its own,
//! dropped afterwards) and a Kafka broker at `FACTUM_KAFKA_BOOTSTRAP`
//! (default `127.0.0.1:9092`); a part whose server is unreachable is
//! skipped.

use std::time::{Duration, Instant};

use factum::kafka::{
    CAUSATION_ID_HEADER, CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, KafkaNotifier, encode_message,
};
use factum::prelude::*;
use factum::{
    Durability, Metadata, NewEvent, Outbox, OutboxRelay, Payload, PostgresOptions, Publisher, RelayHandle,
    SqliteOptions,
};
use factum_benches::{Counter, CounterId, scale, wanted};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use time::OffsetDateTime;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SAVE_CASES: [&str; 4] = [
    "save of 1 event, no outbox",
    "save of 1 event, outbox",
    "save of 100 events, no outbox",
    "save of 100 events, outbox",
];
const AGGREGATES: usize = 100;
const PAYLOAD: &str = r#"{"amount":1,"note":"a typical small event payload"}"#;
const RELAY_ROUNDS: usize = 3;

fn postgres_url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn bootstrap() -> String {
    std::env::var("FACTUM_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A PostgreSQL store in a schema of its own (`None`: no server).
async fn postgres_store(name: &str) -> Result<Option<PostgresEventStore>, BoxError> {
    let schema = format!("factum_bench_{name}_{}", std::process::id());
    let options = PostgresOptions::new().schema(schema);
    match PostgresEventStore::connect_with(&postgres_url(), options).await {
        Ok(store) => {
            store.ensure_schema().await?;
            Ok(Some(store))
        }
        Err(error) => {
            println!("postgres: skipped, the server is unreachable: {error}");
            Ok(None)
        }
    }
}

async fn drop_schema(store: &PostgresEventStore) -> Result<(), BoxError> {
    let schema = store
        .schema_name()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    store
        .pool()
        .get()
        .await?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    store.close().await?;
    Ok(())
}

// ---------------------------------------------------------------- save cost

/// One save of `events` increments of a fresh-enough counter: its time.
async fn save<S: EventStore>(
    app: &Application<Counter, S>,
    counter: &mut Counter,
    events: usize,
) -> Result<Duration, BoxError> {
    for _ in 0..events {
        counter.add(1);
    }
    let started = Instant::now();
    app.save(counter).await?;
    Ok(started.elapsed())
}

/// Runs the four cases `operations` times each, taking turns; prints the
/// mean time of each and the ratios.
async fn save_cost<S: EventStore>(
    name: &str,
    plain: S,
    with_outbox: S,
    operations: usize,
) -> Result<(), BoxError> {
    let apps = [
        Application::<Counter, _>::new(plain),
        Application::<Counter, _>::new(with_outbox),
    ];
    let mut counters: Vec<Counter> = Vec::new();
    for case in 0..SAVE_CASES.len() {
        let mut counter = Counter::create(CounterId::generate(), 0);
        apps[case % 2].save(&mut counter).await?;
        counters.push(counter);
    }
    let sizes = [1, 1, 100, 100];
    for (case, counter) in counters.iter_mut().enumerate() {
        for _ in 0..operations.div_ceil(10) {
            save(&apps[case % 2], counter, sizes[case]).await?;
        }
    }
    let mut totals = [Duration::ZERO; SAVE_CASES.len()];
    for round in 0..operations {
        // Each case goes first in turn: the first and last of a round meet
        // different neighbours (the writer thread just woken, a checkpoint).
        for turn in 0..SAVE_CASES.len() {
            let case = (turn + round) % SAVE_CASES.len();
            totals[case] += save(&apps[case % 2], &mut counters[case], sizes[case]).await?;
        }
    }
    let mean: Vec<f64> = totals
        .iter()
        .map(|total| total.as_secs_f64() * 1e6 / operations as f64)
        .collect();
    println!("{name} ({operations} saves per case):");
    for (case, micros) in SAVE_CASES.iter().zip(&mean) {
        println!("  {case:<30} {micros:>10.1} µs");
    }
    println!(
        "  outbox / no outbox: 1 event {:.3}x, 100 events {:.3}x (goal <= 1.15x)",
        mean[1] / mean[0],
        mean[3] / mean[2]
    );
    Ok(())
}

async fn sqlite_save_cost(durability: Durability, operations: usize) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions::new().durability(durability);
    let plain = SqliteEventStore::open_with(dir.path().join("plain.db"), options.clone()).await?;
    let with_outbox = SqliteEventStore::open_with(dir.path().join("outbox.db"), options).await?;
    with_outbox.enable_outbox().await?;
    save_cost(
        &format!("sqlite, {durability:?}"),
        plain.clone(),
        with_outbox.clone(),
        operations,
    )
    .await?;
    plain.close().await?;
    with_outbox.close().await?;
    Ok(())
}

async fn postgres_save_cost(operations: usize) -> Result<(), BoxError> {
    let (Some(plain), Some(with_outbox)) = (postgres_store("plain").await?, postgres_store("outbox").await?)
    else {
        return Ok(());
    };
    with_outbox.enable_outbox().await?;
    let measured = save_cost("postgres", plain.clone(), with_outbox.clone(), operations).await;
    drop_schema(&plain).await?;
    drop_schema(&with_outbox).await?;
    measured
}

// ---------------------------------------------------------- relay throughput

/// Appends `count` events of [`AGGREGATES`] aggregates in batches of 100.
async fn fill<S: EventStore>(store: &S, count: usize) -> Result<(), BoxError> {
    let correlation = Uuid::now_v7();
    for chunk_start in (0..count).step_by(100) {
        let aggregate = (chunk_start / 100) % AGGREGATES;
        let events: Vec<NewEvent> = (chunk_start..(chunk_start + 100).min(count))
            .map(|_| {
                NewEvent::new("deposited", Payload::from_stored(PAYLOAD))
                    .with_metadata(Metadata::default().with_correlation_id(correlation))
            })
            .collect();
        let stream = factum::StreamId::new("Account", format!("acct-{aggregate}"));
        store
            .append(&stream, factum::ExpectedVersion::Any, events)
            .await?;
    }
    Ok(())
}

async fn create_topic() -> Result<String, BoxError> {
    let topic = format!("factum-bench-outbox-{}", Uuid::now_v7().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin
        .create_topics([&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &options)
        .await?
    {
        result.map_err(|(name, code)| format!("creating {name}: {code}"))?;
    }
    Ok(topic)
}

/// Sends `events` as the notifier would (same bytes, key, headers), all
/// queued before any delivery report is awaited.
async fn publish_raw(
    producer: &FutureProducer,
    topic: &str,
    events: &[factum::RecordedEvent],
) -> Result<(), BoxError> {
    let published_at = OffsetDateTime::now_utc();
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let value = encode_message(event, published_at)?;
        let mut headers = OwnedHeaders::new().insert(Header {
            key: EVENT_TYPE_HEADER,
            value: Some(event.event_type.as_ref()),
        });
        for (key, id) in [
            (CORRELATION_ID_HEADER, event.metadata.correlation_id),
            (CAUSATION_ID_HEADER, event.metadata.causation_id),
        ] {
            if let Some(id) = id {
                headers = headers.insert(Header {
                    key,
                    value: Some(&id.to_string()),
                });
            }
        }
        let record = FutureRecord::to(topic)
            .key(event.aggregate_id())
            .payload(&value)
            .headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    Ok(())
}

/// A bus that takes every event at once: a relay into it runs at the
/// pace of its store alone (claims and marks), the relay's ceiling.
#[derive(Clone, Copy)]
struct Discard;

impl Publisher for Discard {
    async fn publish(&self, events: &[factum::RecordedEvent]) -> Vec<Result<(), factum::PublishError>> {
        events.iter().map(|_| Ok(())).collect()
    }
}

/// Runs a relay on `outbox` until it has published `count` events, adding
/// the time and CPU it took to `spent`.
async fn drain<O: Outbox, P: Publisher + Clone>(
    outbox: O,
    bus: &P,
    batch: usize,
    count: usize,
    spent: &mut Spent,
) -> Result<(), BoxError> {
    let mark = Mark::now();
    let relay: RelayHandle = OutboxRelay::new(outbox, bus.clone())
        .batch_size(batch)
        .in_flight(in_flight())
        .poll_interval(Duration::from_millis(1))
        .retention(None)
        .spawn();
    while relay.metrics().published < count as u64 {
        if relay.metrics().failing_rounds > 5 {
            return Err(format!("the relay keeps failing: {:?}", relay.metrics().last_error).into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    spent.since(mark);
    relay.shutdown().await?;
    Ok(())
}

async fn relay_throughput(count: usize, batches: &[usize]) -> Result<(), BoxError> {
    let topic = create_topic().await?;
    let linger = std::env::var("BENCH_LINGER_MS").unwrap_or_else(|_| "5".to_owned());
    let raw_producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("delivery.timeout.ms", "30000")
        .set("linger.ms", &linger)
        .create()?;
    let notifier = KafkaNotifier::builder(bootstrap())
        .topic(&topic)
        .set("linger.ms", &linger)
        .build()?;
    let dir = tempfile::tempdir()?;
    let sqlite = SqliteEventStore::open(dir.path().join("relay.db")).await?;
    sqlite.enable_outbox().await?;
    let postgres = postgres_store("relay").await?;
    if let Some(store) = &postgres {
        store.enable_outbox().await?;
    }
    // Warm-up: the raw producer learns the topic's partitions on its first send.
    fill(&sqlite, 100).await?;
    publish_raw(&raw_producer, &topic, &sqlite.read_all(0, 100).await?).await?;
    drain(sqlite.outbox(), &notifier, 100, 100, &mut Spent::default()).await?;

    println!(
        "{count} events of {AGGREGATES} aggregates to {} (topic {topic}), {RELAY_ROUNDS} rounds, linger.ms={linger}, in flight {}, {} cores",
        bootstrap(),
        in_flight(),
        cores()
    );
    let mut raw = Spent::default();
    // The same producer waiting for each batch's answers before the next,
    // as a relay must to keep an aggregate's order when a message fails.
    let mut raw_batched = vec![Spent::default(); batches.len()];
    // Per batch size: SQLite and PostgreSQL, into Kafka and into a bus that
    // takes everything at once (the pace of the claims and marks alone).
    let mut relays = vec![[Spent::default(); 4]; batches.len()];
    for _ in 0..RELAY_ROUNDS {
        for (index, batch) in batches.iter().enumerate() {
            let head = sqlite.head_position().await?;
            fill(&sqlite, count).await?;
            let events = sqlite.read_all(head, count).await?;
            let mark = Mark::now();
            publish_raw(&raw_producer, &topic, &events).await?;
            raw.since(mark);
            let mark = Mark::now();
            for chunk in events.chunks(*batch) {
                publish_raw(&raw_producer, &topic, chunk).await?;
            }
            raw_batched[index].since(mark);
            let [sqlite_kafka, sqlite_discard, postgres_kafka, postgres_discard] = &mut relays[index];
            drain(sqlite.outbox(), &notifier, *batch, count, sqlite_kafka).await?;
            fill(&sqlite, count).await?;
            drain(sqlite.outbox(), &Discard, *batch, count, sqlite_discard).await?;
            if let Some(store) = &postgres {
                fill(store, count).await?;
                drain(store.outbox(), &notifier, *batch, count, postgres_kafka).await?;
                fill(store, count).await?;
                drain(store.outbox(), &Discard, *batch, count, postgres_discard).await?;
            }
        }
    }
    let messages = count * RELAY_ROUNDS;
    let rate = |spent: &Spent, rounds: usize| (count * rounds) as f64 / spent.wall.as_secs_f64();
    let raw_rate = rate(&raw, RELAY_ROUNDS * batches.len());
    let (raw_cores, raw_cpu) = raw.load(messages * batches.len());
    println!(
        "raw FutureProducer: {raw_rate:.0} msg/s, {raw_cores:.2} cores busy, {raw_cpu:.1} CPU µs per message (the machine's, all processes)"
    );
    println!(
        "| case | raw, a batch at a time | relay | ratio to raw | to a batch at a time | relay, bus answers at once | if the work adds up | CPU µs/msg: relay | bus answers at once | cores busy: relay | bus answers at once |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((batch, spent), batched) in batches.iter().zip(&relays).zip(&raw_batched) {
        let batched_rate = rate(batched, RELAY_ROUNDS);
        let row = |store: &str, kafka: &Spent, discard: &Spent| {
            let (relay_rate, ceiling_rate) = (rate(kafka, RELAY_ROUNDS), rate(discard, RELAY_ROUNDS));
            let ((kafka_cores, kafka_cpu), (discard_cores, discard_cpu)) =
                (kafka.load(messages), discard.load(messages));
            println!(
                "| {store}, batches of {batch} | {batched_rate:.0} msg/s | {relay_rate:.0} msg/s | {:.0}% | {:.0}% | {ceiling_rate:.0} msg/s | {:.0} msg/s | {kafka_cpu:.1} | {discard_cpu:.1} | {kafka_cores:.2} | {discard_cores:.2} |",
                100.0 * relay_rate / raw_rate,
                100.0 * relay_rate / batched_rate,
                serial_rate(raw_rate, ceiling_rate)
            );
        };
        row("SQLite (FULL)", &spent[0], &spent[1]);
        if postgres.is_some() {
            row("PostgreSQL", &spent[2], &spent[3]);
        }
    }
    sqlite.close().await?;
    if let Some(store) = &postgres {
        drop_schema(store).await?;
    }
    Ok(())
}

/// The machine's CPU time, read from `/proc/stat`: what every process
/// (the relay, the broker, PostgreSQL) spent between two readings.
#[derive(Clone, Copy, Default)]
struct CpuReading {
    busy: u64,
    total: u64,
}

impl CpuReading {
    /// `None` where there is no `/proc/stat` (not Linux).
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: idle and iowait
        // are the time no process ran.
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some(Self {
            busy: total - idle,
            total,
        })
    }
}

/// Wall time and busy cores of one measured stretch, summed over rounds.
#[derive(Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    /// Seconds of CPU time, all cores together.
    cpu: f64,
}

/// Where a measured stretch began.
struct Mark {
    reading: Option<CpuReading>,
    started: Instant,
}

impl Mark {
    fn now() -> Self {
        Self {
            reading: CpuReading::now(),
            started: Instant::now(),
        }
    }
}

impl Spent {
    /// Adds the wall time and the machine's CPU time since `mark`.
    fn since(&mut self, mark: Mark) {
        let wall = mark.started.elapsed();
        self.wall += wall;
        if let (Some(before), Some(after)) = (mark.reading, CpuReading::now()) {
            let share = (after.busy - before.busy) as f64 / (after.total - before.total).max(1) as f64;
            self.cpu += share * cores() as f64 * wall.as_secs_f64();
        }
    }

    /// Cores kept busy on average, and CPU microseconds per message.
    fn load(&self, messages: usize) -> (f64, f64) {
        (
            self.cpu / self.wall.as_secs_f64().max(f64::MIN_POSITIVE),
            self.cpu * 1e6 / messages.max(1) as f64,
        )
    }
}

/// The relays' `in_flight` (`BENCH_IN_FLIGHT`, default the relay's own, 4).
fn in_flight() -> usize {
    std::env::var("BENCH_IN_FLIGHT")
        .ok()
        .and_then(|batches| batches.parse().ok())
        .unwrap_or(4)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The rate of a relay whose store work (at `ceiling_rate` alone) and bus
/// work (at `raw_rate` alone) cannot overlap, as when they share cores that
/// both keep busy: each message costs the sum of the two times.
fn serial_rate(raw_rate: f64, ceiling_rate: f64) -> f64 {
    1.0 / (1.0 / raw_rate + 1.0 / ceiling_rate)
}

async fn kafka_answers() -> bool {
    let address = bootstrap().split(',').next().unwrap_or_default().to_owned();
    let probe = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&address));
    matches!(probe.await, Ok(Ok(_)))
}

fn main() -> Result<(), BoxError> {
    // `cargo test --benches` runs bench targets without `--bench`: nothing
    // to measure then.
    if !std::env::args().any(|argument| argument == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if wanted("save") {
            sqlite_save_cost(Durability::Full, scale(300)).await?;
            sqlite_save_cost(Durability::Normal, scale(2_000)).await?;
            postgres_save_cost(scale(500)).await?;
        }
        if wanted("relay") {
            if !kafka_answers().await {
                println!("relay: skipped, no Kafka broker answers at {}", bootstrap());
                return Ok(());
            }
            let batches: Vec<usize> = std::env::var("BENCH_BATCHES")
                .ok()
                .map(|list| {
                    list.split(',')
                        .filter_map(|size| size.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_else(|| vec![256, 1024, 4096]);
            relay_throughput(scale(20_000), &batches).await?;
        }
        Ok(())
    })
}
