//! `factum export` and `factum import` against a raw read and a raw insert
//! of the same rows, in the same run, on SQLite and PostgreSQL; and the
//! move of a SQLite store to PostgreSQL end to end.
//!
//! The command runs as a user runs it (the real binary, a child process,
//! timed from start to exit); the raw side is the obvious driver code in
//! this process: a rusqlite or tokio-postgres loop reading every column of
//! every event into owned values, and prepared inserts of rows already in
//! memory, 10,000 per transaction. Raw and factum take turns, three
//! rounds each, and the rounds are summed.
//!
//! ```text
//! cargo bench -p factum-cli --bench transfer                 # 1,000,000 events
//! FACTUM_BENCH_EVENTS=200000 cargo bench -p factum-cli --bench transfer
//! ```
//!
//! `FACTUM_BENCH_ONLY=sqlite` (or `postgres`) runs one backend.
//!
//! Goals: export ≥ 80% of the raw read, import ≥ 60% of the raw insert.
//! PostgreSQL at `FACTUM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); without it the
//! PostgreSQL rows are skipped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use factum_core::{EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};
use futures::TryStreamExt;
use tokio_postgres::types::ToSql;

const ROUNDS: usize = 3;
/// Events per stream, written in runs of [`RUN`] per append, streams taking
/// turns: the log interleaves streams as an application's does.
const PER_STREAM: u64 = 100;
const RUN: u64 = 10;
const PAYLOAD: &str = r#"{"amount":1,"note":"a typical small event payload"}"#;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn events_total() -> u64 {
    std::env::var("FACTUM_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000)
}

fn postgres_url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn factum(args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_factum"))
        .args(args)
        .output()
        .expect("factum runs");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "factum {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

async fn seed(path: &Path, total: u64) -> Result<(), BoxError> {
    let store =
        SqliteEventStore::open_with(path, SqliteOptions::new().durability(Durability::Normal)).await?;
    let streams = total / PER_STREAM;
    let payload = Payload::parse(PAYLOAD)?;
    let metadata = Metadata::default().with_correlation_id(uuid::Uuid::now_v7());
    for round in 0..PER_STREAM / RUN {
        let batches = (0..streams)
            .map(|stream| {
                let events = (0..RUN)
                    .map(|_| NewEvent::new("incremented", payload.clone()).with_metadata(metadata.clone()))
                    .collect();
                factum_core::AppendBatch::new(
                    StreamId::new("Account", format!("account-{stream}")),
                    ExpectedVersion::Exact(round * RUN),
                    events,
                )
            })
            .collect::<Vec<_>>();
        for chunk in batches.chunks(1000) {
            store.append_many(chunk.to_vec()).await?;
        }
    }
    store.close().await?;
    Ok(())
}

/// A row as the raw code reads and inserts it.
struct RawRow {
    aggregate_type: String,
    aggregate_id: String,
    version: i64,
    event_id: Vec<u8>,
    event_type: String,
    schema_version: i64,
    payload: String,
    metadata: Option<String>,
    occurred_at: i64,
}

const SQLITE_READ: &str = "SELECT e.position, s.aggregate_type, s.aggregate_id, e.version, e.event_id, e.event_type, \
     e.schema_version, e.payload, e.metadata, e.occurred_at FROM events e JOIN streams s ON s.stream_key = e.stream_key \
     ORDER BY e.position";

fn sqlite_raw_read(path: &Path) -> Result<Vec<RawRow>, BoxError> {
    let connection = rusqlite::Connection::open(path)?;
    let mut statement = connection.prepare(SQLITE_READ)?;
    let mut rows = statement.query([])?;
    let mut read = Vec::new();
    while let Some(row) = rows.next()? {
        read.push(RawRow {
            aggregate_type: row.get(1)?,
            aggregate_id: row.get(2)?,
            version: row.get(3)?,
            event_id: row.get(4)?,
            event_type: row.get(5)?,
            schema_version: row.get(6)?,
            payload: row.get(7)?,
            metadata: row.get(8)?,
            occurred_at: row.get(9)?,
        });
    }
    Ok(read)
}

fn sqlite_raw_insert(path: &Path, rows: &[RawRow]) -> Result<(), BoxError> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE events (
            position INTEGER PRIMARY KEY, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL, event_id BLOB NOT NULL UNIQUE, event_type TEXT NOT NULL,
            schema_version INTEGER NOT NULL, payload TEXT NOT NULL, metadata TEXT,
            occurred_at INTEGER NOT NULL, UNIQUE (aggregate_type, aggregate_id, version));",
    )?;
    for chunk in rows.chunks(10_000) {
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, schema_version, \
                 payload, metadata, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for row in chunk {
                insert.execute(rusqlite::params![
                    row.aggregate_type,
                    row.aggregate_id,
                    row.version,
                    row.event_id,
                    row.event_type,
                    row.schema_version,
                    row.payload,
                    row.metadata,
                    row.occurred_at
                ])?;
            }
        }
        transaction.commit()?;
    }
    Ok(())
}

