//! factum-postgres against raw tokio-postgres doing the same SQL work, in
//! one process, one case at a time: the ratio is what to read (absolute
//! figures move with the machine and its neighbours).
//!
//! Run: `cargo bench -p factum-postgres` (reads `FACTUM_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`). Each case runs
//! raw and factum in turns (ten short rounds, four for the timed
//! concurrent case) and sums the rounds. `BENCH_SCALE=0.2`
//! shortens every case; `BENCH_ONLY=projection` (or `single`, `tenant`,
//! `sixteen`, `batch`, `reload`, `global`) runs one case. The `projection` case is the
//! runner's catch-up from PostgreSQL (counting events, checkpoints in
//! `factum_checkpoints`), and the exactly-once variant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use factum_core::{
    CheckpointStore, EventStore, ExpectedVersion, HandlerError, NewEvent, Payload, Projection,
    ProjectionRunner, RecordedEvent, StreamId, Tenancy, TransactionalProjection,
};
use factum_postgres::{
    GroupCommit, PostgresEventStore, PostgresOptions, PostgresProjectionStore, PostgresTransaction,
};
use futures::TryStreamExt;
use time::OffsetDateTime;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn scale(count: usize) -> usize {
    let factor: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1.0);
    ((count as f64 * factor) as usize).max(1)
}

/// Raw and factum take turns this many times in each case, so that both
/// meet the same neighbours on a shared machine.
const ROUNDS: usize = 10;

const PAYLOAD: &str = r#"{"amount":1,"note":"a typical small event payload"}"#;

fn event() -> NewEvent {
    NewEvent::new("incremented", Payload::from_stored(PAYLOAD))
}

struct Bench {
    schema: String,
    /// Group commit on (the default).
    store: PostgresEventStore,
    /// The same schema with group commit off: every append its own
    /// transaction, as before group commit.
    alone: PostgresEventStore,
    rows: Vec<Row>,
}

/// The 50th and 99th percentiles of `latencies`, in microseconds.
fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    latencies.sort_unstable();
    let at = |fraction: f64| {
        let index =
            ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies
            .get(index)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1e6)
    };
    (at(0.50), at(0.99))
}

struct Row {
    case: String,
    unit: &'static str,
    raw: f64,
    factum: f64,
    target: String,
}

