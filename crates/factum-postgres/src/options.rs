use std::time::Duration;

use crate::PostgresError;

/// How a [`PostgresEventStore`](crate::PostgresEventStore) names its tables
/// and uses its connections.
///
/// Every setting has a default that suits a service; change what you need:
///
/// ```
/// # use std::time::Duration;
/// # use factum_postgres::PostgresOptions;
/// let options = PostgresOptions::new()
///     .schema("billing")
///     .table_prefix("es_")
///     .pool_size(32)
///     .poll_interval(Duration::from_millis(500));
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    pub(crate) schema: String,
    pub(crate) table_prefix: String,
    pub(crate) pool_size: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) page_size: usize,
    pub(crate) notify: bool,
    pub(crate) listen: Option<tokio_postgres::Config>,
    pub(crate) tenant_role: String,
    pub(crate) group_commit: GroupCommit,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "public".to_owned(),
            table_prefix: "factum_".to_owned(),
            pool_size: 16,
            wait_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            page_size: 4096,
            notify: true,
            listen: None,
            tenant_role: "factum_tenant".to_owned(),
            group_commit: GroupCommit::new(),
        }
    }
}

impl PostgresOptions {
    /// The default options: schema `public`, prefix `factum_`, a pool of 16,
    /// the timeouts and intervals documented on each setting.
    pub fn new() -> Self {
        Self::default()
    }

    /// The PostgreSQL schema holding the store's tables (default `public`;
    /// created by `ensure_schema` when missing).
    ///
    /// Letters, digits and `_`, at most 30 characters, not starting with a digit.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The prefix of the store's tables, sequence and functions (default
    /// `factum_`), so several stores can share one schema.
    ///
    /// Letters, digits and `_`, at most 20 characters, may be empty.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// The most connections the store opens (default 16). Used by
    /// [`connect`](crate::PostgresEventStore::connect); a pool passed to
    /// [`from_pool`](crate::PostgresEventStore::from_pool) keeps its own size.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long an operation waits for a free connection before failing
    /// with [`PostgresError::PoolTimeout`] (default 10 s).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take before failing with
    /// [`PostgresError::Connect`] (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a live subscription reads the log when no notification
    /// arrives (default 1 s): the fallback that keeps subscriptions moving
    /// while the notification connection is down.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Events fetched per query when a stream is read, and per page while a
    /// subscription catches up (default 4096). Rows are decoded as they
    /// arrive, so a stream read keeps memory flat whatever its length.
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size;
        self
    }

    /// Whether appends wake subscribers in other processes with
    /// `NOTIFY` (default true). Subscribers of the same store value are
    /// woken in process either way.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The server to `LISTEN` on for wake-ups. [`connect`](crate::PostgresEventStore::connect)
    /// sets it from its connection string; a store built with
    /// [`from_pool`](crate::PostgresEventStore::from_pool) has no listener
    /// (its subscriptions poll) unless this is set.
    pub fn listen_with(mut self, config: tokio_postgres::Config) -> Self {
        self.listen = Some(config);
        self
    }

    /// The role a tenant's view runs its statements as (default
    /// `factum_tenant`): every statement of a view of tenant `t` runs in a
    /// transaction that takes this role (`SET LOCAL ROLE`) and sets
    /// `factum.tenant` to `t`, so row-level security confines it to `t`'s
    /// rows. The role must exist, must not be a superuser, have
    /// `BYPASSRLS` or own the tables, and the connecting user must be able
    /// to take it: [`ensure_tenant_role`](crate::PostgresEventStore::ensure_tenant_role)
    /// sets it up, or see the crate documentation for the SQL.
    ///
    /// Letters, digits and `_`, at most 63 characters, not starting with a digit.
    pub fn tenant_role(mut self, role: impl Into<String>) -> Self {
        self.tenant_role = role.into();
        self
    }

    /// How concurrent appends share transactions (default:
    /// [`GroupCommit::new()`]; [`GroupCommit::off()`]: every append its own
    /// transaction).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use factum_postgres::{GroupCommit, PostgresOptions};
    /// let gathered = PostgresOptions::new().group_commit(GroupCommit::new().window(Duration::from_micros(200)));
    /// let one_by_one = PostgresOptions::new().group_commit(GroupCommit::off());
    /// ```
    pub fn group_commit(mut self, group_commit: GroupCommit) -> Self {
        self.group_commit = group_commit;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), PostgresError> {
        check_identifier("schema", &self.schema, 30, false)?;
        check_identifier("table prefix", &self.table_prefix, 20, true)?;
        check_identifier("tenant role", &self.tenant_role, 63, false)?;
        if self.pool_size == 0 {
            return Err(invalid("the pool size must be at least 1"));
        }
        if self.page_size == 0 {
            return Err(invalid("the page size must be at least 1"));
        }
        self.group_commit.validate()?;
        Ok(())
    }
}

