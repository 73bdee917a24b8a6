//! [`StoreAdmin`] for operators (the `factum` command): counts, size, the
//! list of streams and projections, and the repairs a projection needs
//! from outside its process. Reads go to the read connections; repairs are
//! one durable write each, through the writer.

use std::path::{Path, PathBuf};

use factum_core::backend::{checkpoint_from_stored, checkpoint_to_stored, query_bound};
use factum_core::{
    DeadLetter, Error, LeaseInfo, ProjectionSummary, ResetReport, StoreAdmin, StoreStats, StreamId,
    StreamQuery, StreamSummary,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::error::sqlite;
use crate::schema::APPLICATION_ID;
use crate::{SqliteError, SqliteEventStore, dead_letter};

/// A stream's last event: the row of its highest version, found through
/// the `(stream_key, version)` index.
const STREAM_SUMMARY: &str = "SELECT s.aggregate_type, s.aggregate_id, e.version, e.occurred_at \
     FROM streams s JOIN events e ON e.stream_key = s.stream_key \
     AND e.version = (SELECT max(version) FROM events WHERE stream_key = s.stream_key)";

/// The projections of one scope (`?1`: a tenant, or `$all` for the
/// unscoped store's own).
const PROJECTIONS: &str = "SELECT n.projection, \
       (SELECT position FROM factum_checkpoints c WHERE c.tenant = ?1 AND c.projection = n.projection), \
       (SELECT holder FROM factum_leases l WHERE l.tenant = ?1 AND l.projection = n.projection), \
       (SELECT expires_at FROM factum_leases l WHERE l.tenant = ?1 AND l.projection = n.projection), \
       (SELECT count(*) FROM factum_dead_letters d WHERE d.tenant = ?1 AND d.projection = n.projection), \
       (SELECT count(*) FROM factum_dead_letters d \
         WHERE d.tenant = ?1 AND d.projection = n.projection AND d.attempts = 0) \
     FROM (SELECT projection FROM factum_checkpoints WHERE tenant = ?1 \
           UNION SELECT projection FROM factum_dead_letters WHERE tenant = ?1 \
           UNION SELECT projection FROM factum_leases WHERE tenant = ?1) n ORDER BY n.projection";

impl SqliteEventStore {
    /// The factum schema version of the SQLite file at `path`, read without
    /// opening a store (so without migrating it): `None` for an empty
    /// database, the version for a factum file (even one newer than this
    /// crate's, see [`schema_version`](Self::schema_version)), and
    /// [`SqliteError::NotAFactumDatabase`] for any other file.
    ///
    /// ```
    /// # use factum_sqlite::SqliteEventStore;
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.db");
    /// SqliteEventStore::open(&path).await?.close().await?;
    /// assert_eq!(SqliteEventStore::file_schema_version(&path)?, Some(SqliteEventStore::schema_version()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn file_schema_version(path: impl AsRef<Path>) -> Result<Option<u32>, Error> {
        let path = path.as_ref();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        let not_factum = |reason: String| -> Error {
            SqliteError::NotAFactumDatabase {
                path: path.to_path_buf(),
                reason,
            }
            .into()
        };
        let application_id =
            match connection.query_row("PRAGMA application_id", [], |row| row.get::<_, i64>(0)) {
                Ok(id) => id,
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    return Err(not_factum("the file is not a SQLite database".to_owned()));
                }
                Err(error) => return Err(sqlite(error)),
            };
        let user_version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sqlite)?;
        let objects: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(sqlite)?;
        if application_id == 0 && user_version == 0 && objects == 0 {
            return Ok(None);
        }
        if application_id != APPLICATION_ID {
            return Err(not_factum(format!(
                "its application id is {application_id:#x}, not factum's {APPLICATION_ID:#x}"
            )));
        }
        u32::try_from(user_version)
            .ok()
            .filter(|version| *version >= 1)
            .map(Some)
            .ok_or_else(|| {
                not_factum(format!(
                    "it carries factum's application id but schema version {user_version}"
                ))
            })
    }

    /// The files the store keeps on disk: the database, its write-ahead
    /// log and its shared-memory index.
    fn files(&self) -> Vec<PathBuf> {
        let Some(path) = self.path() else {
            return Vec::new();
        };
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                PathBuf::from(file)
            })
            .collect()
    }
}

