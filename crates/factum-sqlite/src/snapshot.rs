//! Snapshots in the `snapshots` table, one row per stream: the latest.

use factum_core::backend::{from_stored, to_stored};
use factum_core::{Error, Payload, Snapshot, SnapshotStore, StreamId, Tenant};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::SqliteEventStore;
use crate::decode::At;
use crate::encode::nanos;
use crate::error::sqlite;
use crate::writer::Command;

const SAVE_SQL: &str = "INSERT INTO snapshots (aggregate_type, aggregate_id, version, state, taken_at, schema_version, \
     tenant) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (tenant, aggregate_type, aggregate_id) DO UPDATE \
     SET version = excluded.version, state = excluded.state, taken_at = excluded.taken_at, \
         schema_version = excluded.schema_version \
     WHERE excluded.version >= snapshots.version";

const LOAD_SQL: &str = "SELECT version, state, taken_at, schema_version FROM snapshots \
     WHERE tenant = ?3 AND aggregate_type = ?1 AND aggregate_id = ?2";

/// Stores `snapshot` of a stream of `tenant` unless one of a higher version
/// is stored; run by the writer with its group.
pub(crate) fn save(connection: &Connection, tenant: &Tenant, snapshot: &Snapshot) -> Result<(), Error> {
    let stream = &snapshot.stream;
    let version: i64 = to_stored(snapshot.version, "snapshot version", stream)?;
    let taken_at = nanos(snapshot.taken_at).map_err(|reason| Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!("the snapshot was taken at {reason}"),
    })?;
    let mut statement = connection.prepare_cached(SAVE_SQL).map_err(sqlite)?;
    statement
        .execute((
            stream.aggregate_type(),
            stream.aggregate_id(),
            version,
            snapshot.state.as_str(),
            taken_at,
            snapshot.schema_version,
            tenant.as_str(),
        ))
        .map_err(sqlite)?;
    Ok(())
}

/// The latest snapshot of `stream` of `tenant`; a damaged row is
/// [`Error::Corrupt`].
fn load(connection: &Connection, tenant: &Tenant, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
    let mut statement = connection.prepare_cached(LOAD_SQL).map_err(sqlite)?;
    let mut rows = statement
        .query((stream.aggregate_type(), stream.aggregate_id(), tenant.as_str()))
        .map_err(sqlite)?;
    let Some(row) = rows.next().map_err(sqlite)? else {
        return Ok(None);
    };
    let at = At::new(stream, 0);
    let version = from_stored(
        at.integer(row, 0, "snapshot version")?,
        "snapshot version",
        stream,
        0,
    )?;
    let state = at.text(row, 1, "snapshot state")?;
    let taken_at = at.time(row, 2, "snapshot time")?;
    let schema_version = from_stored(
        at.integer(row, 3, "snapshot schema version")?,
        "snapshot schema version",
        stream,
        0,
    )?;
    Ok(Some(Snapshot {
        stream: stream.clone(),
        version,
        schema_version,
        state: Payload::from_stored(state),
        taken_at,
    }))
}

/// Snapshots live in the `snapshots` table, one row per stream: the latest.
///
/// ```
/// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotStore, StreamId};
/// # use factum_sqlite::SqliteEventStore;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteEventStore::open_in_memory().await?;
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":5}"#)?);
/// store.append(&stream, ExpectedVersion::Any, vec![event]).await?;
///
/// let state = Payload::parse(r#"{"value":5}"#)?;
/// let taken_at = time::OffsetDateTime::now_utc();
/// let snapshot = Snapshot { stream: stream.clone(), version: 1, schema_version: 1, state, taken_at };
/// store.save_snapshot(snapshot).await?;
/// let snapshot = store.load_snapshot(&stream).await?.expect("saved above");
/// assert_eq!((snapshot.version, snapshot.state.as_str()), (1, r#"{"value":5}"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
impl SnapshotStore for SqliteEventStore {
    /// Stores `snapshot` unless a snapshot of a higher version is stored.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SaveSnapshot {
            tenant: self.home().clone(),
            snapshot,
            reply,
        })?;
        answer.await.map_err(|_| self.gone())?
    }

    /// The latest snapshot of `stream`; a damaged row is
    /// [`Error::Corrupt`].
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let stream = stream.clone();
        let tenant = self.home().clone();
        self.read(move |connection| load(connection, &tenant, &stream))
            .await
    }
}
