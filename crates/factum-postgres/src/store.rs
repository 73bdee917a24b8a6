use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use deadpool::managed::QueueMode;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use factum_core::{
    AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, PollingSubscription,
    RecordedEvent, StreamId, SubscriptionOptions, original_append,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, RowStream};
use uuid::Uuid;

use crate::notify;
use crate::options::Names;
use crate::rows::{COLUMNS, Decoder};
use crate::schema::{self, CURRENT_VERSION};
use crate::{PostgresError, PostgresOptions};

/// SQLSTATEs raised by the store's own functions.
const CONFLICT: &str = "FA001";
const REPEATED_ID: &str = "FA003";

/// How often an append lost a race on a unique key is run again before
/// the error is handed to the caller.
const MAX_ATTEMPTS: usize = 64;

/// An [`EventStore`] in PostgreSQL.
///
/// Cheap to clone: clones share one connection pool. See the
/// [crate documentation](crate) for the tables, the global order and the
/// wake-ups of subscriptions.
///
/// ```no_run
/// # use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
/// # use factum_postgres::PostgresEventStore;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// store.ensure_schema().await?;
/// let stream = StreamId::new("Counter", "42");
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#)?);
/// store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresEventStore {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) names: Names,
    pub(crate) address: String,
    pub(crate) options: PostgresOptions,
    /// Woken after every append of this store value and every notification.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) notifier: Mutex<Option<mpsc::Sender<()>>>,
    pub(crate) listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) sql: Sql,
}

/// The statements the store prepares, with its names filled in.
pub(crate) struct Sql {
    append: String,
    append_one: String,
    append_many: String,
    append_new: String,
    set_horizon: String,
    read_page: String,
    horizon: String,
    read_stream: String,
    stream_version: String,
    by_event_ids: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot: String,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("address", &self.shared.address)
            .field("schema", &self.shared.names.display)
            .field("pool", &self.shared.pool.status())
            .finish()
    }
}

