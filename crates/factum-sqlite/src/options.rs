use std::time::Duration;

/// How hard SQLite works to keep a commit through a power loss.
///
/// Both levels keep every committed append through a crash of the process
/// (a panic, `kill -9`): the write-ahead log is in the operating system's
/// hands once `append` returns. They differ on a crash of the whole machine.
///
/// ```
/// # use factum_sqlite::{Durability, SqliteOptions};
/// let options = SqliteOptions::new().durability(Durability::Normal);
/// assert_eq!(options.get_durability(), Durability::Normal);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous = FULL`: every commit is flushed to the disk
    /// (`fsync`) before `append` returns, so a power loss keeps every
    /// append that returned. The default.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL`: the log is flushed only at checkpoints.
    /// Much faster for small appends; a power loss or an operating system
    /// crash may lose the last appends that returned (never corrupting the
    /// file, never splitting a batch). The setting py-event-sourcing and most
    /// embedded stores use.
    Normal,
}

impl Durability {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How to open a [`SqliteEventStore`](crate::SqliteEventStore).
///
/// ```
/// # use std::time::Duration;
/// # use factum_sqlite::{Durability, SqliteOptions};
/// let options = SqliteOptions::new()
///     .durability(Durability::Normal)
///     .poll_interval(Duration::from_millis(200))
///     .read_connections(2);
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub(crate) durability: Durability,
    pub(crate) create_if_missing: bool,
    pub(crate) read_connections: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) watch_other_processes: bool,
    pub(crate) cache_size_kib: u32,
    pub(crate) writer_cache_size_kib: u32,
    pub(crate) checkpoint_bytes: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            create_if_missing: true,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            watch_other_processes: true,
            cache_size_kib: 2 * 1024,
            writer_cache_size_kib: 16 * 1024,
            checkpoint_bytes: 16 * 1024 * 1024,
        }
    }
}

impl SqliteOptions {
    /// The defaults: [`Durability::Full`], create the file if missing, four
    /// idle read connections, a five second busy timeout, other processes'
    /// appends looked for every 500 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how commits are flushed (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The durability these options select.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// Whether opening a missing file creates it (default `true`). With
    /// `false`, opening a missing file fails.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// How many idle read connections to keep (default 4, at least 1).
    /// Reads beyond that open extra connections, closed after use.
    pub fn read_connections(mut self, count: usize) -> Self {
        self.read_connections = count.max(1);
        self
    }

    /// How long to wait for another process holding the write lock before
    /// failing (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How often the store's watcher looks for appends made by other
    /// processes on the same file (default 500 ms): one cheap read of the
    /// head per interval for the whole store, however many subscriptions
    /// it has, and none while it has none. Appends made through this store
    /// wake subscriptions at once whatever this is.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether the store watches for appends made by other processes on
    /// the same file, every [`poll_interval`](Self::poll_interval), to wake
    /// its live subscriptions (default `true`). With `false` they wake only on appends made through
    /// this store (and its clones): for a file no other process writes to.
    /// A store opened in memory never has other writers.
    pub fn watch_other_processes(mut self, watch: bool) -> Self {
        self.watch_other_processes = watch;
        self
    }

    /// The page cache of each read connection, in KiB (default 2 MiB).
    /// Reads are sequential and the operating system caches the file too,
    /// so a larger cache mostly costs memory.
    pub fn cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib;
        self
    }

    /// The page cache of the writer's connection, in KiB (default 16 MiB):
    /// it holds a transaction's new pages until they are committed.
    pub fn writer_cache_size_kib(mut self, kib: u32) -> Self {
        self.writer_cache_size_kib = kib;
        self
    }

    /// How much the write-ahead log grows, in bytes, before a background
    /// checkpoint copies it into the database (default 16 MiB).
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes.max(1);
        self
    }
}
