//! The shared projection-store suite on a SQLite file (exactly once, the
//! kill-at-every-step run included), and the plain checkpoint, dead-letter
//! and lease checks.

use std::sync::Arc;

use factum_core::testing::projection::{self, Ledger};
use factum_core::{Error, HandlerError, ProjectionStore};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions, SqliteProjectionStore, SqliteTransaction};

/// The suite's ledger as a table in the same file; it keeps the temporary
/// directory alive as long as the check runs.
struct SqlLedger {
    _dir: Arc<tempfile::TempDir>,
}

impl Ledger<SqliteProjectionStore> for SqlLedger {
    async fn record(
        &self,
        transaction: &mut SqliteTransaction,
        projection: &str,
        position: u64,
    ) -> Result<(), HandlerError> {
        let position = i64::try_from(position)?;
        transaction
            .execute(
                "INSERT INTO ledger (projection, position) VALUES (?1, ?2)",
                (projection.to_owned(), position),
            )
            .await?;
        Ok(())
    }

    async fn read(&self, store: &SqliteProjectionStore, projection: &str) -> Result<Vec<u64>, Error> {
        let projection = projection.to_owned();
        let positions: Vec<i64> = store
            .query(
                "SELECT position FROM ledger WHERE projection = ?1 ORDER BY entry",
                (projection,),
                |row| row.get(0),
            )
            .await?;
        Ok(positions.into_iter().map(|position| position as u64).collect())
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteEventStore {
    // NORMAL keeps the many commits of the kill test quick; FULL differs
    // only in flushing, which a killed task does not exercise.
    let options = SqliteOptions::new().durability(Durability::Normal);
    SqliteEventStore::open_with(dir.path().join("projections.db"), options)
        .await
        .expect("a fresh store opens")
}

async fn fresh() -> Option<(SqliteProjectionStore, SqlLedger)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteProjectionStore::new(&open(&dir).await);
    store
        .execute_batch(
            "CREATE TABLE ledger (entry INTEGER PRIMARY KEY, projection TEXT NOT NULL, position INTEGER NOT NULL)",
        )
        .await
        .expect("the ledger table is created");
    Some((store, SqlLedger { _dir: Arc::new(dir) }))
}

factum_core::projection_store_suite!(fresh);

#[test]
fn lease_is_exclusive_and_expires() {
    factum_core::testing::run(
        || async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            Some((SqliteProjectionStore::new(&open(&dir).await), dir))
        },
        |(store, dir)| async move {
            projection::lease_is_exclusive_and_expires(store).await;
            drop(dir);
        },
    );
}

#[test]
fn plain_stores_keep_checkpoints_and_dead_letters() {
    factum_core::testing::run(
        || async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            Some((SqliteProjectionStore::new(&open(&dir).await), dir))
        },
        |(store, dir)| async move {
            projection::plain_stores_keep_checkpoints_and_dead_letters(store.clone(), store).await;
            drop(dir);
        },
    );
}

#[test]
fn plain_stores_keep_tenants_apart() {
    factum_core::testing::run(
        || async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            Some((SqliteProjectionStore::new(&open(&dir).await), dir))
        },
        |(store, dir)| async move {
            projection::plain_stores_keep_tenants_apart(store.clone(), store.clone()).await;
            projection::leases_of_tenants_are_apart(store).await;
            drop(dir);
        },
    );
}

#[test]
fn plain_stores_work_in_memory_but_transactions_need_a_file() {
    factum_core::testing::run(
        || async {
            let events = SqliteEventStore::open_in_memory().await.expect("opens");
            Some(SqliteProjectionStore::new(&events))
        },
        |store| async move {
            let refused = store.begin("p").await;
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|error| error.to_string().contains("in a file")),
                "{refused:?}"
            );
            projection::plain_stores_keep_checkpoints_and_dead_letters(store.clone(), store).await;
        },
    );
}