/// Group commit: appends made at the same time through one store (and its
/// clones and tenants' views) are committed together, in one transaction
/// and one statement, each with its own version check.
///
/// At most [`in_flight`](Self::in_flight) appends and groups run at once
/// (default 1). An append that finds a place free and no group waiting
/// runs at once, alone: a single writer never waits. Otherwise it joins
/// the group that is gathering (or opens one), and the group commits when
/// a place frees up (or it has waited past its
/// [`patience`](Self::patience)) and its [`window`](Self::window) has passed: while
/// one group waits for its commit, the next gathers every append made
/// meanwhile, so the busier the store, the larger the groups. A group
/// holds at most [`max_appends`](Self::max_appends) appends and
/// [`max_events`](Self::max_events) events of one tenant, to distinct
/// streams; a full group waits in line while a new one gathers. Each
/// append of a group succeeds or fails on its own: a wrong expected
/// version is that append's conflict, and an append the server refuses
/// (or any failure of the group's statement) sends every append of the
/// group back to run alone, so only the bad one fails. Positions, the
/// global order, idempotent retries and tenants work as for single
/// appends (see the crate documentation, "Group commit").
///
/// With a few writers, groups of one or two save nothing and would make
/// writers take turns, so while the last group held at most two appends,
/// up to [`alone`](Self::alone) more appends run alone beside the places,
/// as with group commit off; once a larger group forms, appends gather
/// until the load drops.
///
/// On by default: measured against group commit off on one machine
/// (single-event appends, closed-loop writers, PostgreSQL 15, fsync on),
/// it made about the same appends per second at 2 and 4 writers (96% and
/// 87% of raw tokio-postgres with a connection per writer, against 92% and
/// 88%), and more from 8 writers on (97% and 123% of raw at 8 and 16,
/// against 83% and 76%), with a p99 latency at 16 writers about half of
/// raw's.
///
/// ```
/// # use std::time::Duration;
/// # use factum_postgres::{GroupCommit, PostgresOptions};
/// let options = PostgresOptions::new().group_commit(
///     GroupCommit::new()
///         .in_flight(1)
///         .max_appends(64)
///         .window(Duration::ZERO),
/// );
/// ```
#[derive(Clone, Debug)]
pub struct GroupCommit {
    pub(crate) enabled: bool,
    pub(crate) in_flight: usize,
    pub(crate) alone: usize,
    pub(crate) max_appends: usize,
    pub(crate) max_events: usize,
    pub(crate) window: Duration,
    pub(crate) patience: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            enabled: true,
            in_flight: 1,
            alone: 3,
            max_appends: 64,
            max_events: 4096,
            window: Duration::ZERO,
            patience: Duration::from_millis(20),
        }
    }
}

impl GroupCommit {
    /// Group commit on, with the default settings: one append or group in
    /// flight at a time (and up to 3 more appends alone at low load),
    /// groups of up to 64 appends and 4,096 events, no window, 20 ms of
    /// patience.
    pub fn new() -> Self {
        Self::default()
    }

    /// Group commit off: every append commits its own transaction, as many
    /// at once as the pool has connections.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// How many appends and groups may run at once (default 1: an append
    /// that finds another in flight joins a group, and the group commits
    /// when that one is done). More lets groups overlap, in smaller
    /// groups: in the measurements, 2 or 4 gave fewer appends per second
    /// than 1 at 4 to 16 writers, since a group's statement costs nearly
    /// as much for a few appends as for many.
    pub fn in_flight(mut self, in_flight: usize) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// How many more appends may run alone, beside the
    /// [`in_flight`](Self::in_flight) places, while the load is low: while
    /// the last group held at most two appends and no group is waiting
    /// (default 3). With a few writers, groups of one or two save nothing
    /// and would make the writers take turns; once a larger group forms,
    /// appends gather until the load drops. 0: an append that finds the
    /// places taken always joins a group.
    pub fn alone(mut self, alone: usize) -> Self {
        self.alone = alone;
        self
    }

    /// The most appends in one group (default 64).
    pub fn max_appends(mut self, max_appends: usize) -> Self {
        self.max_appends = max_appends;
        self
    }