impl PostgresEventStore {
    /// Connects to the server at `dsn` (`postgres://user:password@host:port/database`
    /// or `host=... user=...`) with the default [`PostgresOptions`].
    ///
    /// Opens one connection to check that the server answers, so a wrong
    /// address fails here, with the address in the error. Does not create
    /// the tables: call [`ensure_schema`](Self::ensure_schema).
    pub async fn connect(dsn: &str) -> Result<Self, Error> {
        Self::connect_with(dsn, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with `options`.
    pub async fn connect_with(dsn: &str, options: PostgresOptions) -> Result<Self, Error> {
        options.validate()?;
        let mut config: tokio_postgres::Config = dsn
            .parse()
            .map_err(|source| PostgresError::InvalidDsn { source })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("factum");
        }
        let address = address_of(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            // The most recently used connection first: a lightly loaded store
            // keeps reusing warm connections (prepared statements, plans,
            // caches) instead of cycling through all of them.
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|error| PostgresError::InvalidConfig {
                reason: error.to_string(),
            })?;
        let mut options = options;
        if options.listen.is_none() {
            let mut listen = config;
            listen.application_name("factum-listener");
            options.listen = Some(listen);
        }
        let store = Self::build(pool, options, address);
        drop(store.client().await?);
        Ok(store)
    }

    /// A store over an existing pool (for TLS, or to share the pool with the
    /// application's own queries), with the default [`PostgresOptions`].
    ///
    /// Its subscriptions are woken by its own appends and by polling; give
    /// [`PostgresOptions::listen_with`] to [`from_pool_with`](Self::from_pool_with)
    /// to also `LISTEN` for other processes' appends.
    pub fn from_pool(pool: Pool) -> Self {
        Self::build(pool, PostgresOptions::default(), "the pool's server".to_owned())
    }

    /// [`from_pool`](Self::from_pool) with `options` (the pool size and
    /// timeouts are the pool's own).
    pub fn from_pool_with(pool: Pool, options: PostgresOptions) -> Result<Self, Error> {
        options.validate()?;
        let address = options
            .listen
            .as_ref()
            .map_or_else(|| "the pool's server".to_owned(), address_of);
        Ok(Self::build(pool, options, address))
    }

    fn build(pool: Pool, options: PostgresOptions, address: String) -> Self {
        let names = Names::new(&options.schema, &options.table_prefix);
        let sql = Sql {
            append: format!(
                "SELECT stream_version, positions FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                names.append
            ),
            append_one: schema::append_one(&names),
            append_many: schema::append_many(&names),
            append_new: schema::append_new(&names),
            set_horizon: schema::set_horizon(&names),
            read_page: schema::read_page(&names),
            horizon: format!("SELECT {}()", names.horizon),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {} WHERE stream_type = $1 AND stream_id = $2 AND version >= $3 \
                 ORDER BY version LIMIT $4",
                names.events
            ),
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {} WHERE stream_type = $1 AND stream_id = $2",
                names.events
            ),
            by_event_ids: format!("SELECT {COLUMNS} FROM {} WHERE event_id = ANY ($1)", names.events),
            save_snapshot: crate::snapshot::save_sql(&names),
            load_snapshot: crate::snapshot::load_sql(&names),
        };
        Self {
            shared: Arc::new(Shared {
                pool,
                names,
                address,
                options,
                head: watch::Sender::new(0),
                notifier: Mutex::new(None),
                listener: Mutex::new(None),
                sql,
            }),
        }
    }

    /// The connection pool, for the application's own queries (a projection
    /// that commits its read model and checkpoint in one transaction).
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// The server, as `host:port`.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// The schema and table prefix, e.g. `public.factum_`.
    pub fn schema_name(&self) -> &str {
        &self.shared.names.display
    }

    /// Creates the tables, sequence and functions, or migrates them from an
    /// older version, and records the version. Idempotent: run it at every
    /// start. Safe to run from several processes at once (they take turns).
    ///
    /// Fails with [`PostgresError::SchemaTooNew`], changing nothing, when the
    /// database was set up by a newer factum-postgres.
    pub async fn ensure_schema(&self) -> Result<(), Error> {
        self.migrate_to(CURRENT_VERSION).await
    }

    /// The schema version this crate writes.
    pub fn schema_version() -> i32 {
        CURRENT_VERSION
    }

    /// Migrates the schema up to `target` only (tests of migrations).
    #[doc(hidden)]
    pub async fn migrate_to(&self, target: i32) -> Result<(), Error> {
        let names = &self.shared.names;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.query_error(e))?;
        // One migration at a time per schema: a lock of the two-key form,
        // which the readers' scan of pg_locks ignores.
        let bare_schema = &self.shared.options.schema;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(1180787572, hashtext($1))",
                &[bare_schema],
            )
            .await
            .map_err(|e| self.query_error(e))?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {versions} (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );",
                schema = names.schema,
                versions = names.versions,
            ))
            .await
            .map_err(|e| self.query_error(e))?;
        let found: i32 = transaction
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {}", names.versions),
                &[],
            )
            .await
            .map_err(|e| self.query_error(e))?
            .try_get(0)
            .map_err(|e| self.query_error(e))?;
        if found > CURRENT_VERSION {
            return Err(PostgresError::SchemaTooNew {
                address: self.shared.address.clone(),
                schema: names.display.clone(),
                found,
                supported: CURRENT_VERSION,
            }
            .into());
        }
        for version in found + 1..=target.min(CURRENT_VERSION) {
            let Some(statements) = schema::migration(names, version) else {
                return Err(PostgresError::InvalidConfig {
                    reason: format!("factum-postgres knows no migration to schema version {version}"),
                }
                .into());
            };
            tracing::info!(schema = %names.display, version, "migrating the factum schema");
            transaction
                .batch_execute(&statements)
                .await
                .map_err(|e| self.query_error(e))?;
            transaction
                .execute(
                    &format!("INSERT INTO {} (version) VALUES ($1)", names.versions),
                    &[&version],
                )
                .await
                .map_err(|e| self.query_error(e))?;
        }
        if target >= CURRENT_VERSION {
            transaction
                .batch_execute(&schema::functions(names))
                .await
                .map_err(|e| self.query_error(e))?;
        }
        transaction.commit().await.map_err(|e| self.query_error(e))?;
        Ok(())
    }

    pub(crate) async fn client(&self) -> Result<Conn, PostgresError> {
        self.shared
            .pool
            .get()
            .await
            .map(Conn::new)
            .map_err(|error| self.pool_error(error))
    }

    /// Maps the error of a statement run on `client`, dropping the
    /// connection from the pool when it is gone.
    pub(crate) fn fail(&self, client: &Conn, error: tokio_postgres::Error) -> PostgresError {
        self.query_error(client.check(error))
    }

    fn pool_error(&self, error: PoolError) -> PostgresError {
        let address = self.shared.address.clone();
        match error {
            PoolError::Timeout(TimeoutType::Wait) => PostgresError::PoolTimeout {
                address,
                waited: self
                    .shared
                    .pool
                    .timeouts()
                    .wait
                    .unwrap_or(self.shared.options.wait_timeout),
                max_size: self.shared.pool.status().max_size,
            },
            PoolError::Timeout(_) => PostgresError::Connect {
                address,
                reason: format!(
                    "no answer within {:?}",
                    self.shared
                        .pool
                        .timeouts()
                        .create
                        .unwrap_or(self.shared.options.connect_timeout)
                ),
                source: None,
            },
            PoolError::Backend(source) => PostgresError::Connect {
                address,
                reason: crate::error::describe(&source),
                source: Some(source),
            },
            other => PostgresError::Connect {
                address,
                reason: other.to_string(),
                source: None,
            },
        }
    }

    pub(crate) fn query_error(&self, source: tokio_postgres::Error) -> PostgresError {
        let address = self.shared.address.clone();
        let code = source.code().map(SqlState::code).unwrap_or_default();
        if connection_lost(&source) {
            PostgresError::ConnectionLost { address, source }
        } else if code == SqlState::UNDEFINED_TABLE.code()
            || code == SqlState::UNDEFINED_FUNCTION.code()
            || code == SqlState::INVALID_SCHEMA_NAME.code()
        {
            PostgresError::SchemaMissing {
                address,
                schema: self.shared.names.display.clone(),
                source,
            }
        } else {
            PostgresError::Query { address, source }
        }
    }

    /// Wakes this process's subscribers, and the others' through `NOTIFY`.
    fn announce(&self, head: Option<u64>) {
        match head {
            Some(head) => {
                self.shared.head.send_replace(head);
            }
            None => self.shared.head.send_modify(|_| {}),
        }
        if self.shared.options.notify {
            notify::request(&self.shared);
        }
    }

    /// The original result when `events` is a retry of an earlier append
    /// (`None` when none of their ids is stored).
    async fn retried(&self, stream: &StreamId, events: &[NewEvent]) -> Result<Option<AppendResult>, Error> {
        let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.by_event_ids)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let rows = client
            .query(&statement, &[&ids])
            .await
            .map_err(|e| self.fail(&client, e))?;
        drop(client);
        let mut decoder = Decoder::default();
        let mut stored = rows
            .iter()
            .map(|row| decoder.decode(row).map(|event| (event.event_id, event)))
            .collect::<Result<HashMap<Uuid, RecordedEvent>, Error>>()?;
        original_append(stream, events, |event| Ok(stored.remove(&event.event_id)))
    }

    /// One call of the append function; `Err(None)` when no connection
    /// could be had (the pool error is in `pool_failure`).
    /// One attempt at an append: the single-statement path for a first
    /// attempt at one event, the append function otherwise.
    async fn try_append(
        &self,
        stream: &StreamId,
        expected: Option<i64>,
        take_turns: bool,
        events: &[NewEvent],
    ) -> Result<Appended, AppendFailure> {
        let client = self.client().await.map_err(AppendFailure::Pool)?;
        let result = self
            .try_append_on(&client, stream, expected, take_turns, events)
            .await;
        match result {
            Err(AppendFailure::Driver(error)) => Err(AppendFailure::Driver(client.check(error))),
            other => other,
        }
    }

    async fn try_append_on(
        &self,
        client: &Conn,
        stream: &StreamId,
        expected: Option<i64>,
        take_turns: bool,
        events: &[NewEvent],
    ) -> Result<Appended, AppendFailure> {
        if let [event] = events
            && !take_turns
            && expected == Some(0)
        {
            let statement = client.prepare_cached(&self.shared.sql.append_new).await?;
            let schema_version = schema_version(stream, event).map_err(AppendFailure::Invalid)?;
            let metadata = encode_metadata(stream, event).map_err(AppendFailure::Invalid)?;
            let event_type: &str = &event.event_type;
            let params: [&(dyn ToSql + Sync); 8] = [
                &stream.aggregate_type(),
                &stream.aggregate_id(),
                &event.event_id,
                &event_type,
                &schema_version,
                &event.payload.as_str(),
                &metadata,
                &event.occurred_at,
            ];
            let row = client.query_opt(&statement, &params).await?;
            return Ok(match row {
                Some(row) => Appended::Done(1, vec![row.try_get(0)?]),
                None => Appended::Retry,
            });
        }
        if let [event] = events
            && !take_turns
        {
            let statement = client.prepare_cached(&self.shared.sql.append_one).await?;
            let schema_version = schema_version(stream, event).map_err(AppendFailure::Invalid)?;
            let metadata = encode_metadata(stream, event).map_err(AppendFailure::Invalid)?;
            let event_type: &str = &event.event_type;
            let params: [&(dyn ToSql + Sync); 9] = [
                &stream.aggregate_type(),
                &stream.aggregate_id(),
                &expected,
                &event.event_id,
                &event_type,
                &schema_version,
                &event.payload.as_str(),
                &metadata,
                &event.occurred_at,
            ];
            let row = client.query_one(&statement, &params).await?;
            let actual: i64 = row.try_get(0)?;
            return Ok(match row.try_get::<_, Option<i64>>(1)? {
                Some(position) => Appended::Done(actual + 1, vec![position]),
                None => Appended::Conflict(Some(actual)),
            });
        }
        let batch = Batch::new(stream, events).map_err(AppendFailure::Invalid)?;
        if !take_turns && events.len() > 1 && batch.ids_are_distinct() {
            let statement = client.prepare_cached(&self.shared.sql.append_many).await?;
            let params: [&(dyn ToSql + Sync); 9] = [
                &stream.aggregate_type(),
                &stream.aggregate_id(),
                &expected,
                &batch.event_ids,
                &batch.event_types,
                &batch.schema_versions,
                &batch.payloads,
                &batch.metadata,
                &batch.occurred_at,
            ];
            let row = client.query_one(&statement, &params).await?;
            let actual: i64 = row.try_get(0)?;
            let positions: Vec<i64> = row.try_get(1)?;
            return Ok(if positions.len() == events.len() {
                Appended::Done(actual + to_i64(events.len() as u64), positions)
            } else {
                Appended::Conflict(Some(actual))
            });
        }
        let statement = client.prepare_cached(&self.shared.sql.append).await?;
        let params: [&(dyn ToSql + Sync); 10] = [
            &stream.aggregate_type(),
            &stream.aggregate_id(),
            &expected,
            &take_turns,
            &batch.event_ids,
            &batch.event_types,
            &batch.schema_versions,
            &batch.payloads,
            &batch.metadata,
            &batch.occurred_at,
        ];
        match client.query_one(&statement, &params).await {
            Ok(row) => Ok(Appended::Done(row.try_get(0)?, row.try_get(1)?)),
            Err(error) if error.code().map(SqlState::code) == Some(CONFLICT) => {
                let reported = error
                    .as_db_error()
                    .and_then(|db| db.detail())
                    .and_then(|detail| detail.parse::<i64>().ok());
                Ok(Appended::Conflict(reported))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// What one attempt at an append did.
enum Appended {
    /// Stored: the stream's new version and the positions.
    Done(i64, Vec<i64>),
    /// Nothing written: the stream was not at the expected version (the
    /// actual version, when known).
    Conflict(Option<i64>),
    /// Nothing written: run again, taking turns.
    Retry,
}

/// A pooled connection that leaves the pool, instead of going back to it,
/// once a statement on it found the connection gone: the pool's cheap
/// recycling check can miss a connection the server has just closed.
pub(crate) struct Conn {
    object: Option<Object>,
    lost: AtomicBool,
}

impl Conn {
    fn new(object: Object) -> Self {
        Self {
            object: Some(object),
            lost: AtomicBool::new(false),
        }
    }

    /// Closes the connection when this value is dropped, instead of handing
    /// it back to the pool: for a connection left inside a transaction.
    pub(crate) fn discard(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    /// Remembers that the connection is gone when `error` says so.
    fn check(&self, error: tokio_postgres::Error) -> tokio_postgres::Error {
        if connection_lost(&error) {
            self.lost.store(true, Ordering::Relaxed);
        }
        error
    }
}

impl std::ops::Deref for Conn {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object
            .as_ref()
            .expect("a Conn holds its object until it is dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        self.object
            .as_mut()
            .expect("a Conn holds its object until it is dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.lost.load(Ordering::Relaxed)
            && let Some(object) = self.object.take()
        {
            drop(Object::take(object));
        }
    }
}

/// True when `error` means the connection cannot be used any more.
fn connection_lost(error: &tokio_postgres::Error) -> bool {
    let code = error.code().map(SqlState::code).unwrap_or_default();
    let io = std::error::Error::source(error).is_some_and(|inner| inner.is::<std::io::Error>());
    error.is_closed() || io || code.starts_with("57P") || code.starts_with("08")
}

/// Why one call of the append function failed.
enum AppendFailure {
    Invalid(Error),
    Pool(PostgresError),
    Driver(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for AppendFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Driver(error)
    }
}

/// The columns of one append, as the arrays the append function takes.
struct Batch<'a> {
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<Option<String>>,
    occurred_at: Vec<time::OffsetDateTime>,
}

impl<'a> Batch<'a> {
    fn new(stream: &StreamId, events: &'a [NewEvent]) -> Result<Self, Error> {
        let mut batch = Batch {
            event_ids: Vec::with_capacity(events.len()),
            event_types: Vec::with_capacity(events.len()),
            schema_versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            occurred_at: Vec::with_capacity(events.len()),
        };
        for event in events {
            batch.event_ids.push(event.event_id);
            batch.event_types.push(&event.event_type);
            batch.schema_versions.push(schema_version(stream, event)?);
            batch.payloads.push(event.payload.as_str());
            batch.metadata.push(encode_metadata(stream, event)?);
            batch.occurred_at.push(event.occurred_at);
        }
        Ok(batch)
    }

    /// True when no event id repeats (such a batch goes to `factum_append`,
    /// which reports it).
    fn ids_are_distinct(&self) -> bool {
        let mut ids = self.event_ids.clone();
        ids.sort_unstable();
        ids.windows(2).all(|pair| pair[0] != pair[1])
    }
}

fn schema_version(stream: &StreamId, event: &NewEvent) -> Result<i32, Error> {
    i32::try_from(event.schema_version).map_err(|_| Error::InvalidRequest {
        stream: stream.clone(),
        reason: format!(
            "schema version {} of event {} is above {}",
            event.schema_version,
            event.event_id,
            i32::MAX
        ),
    })
}

/// The metadata as JSON text, or NULL when there is none.
fn encode_metadata(stream: &StreamId, event: &NewEvent) -> Result<Option<String>, Error> {
    if event.metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&event.metadata)
        .map(Some)
        .map_err(|error| Error::InvalidRequest {
            stream: stream.clone(),
            reason: format!(
                "the metadata of event {} does not serialize: {error}",
                event.event_id
            ),
        })
}

/// `host:port` of the first server of `config`, for messages.
fn address_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        let port = ports.first().copied().unwrap_or(5432);
        format!("localhost:{port}")
    } else {
        hosts.join(",")
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let expected_version = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(version) => {
                Some(i64::try_from(version).map_err(|_| Error::InvalidRequest {
                    stream: stream.clone(),
                    reason: format!("expected version {version} is out of range"),
                })?)
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self
                .try_append(stream, expected_version, attempt > 1, &events)
                .await
            {
                Ok(Appended::Done(stream_version, positions)) => {
                    let positions: Vec<u64> = positions.into_iter().map(to_u64).collect();
                    self.announce(positions.last().copied());
                    return Ok(AppendResult {
                        stream_version: to_u64(stream_version),
                        positions,
                    });
                }
                Ok(Appended::Conflict(reported)) => {
                    // A retry of a stored batch meets the version check
                    // first: it is still a retry.
                    if let Some(original) = self.retried(stream, &events).await? {
                        return Ok(original);
                    }
                    let actual = match reported {
                        Some(actual) => to_u64(actual),
                        None => self.stream_version(stream).await?,
                    };
                    return Err(Error::Conflict {
                        stream: stream.clone(),
                        expected,
                        actual,
                    });
                }
                Ok(Appended::Retry) if attempt < MAX_ATTEMPTS => continue,
                Ok(Appended::Retry) => {
                    return Err(PostgresError::InvalidConfig {
                        reason: format!(
                            "the position lock of {} stayed unavailable: something outside factum holds \
                             advisory locks in factum's key range",
                            self.shared.names.display
                        ),
                    }
                    .into());
                }
                Err(AppendFailure::Invalid(error)) => return Err(error),
                Err(AppendFailure::Pool(error)) => return Err(error.into()),
                Err(AppendFailure::Driver(error)) => error,
            };
            let code = failure.code().map(SqlState::code).unwrap_or_default();
            if code == REPEATED_ID {
                let mut seen = std::collections::HashSet::with_capacity(events.len());
                let repeated = events
                    .iter()
                    .find(|event| !seen.insert(event.event_id))
                    .map_or_else(Uuid::nil, |event| event.event_id);
                return Err(Error::InvalidRequest {
                    stream: stream.clone(),
                    reason: format!("event id {repeated} appears twice in one append"),
                });
            }
            // The transaction held a position lock: readers capped by it can
            // move on now that it is gone.
            self.announce(None);
            if code == SqlState::UNIQUE_VIOLATION.code() {
                let constraint = failure
                    .as_db_error()
                    .and_then(|db| db.constraint())
                    .unwrap_or_default();
                if constraint == self.shared.names.event_id_constraint
                    && let Some(original) = self.retried(stream, &events).await?
                {
                    return Ok(original);
                }
                if attempt < MAX_ATTEMPTS {
                    // A concurrent append to the stream won the race and
                    // committed: run again (taking turns), and the checks see
                    // its events.
                    continue;
                }
            }
            if code.starts_with("22") {
                // Data exceptions: the server refused a value (a payload that
                // is not JSON, a NUL character in a string).
                let reason = failure
                    .as_db_error()
                    .map_or_else(|| crate::error::describe(&failure), |db| db.message().to_owned());
                return Err(Error::InvalidRequest {
                    stream: stream.clone(),
                    reason: format!("PostgreSQL refused a value of the append: {reason}"),
                });
            }
            return Err(self.query_error(failure).into());
        }
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        let state = StreamRead {
            store: self.clone(),
            stream: stream.clone(),
            decoder: Decoder::for_stream(stream.clone()),
            next_version: from_version.max(1),
            page: None,
            read_in_page: 0,
        };
        futures::stream::try_unfold(state, |mut state| async move {
            loop {
                if let Some(page) = state.page.as_mut() {
                    match page.rows.next().await {
                        Some(Ok(row)) => {
                            let event = state.decoder.decode(&row)?;
                            state.read_in_page += 1;
                            state.next_version = event.version.saturating_add(1);
                            return Ok(Some((event, state)));
                        }
                        Some(Err(error)) => return Err(state.store.fail(&page.client, error).into()),
                        None => {
                            state.page = None;
                            if state.read_in_page < state.store.shared.options.page_size {
                                return Ok(None);
                            }
                        }
                    }
                }
                state.page = Some(state.open_page().await?);
                state.read_in_page = 0;
            }
        })
        .boxed()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let set_horizon = client
            .prepare_cached(&self.shared.sql.set_horizon)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let read_page = client
            .prepare_cached(&self.shared.sql.read_page)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let after = to_i64(after);
        let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 2] = [&after, &limit_param];
        // Both statements go out in one round trip, in this order, on this
        // connection; the page is used only when the horizon was set.
        let (_, rows) = futures::try_join!(
            client.execute(&set_horizon, &[]),
            client.query_raw(&read_page, params)
        )
        .map_err(|e| self.fail(&client, e))?;
        let mut rows = std::pin::pin!(rows);
        let mut decoder = Decoder::default();
        let mut events = Vec::with_capacity(limit.min(4096));
        while let Some(row) = rows.try_next().await.map_err(|e| self.fail(&client, e))? {
            events.push(decoder.decode(&row)?);
        }
        Ok(events)
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        let wake = self.shared.head.subscribe();
        notify::ensure_listener(&self.shared);
        PollingSubscription::stream(
            self.clone(),
            after,
            Some(wake),
            SubscriptionOptions {
                batch_size: self.shared.options.page_size,
                poll_interval: Some(self.shared.options.poll_interval),
            },
        )
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.stream_version)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let row = client
            .query_one(&statement, &[&stream.aggregate_type(), &stream.aggregate_id()])
            .await
            .map_err(|e| self.fail(&client, e))?;
        let version: i64 = row.try_get(0).map_err(|e| self.fail(&client, e))?;
        Ok(to_u64(version))
    }

    async fn head_position(&self) -> Result<u64, Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.horizon)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(|e| self.fail(&client, e))?;
        let horizon: Option<i64> = row.try_get(0).map_err(|e| self.fail(&client, e))?;
        Ok(horizon.map_or(0, to_u64))
    }
}