async fn raw_client() -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Bench {
    fn raw_table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    async fn create_raw_tables(&self) -> Result<(), BoxError> {
        let client = raw_client().await?;
        for name in ["raw_events", "raw_locked"] {
            let table = self.raw_table(name);
            client
                .batch_execute(&format!(
                    "CREATE SEQUENCE {table}_position CACHE 1;
                     CREATE TABLE {table} (
                         position bigint PRIMARY KEY DEFAULT nextval('{table}_position'),
                         stream_type text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL,
                         event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, schema_version integer NOT NULL,
                         payload json NOT NULL, metadata json, occurred_at timestamptz NOT NULL,
                         recorded_at timestamptz NOT NULL DEFAULT now(),
                         UNIQUE (stream_type, stream_id, version));"
                ))
                .await?;
        }
        Ok(())
    }

    fn insert_sql(&self, table: &str) -> String {
        format!(
            "INSERT INTO {} (stream_type, stream_id, version, event_id, event_type, schema_version, payload, metadata, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6::text::json, NULL, $7)",
            self.raw_table(table)
        )
    }

    fn record(&mut self, case: &str, unit: &'static str, raw: f64, factum: f64, target: &str) {
        println!(
            "  {case}: raw {raw:.0} {unit}, factum {factum:.0} {unit}, ratio {:.0}% (target {target})",
            100.0 * factum / raw
        );
        self.rows.push(Row {
            case: case.to_owned(),
            unit,
            raw,
            factum,
            target: target.to_owned(),
        });
    }

    /// Prepares the statements on every pooled connection, as a running
    /// service has (raw clients are warmed by their own first rounds).
    async fn warm_up(&self) -> Result<(), BoxError> {
        let mut tasks = Vec::new();
        for writer in 0..20 {
            let store = self.store.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..10 {
                    let stream = StreamId::new("Warm", format!("{writer}-{n}"));
                    store
                        .append(&stream, ExpectedVersion::NoStream, vec![event()])
                        .await?;
                    store
                        .append(&stream, ExpectedVersion::Any, vec![event(), event()])
                        .await?;
                    store.read_all(0, 10).await?;
                    let _: Vec<_> = store.read_stream(&stream, 1).try_collect().await?;
                }
                Ok::<(), BoxError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    /// 10k new aggregates × 1 event, one client.
    async fn single_client_new_aggregates(&mut self) -> Result<(), BoxError> {
        let count = scale(1_000);
        let client = raw_client().await?;
        let insert = client.prepare(&self.insert_sql("raw_events")).await?;
        let (mut raw_time, mut factum_time) = (Duration::ZERO, Duration::ZERO);
        let (mut raw_latencies, mut factum_latencies) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let started = Instant::now();
            for n in 0..count {
                let id = format!("raw-{round}-{n}");
                let began = Instant::now();
                client
                    .execute(
                        &insert,
                        &[
                            &"Counter",
                            &id,
                            &1_i64,
                            &Uuid::now_v7(),
                            &"created",
                            &PAYLOAD,
                            &OffsetDateTime::now_utc(),
                        ],
                    )
                    .await?;
                raw_latencies.push(began.elapsed());
            }
            raw_time += started.elapsed();
            let started = Instant::now();
            for n in 0..count {
                let stream = StreamId::new("Counter", format!("one-{round}-{n}"));
                let began = Instant::now();
                self.store
                    .append(&stream, ExpectedVersion::NoStream, vec![event()])
                    .await?;
                factum_latencies.push(began.elapsed());
            }
            factum_time += started.elapsed();
        }
        let total = (ROUNDS * count) as f64;
        self.record(
            &format!("{} new aggregates × 1 event, 1 client", ROUNDS * count),
            "commits/s",
            total / raw_time.as_secs_f64(),
            total / factum_time.as_secs_f64(),
            "≥ 90%",
        );
        self.latencies("1 writer", &mut raw_latencies, &mut factum_latencies);
        Ok(())
    }

    /// Records the p50 and p99 append latencies of raw and factum.
    fn latencies(&mut self, case: &str, raw: &mut [Duration], factum: &mut [Duration]) {
        let (raw_p50, raw_p99) = percentiles(raw);
        let (factum_p50, factum_p99) = percentiles(factum);
        for (name, raw, factum) in [("p50", raw_p50, factum_p50), ("p99", raw_p99, factum_p99)] {
            println!("  append latency {name}, {case}: raw {raw:.0} µs, factum {factum:.0} µs");
            self.rows.push(Row {
                case: format!("append latency {name}, {case} (lower is better)"),
                unit: "µs",
                raw,
                factum,
                target: "≤ raw".to_owned(),
            });
        }
    }

    /// New aggregates × 1 event through a tenant's view (each statement in
    /// a transaction that takes the tenant role: row-level security),
    /// against the unscoped store, in turns. The "raw" column is the
    /// unscoped store here.
    async fn tenant_view_new_aggregates(&mut self) -> Result<(), BoxError> {
        let count = scale(1_000);
        self.store.ensure_tenant_role().await?;
        let tenant = self.store.for_tenant("bench")?;
        let (mut unscoped_time, mut tenant_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            for (store, time, label) in [
                (&self.store, &mut unscoped_time, "unscoped"),
                (&tenant, &mut tenant_time, "tenant"),
            ] {
                let started = Instant::now();
                for n in 0..count {
                    let stream = StreamId::new("Counter", format!("{label}-{round}-{n}"));
                    store
                        .append(&stream, ExpectedVersion::NoStream, vec![event()])
                        .await?;
                }
                *time += started.elapsed();
            }
        }
        let total = (ROUNDS * count) as f64;
        self.record(
            &format!(
                "{} new aggregates × 1 event, 1 client, tenant's view (raw column: unscoped store)",
                ROUNDS * count
            ),
            "commits/s",
            total / unscoped_time.as_secs_f64(),
            total / tenant_time.as_secs_f64(),
            "",
        );
        Ok(())
    }

    /// 16 concurrent single-event writers, for a fixed time each: raw
    /// tokio-postgres (one commit per insert), the `LOCK TABLE` design,
    /// factum with group commit off (every append its own transaction)
    /// and on, in turns.
    async fn sixteen_writers(&mut self) -> Result<(), BoxError> {
        let writers: usize = std::env::var("BENCH_WRITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(16);
        let period = Duration::from_millis(scale(1_000) as u64);
        let (mut raw, mut locked, mut alone, mut grouped) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut clients = Vec::new();
        for _ in 0..writers {
            clients.push(Arc::new(raw_client().await?));
        }
        for round in 0..4 {
            raw.extend(self.raw_writers(&clients, period, false, round).await?);
            locked.extend(self.raw_writers(&clients, period, true, round).await?);
            alone.extend(factum_writers(&self.alone, writers, period, &format!("a-{round}")).await?);
            grouped.extend(factum_writers(&self.store, writers, period, &format!("g-{round}")).await?);
        }
        let seconds = 4.0 * period.as_secs_f64();
        let rate = |latencies: &[Duration]| latencies.len() as f64 / seconds;
        let (raw_rate, locked_rate, alone_rate, grouped_rate) =
            (rate(&raw), rate(&locked), rate(&alone), rate(&grouped));
        self.record(
            "16 concurrent single-event writers, group commit off",
            "commits/s",
            raw_rate,
            alone_rate,
            "",
        );
        self.record(
            "16 concurrent single-event writers (group commit)",
            "appends/s",
            raw_rate,
            grouped_rate,
            "≥ 2×",
        );
        println!(
            "  ... LOCK TABLE design: {locked_rate:.0} commits/s; factum is {:.1}× that (target ≥ 10×)",
            grouped_rate / locked_rate
        );
        self.rows.push(Row {
            case: "16 writers, LOCK TABLE … IN EXCLUSIVE MODE design (2nd baseline)".to_owned(),
            unit: "appends/s",
            raw: locked_rate,
            factum: grouped_rate,
            target: "≥ 10×".to_owned(),
        });
        let mut alone_copy = alone.clone();
        let mut raw_copy = raw.clone();
        self.latencies("16 writers, group commit off", &mut raw_copy, &mut alone_copy);
        self.latencies("16 writers (group commit)", &mut raw, &mut grouped);
        Ok(())
    }

    async fn raw_writers(
        &self,
        clients: &[Arc<Client>],
        period: Duration,
        lock: bool,
        round: usize,
    ) -> Result<Vec<Duration>, BoxError> {
        let table = if lock { "raw_locked" } else { "raw_events" };
        let sql = self.insert_sql(table);
        let lock_sql = format!("LOCK TABLE {} IN EXCLUSIVE MODE", self.raw_table(table));
        let deadline = Instant::now() + period;
        let mut tasks = Vec::new();
        for (writer, client) in clients.iter().enumerate() {
            let client = client.clone();
            let sql = sql.clone();
            let lock_sql = lock_sql.clone();
            tasks.push(tokio::spawn(async move {
                let insert = client.prepare(&sql).await?;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let id = format!("w{lock}-{round}-{writer}-{}", latencies.len());
                    let began = Instant::now();
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                        &"Counter",
                        &id,
                        &1_i64,
                        &Uuid::now_v7(),
                        &"created",
                        &PAYLOAD,
                        &OffsetDateTime::now_utc(),
                    ];
                    if lock {
                        client.batch_execute("BEGIN").await?;
                        client.batch_execute(&lock_sql).await?;
                        client.execute(&insert, &params).await?;
                        client.batch_execute("COMMIT").await?;
                    } else {
                        client.execute(&insert, &params).await?;
                    }
                    latencies.push(began.elapsed());
                }
                Ok::<Vec<Duration>, BoxError>(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        Ok(all)
    }

    /// 100-event batches, one client.
    async fn batches(&mut self) -> Result<(), BoxError> {
        let batches = scale(10);
        let client = raw_client().await?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {} (stream_type, stream_id, version, event_id, event_type, schema_version, payload, metadata, occurred_at) \
                 SELECT $1, $2, u.ord, u.event_id, u.event_type, u.schema_version, u.payload::json, u.metadata::json, u.occurred_at \
                 FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[], $8::timestamptz[]) \
                 WITH ORDINALITY AS u(event_id, event_type, schema_version, payload, metadata, occurred_at, ord)",
                self.raw_table("raw_events")
            ))
            .await?;
        let (mut raw_time, mut factum_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            let started = Instant::now();
            for n in 0..batches {
                let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
                let types = vec!["incremented"; 100];
                let versions = vec![1_i32; 100];
                let payloads = vec![PAYLOAD; 100];
                let metadata: Vec<Option<&str>> = vec![None; 100];
                let times = vec![OffsetDateTime::now_utc(); 100];
                let id = format!("batch-raw-{round}-{n}");
                client
                    .execute(
                        &insert,
                        &[
                            &"Counter", &id, &ids, &types, &versions, &payloads, &metadata, &times,
                        ],
                    )
                    .await?;
            }
            raw_time += started.elapsed();
            let started = Instant::now();
            for n in 0..batches {
                let stream = StreamId::new("Counter", format!("batch-{round}-{n}"));
                let events = (0..100).map(|_| event()).collect();
                self.store
                    .append(&stream, ExpectedVersion::NoStream, events)
                    .await?;
            }
            factum_time += started.elapsed();
        }
        let rows = (ROUNDS * batches * 100) as f64;
        self.record(
            "100-event batches, 1 client",
            "rows/s",
            rows / raw_time.as_secs_f64(),
            rows / factum_time.as_secs_f64(),
            "≥ 80%",
        );
        Ok(())
    }

    /// Reload of one 10k-event aggregate.
    async fn reload(&mut self) -> Result<(), BoxError> {
        let stream = StreamId::new("Counter", "reload");
        for _ in 0..100 {
            let events = (0..100).map(|_| event()).collect();
            self.store.append(&stream, ExpectedVersion::Any, events).await?;
        }
        let client = raw_client().await?;
        let select = client
            .prepare(&format!(
                "SELECT position, stream_type, stream_id, version, event_id, event_type, schema_version, payload::text, metadata::text, occurred_at \
                 FROM \"{}\".factum_events WHERE stream_type = $1 AND stream_id = $2 AND version >= $3 ORDER BY version",
                self.schema
            ))
            .await?;
        let repeats = scale(4);
        let (mut raw_time, mut factum_time, mut pages_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut checksum = 0_u64;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..repeats {
                let rows = client.query(&select, &[&"Counter", &"reload", &1_i64]).await?;
                for row in &rows {
                    checksum += decode_raw(row)?;
                }
            }
            raw_time += started.elapsed();
            let started = Instant::now();
            for _ in 0..repeats {
                let events: Vec<_> = self.store.read_stream(&stream, 1).try_collect().await?;
                checksum += events.len() as u64;
            }
            factum_time += started.elapsed();
            // Replay's path: page by page, each page dropped before the next.
            let started = Instant::now();
            for _ in 0..repeats {
                let mut pages = self.store.read_stream_pages(&stream, 1);
                while let Some(page) = pages.try_next().await? {
                    checksum += page.len() as u64;
                }
            }
            pages_time += started.elapsed();
        }
        std::hint::black_box(checksum);
        let rows = (ROUNDS * repeats * 10_000) as f64;
        self.record(
            "reload of one 10k-event aggregate",
            "rows/s",
            rows / raw_time.as_secs_f64(),
            rows / factum_time.as_secs_f64(),
            "≥ 70%",
        );
        self.record(
            "the same, in pages (replay's read_stream_pages)",
            "rows/s",
            rows / raw_time.as_secs_f64(),
            rows / pages_time.as_secs_f64(),
            "≥ 70%",
        );
        Ok(())
    }

    /// The whole global log, in pages of 4096: raw SELECT, raw binary
    /// `COPY … TO STDOUT` of the same rows, and factum's `read_all`, in turns.
    async fn global_log(&mut self) -> Result<(), BoxError> {
        let client = raw_client().await?;
        let columns = "position, stream_type, stream_id, version, event_id, event_type, schema_version, payload::text, metadata::text, occurred_at";
        let select = client
            .prepare(&format!(
                "SELECT {columns} FROM \"{}\".factum_events WHERE position > $1 ORDER BY position LIMIT 4096",
                self.schema
            ))
            .await?;
        let (mut raw_time, mut copy_time, mut factum_time) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut total = 0_usize;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let mut after = 0_i64;
            loop {
                let rows = client.query(&select, &[&after]).await?;
                let Some(last) = rows.last() else { break };
                after = last.try_get(0)?;
                for row in &rows {
                    std::hint::black_box(decode_raw(row)?);
                }
            }
            raw_time += started.elapsed();
            let started = Instant::now();
            let mut after = 0_i64;
            loop {
                let sql = format!(
                    "COPY (SELECT {columns} FROM \"{}\".factum_events WHERE position > {after} ORDER BY position LIMIT 4096) \
                     TO STDOUT (FORMAT binary)",
                    self.schema
                );
                match copy_page(&client, &sql).await? {
                    Some(last) => after = last,
                    None => break,
                }
            }
            copy_time += started.elapsed();
            let started = Instant::now();
            let mut after = 0;
            loop {
                let page = self.store.read_all(after, 4096).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                total += page.len();
            }
            factum_time += started.elapsed();
        }
        let events = total as f64;
        let total = total / ROUNDS;
        self.record(
            &format!("read of the global log ({total} events, pages of 4096)"),
            "events/s",
            events / raw_time.as_secs_f64(),
            events / factum_time.as_secs_f64(),
            "≥ 100%",
        );
        self.record(
            "the same against a raw binary COPY … TO STDOUT of the same pages",
            "events/s",
            events / copy_time.as_secs_f64(),
            events / factum_time.as_secs_f64(),
            "",
        );
        Ok(())
    }

    /// A projection that counts events, fed by the runner from the start of
    /// the global log (pages of 5,000, checkpoints every 50,000 saved in
    /// `factum_checkpoints`), against the raw keyset read of the same
    /// events; then the exactly-once variant (a row per event in a table,
    /// one `INSERT` per event in the checkpoint's transaction: one round
    /// trip each) on a shorter log.
    async fn projections(&mut self) -> Result<(), BoxError> {
        let target = scale(1_000_000) as u64;
        let mut head = self.store.head_position().await?;
        let mut stream_number = 0_u64;
        while head < target {
            let batch = (target - head).min(1_000) as usize;
            let stream = StreamId::new("Counted", format!("c-{stream_number}"));
            stream_number += 1;
            self.store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    (0..batch).map(|_| event()).collect(),
                )
                .await?;
            head = self.store.head_position().await?;
        }
        let client = raw_client().await?;
        let select = client
            .prepare(&format!(
                "SELECT position, stream_type, stream_id, version, event_id, event_type, schema_version, payload::text, metadata::text, occurred_at \
                 FROM \"{}\".factum_events WHERE position > $1 ORDER BY position LIMIT 5000",
                self.schema
            ))
            .await?;
        let projections = PostgresProjectionStore::new(&self.store);
        let (mut raw_time, mut factum_time) = (Duration::ZERO, Duration::ZERO);
        const CATCH_UP_ROUNDS: usize = 3;
        for _ in 0..CATCH_UP_ROUNDS {
            let started = Instant::now();
            let mut after = 0_i64;
            loop {
                let rows = client.query(&select, &[&after]).await?;
                let Some(last) = rows.last() else { break };
                after = last.try_get(0)?;
                for row in &rows {
                    std::hint::black_box(decode_raw(row)?);
                }
            }
            raw_time += started.elapsed();
            projections.save("count", 0).await?;
            let started = Instant::now();
            let handle = ProjectionRunner::new(
                self.store.clone(),
                Count(0),
                projections.clone(),
                projections.clone(),
            )
            .batch_size(5_000)
            .checkpoint_every(50_000)
            .spawn();
            handle.wait_for_checkpoint(head).await?;
            handle.shutdown().await?;
            factum_time += started.elapsed();
        }
        let events = (head as usize * CATCH_UP_ROUNDS) as f64;
        self.record(
            &format!("projection catch-up, counting ({head} events, PostgreSQL checkpoints)"),
            "events/s",
            events / raw_time.as_secs_f64(),
            events / factum_time.as_secs_f64(),
            "≥ 500k events/s",
        );

        // Exactly once, on its own shorter log.
        let schema = format!("{}_once", self.schema);
        let once =
            PostgresEventStore::connect_with(&url(), PostgresOptions::new().schema(&schema).pool_size(4))
                .await?;
        once.ensure_schema().await?;
        let total = scale(50_000) as u64;
        for stream_number in 0..total.div_ceil(1_000) {
            let batch = (total - stream_number * 1_000).min(1_000) as usize;
            let stream = StreamId::new("Counted", format!("c-{stream_number}"));
            once.append(
                &stream,
                ExpectedVersion::NoStream,
                (0..batch).map(|_| event()).collect(),
            )
            .await?;
        }
        let store = PostgresProjectionStore::new(&once);
        let table = format!("\"{schema}\".seen");
        store
            .execute_batch(&format!("CREATE TABLE {table} (position bigint PRIMARY KEY)"))
            .await?;
        let started = Instant::now();
        let handle = ProjectionRunner::transactional(
            once.clone(),
            CountInTable { table: table.clone() },
            store.clone(),
        )
        .batch_size(5_000)
        .checkpoint_every(50_000)
        .spawn();
        handle.wait_for_checkpoint(total).await?;
        handle.shutdown().await?;
        let elapsed = started.elapsed();
        let counted: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        assert_eq!(counted as u64, total, "each event counted once");
        println!(
            "projection catch-up, exactly once (one INSERT per event in the checkpoint's transaction): {total} events in {elapsed:.2?}: {:.0} events/s",
            total as f64 / elapsed.as_secs_f64()
        );
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
        Ok(())
    }
}

