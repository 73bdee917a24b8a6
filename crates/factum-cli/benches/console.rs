//! The console's stream page: how long the first page of a 100,000-event
//! stream takes to render, against the first page of a 50-event stream in
//! the same run (goal: under 100 ms; the page reads one page of events,
//! never the whole stream).
//!
//! The console runs as a user runs it (`factum console`, a child process);
//! each request is a fresh HTTP/1.0 connection timed from connect to the
//! last byte, so the figure is what a browser waits for, less its own
//! rendering. The two streams take turns, after a warm-up.
//!
//! ```text
//! cargo bench -p factum-cli --bench console
//! FACTUM_BENCH_EVENTS=1000000 cargo bench -p factum-cli --bench console
//! ```
//!
//! PostgreSQL at `FACTUM_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) is measured too; without
//! it its rows are skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use factum_core::{EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
use factum_postgres::{PostgresEventStore, PostgresOptions};
use factum_sqlite::SqliteEventStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const WARM_UP: usize = 5;
const ROUNDS: usize = 40;
const SMALL: u64 = 50;
const BATCH: u64 = 1000;
const PAYLOAD: &str =
    r#"{"account":"acc-501","amount":"12.40","note":"a typical small event payload","tags":["a","b"]}"#;

fn big_stream_events() -> u64 {
    std::env::var("FACTUM_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

fn postgres_url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn seed(store: &impl EventStore, events: u64) -> Result<(), BoxError> {
    let event = || {
        let metadata = Metadata::default().with_correlation_id(uuid::Uuid::now_v7());
        NewEvent::new("posted", Payload::parse(PAYLOAD).expect("JSON")).with_metadata(metadata)
    };
    let big = StreamId::new("Ledger", "big");
    let mut written = 0;
    while written < events {
        let batch = BATCH.min(events - written);
        let batch = (0..batch).map(|_| event()).collect();
        store.append(&big, ExpectedVersion::Exact(written), batch).await?;
        written += BATCH.min(events - written);
    }
    let small = (0..SMALL).map(|_| event()).collect();
    store
        .append(
            &StreamId::new("Ledger", "small"),
            ExpectedVersion::NoStream,
            small,
        )
        .await?;
    Ok(())
}

/// A `factum console` child, killed when dropped.
struct Console {
    child: Child,
    addr: String,
}

impl Console {
    fn start(store_args: &[&str]) -> Result<Self, BoxError> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_factum"))
            .args(store_args)
            .args(["console", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut first)?;
        let addr = first
            .trim()
            .rsplit_once("http://")
            .map(|(_, addr)| addr.trim_end_matches('/').to_owned())
            .ok_or_else(|| format!("no address in {first:?}"))?;
        Ok(Self { child, addr })
    }

    /// Time to the last byte of `GET path`; fails unless the answer is 200.
    fn time(&self, path: &str) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&self.addr)?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let elapsed = started.elapsed();
        if !answer.starts_with(b"HTTP/1.0 200") && !answer.starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "{path}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            )
            .into());
        }
        Ok(elapsed)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Median, 95th percentile and worst of `samples`.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    format!(
        "median {:>9}   p95 {:>9}   max {:>9}",
        millis(at(0.5)),
        millis(at(0.95)),
        millis(at(1.0))
    )
}

fn measure(name: &str, console: &Console, events: u64) -> Result<(), BoxError> {
    let pages = [
        (
            format!("first page, {events}-event stream"),
            "/stream?type=Ledger&id=big".to_owned(),
        ),
        (
            format!("first page, {SMALL}-event stream"),
            "/stream?type=Ledger&id=small".to_owned(),
        ),
        (
            format!("last page, {events}-event stream"),
            format!("/stream?type=Ledger&id=big&from={}", events - 49),
        ),
    ];
    for (_, path) in &pages {
        for _ in 0..WARM_UP {
            console.time(path)?;
        }
    }
    let mut samples = vec![Vec::with_capacity(ROUNDS); pages.len()];
    for _ in 0..ROUNDS {
        for (index, (_, path)) in pages.iter().enumerate() {
            samples[index].push(console.time(path)?);
        }
    }
    for ((label, _), samples) in pages.iter().zip(samples) {
        println!("{name:<10} {label:<36} {}", summary(samples));
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let events = big_stream_events().max(SMALL);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("stream page of `factum console`, {ROUNDS} requests each (50 events a page), taking turns:");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("console.db");
    runtime.block_on(async {
        let store = SqliteEventStore::open(&path).await?;
        seed(&store, events).await?;
        store.close().await?;
        Ok::<_, BoxError>(())
    })?;
    let sqlite = Console::start(&["--store", &path.display().to_string()])?;
    measure("SQLite", &sqlite, events)?;
    drop(sqlite);

    let schema = format!("factum_console_bench_{}", std::process::id());
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, BoxError>(client)
    });
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            println!("PostgreSQL skipped: {error}");
            return Ok(());
        }
    };
    let result = (|| {
        runtime.block_on(async {
            let options = PostgresOptions::new().schema(&schema).pool_size(4);
            let store = PostgresEventStore::connect_with(&postgres_url(), options).await?;
            store.ensure_schema().await?;
            seed(&store, events).await?;
            store.close().await?;
            // What autovacuum does within a minute of a bulk write: without
            // statistics the planner takes the fresh table for a small one
            // and scans it (~50 ms a page here) until then.
            client
                .batch_execute(&format!("ANALYZE \"{schema}\".factum_events"))
                .await?;
            Ok::<_, BoxError>(())
        })?;
        let console = Console::start(&["--store", &postgres_url(), "--schema", &schema])?;
        measure("PostgreSQL", &console, events)
    })();
    runtime.block_on(client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))?;
    result
}