/// Reads the stream and the last event's time of a [`STREAM_SUMMARY`] row.
fn stream_summary(row: &Row<'_>) -> rusqlite::Result<Result<StreamSummary, Error>> {
    let stream = StreamId::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?);
    let version: i64 = row.get(2)?;
    let nanos: i64 = row.get(3)?;
    let corrupt = |reason: String| Error::Corrupt {
        stream: stream.clone(),
        version: version.unsigned_abs(),
        reason,
    };
    let summary = match (
        u64::try_from(version),
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)),
    ) {
        (Ok(version), Ok(at)) => Ok(StreamSummary::new(stream.clone(), version, at)),
        (Err(_), _) => Err(corrupt(format!("its version {version} is negative"))),
        (_, Err(error)) => Err(corrupt(format!("its time {nanos} is not a time: {error}"))),
    };
    Ok(summary)
}

/// A row of [`PROJECTIONS`], as stored.
struct ProjectionRow {
    name: String,
    checkpoint: Option<i64>,
    /// Holder and expiry, in milliseconds since the Unix epoch.
    lease: Option<(String, i64)>,
    letters: i64,
    requested: i64,
}

fn projection_row(row: &Row<'_>) -> rusqlite::Result<ProjectionRow> {
    let holder: Option<String> = row.get(2)?;
    let expires: Option<i64> = row.get(3)?;
    Ok(ProjectionRow {
        name: row.get(0)?,
        checkpoint: row.get(1)?,
        lease: holder.zip(expires),
        letters: row.get(4)?,
        requested: row.get(5)?,
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The lease expiry, stored in milliseconds since the Unix epoch.
fn lease_expiry(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Reads the committed checkpoint of `projection` on `connection`.
fn checkpoint(connection: &Connection, scope: &str, projection: &str) -> Result<u64, Error> {
    let stored: Option<i64> = connection
        .query_row(
            "SELECT position FROM factum_checkpoints WHERE tenant = ?1 AND projection = ?2",
            [scope, projection],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    checkpoint_from_stored(projection, stored)
}

impl SqliteEventStore {
    /// The projection state this handle administers: its tenant's, or the
    /// unscoped store's own (`$all`).
    fn admin_scope(&self) -> String {
        factum_core::backend::projection_scope(self.view_tenant()).to_owned()
    }
}

impl StoreAdmin for SqliteEventStore {
    async fn stats(&self) -> Result<StoreStats, Error> {
        let (version, streams, events, head) = self
            .read(|connection| {
                let one = |sql: &str| connection.query_row(sql, [], |row| row.get::<_, Option<i64>>(0));
                let read = || -> rusqlite::Result<_> {
                    Ok((
                        one("PRAGMA user_version")?,
                        one("SELECT count(*) FROM streams")?,
                        one("SELECT count(*) FROM events")?,
                        one("SELECT max(position) FROM events")?,
                    ))
                };
                read().map_err(sqlite)
            })
            .await?;
        let bytes = self
            .files()
            .iter()
            .filter_map(|file| std::fs::metadata(file).ok())
            .map(|meta| meta.len())
            .sum();
        let number = |value: Option<i64>| count(value.unwrap_or(0));
        Ok(StoreStats::new(
            u32::try_from(number(version)).unwrap_or(u32::MAX),
            number(streams),
            number(events),
            number(head),
            self.path().map(|_| bytes),
        ))
    }

    async fn streams(&self, query: StreamQuery) -> Result<Vec<StreamSummary>, Error> {
        self.read(move |connection| {
            let mut conditions = Vec::new();
            if query.aggregate_type.is_some() {
                conditions.push("s.aggregate_type = ?1");
            }
            if query.after.is_some() {
                conditions.push("(s.aggregate_type, s.aggregate_id) > (?2, ?3)");
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let sql = format!("{STREAM_SUMMARY}{filter} ORDER BY s.aggregate_type, s.aggregate_id LIMIT ?4");
            let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
            let after = query.after.as_ref();
            let params = rusqlite::params![
                query.aggregate_type,
                after.map(StreamId::aggregate_type),
                after.map(StreamId::aggregate_id),
                query_bound(query.limit as u64),
            ];
            let rows = statement.query_map(params, stream_summary).map_err(sqlite)?;
            let mut summaries = Vec::new();
            for row in rows {
                summaries.push(row.map_err(sqlite)??);
            }
            Ok(summaries)
        })
        .await
    }

    async fn projections(&self) -> Result<Vec<ProjectionSummary>, Error> {
        let scope = self.admin_scope();
        let rows = self
            .read(move |connection| {
                let mut statement = connection.prepare_cached(PROJECTIONS).map_err(sqlite)?;
                let rows = statement.query_map([&scope], projection_row).map_err(sqlite)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sqlite)
            })
            .await?;
        rows.into_iter()
            .map(|row| {
                let checkpoint = checkpoint_from_stored(&row.name, row.checkpoint)?;
                let lease = row
                    .lease
                    .map(|(holder, expires)| LeaseInfo::new(holder, lease_expiry(expires)));
                Ok(ProjectionSummary::new(
                    row.name,
                    checkpoint,
                    lease,
                    count(row.letters),
                    count(row.requested),
                ))
            })
            .collect()
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        let (scope, projection) = (self.admin_scope(), projection.to_owned());
        self.read(move |connection| dead_letter::list(connection, &scope, &projection))
            .await
    }

    async fn discard_dead_letter(&self, projection: &str, position: u64) -> Result<bool, Error> {
        let (scope, projection) = (self.admin_scope(), projection.to_owned());
        self.write(move |connection| dead_letter::remove(connection, &scope, &projection, position))
            .await
    }

    async fn request_replay(&self, projection: &str, position: Option<u64>) -> Result<u64, Error> {
        let (scope, projection) = (self.admin_scope(), projection.to_owned());
        self.write(move |connection| {
            let marked = match position {
                None => connection.execute(
                    "UPDATE factum_dead_letters SET attempts = 0 WHERE tenant = ?1 AND projection = ?2",
                    [&scope, &projection],
                ),
                Some(position) => connection.execute(
                    "UPDATE factum_dead_letters SET attempts = 0 \
                     WHERE tenant = ?1 AND projection = ?2 AND position = ?3",
                    rusqlite::params![scope, projection, query_bound(position)],
                ),
            };
            Ok(marked.map_err(sqlite)? as u64)
        })
        .await
    }

    async fn reset_projection(&self, projection: &str, position: u64) -> Result<ResetReport, Error> {
        let (scope, projection) = (self.admin_scope(), projection.to_owned());
        self.write(move |connection| {
            let previous = checkpoint(connection, &scope, &projection)?;
            let stored = checkpoint_to_stored(&projection, position)?;
            connection
                .execute(
                    "INSERT INTO factum_checkpoints (tenant, projection, position) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant, projection) DO UPDATE SET position = excluded.position",
                    rusqlite::params![scope, projection, stored],
                )
                .map_err(sqlite)?;
            let removed = connection
                .execute(
                    "DELETE FROM factum_dead_letters WHERE tenant = ?1 AND projection = ?2 AND position > ?3",
                    rusqlite::params![scope, projection, stored],
                )
                .map_err(sqlite)?;
            Ok(ResetReport::new(previous, position, removed as u64))
        })
        .await
    }
}