/// Where a `read_stream` is: the page being received and the next version.
struct StreamRead {
    store: PostgresEventStore,
    stream: StreamId,
    decoder: Decoder,
    next_version: u64,
    page: Option<Page>,
    read_in_page: usize,
}

/// One page of a stream read: rows are decoded as they arrive, so a page
/// never sits in memory whole.
struct Page {
    rows: Pin<Box<RowStream>>,
    // Returned to the pool when the page is done.
    client: Conn,
}

impl StreamRead {
    async fn open_page(&self) -> Result<Page, Error> {
        let store = &self.store;
        let client = store.client().await?;
        let statement = client
            .prepare_cached(&store.shared.sql.read_stream)
            .await
            .map_err(|e| store.fail(&client, e))?;
        let from_version = to_i64(self.next_version);
        let limit = i64::try_from(store.shared.options.page_size).unwrap_or(i64::MAX);
        let aggregate_type = self.stream.aggregate_type();
        let aggregate_id = self.stream.aggregate_id();
        let params: [&(dyn ToSql + Sync); 4] = [&aggregate_type, &aggregate_id, &from_version, &limit];
        let rows = client
            .query_raw(&statement, params)
            .await
            .map_err(|e| store.fail(&client, e))?;
        Ok(Page {
            rows: Box::pin(rows),
            client,
        })
    }
}