/// `writers` tasks appending single events to new streams through `store`
/// for `period`; the latency of each append.
async fn factum_writers(
    store: &PostgresEventStore,
    writers: usize,
    period: Duration,
    label: &str,
) -> Result<Vec<Duration>, BoxError> {
    let deadline = Instant::now() + period;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let stream = StreamId::new("Counter", format!("w-{label}-{writer}-{}", latencies.len()));
                let began = Instant::now();
                store
                    .append(&stream, ExpectedVersion::NoStream, vec![event()])
                    .await?;
                latencies.push(began.elapsed());
            }
            Ok::<Vec<Duration>, BoxError>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

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

struct CountInTable {
    table: String,
}

impl TransactionalProjection<PostgresProjectionStore> for CountInTable {
    fn name(&self) -> &str {
        "count_in_table"
    }

    async fn handle(
        &mut self,
        transaction: &mut PostgresTransaction,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        transaction
            .execute(
                &format!("INSERT INTO {} (position) VALUES ($1)", self.table),
                &[&i64::try_from(event.position)?],
            )
            .await?;
        Ok(())
    }
}

/// Runs a binary `COPY … TO STDOUT` of rows in the columns of
/// [`decode_raw`], decoding every column into a Rust value as it does; the
/// last row's position (`None`: no rows).
async fn copy_page(client: &Client, sql: &str) -> Result<Option<i64>, BoxError> {
    let stream = client.copy_out(sql).await?;
    let data = stream
        .try_fold(Vec::new(), |mut data, chunk| async move {
            data.extend_from_slice(&chunk);
            Ok(data)
        })
        .await?;
    // Signature (11 bytes), flags, header extension length and extension.
    let extension = i32::from_be_bytes(data.get(15..19).ok_or("short COPY header")?.try_into()?);
    let mut at = 19 + usize::try_from(extension)?;
    let mut last = None;
    loop {
        let fields = i16::from_be_bytes(data.get(at..at + 2).ok_or("truncated COPY data")?.try_into()?);
        at += 2;
        if fields < 0 {
            return Ok(last);
        }
        let field = |at: &mut usize| -> Result<Option<&[u8]>, BoxError> {
            let length =
                i32::from_be_bytes(data.get(*at..*at + 4).ok_or("truncated COPY field")?.try_into()?);
            *at += 4;
            if length < 0 {
                return Ok(None);
            }
            let value = data
                .get(*at..*at + length as usize)
                .ok_or("truncated COPY value")?;
            *at += length as usize;
            Ok(Some(value))
        };
        let number = |bytes: Option<&[u8]>| -> Result<i64, BoxError> {
            Ok(i64::from_be_bytes(bytes.ok_or("NULL")?.try_into()?))
        };
        let text = |bytes: Option<&[u8]>| -> Result<String, BoxError> {
            Ok(String::from(std::str::from_utf8(bytes.ok_or("NULL")?)?))
        };
        let position = number(field(&mut at)?)?;
        let stream_type = text(field(&mut at)?)?;
        let stream_id = text(field(&mut at)?)?;
        let version = number(field(&mut at)?)?;
        let event_id = Uuid::from_slice(field(&mut at)?.ok_or("NULL")?)?;
        let event_type = text(field(&mut at)?)?;
        let schema_version = i32::from_be_bytes(field(&mut at)?.ok_or("NULL")?.try_into()?);
        let payload = text(field(&mut at)?)?;
        let metadata = field(&mut at)?
            .map(|bytes| std::str::from_utf8(bytes).map(String::from))
            .transpose()?;
        // Microseconds since 2000-01-01 UTC.
        let micros = number(field(&mut at)?)?;
        let occurred_at =
            OffsetDateTime::from_unix_timestamp(946_684_800)? + time::Duration::microseconds(micros);
        std::hint::black_box((
            stream_type,
            stream_id,
            event_type,
            payload,
            metadata,
            event_id,
            occurred_at,
            schema_version,
            version,
        ));
        last = Some(position);
    }
}

