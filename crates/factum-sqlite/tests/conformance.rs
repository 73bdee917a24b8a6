//! The shared event-store conformance suite, run against a SQLite file (at
//! both durability levels) and against an in-memory SQLite database.

use std::sync::Arc;

use factum_core::{
    AppendBatch, AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, RecordedEvent,
    Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};

/// A store in a file of its own temporary directory, removed when the last
/// clone is dropped.
#[derive(Clone)]
struct FileStore {
    store: SqliteEventStore,
    _dir: Arc<tempfile::TempDir>,
}

async fn file_store(durability: Durability) -> Option<FileStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = SqliteOptions::new().durability(durability);
    let store = SqliteEventStore::open_with(dir.path().join("events.db"), options)
        .await
        .expect("a fresh store opens");
    Some(FileStore {
        store,
        _dir: Arc::new(dir),
    })
}

impl EventStore for FileStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        self.store.append(stream, expected, events).await
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        self.store.append_many(batches).await
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        self.store.read_stream(stream, from_version)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        self.store.read_all(after, limit).await
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        self.store.subscribe_all(after)
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        self.store.subscribe_stream(stream, from_version)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        self.store.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, Error> {
        self.store.head_position().await
    }
}

impl SnapshotStore for FileStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        self.store.load_snapshot(stream).await
    }
}

impl Tenancy for FileStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            store: self.store.for_tenant(tenant)?,
            _dir: Arc::clone(&self._dir),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.store.tenant()
    }
}

mod file_full {
    use super::*;

    async fn fresh_store() -> Option<FileStore> {
        file_store(Durability::Full).await
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::contiguous_append_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}

mod file_normal {
    use super::*;

    async fn fresh_store() -> Option<FileStore> {
        file_store(Durability::Normal).await
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::contiguous_append_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}

mod memory {
    use super::*;

    async fn fresh_store() -> Option<SqliteEventStore> {
        Some(
            SqliteEventStore::open_in_memory()
                .await
                .expect("an in-memory store opens"),
        )
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::contiguous_append_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}