    /// The most events in one group (default 4,096); an append larger than
    /// this, or than 1,000 events, runs alone.
    pub fn max_events(mut self, max_events: usize) -> Self {
        self.max_events = max_events;
        self
    }

    /// How long a group gathers appends at least before it commits
    /// (default zero: it commits as soon as a place is free, once the
    /// tasks ready to run on the runtime have had their turn to join).
    /// Only appends that find others in flight wait: an append that runs
    /// alone never does.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a group waits for a place before it takes one anyway
    /// (default 20 ms; never less than the [`window`](Self::window)). An append that waits on a lock (another
    /// transaction's uncommitted write to its stream, say) holds its place
    /// as long: past this, the next group runs beside it instead of
    /// waiting too. Far above a commit's usual time, so that it acts only
    /// when something stalls.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    fn validate(&self) -> Result<(), PostgresError> {
        if self.in_flight == 0 || self.max_appends == 0 || self.max_events == 0 {
            return Err(invalid(
                "group commit needs at least 1 in flight, 1 append and 1 event per group",
            ));
        }
        if self.window > Duration::from_secs(1) {
            return Err(invalid("the group commit window must be at most 1 s"));
        }
        if self.patience > Duration::from_secs(10) {
            return Err(invalid("the group commit patience must be at most 10 s"));
        }
        Ok(())
    }
}

fn invalid(reason: impl Into<String>) -> PostgresError {
    PostgresError::InvalidConfig {
        reason: reason.into(),
    }
}

fn check_identifier(what: &str, name: &str, max_len: usize, may_be_empty: bool) -> Result<(), PostgresError> {
    if name.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(invalid(format!("the {what} must not be empty")))
        };
    }
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let starts_well = !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_chars || !starts_well || name.len() > max_len {
        return Err(invalid(format!(
            "the {what} {name:?} must be ASCII letters, digits and `_`, not start with a digit, \
             and have at most {max_len} characters"
        )));
    }
    Ok(())
}

/// The store's SQL names, quoted and qualified once.
#[derive(Debug)]
pub(crate) struct Names {
    /// `schema.prefix`, for messages.
    pub(crate) display: String,
    pub(crate) schema: String,
    pub(crate) events: String,
    pub(crate) sequence: String,
    pub(crate) versions: String,
    pub(crate) append: String,
    pub(crate) append_batches: String,
    pub(crate) read_all: String,
    pub(crate) horizon: String,
    pub(crate) checkpoints: String,
    pub(crate) dead_letters: String,
    pub(crate) leases: String,
    pub(crate) snapshots: String,
    /// `taken_event_ids(ids)`: which of `ids` are stored, in any tenant.
    pub(crate) taken_ids: String,
    pub(crate) prefix: String,
    /// The unique constraint on event ids.
    pub(crate) event_id_constraint: String,
    /// The unique constraint on a stream's versions.
    pub(crate) stream_version_constraint: String,
    /// The NOTIFY channel.
    pub(crate) channel: String,
    /// The high 16 bits of every position lock this store takes: `F` (0x46)
    /// then a byte derived from the schema and prefix.
    pub(crate) lock_tag: i64,
}

impl Names {
    pub(crate) fn new(schema: &str, prefix: &str) -> Self {
        let qualified = |object: &str| format!("\"{schema}\".\"{prefix}{object}\"");
        let display = format!("{schema}.{prefix}");
        // FNV-1a, folded to one byte: stores in one database get different
        // tags (almost always), so one store's writers do not hold back
        // another's readers. A collision costs only that, never exactness.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in display.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        let folded = (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) & 0xff;
        Self {
            schema: format!("\"{schema}\""),
            events: qualified("events"),
            sequence: qualified("position"),
            versions: qualified("schema_version"),
            append: qualified("append"),
            append_batches: qualified("append_batches"),
            read_all: qualified("read_all"),
            horizon: qualified("horizon"),
            checkpoints: qualified("checkpoints"),
            dead_letters: qualified("dead_letters"),
            leases: qualified("leases"),
            snapshots: qualified("snapshots"),
            taken_ids: qualified("taken_event_ids"),
            prefix: prefix.to_owned(),
            event_id_constraint: format!("{prefix}events_event_id"),
            stream_version_constraint: format!("{prefix}events_stream_version"),
            channel: format!("factum:{display}"),
            lock_tag: 0x4600 | i64::from(folded),
            display,
        }
    }
}
