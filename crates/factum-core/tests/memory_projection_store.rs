//! The shared projection-store conformance suite, run against the in-memory
//! projection store.

use factum_core::InMemoryProjectionStore;
use factum_core::testing::projection::{InMemoryLedger, LedgerModel};

async fn fresh_store() -> Option<(InMemoryProjectionStore<LedgerModel>, InMemoryLedger)> {
    Some((InMemoryProjectionStore::default(), InMemoryLedger))
}

factum_core::projection_store_suite!(fresh_store);
