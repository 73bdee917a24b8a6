//! The PostgreSQL projection store: factum's shared projection-store suite
//! (exactly once under kills at every step), leases, the plain checkpoint
//! and dead-letter stores, and what a dropped transaction or a killed
//! connection leaves behind. Each test runs in a schema of its own.

mod common;

use std::time::Duration;

use factum_core::testing::projection::Ledger;
use factum_core::{Error, HandlerError, ProjectionStore};
use factum_postgres::{PostgresError, PostgresEventStore, PostgresProjectionStore, PostgresTransaction};

/// The suite's ledger: a table `ledger` in the test's schema.
struct SqlLedger {
    table: String,
}

impl Ledger<PostgresProjectionStore> for SqlLedger {
    async fn record(
        &self,
        transaction: &mut PostgresTransaction,
        projection: &str,
        position: u64,
    ) -> Result<(), HandlerError> {
        transaction
            .execute(
                &format!(
                    "INSERT INTO {} (projection, position) VALUES ($1, $2)",
                    self.table
                ),
                &[&projection, &i64::try_from(position)?],
            )
            .await?;
        Ok(())
    }

    async fn read(&self, store: &PostgresProjectionStore, projection: &str) -> Result<Vec<u64>, Error> {
        let rows = store
            .query(
                &format!(
                    "SELECT position FROM {} WHERE projection = $1 ORDER BY seq",
                    self.table
                ),
                &[&projection],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(u64::MAX))
            .collect())
    }
}

/// A store in a fresh schema, with its ledger table.
async fn fresh() -> Option<(PostgresProjectionStore, SqlLedger)> {
    common::raw_client().await?;
    let schema = common::schema_name();
    let events = match PostgresEventStore::connect_with(&common::url(), common::options(&schema)).await {
        Ok(events) => events,
        Err(error) => return common::unavailable(error),
    };
    events
        .ensure_schema()
        .await
        .expect("ensure_schema on a reachable server");
    events
        .ensure_tenant_role()
        .await
        .expect("ensure_tenant_role on a reachable server");
    let store = PostgresProjectionStore::new(&events);
    let table = format!("\"{schema}\".ledger");
    // Tenants' views write the ledger as the tenant role.
    store
        .execute_batch(&format!(
            "CREATE TABLE {table} (seq bigserial PRIMARY KEY, projection text NOT NULL, position bigint NOT NULL);
             GRANT SELECT, INSERT ON {table} TO factum_tenant;
             GRANT USAGE ON SEQUENCE \"{schema}\".ledger_seq_seq TO factum_tenant;"
        ))
        .await
        .expect("the ledger table is created");
    Some((store, SqlLedger { table }))
}

factum_core::projection_store_suite!(fresh);

#[test]
fn lease_is_exclusive_and_expires() {
    factum_core::testing::run(
        || async { fresh().await.map(|(store, _)| store) },
        factum_core::testing::projection::lease_is_exclusive_and_expires,
    );
}

#[test]
fn plain_stores_keep_checkpoints_and_dead_letters() {
    factum_core::testing::run(
        || async { fresh().await.map(|(store, _)| store) },
        |store| {
            factum_core::testing::projection::plain_stores_keep_checkpoints_and_dead_letters(
                store.clone(),
                store,
            )
        },
    );
}

#[test]
fn plain_stores_keep_tenants_apart() {
    factum_core::testing::run(
        || async { fresh().await.map(|(store, _)| store) },
        |store| async move {
            factum_core::testing::projection::plain_stores_keep_tenants_apart(store.clone(), store.clone())
                .await;
            factum_core::testing::projection::leases_of_tenants_are_apart(store).await;
        },
    );
}

async fn ledger_rows(store: &PostgresProjectionStore, ledger: &SqlLedger, projection: &str) -> Vec<u64> {
    ledger.read(store, projection).await.expect("the ledger is read")
}