struct Figures {
    raw: Duration,
    factum: Duration,
}

impl Figures {
    fn report(&self, what: &str, raw_what: &str, events: u64, goal: f64) {
        let rate = |elapsed: Duration| (events as f64 * ROUNDS as f64) / elapsed.as_secs_f64();
        let ratio = rate(self.factum) / rate(self.raw);
        println!(
            "  {what:<28} {:>10.0} events/s   {raw_what:<22} {:>10.0} events/s   ratio {:>4.0}% (goal ≥ {:.0}%)",
            rate(self.factum),
            rate(self.raw),
            ratio * 100.0,
            goal * 100.0
        );
    }
}

fn sqlite_case(dir: &Path, source: &Path, total: u64) -> Result<(), BoxError> {
    let file = dir.join("export.jsonl");
    let mut export = Figures {
        raw: Duration::ZERO,
        factum: Duration::ZERO,
    };
    let mut rows = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        rows = sqlite_raw_read(source)?;
        export.raw += started.elapsed();
        assert_eq!(rows.len() as u64, total);
        export.factum += factum(&[
            "--store",
            source.to_str().ok_or("path")?,
            "export",
            "-o",
            file.to_str().ok_or("path")?,
        ]);
    }
    let mut import = Figures {
        raw: Duration::ZERO,
        factum: Duration::ZERO,
    };
    for round in 0..ROUNDS {
        let raw = dir.join(format!("raw-{round}.db"));
        let started = Instant::now();
        sqlite_raw_insert(&raw, &rows)?;
        import.raw += started.elapsed();
        let target = dir.join(format!("import-{round}.db"));
        import.factum += factum(&[
            "--store",
            target.to_str().ok_or("path")?,
            "import",
            file.to_str().ok_or("path")?,
        ]);
    }
    println!("SQLite (synchronous=FULL, WAL), {total} events:");
    export.report("factum export", "raw rusqlite read", total, 0.8);
    import.report("factum import", "raw rusqlite insert", total, 0.6);
    Ok(())
}

async fn postgres_case(dir: &Path, source: &Path, total: u64) -> Result<(), BoxError> {
    let url = postgres_url();
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(connected) => connected,
        Err(error) => {
            println!("PostgreSQL skipped: {error}");
            return Ok(());
        }
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let schema = format!("factum_transfer_{}", std::process::id());
    let file = dir.join("export.jsonl");
    let move_started = Instant::now();
    factum(&[
        "--store",
        source.to_str().ok_or("path")?,
        "export",
        "-o",
        file.to_str().ok_or("path")?,
    ]);
    factum(&[
        "--store",
        &url,
        "--schema",
        &schema,
        "import",
        file.to_str().ok_or("path")?,
    ]);
    let moved = move_started.elapsed();
    // The rows were just written: set their hint bits and statistics now,
    // so neither side of the comparison pays for that or races autovacuum.
    client
        .batch_execute(&format!("VACUUM (ANALYZE) \"{schema}\".factum_events"))
        .await?;

    let read_sql = format!(
        "SELECT position, stream_type, stream_id, version, event_id, event_type, schema_version, payload::text, \
         metadata::text, occurred_at FROM \"{schema}\".factum_events ORDER BY position"
    );
    let mut export = Figures {
        raw: Duration::ZERO,
        factum: Duration::ZERO,
    };
    let pg_file = dir.join("pg-export.jsonl");
    let mut rows = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        rows = postgres_raw_read(&client, &read_sql).await?;
        export.raw += started.elapsed();
        export.factum += factum(&[
            "--store",
            &url,
            "--schema",
            &schema,
            "export",
            "-o",
            pg_file.to_str().ok_or("path")?,
        ]);
    }
    let mut import = Figures {
        raw: Duration::ZERO,
        factum: Duration::ZERO,
    };
    for round in 0..ROUNDS {
        let raw_schema = format!("{schema}_raw_{round}");
        let started = Instant::now();
        postgres_raw_insert(&client, &raw_schema, &rows).await?;
        import.raw += started.elapsed();
        let target = format!("{schema}_import_{round}");
        import.factum += factum(&[
            "--store",
            &url,
            "--schema",
            &target,
            "import",
            file.to_str().ok_or("path")?,
        ]);
        client
            .batch_execute(&format!(
                "DROP SCHEMA \"{raw_schema}\" CASCADE; DROP SCHEMA \"{target}\" CASCADE"
            ))
            .await?;
    }
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    println!("PostgreSQL, {total} events:");
    export.report("factum export", "raw tokio-postgres read", total, 0.8);
    import.report("factum import", "raw tokio-postgres insert", total, 0.6);
    println!(
        "  SQLite -> PostgreSQL move (export + import): {:.1} s, {:.0} events/s",
        moved.as_secs_f64(),
        total as f64 / moved.as_secs_f64()
    );
    Ok(())
}

