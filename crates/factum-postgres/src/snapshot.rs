//! Snapshots: the latest saved state of each aggregate, one row per stream
//! in the `snapshots` table (schema version 4; keyed by tenant since schema
//! version 5, the shape version column since schema version 6).

use factum_core::backend::{corrupt, from_stored, to_stored};
use factum_core::{Error, Payload, Snapshot, SnapshotStore, StreamId};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use crate::PostgresEventStore;
use crate::options::Names;

/// The statement that stores a snapshot unless a newer one is stored: the
/// comparison happens in the row's own lock, so two concurrent saves leave
/// the higher version whatever their order.
pub(crate) fn save_sql(names: &Names) -> String {
    format!(
        "INSERT INTO {snapshots} AS stored (stream_type, stream_id, version, state, taken_at, schema_version, tenant)
         VALUES ($1, $2, $3, $4::text::json, $5, $6, $7)
         ON CONFLICT (tenant, stream_type, stream_id) DO UPDATE
            SET version = excluded.version, state = excluded.state, taken_at = excluded.taken_at,
                schema_version = excluded.schema_version
          WHERE excluded.version >= stored.version",
        snapshots = names.snapshots
    )
}

/// The statement that reads the snapshot of a stream.
pub(crate) fn load_sql(names: &Names) -> String {
    format!(
        "SELECT version, state::text, taken_at, schema_version FROM {}
         WHERE tenant = $3 AND stream_type = $1 AND stream_id = $2",
        names.snapshots
    )
}

/// Snapshots live in the `snapshots` table of the store's schema, one row
/// per stream: the latest.
///
/// Saving a snapshot at a lower version than the stored one keeps the stored
/// one. The store keeps what it is given and does not compare it with the
/// stream; [`Application`](factum_core::Application) never starts a load
/// from a snapshot whose version its stream does not hold.
///
/// ```no_run
/// # use factum_core::{Payload, Snapshot, SnapshotStore, StreamId};
/// # use factum_postgres::PostgresEventStore;
/// # async fn demo(store: PostgresEventStore) -> Result<(), Box<dyn std::error::Error>> {
/// let stream = StreamId::new("Counter", "42");
/// let state = Payload::parse(r#"{"value":5}"#)?;
/// let taken_at = time::OffsetDateTime::now_utc();
/// let snapshot = Snapshot { stream: stream.clone(), version: 1, schema_version: 1, state, taken_at };
/// store.save_snapshot(snapshot).await?;
/// let snapshot = store.load_snapshot(&stream).await?;
/// assert_eq!(snapshot.map(|snapshot| snapshot.version), Some(1));
/// # Ok(()) }
/// ```
impl SnapshotStore for PostgresEventStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let stream = &snapshot.stream;
        let version: i64 = to_stored(snapshot.version, "snapshot version", stream)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.save_snapshot)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let tenant = self.home().as_str();
        let schema_version = i64::from(snapshot.schema_version);
        let params: [&(dyn ToSql + Sync); 7] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &version,
            &snapshot.state.as_str(),
            &snapshot.taken_at,
            &schema_version,
            &tenant,
        ];
        self.scoped(&client, client.execute(&statement, &params))
            .await
            .map_err(|e| self.fail(&client, e))?;
        Ok(())
    }

    /// The latest snapshot of `stream`; a damaged row is
    /// [`Error::Corrupt`].
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.load_snapshot)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 3] = [&stream.aggregate_type(), &stream.aggregate_id(), &tenant];
        let row = self
            .scoped(&client, client.query_opt(&statement, &params))
            .await
            .map_err(|e| self.fail(&client, e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let damaged =
            |error: tokio_postgres::Error| corrupt(stream, 0, format!("the snapshot is damaged: {error}"));
        let version = from_stored(
            row.try_get::<_, i64>(0).map_err(damaged)?,
            "snapshot version",
            stream,
            0,
        )?;
        let state: String = row.try_get(1).map_err(damaged)?;
        let taken_at: OffsetDateTime = row.try_get(2).map_err(damaged)?;
        let schema_version = from_stored(
            row.try_get::<_, i64>(3).map_err(damaged)?,
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
}
