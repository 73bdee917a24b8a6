//! [`StoreAdmin`] for operators (the `factum` command): counts, size, the
//! list of streams and projections, and the repairs a projection needs
//! from outside its process, each one statement or one transaction.

use factum_core::backend::{checkpoint_from_stored, checkpoint_to_stored, query_bound};
use factum_core::{
    DeadLetter, DeadLetterStore, Error, EventStore, LeaseInfo, ProjectionSummary, ResetReport, StoreAdmin,
    StoreStats, StreamId, StreamQuery, StreamSummary,
};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{PostgresError, PostgresEventStore, PostgresProjectionStore};

impl PostgresEventStore {
    /// The schema version recorded in the database (`None`: no factum
    /// store in this schema yet), read without migrating anything; compare
    /// it with [`schema_version`](Self::schema_version).
    pub async fn stored_schema_version(&self) -> Result<Option<u32>, Error> {
        let client = self.client().await?;
        let sql = format!("SELECT max(version) FROM {}", self.shared.names.versions);
        match client.query_one(&sql, &[]).await {
            Ok(row) => {
                let found: Option<i32> = row.try_get(0).map_err(|error| self.fail(&client, error))?;
                Ok(found.map(i32::unsigned_abs))
            }
            Err(error) => match self.fail(&client, error) {
                PostgresError::SchemaMissing { .. } => Ok(None),
                other => Err(other.into()),
            },
        }
    }

    async fn one_row(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let client = self.client().await?;
        let result = client.query_one(sql, params).await;
        result.map_err(|error| self.fail(&client, error).into())
    }

    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let client = self.client().await?;
        let result = client.query(sql, params).await;
        result.map_err(|error| self.fail(&client, error).into())
    }

    /// The SQL of a page of [`StoreAdmin::streams`]: a skip scan of the
    /// `(stream_type, stream_id, version)` index (one probe per stream,
    /// not a pass over every event), then each stream's last event.
    /// Parameters: `$1` the type (or the type to start after), `$2` the id
    /// to start at (`inclusive`) or after, `$3` the limit.
    fn streams_sql(&self, of_type: bool, inclusive: bool) -> String {
        let events = &self.shared.names.events;
        let from = if inclusive { ">=" } else { ">" };
        let (first, next) = if of_type {
            (
                format!("stream_type = $1 AND stream_id {from} $2"),
                "e.stream_type = $1 AND e.stream_id > s.stream_id",
            )
        } else {
            (
                format!("(stream_type, stream_id) {from} ($1, $2)"),
                "(e.stream_type, e.stream_id) > (s.stream_type, s.stream_id)",
            )
        };
        format!(
            "WITH RECURSIVE s AS ( \
                 (SELECT stream_type, stream_id FROM {events} WHERE {first} \
                  ORDER BY stream_type, stream_id LIMIT 1) \
                 UNION ALL \
                 SELECT n.stream_type, n.stream_id FROM s, LATERAL ( \
                     SELECT e.stream_type, e.stream_id FROM {events} e WHERE {next} \
                     ORDER BY e.stream_type, e.stream_id LIMIT 1) n) \
             SELECT page.stream_type, page.stream_id, last.version, last.occurred_at \
               FROM (SELECT * FROM s LIMIT $3) page, LATERAL ( \
                    SELECT e.version, e.occurred_at FROM {events} e \
                     WHERE e.stream_type = page.stream_type AND e.stream_id = page.stream_id \
                     ORDER BY e.version DESC LIMIT 1) last \
              ORDER BY page.stream_type, page.stream_id"
        )
    }
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn stream_summary(row: &Row) -> Result<StreamSummary, Error> {
    let stream_type: String = row.try_get(0).map_err(|error| unreadable(&error))?;
    let stream_id: String = row.try_get(1).map_err(|error| unreadable(&error))?;
    let stream = StreamId::new(stream_type, stream_id);
    let version: i64 = row.try_get(2).map_err(|error| unreadable(&error))?;
    let at: OffsetDateTime = row.try_get(3).map_err(|error| unreadable(&error))?;
    let version = u64::try_from(version).map_err(|_| Error::Corrupt {
        stream: stream.clone(),
        version: 0,
        reason: format!("its version {version} is negative"),
    })?;
    Ok(StreamSummary::new(stream, version, at))
}

fn unreadable(error: &tokio_postgres::Error) -> Error {
    Error::Corrupt {
        stream: StreamId::new("$streams", ""),
        version: 0,
        reason: format!("a stream summary does not decode: {error}"),
    }
}

impl PostgresEventStore {
    /// The projection state this handle administers: its tenant's, or the
    /// unscoped store's own (`$all`).
    fn admin_scope(&self) -> String {
        factum_core::backend::projection_scope(factum_core::Tenancy::tenant(self)).to_owned()
    }
}

impl StoreAdmin for PostgresEventStore {
    async fn stats(&self) -> Result<StoreStats, Error> {
        let names = &self.shared.names;
        let sql = format!(
            "SELECT (SELECT coalesce(max(version), 0) FROM {versions}), \
                    (SELECT count(*) FROM (SELECT DISTINCT stream_type, stream_id FROM {events}) s), \
                    (SELECT count(*) FROM {events}), \
                    (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = $1 AND c.relkind IN ('r', 'S') AND starts_with(c.relname, $2))",
            versions = names.versions,
            events = names.events,
        );
        let schema = &self.shared.options.schema;
        let prefix = &names.prefix;
        let row = self.one_row(&sql, &[schema, prefix]).await?;
        let column = |index: usize| -> Result<i64, Error> {
            row.try_get::<_, i64>(index).map_err(|error| unreadable(&error))
        };
        let version: i32 = row.try_get(0).map_err(|error| unreadable(&error))?;
        let head = self.head_position().await?;
        Ok(StoreStats::new(
            version.unsigned_abs(),
            count(column(1)?),
            count(column(2)?),
            head,
            Some(count(column(3)?)),
        ))
    }

