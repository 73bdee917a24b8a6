//! How SQLite projection transactions behave under misuse: a handler that
//! waits inside one for a write to the same store, work that panics, a
//! statement that ends the transaction itself.

use std::error::Error as _;
use std::time::Duration;

use factum_core::{Error, EventStore, ExpectedVersion, NewEvent, Payload, ProjectionStore, StreamId};
use factum_sqlite::{SqliteError, SqliteEventStore, SqliteOptions, SqliteProjectionStore};

async fn open(dir: &tempfile::TempDir, busy_timeout: Duration) -> Result<SqliteProjectionStore, Error> {
    let options = SqliteOptions::new().busy_timeout(busy_timeout);
    let events = SqliteEventStore::open_with(dir.path().join("app.db"), options).await?;
    let store = SqliteProjectionStore::new(&events);
    store
        .execute_batch("CREATE TABLE model (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
        .await?;
    Ok(store)
}

fn sqlite_error(error: &Error) -> Option<&SqliteError> {
    error
        .source()
        .and_then(|source| source.downcast_ref::<SqliteError>())
}

async fn rows(store: &SqliteProjectionStore) -> Result<i64, Error> {
    store
        .with_connection(|connection| {
            connection.query_row("SELECT count(*) FROM model", [], |row| row.get(0))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_awaited_inside_a_transaction_rolls_it_back_instead_of_hanging() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|error| Error::store("test", error))?;
    let store = open(&dir, Duration::from_millis(300)).await?;
    let mut transaction = store.begin("p").await?;
    transaction
        .execute("INSERT INTO model (value) VALUES (?1)", ("held".to_owned(),))
        .await?;

    // The writer serves only the transaction: this append waits, until the
    // transaction has sat idle for the busy timeout and is rolled back.
    let stream = StreamId::new("Counter", "1");
    let event = NewEvent::new("incremented", Payload::from(serde_json::json!({ "amount": 1 })));
    let appended = tokio::time::timeout(
        Duration::from_secs(10),
        store
            .events()
            .append(&stream, ExpectedVersion::NoStream, vec![event]),
    )
    .await
    .map_err(|elapsed| Error::store("test", elapsed))??;
    assert_eq!(appended.positions, [1]);

    let refused = transaction
        .execute("INSERT INTO model (value) VALUES ('late')", ())
        .await
        .expect_err("the transaction was rolled back");
    assert!(
        matches!(
            sqlite_error(&refused),
            Some(SqliteError::TransactionAbandoned { .. })
        ),
        "{refused}"
    );
    assert!(store.commit(transaction).await.is_err());
    assert_eq!(
        rows(&store).await?,
        0,
        "nothing of the abandoned transaction stays"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_work_rolls_back_and_the_store_goes_on() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|error| Error::store("test", error))?;
    let store = open(&dir, Duration::from_secs(5)).await?;
    let mut transaction = store.begin("p").await?;
    transaction
        .execute("INSERT INTO model (value) VALUES ('before')", ())
        .await?;
    let panicked = transaction
        .call(|_| -> rusqlite::Result<()> { panic!("a bug in a handler") })
        .await
        .expect_err("the work panicked");
    assert!(
        matches!(sqlite_error(&panicked), Some(SqliteError::TransactionPanicked)),
        "{panicked}"
    );
    assert!(store.commit(transaction).await.is_err());

    let mut transaction = store.begin("p").await?;
    transaction
        .execute("INSERT INTO model (value) VALUES ('after')", ())
        .await?;
    store.save_checkpoint(&mut transaction, "p", 0, 1).await?;
    store.commit(transaction).await?;
    assert_eq!(rows(&store).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_commits_the_transaction_makes_the_rest_fail() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|error| Error::store("test", error))?;
    let store = open(&dir, Duration::from_secs(5)).await?;
    let mut transaction = store.begin("p").await?;
    transaction.execute_batch("ROLLBACK").await?;
    let refused = transaction
        .execute("INSERT INTO model (value) VALUES ('outside')", ())
        .await
        .expect_err("nothing runs outside the transaction");
    assert!(
        matches!(sqlite_error(&refused), Some(SqliteError::TransactionEnded)),
        "{refused}"
    );
    assert_eq!(rows(&store).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_only_committed_data() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|error| Error::store("test", error))?;
    let store = open(&dir, Duration::from_secs(5)).await?;
    let mut transaction = store.begin("p").await?;
    transaction
        .execute("INSERT INTO model (value) VALUES ('pending')", ())
        .await?;
    let seen_inside: i64 = transaction
        .call(|tx| tx.query_row("SELECT count(*) FROM model", [], |row| row.get(0)))
        .await?;
    assert_eq!((seen_inside, rows(&store).await?), (1, 0));
    let write = store
        .with_connection(|connection| connection.execute("DELETE FROM model", []))
        .await;
    assert!(write.is_err(), "read connections are read-only");
    store.commit(transaction).await?;
    assert_eq!(rows(&store).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_dead_letters_and_checkpoints_are_errors_not_panics() -> Result<(), Box<dyn std::error::Error>>
{
    use factum_core::{DeadLetter, DeadLetterStore};
    let dir = tempfile::tempdir()?;
    let store = open(&dir, Duration::from_secs(5)).await?;
    let event = NewEvent::new("placed", Payload::from(serde_json::json!({}))).recorded(
        StreamId::new("Order", "o-1"),
        2,
        7,
    );
    store.put(DeadLetter::new("p", event, "price missing", 3)).await?;
    assert_eq!(store.list("p").await?.len(), 1);

    let connection = rusqlite::Connection::open(dir.path().join("app.db"))?;
    connection.execute("UPDATE factum_dead_letters SET attempts = 'many'", [])?;
    connection.execute("INSERT INTO factum_checkpoints VALUES ('$all', 'q', -4)", [])?;
    let damaged = store.list("p").await.expect_err("a damaged row");
    assert!(
        matches!(&damaged, Error::Corrupt { stream, version: 2, .. } if *stream == StreamId::new("Order", "o-1")),
        "{damaged}"
    );
    let damaged = store.checkpoint("q").await.expect_err("a negative checkpoint");
    assert!(matches!(damaged, Error::Checkpoint { .. }), "{damaged}");
    store.events().close().await?;
    Ok(())
}
