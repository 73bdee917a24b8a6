//! The SQL of an append, run on the writer's connection inside the group's
//! transaction: the version check, the multi-row INSERT, and telling a
//! retry from a reused or repeated event id.

use std::sync::OnceLock;

use factum_core::backend::{
    check_events, first_repeated_id, metadata_to_json, original_append, repeated_event_id, to_stored,
};
use factum_core::{AppendResult, Error, ExpectedVersion, NewEvent, RecordedEvent, StreamId, Tenant};
use rusqlite::{Connection, ErrorCode};

use crate::decode::{Decoder, LOG_COLUMNS, optional_count};
use crate::encode::nanos;
use crate::error::sqlite;
use crate::writer::execute;

/// Rows per multi-row INSERT statement.
const CHUNK: usize = 64;
/// Bound parameters per event row.
const COLUMNS: usize = 10;

const INSERT_COLUMNS: &str = "INSERT OR FAIL INTO events \
    (position, stream_key, version, event_id, event_type, schema_version, payload, metadata, occurred_at, tenant) \
    VALUES ";

const STREAM_SQL: &str = "SELECT s.stream_key, (SELECT max(version) FROM events WHERE stream_key = s.stream_key) \
     FROM streams s WHERE s.tenant = ?1 AND s.aggregate_type = ?2 AND s.aggregate_id = ?3";
const NEW_STREAM_SQL: &str = "INSERT INTO streams (tenant, aggregate_type, aggregate_id) VALUES (?1, ?2, ?3)";
pub(crate) const HEAD_SQL: &str = "SELECT max(position) FROM events";

/// The last position of the log, read once per transaction (another
/// process may have appended since the last one) and kept up to date by
/// the appends of the transaction.
#[derive(Default)]
pub(crate) struct Head(Option<u64>);

impl Head {
    pub(crate) fn get(&mut self, connection: &Connection) -> Result<u64, Error> {
        if let Some(head) = self.0 {
            return Ok(head);
        }
        let head = optional_count(connection, HEAD_SQL, [], &StreamId::new("$all", ""))?;
        self.0 = Some(head);
        Ok(head)
    }

    /// Records that the transaction's appends reached `last`.
    pub(crate) fn advance_to(&mut self, last: u64) {
        self.0 = Some(last);
    }
}

/// Appends `events` to `stream` of `tenant`, checking `expected`, event
/// ids, and that no event names another tenant.
pub(crate) fn append(
    connection: &Connection,
    head: &mut Head,
    tenant: &Tenant,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, Error> {
    check_events(tenant, stream, events)?;
    let (key, actual) = match stream_state(connection, tenant, stream)? {
        Some((key, version)) => (Some(key), version),
        None => (None, 0),
    };
    if !expected.admits(actual) {
        // A retry of a stored batch meets the version check first: it is
        // still a retry.
        return match retried(connection, tenant, stream, events)? {
            Some(original) => Ok(original),
            None => Err(Error::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            }),
        };
    }
    if events.is_empty() {
        return Ok(AppendResult {
            stream_version: actual,
            positions: Vec::new(),
        });
    }
    let rows = Rows::new(tenant, stream, events, head.get(connection)?, actual)?;
    execute(connection, "SAVEPOINT factum_insert")?;
    match insert(connection, stream, key, &rows) {
        Ok(()) => {
            execute(connection, "RELEASE factum_insert")?;
            head.advance_to(rows.first_position + events.len() as u64 - 1);
            Ok(rows.result())
        }
        Err(error) => {
            execute(connection, "ROLLBACK TO factum_insert")?;
            execute(connection, "RELEASE factum_insert")?;
            unique_violation(connection, tenant, stream, events, error)
        }
    }
}

/// What a failed INSERT means: a stored event id (a retry, or a reused id)
/// or an id repeated in the batch, told apart here off the fast path; any
/// other failure is SQLite's.
fn unique_violation(
    connection: &Connection,
    tenant: &Tenant,
    stream: &StreamId,
    events: &[NewEvent],
    error: rusqlite::Error,
) -> Result<AppendResult, Error> {
    if !is_unique_violation(&error) {
        return Err(sqlite(error));
    }
    if let Some(original) = retried(connection, tenant, stream, events)? {
        return Ok(original);
    }
    match first_repeated_id(events) {
        Some(repeated) => Err(repeated_event_id(stream, repeated)),
        None => Err(sqlite(error)),
    }
}

/// The rows of one append, converted and checked before anything is bound.
pub(crate) struct Rows<'a> {
    /// The events' tenant column: NULL for the default tenant.
    tenant: Option<&'a str>,
    stream_tenant: &'a str,
    events: &'a [NewEvent],
    encoded: Vec<EncodedRow>,
    first_position: u64,
    first_version: u64,
}

/// The columns of an event that need converting before binding.
struct EncodedRow {
    position: i64,
    version: i64,
    metadata: Option<String>,
    occurred_at: i64,
}

impl<'a> Rows<'a> {
    /// The rows of `events` of `tenant` after position `head` and version
    /// `actual`.
    pub(crate) fn new(
        tenant: &'a Tenant,
        stream: &StreamId,
        events: &'a [NewEvent],
        head: u64,
        actual: u64,
    ) -> Result<Self, Error> {
        let (first_position, first_version) = (head + 1, actual + 1);
        let encoded = events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let occurred_at = nanos(event.occurred_at).map_err(|reason| Error::InvalidRequest {
                    stream: stream.clone(),
                    reason: format!("event {} occurred at {reason}", event.event_id),
                })?;
                Ok(EncodedRow {
                    position: to_stored(first_position + index as u64, "position", stream)?,
                    version: to_stored(first_version + index as u64, "version", stream)?,
                    metadata: metadata_to_json(stream, event.event_id, &event.metadata)?,
                    occurred_at,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            tenant: (!tenant.is_default()).then(|| tenant.as_str()),
            stream_tenant: tenant.as_str(),
            events,
            encoded,
            first_position,
            first_version,
        })
    }