/// A row as tokio-postgres reads it.
struct PgRow {
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: uuid::Uuid,
    event_type: String,
    schema_version: i32,
    payload: String,
    metadata: Option<String>,
    occurred_at: time::OffsetDateTime,
}

async fn postgres_raw_read(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<PgRow>, BoxError> {
    let no_params: [&(dyn ToSql + Sync); 0] = [];
    let rows = client.query_raw(sql, no_params).await?;
    let mut rows = std::pin::pin!(rows);
    let mut read = Vec::new();
    while let Some(row) = rows.try_next().await? {
        read.push(PgRow {
            stream_type: row.try_get(1)?,
            stream_id: row.try_get(2)?,
            version: row.try_get(3)?,
            event_id: row.try_get(4)?,
            event_type: row.try_get(5)?,
            schema_version: row.try_get(6)?,
            payload: row.try_get(7)?,
            metadata: row.try_get(8)?,
            occurred_at: row.try_get(9)?,
        });
    }
    Ok(read)
}

/// 10,000 rows per transaction, one multi-row `INSERT … SELECT FROM unnest`
/// per transaction: the fastest plain SQL (a statement per row would
/// take a round trip each).
async fn postgres_raw_insert(
    client: &tokio_postgres::Client,
    schema: &str,
    rows: &[PgRow],
) -> Result<(), BoxError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".events (
                 position bigserial PRIMARY KEY, stream_type text NOT NULL, stream_id text NOT NULL,
                 version bigint NOT NULL, event_id uuid NOT NULL UNIQUE, event_type text NOT NULL,
                 schema_version integer NOT NULL, payload json NOT NULL, metadata json,
                 occurred_at timestamptz NOT NULL, UNIQUE (stream_type, stream_id, version));"
        ))
        .await?;
    let insert = client
        .prepare(&format!(
            "INSERT INTO \"{schema}\".events (stream_type, stream_id, version, event_id, event_type, schema_version, \
             payload, metadata, occurred_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
             $7::text[]::json[], $8::text[]::json[], $9::timestamptz[])"
        ))
        .await?;
    for chunk in rows.chunks(10_000) {
        let column = |get: fn(&PgRow) -> String| chunk.iter().map(get).collect::<Vec<_>>();
        let stream_types = column(|row| row.stream_type.clone());
        let stream_ids = column(|row| row.stream_id.clone());
        let versions: Vec<i64> = chunk.iter().map(|row| row.version).collect();
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|row| row.event_id).collect();
        let types = column(|row| row.event_type.clone());
        let schema_versions: Vec<i32> = chunk.iter().map(|row| row.schema_version).collect();
        let payloads = column(|row| row.payload.clone());
        let metadata: Vec<Option<String>> = chunk.iter().map(|row| row.metadata.clone()).collect();
        let times: Vec<time::OffsetDateTime> = chunk.iter().map(|row| row.occurred_at).collect();
        client
            .execute(
                &insert,
                &[
                    &stream_types,
                    &stream_ids,
                    &versions,
                    &ids,
                    &types,
                    &schema_versions,
                    &payloads,
                    &metadata,
                    &times,
                ],
            )
            .await?;
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let total = events_total() / PER_STREAM * PER_STREAM;
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(seed(&source, total))?;
    // `FACTUM_BENCH_ONLY=sqlite` (or `postgres`) runs one backend.
    let only = std::env::var("FACTUM_BENCH_ONLY").unwrap_or_default();
    if only != "postgres" {
        sqlite_case(dir.path(), &source, total)?;
    }
    if only != "sqlite" {
        runtime.block_on(postgres_case(dir.path(), &source, total))?;
    }
    Ok(())
}
