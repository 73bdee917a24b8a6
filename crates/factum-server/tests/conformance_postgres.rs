//! The shared conformance suite through a real server backed by
//! PostgreSQL (each check in a schema of its own), as `factum serve
//! postgres://…` runs it. Skipped when the server is unreachable, except
//! under CI=true.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use factum_postgres::{PostgresEventStore, PostgresOptions};
use factum_remote::{RemoteEventStore, RemoteOptions};
use factum_server::Server;
use tokio_postgres::NoTls;

fn url() -> String {
    std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Schemas of this file start with `fs_` and carry the test process id, so
/// that a later run drops only what dead runs of this file left.
fn schema_name() -> String {
    static SCHEMAS: AtomicUsize = AtomicUsize::new(0);
    format!(
        "fs_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed)
    )
}

async fn drop_stale_schemas(client: &tokio_postgres::Client) {
    static CLEANED: AtomicBool = AtomicBool::new(false);
    if CLEANED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'fs\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(1).and_then(|pid| pid.parse::<u32>().ok());
        if !pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

async fn fresh_store() -> Option<RemoteEventStore> {
    let unavailable = |reason: String| factum_core::testing::service_unavailable("PostgreSQL", reason);
    let (client, connection) = match tokio_postgres::connect(&url(), NoTls).await {
        Ok(connected) => connected,
        Err(error) => return unavailable(error.to_string()),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    drop_stale_schemas(&client).await;
    let options = PostgresOptions::new()
        .schema(schema_name())
        .pool_size(8)
        .poll_interval(Duration::from_millis(200));
    let store = match PostgresEventStore::connect_with(&url(), options).await {
        Ok(store) => store,
        Err(error) => return unavailable(error.to_string()),
    };
    store
        .ensure_schema()
        .await
        .expect("the schema is created on a reachable server");
    store
        .ensure_tenant_role()
        .await
        .expect("the tenant role exists on a reachable server");
    let server = common::start(Server::new(store)).await;
    Some(common::connect(&server, RemoteOptions::new()).await)
}

factum_core::conformance_suite!(fresh_store);
factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
