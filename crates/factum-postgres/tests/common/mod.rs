//! Shared helpers of the PostgreSQL tests: a fresh store in its own schema,
//! raw connections, and skipping when the server is unreachable.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use factum_postgres::{PostgresEventStore, PostgresOptions};
use tokio_postgres::NoTls;

/// The server the tests use.
pub fn url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Reports the test skipped (or fails it under `CI=true`) and returns `None`.
pub fn unavailable<T>(reason: impl std::fmt::Display) -> Option<T> {
    factum_core::testing::service_unavailable(&format!("PostgreSQL at {}", address()), reason)
}

/// `host:port` of [`url`], for messages.
pub fn address() -> String {
    match url().parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
                None => "localhost".to_owned(),
            };
            format!("{host}:{}", config.get_ports().first().copied().unwrap_or(5432))
        }
        Err(_) => url(),
    }
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);
static CLEANED: AtomicBool = AtomicBool::new(false);

/// A new schema name, unique to this process and call.
pub fn schema_name() -> String {
    format!(
        "ft_{}_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple().to_string().get(..6).unwrap_or("x")
    )
}

/// A raw connection to the test server, or `None` (skipped) when it is down.
pub async fn raw_client() -> Option<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = match url().parse() {
        Ok(config) => config,
        Err(error) => return unavailable(error),
    };
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Err(error) => unavailable(error),
    }
}

/// Drops the schemas left by test processes that are gone.
async fn clean_stale_schemas(client: &tokio_postgres::Client) {
    if CLEANED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ft\\_%'",
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

/// Options of a test store in `schema`. With `FACTUM_TEST_GROUP_COMMIT=1`
/// the store commits concurrent appends in groups, as eagerly as it can
/// (`in_flight(1)`, `alone(0)`), so that every suite runs through group
/// commit too.
pub fn options(schema: &str) -> PostgresOptions {
    let options = PostgresOptions::new()
        .schema(schema)
        .pool_size(8)
        .poll_interval(Duration::from_millis(200));
    if std::env::var("FACTUM_TEST_GROUP_COMMIT").is_ok_and(|value| value == "1") {
        options.group_commit(factum_postgres::GroupCommit::new().in_flight(1).alone(0))
    } else {
        options
    }
}

/// A store over a fresh schema, created; `None` (skipped) when the server is down.
pub async fn fresh_store() -> Option<PostgresEventStore> {
    fresh_store_with(|options| options).await
}

/// [`fresh_store`] with changed options.
pub async fn fresh_store_with(
    change: impl FnOnce(PostgresOptions) -> PostgresOptions,
) -> Option<PostgresEventStore> {
    let client = raw_client().await?;
    clean_stale_schemas(&client).await;
    let schema = schema_name();
    let store = match PostgresEventStore::connect_with(&url(), change(options(&schema))).await {
        Ok(store) => store,
        Err(error) => return unavailable(error),
    };
    if let Err(error) = store.ensure_schema().await {
        panic!("ensure_schema failed on a reachable server: {error}");
    }
    // The role is the cluster's, shared by every test: creating it is
    // idempotent and safe when tests race to do it.
    if let Err(error) = store.ensure_tenant_role().await {
        panic!("ensure_tenant_role failed on a reachable server: {error}");
    }
    Some(store)
}