fn is_connection_lost(error: &Error) -> bool {
    match error {
        Error::Store { source, .. } => matches!(
            source.downcast_ref::<PostgresError>(),
            Some(PostgresError::ConnectionLost { .. })
        ),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_rolls_back_and_never_returns_to_the_pool_mid_transaction() {
    let Some((store, ledger)) = fresh().await else {
        return;
    };
    let raw = common::raw_client()
        .await
        .expect("the server answered a moment ago");
    let mut transaction = store.begin("dropped").await.unwrap();
    ledger.record(&mut transaction, "dropped", 1).await.unwrap();
    store
        .save_checkpoint(&mut transaction, "dropped", 0, 1)
        .await
        .unwrap();
    let pid: i32 = transaction
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(transaction);

    // Its connection is closed (the server rolls back), not pooled.
    let mut gone = false;
    for _ in 0..200 {
        let alive = raw
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        if alive.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the connection of a dropped transaction was closed");
    assert!(ledger_rows(&store, &ledger, "dropped").await.is_empty());
    assert_eq!(store.checkpoint("dropped").await.unwrap(), 0);

    // No pooled connection is left inside a transaction: every one the
    // pool hands out now starts outside one.
    let mut held = Vec::new();
    for _ in 0..4 {
        let transaction = store.begin("probe").await.unwrap();
        let row = transaction
            .query_one("SELECT pg_current_xact_id_if_assigned() IS NULL", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "a fresh transaction has written nothing");
        held.push(transaction);
    }
    for transaction in held {
        store.rollback(transaction).await.unwrap();
    }

    let mut transaction = store.begin("dropped").await.unwrap();
    ledger.record(&mut transaction, "dropped", 2).await.unwrap();
    store
        .save_checkpoint(&mut transaction, "dropped", 0, 2)
        .await
        .unwrap();
    store.commit(transaction).await.unwrap();
    assert_eq!(ledger_rows(&store, &ledger, "dropped").await, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_transaction_is_a_typed_error_and_applies_nothing() {
    let Some((store, ledger)) = fresh().await else {
        return;
    };
    let raw = common::raw_client()
        .await
        .expect("the server answered a moment ago");
    let mut transaction = store.begin("killed").await.unwrap();
    ledger.record(&mut transaction, "killed", 1).await.unwrap();
    let pid: i32 = transaction
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let terminated: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    let saved = store.save_checkpoint(&mut transaction, "killed", 0, 1).await;
    let outcome = match saved {
        Ok(()) => store.commit(transaction).await,
        Err(error) => {
            drop(transaction);
            Err(error)
        }
    };
    let error = outcome.expect_err("a transaction on a killed connection cannot commit");
    assert!(
        is_connection_lost(&error),
        "expected ConnectionLost, got {error:?}"
    );
    assert!(error.to_string().contains(&common::address()), "{error}");

    assert!(ledger_rows(&store, &ledger, "killed").await.is_empty());
    assert_eq!(store.checkpoint("killed").await.unwrap(), 0);

    // The store goes on with fresh connections.
    let mut transaction = store.begin("killed").await.unwrap();
    ledger.record(&mut transaction, "killed", 1).await.unwrap();
    store
        .save_checkpoint(&mut transaction, "killed", 0, 1)
        .await
        .unwrap();
    store.commit(transaction).await.unwrap();
    assert_eq!(ledger_rows(&store, &ledger, "killed").await, [1]);
    assert_eq!(store.checkpoint("killed").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_aborted_by_a_failed_statement_does_not_pass_for_a_commit() {
    let Some((store, ledger)) = fresh().await else {
        return;
    };
    let mut transaction = store.begin("aborted").await.unwrap();
    ledger.record(&mut transaction, "aborted", 1).await.unwrap();
    store
        .save_checkpoint(&mut transaction, "aborted", 0, 1)
        .await
        .unwrap();
    // The handler swallows an error: PostgreSQL has aborted the transaction.
    assert!(transaction.execute("SELECT 1 / 0", &[]).await.is_err());
    let error = store
        .commit(transaction)
        .await
        .expect_err("an aborted transaction cannot commit");
    assert!(error.to_string().contains("25P02"), "{error}");
    assert!(ledger_rows(&store, &ledger, "aborted").await.is_empty());
    assert_eq!(store.checkpoint("aborted").await.unwrap(), 0);
}

/// An attempt count the `integer` column cannot hold is refused, never
/// stored clamped; a negative one read back is corruption naming the letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_count_out_of_range_is_an_error_both_ways() {
    use factum_core::{DeadLetter, DeadLetterStore, NewEvent, Payload, StreamId};

    let Some((store, _)) = fresh().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let event = NewEvent::new("added", Payload::parse(r#"{"amount":1}"#).expect("JSON")).recorded(
        StreamId::new("Tally", "attempts"),
        1,
        7,
    );
    let letter = DeadLetter::new("attempts", event, "handler failed", u32::MAX);
    let refused = store.put(letter.clone()).await;
    assert!(
        matches!(&refused, Err(Error::InvalidRequest { reason, .. }) if reason.contains("attempt count")),
        "{refused:?}"
    );
    assert!(store.list("attempts").await.expect("listed").is_empty());

    store
        .put(DeadLetter {
            attempts: 3,
            ..letter
        })
        .await
        .expect("a letter with 3 attempts is stored");
    let table = format!(
        "\"{}\".factum_dead_letters",
        store.events().schema_name().trim_end_matches(".factum_")
    );
    raw.execute(&format!("UPDATE {table} SET attempts = -1"), &[])
        .await
        .expect("the row is damaged");
    let damaged = store.list("attempts").await;
    assert!(
        matches!(&damaged, Err(Error::Corrupt { version: 1, reason, .. }) if reason.contains("attempt count -1")),
        "{damaged:?}"
    );
}
