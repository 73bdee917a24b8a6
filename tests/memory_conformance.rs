//! The shared event-store conformance suite, run against the in-memory store.

use factum::InMemoryEventStore;

async fn fresh_store() -> Option<InMemoryEventStore> {
    Some(InMemoryEventStore::new())
}

factum::conformance_suite!(fresh_store);
