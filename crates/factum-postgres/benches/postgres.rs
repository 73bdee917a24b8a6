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
use factum_postgres::{PostgresEventStore, PostgresOptions, PostgresProjectionStore, PostgresTransaction};
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
    store: PostgresEventStore,
    rows: Vec<Row>,
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
        for round in 0..ROUNDS {
            let started = Instant::now();
            for n in 0..count {
                let id = format!("raw-{round}-{n}");
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
            }
            raw_time += started.elapsed();
            let started = Instant::now();
            for n in 0..count {
                let stream = StreamId::new("Counter", format!("one-{round}-{n}"));
                self.store
                    .append(&stream, ExpectedVersion::NoStream, vec![event()])
                    .await?;
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
        Ok(())
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

    /// 16 concurrent single-event writers, for a fixed time each.
    async fn sixteen_writers(&mut self) -> Result<(), BoxError> {
        const WRITERS: usize = 16;
        let period = Duration::from_millis(scale(1_000) as u64);
        let (mut raw, mut locked, mut factum) = (0_usize, 0_usize, 0_usize);
        let mut clients = Vec::new();
        for _ in 0..WRITERS {
            clients.push(Arc::new(raw_client().await?));
        }
        for round in 0..4 {
            raw += self.raw_writers(&clients, period, false, round).await?;
            locked += self.raw_writers(&clients, period, true, round).await?;
            factum += self.factum_writers(WRITERS, period, round).await?;
        }
        let seconds = 4.0 * period.as_secs_f64();
        let (raw, locked, factum) = (
            raw as f64 / seconds,
            locked as f64 / seconds,
            factum as f64 / seconds,
        );
        self.record(
            "16 concurrent single-event writers",
            "commits/s",
            raw,
            factum,
            "≥ 80%",
        );
        println!(
            "  ... LOCK TABLE design: {locked:.0} commits/s; factum is {:.1}× that (target ≥ 8×)",
            factum / locked
        );
        self.rows.push(Row {
            case: "16 writers, LOCK TABLE … IN EXCLUSIVE MODE design (2nd baseline)".to_owned(),
            unit: "commits/s",
            raw: locked,
            factum,
            target: "≥ 8×".to_owned(),
        });
        Ok(())
    }

    async fn raw_writers(
        &self,
        clients: &[Arc<Client>],
        period: Duration,
        lock: bool,
        round: usize,
    ) -> Result<usize, BoxError> {
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
                let mut commits = 0;
                while Instant::now() < deadline {
                    let id = format!("w{lock}-{round}-{writer}-{commits}");
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
                    commits += 1;
                }
                Ok::<usize, BoxError>(commits)
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        Ok(total)
    }

    async fn factum_writers(
        &self,
        writers: usize,
        period: Duration,
        round: usize,
    ) -> Result<usize, BoxError> {
        let deadline = Instant::now() + period;
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let store = self.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut commits = 0;
                while Instant::now() < deadline {
                    let stream = StreamId::new("Counter", format!("w-{round}-{writer}-{commits}"));
                    store
                        .append(&stream, ExpectedVersion::NoStream, vec![event()])
                        .await?;
                    commits += 1;
                }
                Ok::<usize, BoxError>(commits)
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        Ok(total)
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

    /// The whole global log, in pages of 4096.
    async fn global_log(&mut self) -> Result<(), BoxError> {
        let client = raw_client().await?;
        let select = client
            .prepare(&format!(
                "SELECT position, stream_type, stream_id, version, event_id, event_type, schema_version, payload::text, metadata::text, occurred_at \
                 FROM \"{}\".factum_events WHERE position > $1 ORDER BY position LIMIT 4096",
                self.schema
            ))
            .await?;
        let (mut raw_time, mut factum_time) = (Duration::ZERO, Duration::ZERO);
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
            "≥ 1M events/s",
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
    let store = PostgresEventStore::connect_with(
        &url(),
        PostgresOptions::new()
            .schema(&schema)
            .pool_size(20)
            .notify(notify),
    )
    .await?;
    store.ensure_schema().await?;
    let mut bench = Bench {
        schema: schema.clone(),
        store,
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
        let ratio = if row.target.ends_with('×') {
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
