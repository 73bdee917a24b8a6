//! Helpers of the command's tests: run the real binary, seed stores, and
//! pick a PostgreSQL schema per test.
#![allow(dead_code, unreachable_pub)]

pub mod console;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use factum_core::{EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};

/// The `factum` binary, with no store from the environment.
pub fn factum() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_factum"));
    command.env_remove("FACTUM_STORE").env_remove("FACTUM_SCHEMA");
    command
}

/// What one run printed, and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test, showing everything, unless the run exited with `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn ok(self) -> Self {
        self.expect(0)
    }

    /// Standard output as JSON lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
            .collect()
    }
}

/// Runs `factum --store STORE ARGS…`.
pub fn run(store: &str, args: &[&str]) -> Run {
    let mut command = factum();
    command.arg("--store").arg(store).args(args);
    finish(command.output().expect("the factum binary runs"))
}

pub fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Payloads a round trip must keep byte for byte: odd spacing, escapes,
/// numbers JSON parsers like to rewrite, a pretty-printed document.
pub const PAYLOADS: [&str; 5] = [
    r#"{"amount":1}"#,
    r#"{ "amount" : 2.50 , "note":"caf\u00e9 \"quoted\"" }"#,
    r#"{"big":12345678901234567890123,"tiny":1e-7,"list":[1,2 ,3]}"#,
    "{\n  \"pretty\": true,\n  \"lines\": [\"a\", \"b\"]\n}",
    r#"{"html":"<script>alert(1)</script>","emoji":"🦀"}"#,
];

/// Appends `per_stream` events to each of `streams` Counter streams, in
/// interleaved order (stream 0 v1, stream 1 v1, …, stream 0 v2, …), with
/// metadata and the [`PAYLOADS`] in turn. Returns how many it appended.
pub async fn seed(store: &impl EventStore, streams: usize, per_stream: u64) -> u64 {
    let mut appended = 0;
    for version in 0..per_stream {
        for stream in 0..streams {
            let payload = PAYLOADS[(appended as usize) % PAYLOADS.len()];
            let metadata = Metadata::default()
                .with_correlation_id(uuid::Uuid::now_v7())
                .with("channel", "cli-test");
            let event = NewEvent::new(
                if version == 0 { "created" } else { "incremented" },
                Payload::parse(payload).unwrap(),
            )
            .with_metadata(metadata)
            .with_schema_version(1 + (appended % 2) as u32);
            store
                .append(
                    &StreamId::new("Counter", format!("c-{stream}")),
                    ExpectedVersion::Exact(version),
                    vec![event],
                )
                .await
                .expect("seeding appends");
            appended += 1;
        }
    }
    appended
}

/// A SQLite store with `streams` × `per_stream` seeded events, closed.
pub async fn seeded_sqlite(path: &Path, streams: usize, per_stream: u64) {
    let store = factum_sqlite::SqliteEventStore::open(path).await.expect("open");
    seed(&store, streams, per_stream).await;
    store.close().await.expect("close");
}

/// The PostgreSQL server of the tests.
pub fn postgres_url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A schema of its own for one test (dropped by [`Postgres::drop`]), or
/// `None` (skipped; a failure under `CI=true`) when the server is down.
pub async fn postgres() -> Option<Postgres> {
    let (client, connection) = match tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await {
        Ok(connected) => connected,
        Err(error) => return factum_core::testing::service_unavailable("PostgreSQL", error),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let schema = format!(
        "ft_{}_{}_cli{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::now_v7().simple().to_string().get(26..).unwrap_or("x")
    );
    Some(Postgres { client, schema })
}

pub struct Postgres {
    pub client: tokio_postgres::Client,
    pub schema: String,
}

impl Postgres {
    /// Runs `factum --store URL --schema SCHEMA ARGS…`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut command = factum();
        command
            .args(["--store", &postgres_url(), "--schema", &self.schema])
            .args(args);
        finish(command.output().expect("the factum binary runs"))
    }

    /// A store over this test's schema (created).
    pub async fn store(&self) -> factum_postgres::PostgresEventStore {
        let options = factum_postgres::PostgresOptions::new()
            .schema(&self.schema)
            .pool_size(4);
        let store = factum_postgres::PostgresEventStore::connect_with(&postgres_url(), options)
            .await
            .expect("connect");
        store.ensure_schema().await.expect("schema");
        store
    }

    pub async fn drop(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
            .await;
    }
}

/// Events of three tenants in one store, interleaved in the log: a stream
/// `Counter/shared` in each (the same id, three streams), and one of each
/// tenant's own, 3 events each. Returns how many it appended (18).
pub async fn seed_tenants<S: EventStore + factum_core::Tenancy>(store: &S) -> u64 {
    let mut appended = 0;
    for round in 0..3u64 {
        for tenant in ["default", "acme", "globex"] {
            let view = store.for_tenant(tenant).expect("a tenant's view");
            for id in ["shared".to_owned(), format!("{tenant}-only")] {
                let payload = format!(r#"{{"tenant":"{tenant}","round":{round}}}"#);
                let event = NewEvent::new(
                    if round == 0 { "created" } else { "incremented" },
                    Payload::parse(payload).unwrap(),
                );
                view.append(
                    &StreamId::new("Counter", id),
                    ExpectedVersion::Exact(round),
                    vec![event],
                )
                .await
                .expect("seeding a tenant's stream");
                appended += 1;
            }
        }
    }
    appended
}

/// The payloads of `stream` in `tenant`'s view of `store`, in order.
pub async fn tenant_payloads<S: EventStore + factum_core::Tenancy>(
    store: &S,
    tenant: &str,
    id: &str,
) -> Vec<String> {
    use futures::TryStreamExt;
    let view = store.for_tenant(tenant).expect("a tenant's view");
    let events: Vec<_> = view
        .read_stream(&StreamId::new("Counter", id), 1)
        .try_collect()
        .await
        .expect("reading a tenant's stream");
    events
        .iter()
        .map(|event| event.payload.as_str().to_owned())
        .collect()
}
