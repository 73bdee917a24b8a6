//! The shared event-store conformance suite, run against the in-memory store,
//! against a wrapper of it that implements only the required methods, so
//! the trait's provided methods (`read_stream_pages`, `subscribe`,
//! `subscribe_stream`) are held to the same contract, and against a
//! `ChaosStore` that injects nothing, so its delegation (tenant views
//! included) is held to it too.

use factum_core::InMemoryEventStore;

async fn fresh_store() -> Option<InMemoryEventStore> {
    Some(InMemoryEventStore::new())
}

factum_core::conformance_suite!(fresh_store);
factum_core::contiguous_append_suite!(fresh_store);
// Stores that override `subscribe_stream` only (see the case's docs).
factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);

mod provided_methods {
    use factum_core::{
        AppendBatch, AppendResult, Error, EventStore, EventStream, ExpectedVersion, InMemoryEventStore,
        NewEvent, RecordedEvent, Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
    };

    /// The in-memory store behind the trait's required methods only.
    #[derive(Clone)]
    struct RequiredOnly(InMemoryEventStore);

    impl EventStore for RequiredOnly {
        async fn append(
            &self,
            stream: &StreamId,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> Result<AppendResult, Error> {
            self.0.append(stream, expected, events).await
        }

        async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
            self.0.append_many(batches).await
        }

        fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
            self.0.read_stream(stream, from_version)
        }

        async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
            self.0.read_all(after, limit).await
        }

        fn subscribe_all(&self, after: u64) -> EventStream<'static> {
            self.0.subscribe_all(after)
        }

        async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
            self.0.stream_version(stream).await
        }

        async fn head_position(&self) -> Result<u64, Error> {
            self.0.head_position().await
        }
    }

    impl SnapshotStore for RequiredOnly {
        async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
            self.0.save_snapshot(snapshot).await
        }

        async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
            self.0.load_snapshot(stream).await
        }
    }

    impl Tenancy for RequiredOnly {
        fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
            self.0.for_tenant(tenant).map(Self)
        }

        fn tenant(&self) -> Option<&Tenant> {
            self.0.tenant()
        }
    }

    async fn fresh_store() -> Option<RequiredOnly> {
        Some(RequiredOnly(InMemoryEventStore::new()))
    }

    factum_core::conformance_suite!(fresh_store);
}

mod chaos_without_faults {
    use factum_core::InMemoryEventStore;
    use factum_core::testing::{ChaosSchedule, ChaosStore};

    async fn fresh_store() -> Option<ChaosStore<InMemoryEventStore>> {
        Some(ChaosStore::new(InMemoryEventStore::new(), ChaosSchedule::none()))
    }

    factum_core::conformance_suite!(fresh_store);
    factum_core::__conformance_tests!(fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
}