    async fn streams(&self, query: StreamQuery) -> Result<Vec<StreamSummary>, Error> {
        let of_type = query.aggregate_type.as_deref();
        let after = query.after.as_ref();
        let sql = self.streams_sql(of_type.is_some(), after.is_none());
        let start_type = match (of_type, after) {
            (Some(aggregate_type), _) => aggregate_type,
            (None, Some(after)) => after.aggregate_type(),
            (None, None) => "",
        };
        let start_id = after.map_or("", StreamId::aggregate_id);
        let limit = query_bound(query.limit as u64);
        let rows = self.rows(&sql, &[&start_type, &start_id, &limit]).await?;
        rows.iter().map(stream_summary).collect()
    }

    async fn projections(&self) -> Result<Vec<ProjectionSummary>, Error> {
        let names = &self.shared.names;
        let sql = format!(
            "SELECT n.projection, \
                    (SELECT position FROM {checkpoints} c WHERE c.tenant = $1 AND c.projection = n.projection), \
                    l.holder, l.expires_at, \
                    (SELECT count(*) FROM {letters} d WHERE d.tenant = $1 AND d.projection = n.projection), \
                    (SELECT count(*) FROM {letters} d \
                      WHERE d.tenant = $1 AND d.projection = n.projection AND d.attempts = 0) \
               FROM (SELECT projection FROM {checkpoints} WHERE tenant = $1 \
                     UNION SELECT projection FROM {letters} WHERE tenant = $1 \
                     UNION SELECT projection FROM {leases} WHERE tenant = $1) n \
               LEFT JOIN {leases} l ON l.tenant = $1 AND l.projection = n.projection \
              ORDER BY n.projection",
            checkpoints = names.checkpoints,
            letters = names.dead_letters,
            leases = names.leases,
        );
        let scope = self.admin_scope();
        let rows = self.rows(&sql, &[&scope]).await?;
        rows.iter()
            .map(|row| {
                let get_error = |error: tokio_postgres::Error| unreadable(&error);
                let name: String = row.try_get(0).map_err(get_error)?;
                let checkpoint = checkpoint_from_stored(&name, row.try_get(1).map_err(get_error)?)?;
                let holder: Option<String> = row.try_get(2).map_err(get_error)?;
                let expires: Option<OffsetDateTime> = row.try_get(3).map_err(get_error)?;
                let lease = holder.zip(expires).map(|(holder, at)| LeaseInfo::new(holder, at));
                let letters: i64 = row.try_get(4).map_err(get_error)?;
                let requested: i64 = row.try_get(5).map_err(get_error)?;
                Ok(ProjectionSummary::new(
                    name,
                    checkpoint,
                    lease,
                    count(letters),
                    count(requested),
                ))
            })
            .collect()
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        PostgresProjectionStore::new(self).list(projection).await
    }

    async fn discard_dead_letter(&self, projection: &str, position: u64) -> Result<bool, Error> {
        PostgresProjectionStore::new(self)
            .remove(projection, position)
            .await
    }

    async fn request_replay(&self, projection: &str, position: Option<u64>) -> Result<u64, Error> {
        let letters = &self.shared.names.dead_letters;
        let sql = format!(
            "WITH marked AS (UPDATE {letters} SET attempts = 0 \
              WHERE tenant = $3 AND projection = $1 AND ($2::bigint IS NULL OR position = $2) RETURNING 1) \
             SELECT count(*) FROM marked"
        );
        let position = position.map(query_bound);
        let scope = self.admin_scope();
        let row = self.one_row(&sql, &[&projection, &position, &scope]).await?;
        let marked: i64 = row.try_get(0).map_err(|error| unreadable(&error))?;
        Ok(count(marked))
    }

    async fn reset_projection(&self, projection: &str, position: u64) -> Result<ResetReport, Error> {
        let names = &self.shared.names;
        let stored = checkpoint_to_stored(projection, position)?;
        // One statement, so one transaction: the old checkpoint, the new
        // one and the dead letters it makes obsolete.
        let sql = format!(
            "WITH previous AS (SELECT position FROM {checkpoints} WHERE tenant = $3 AND projection = $1), \
                  saved AS (INSERT INTO {checkpoints} (tenant, projection, position) VALUES ($3, $1, $2) \
                            ON CONFLICT (tenant, projection) DO UPDATE SET position = EXCLUDED.position), \
                  removed AS (DELETE FROM {letters} \
                               WHERE tenant = $3 AND projection = $1 AND position > $2 RETURNING 1) \
             SELECT (SELECT position FROM previous), (SELECT count(*) FROM removed)",
            checkpoints = names.checkpoints,
            letters = names.dead_letters,
        );
        let scope = self.admin_scope();
        let row = self.one_row(&sql, &[&projection, &stored, &scope]).await?;
        let previous =
            checkpoint_from_stored(projection, row.try_get(0).map_err(|error| unreadable(&error))?)?;
        let removed: i64 = row.try_get(1).map_err(|error| unreadable(&error))?;
        Ok(ResetReport::new(previous, position, count(removed)))
    }
}