    pub(crate) fn result(&self) -> AppendResult {
        let count = self.events.len() as u64;
        AppendResult {
            stream_version: self.first_version + count - 1,
            positions: (0..count).map(|index| self.first_position + index).collect(),
        }
    }
}

/// Inserts `rows` into `stream` (its key, when it has one), creating the
/// stream when new, and the append's outbox entry when the outbox is on:
/// every way events are stored passes here, in the transaction that
/// stores them.
pub(crate) fn insert(
    connection: &Connection,
    stream: &StreamId,
    key: Option<i64>,
    rows: &Rows<'_>,
) -> rusqlite::Result<()> {
    let key = match key {
        Some(key) => key,
        None => {
            let mut statement = connection.prepare_cached(NEW_STREAM_SQL)?;
            statement.execute((rows.stream_tenant, stream.aggregate_type(), stream.aggregate_id()))?;
            connection.last_insert_rowid()
        }
    };
    let mut offset = 0;
    for size in [CHUNK, 1] {
        let remaining = |offset: usize| rows.events.len() - offset;
        if remaining(offset) < size {
            continue;
        }
        let mut statement = connection.prepare_cached(insert_sql(size))?;
        while remaining(offset) >= size {
            for row in 0..size {
                bind(&mut statement, row * COLUMNS, key, rows, offset + row)?;
            }
            statement.raw_execute()?;
            offset += size;
        }
    }
    if let (Some(first), Some(last)) = (rows.encoded.first(), rows.encoded.last()) {
        connection
            .prepare_cached(crate::outbox::CAPTURE)?
            .execute((first.position, last.position))?;
    }
    Ok(())
}

/// Binds event `index` of `rows` to the parameters after `base`.
fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    key: i64,
    rows: &Rows<'_>,
    index: usize,
) -> rusqlite::Result<()> {
    let (event, encoded) = (&rows.events[index], &rows.encoded[index]);
    statement.raw_bind_parameter(base + 1, encoded.position)?;
    statement.raw_bind_parameter(base + 2, key)?;
    statement.raw_bind_parameter(base + 3, encoded.version)?;
    statement.raw_bind_parameter(base + 4, &event.event_id.as_bytes()[..])?;
    statement.raw_bind_parameter(base + 5, &*event.event_type)?;
    statement.raw_bind_parameter(base + 6, i64::from(event.schema_version))?;
    statement.raw_bind_parameter(base + 7, event.payload.as_str())?;
    statement.raw_bind_parameter(base + 8, encoded.metadata.as_deref())?;
    statement.raw_bind_parameter(base + 9, encoded.occurred_at)?;
    statement.raw_bind_parameter(base + 10, rows.tenant)
}

fn insert_sql(rows: usize) -> &'static str {
    static CHUNK_SQL: OnceLock<String> = OnceLock::new();
    static ONE_SQL: OnceLock<String> = OnceLock::new();
    let build = |rows: usize| {
        let row = format!("({})", ["?"; COLUMNS].join(","));
        format!("{INSERT_COLUMNS}{}", vec![row; rows].join(","))
    };
    if rows == CHUNK {
        CHUNK_SQL.get_or_init(|| build(CHUNK))
    } else {
        ONE_SQL.get_or_init(|| build(1))
    }
}

pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.code == ErrorCode::ConstraintViolation
            && failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The stream's key and version, when it has been written to.
pub(crate) fn stream_state(
    connection: &Connection,
    tenant: &Tenant,
    stream: &StreamId,
) -> Result<Option<(i64, u64)>, Error> {
    let mut statement = connection.prepare_cached(STREAM_SQL).map_err(sqlite)?;
    let mut rows = statement
        .query((tenant.as_str(), stream.aggregate_type(), stream.aggregate_id()))
        .map_err(sqlite)?;
    let Some(row) = rows.next().map_err(sqlite)? else {
        return Ok(None);
    };
    let key: i64 = row.get(0).map_err(sqlite)?;
    let version: Option<i64> = row.get(1).map_err(sqlite)?;
    let version = version.map_or(Ok(0), |version| {
        factum_core::backend::from_stored(version, "version", stream, 0)
    })?;
    Ok(Some((key, version)))
}

/// The original result when `events` is a retry of an earlier append, by
/// the rule every store shares (which tells an id of another tenant apart).
fn retried(
    connection: &Connection,
    tenant: &Tenant,
    stream: &StreamId,
    events: &[NewEvent],
) -> Result<Option<AppendResult>, Error> {
    original_append(tenant, stream, events, stored_events(connection)?)
}

/// Looks up the event stored under a new event's id, if any, in any
/// tenant (its tenant in its metadata): what the shared rules of retries
/// ask, and they hide another tenant's event.
pub(crate) fn stored_events(
    connection: &Connection,
) -> Result<impl FnMut(&NewEvent) -> Result<Option<RecordedEvent>, Error> + '_, Error> {
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM events e JOIN streams s ON s.stream_key = e.stream_key WHERE e.event_id = ?1"
    );
    let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
    let mut decoder = Decoder::default();
    Ok(move |event: &NewEvent| {
        let mut rows = statement
            .query([&event.event_id.as_bytes()[..]])
            .map_err(sqlite)?;
        match rows.next().map_err(sqlite)? {
            Some(row) => decoder.log_event(row).map(Some),
            None => Ok(None),
        }
    })
}
