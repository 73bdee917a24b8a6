//! Stores with their outbox enabled, and a relay set for tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use factum_core::{Outbox, OutboxRelay, Publisher, RetryPolicy};
use factum_postgres::{PostgresEventStore, PostgresOptions};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};
use tempfile::TempDir;

/// How long a test waits for the relays to empty an outbox.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A SQLite store in `dir` with its outbox enabled.
pub async fn sqlite(dir: &TempDir) -> SqliteEventStore {
    let options = SqliteOptions::new().durability(Durability::Normal);
    let store = SqliteEventStore::open_with(dir.path().join("events.db"), options)
        .await
        .expect("the file opens");
    store.enable_outbox().await.expect("the outbox is enabled");
    store
}

fn postgres_url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A PostgreSQL store in a fresh schema with its outbox enabled, or `None`
/// (skipped; a failure under `CI=true`) when the server is unreachable.
pub async fn postgres() -> Option<PostgresEventStore> {
    let schema = format!(
        "fk_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed)
    );
    let options = PostgresOptions::new().schema(&schema).pool_size(8);
    let store = match PostgresEventStore::connect_with(&postgres_url(), options).await {
        Ok(store) => store,
        Err(error) => return factum_core::testing::service_unavailable("PostgreSQL", error),
    };
    let client = store.pool().get().await.expect("a connection");
    drop_stale_schemas(&client).await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("a leftover schema is dropped");
    drop(client);
    store.ensure_schema().await.expect("the schema is created");
    store.enable_outbox().await.expect("the outbox is enabled");
    Some(store)
}

/// Drops the schemas of test processes that are gone (a test that failed
/// before its clean-up).
async fn drop_stale_schemas(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'fk\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(1).and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// A second store on the schema of `store`: another process's view.
pub async fn postgres_twin(store: &PostgresEventStore) -> PostgresEventStore {
    let schema = store
        .schema_name()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    PostgresEventStore::connect_with(
        &postgres_url(),
        PostgresOptions::new().schema(schema).pool_size(8),
    )
    .await
    .expect("a second store connects")
}

/// Drops the schema of `store`.
pub async fn drop_postgres(store: PostgresEventStore) {
    let schema = store
        .schema_name()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Ok(client) = store.pool().get().await {
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
    }
    let _ = store.close().await;
}

/// A relay that looks often and retries quickly: tests wait less.
pub fn quick<O: Outbox, P: Publisher>(outbox: O, publisher: P) -> OutboxRelay<O, P> {
    OutboxRelay::new(outbox, publisher)
        .batch_size(16)
        .poll_interval(Duration::from_millis(5))
        .backoff(
            RetryPolicy::default()
                .base_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(500)),
        )
}

/// Waits until `outbox` has nothing left to send (parked entries aside:
/// at most `parked` may stay).
pub async fn drained<O: Outbox>(outbox: &O, parked: u64) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if outbox.pending().await.expect("counting pending entries") <= parked {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the relay empties the outbox");
}