/// What a hand-written reader does with a row: every column into a Rust value.
fn decode_raw(row: &tokio_postgres::Row) -> Result<u64, BoxError> {
    let position: i64 = row.try_get(0)?;
    let stream_type: &str = row.try_get(1)?;
    let stream_id: &str = row.try_get(2)?;
    let version: i64 = row.try_get(3)?;
    let event_id: Uuid = row.try_get(4)?;
    let event_type: &str = row.try_get(5)?;
    let schema_version: i32 = row.try_get(6)?;
    let payload: &str = row.try_get(7)?;
    let metadata: Option<&str> = row.try_get(8)?;
    let occurred_at: OffsetDateTime = row.try_get(9)?;
    let owned = (
        String::from(stream_type),
        String::from(stream_id),
        String::from(event_type),
        String::from(payload),
        metadata.map(String::from),
    );
    std::hint::black_box((owned, event_id, occurred_at, schema_version));
    Ok((position + version) as u64)
}

async fn run() -> Result<(), BoxError> {
    let setup = match raw_client().await {
        Ok(client) => client,
        Err(error) => {
            println!("SKIPPED: PostgreSQL unreachable at {}: {error}", url());
            return Ok(());
        }
    };
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "shared_buffers",
    ] {
        let row = setup.query_one(&format!("SHOW {name}"), &[]).await?;
        settings.push(format!("{name}={}", row.get::<_, String>(0)));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "factum-postgres benchmark: {cores} cores ({cpu}); PostgreSQL {}",
        settings.join(", ")
    );

    let schema = format!("factum_bench_{}", std::process::id());
    setup
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    let notify = std::env::var("BENCH_NOTIFY").map_or(true, |value| value != "0");
    // `BENCH_POOL=n`: another pool size.
    let pool_size = std::env::var("BENCH_POOL")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let options = PostgresOptions::new()
        .schema(&schema)
        .pool_size(pool_size)
        .notify(notify);
    // `BENCH_IN_FLIGHT=n` tries another number of groups in flight.
    // and `BENCH_WINDOW_US=n` a window.
    let mut group_commit = GroupCommit::new();
    if let Some(in_flight) = std::env::var("BENCH_IN_FLIGHT").ok().and_then(|n| n.parse().ok()) {
        group_commit = group_commit.in_flight(in_flight);
    }
    if let Some(window) = std::env::var("BENCH_WINDOW_US").ok().and_then(|n| n.parse().ok()) {
        group_commit = group_commit.window(Duration::from_micros(window));
    }
    let store = PostgresEventStore::connect_with(&url(), options.clone().group_commit(group_commit)).await?;
    store.ensure_schema().await?;
    let alone = PostgresEventStore::connect_with(&url(), options.group_commit(GroupCommit::off())).await?;
    let mut bench = Bench {
        schema: schema.clone(),
        store,
        alone,
        rows: Vec::new(),
    };
    bench.create_raw_tables().await?;
    bench.warm_up().await?;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only.contains("single") {
        bench.single_client_new_aggregates().await?;
    }
    if only.is_empty() || only.contains("tenant") {
        bench.tenant_view_new_aggregates().await?;
    }
    if only.is_empty() || only.contains("sixteen") {
        bench.sixteen_writers().await?;
    }
    if only.is_empty() || only.contains("batch") {
        bench.batches().await?;
    }
    if only.is_empty() || only.contains("reload") {
        bench.reload().await?;
    }
    if only.is_empty() || only.contains("global") {
        bench.global_log().await?;
    }
    if only.is_empty() || only.contains("projection") {
        bench.projections().await?;
    }

    println!();
    println!("| case | raw tokio-postgres | factum-postgres | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for row in &bench.rows {
        let ratio = if row.target.ends_with('×') || row.unit == "µs" {
            format!("{:.1}×", row.factum / row.raw)
        } else {
            format!("{:.0}%", 100.0 * row.factum / row.raw)
        };
        println!(
            "| {} | {:.0} {} | {:.0} {} | {ratio} | {} |",
            row.case, row.raw, row.unit, row.factum, row.unit, row.target
        );
    }
    setup
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo test --benches` runs this with `--bench` absent: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
