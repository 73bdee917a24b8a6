//! The shared event-store conformance suite, run against the in-memory store.

use factum_core::InMemoryEventStore;

async fn fresh_store() -> Option<InMemoryEventStore> {
    Some(InMemoryEventStore::new())
}

factum_core::conformance_suite!(fresh_store);
factum_core::contiguous_append_suite!(fresh_store);
