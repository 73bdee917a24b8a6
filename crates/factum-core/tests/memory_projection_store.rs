//! The shared projection-store conformance suite, run against the in-memory
//! projection store.

use factum_core::InMemoryProjectionStore;
use factum_core::testing::projection::{InMemoryLedger, LedgerModel};

async fn fresh_store() -> Option<(InMemoryProjectionStore<LedgerModel>, InMemoryLedger)> {
    Some((InMemoryProjectionStore::default(), InMemoryLedger))
}

factum_core::projection_store_suite!(fresh_store);

#[test]
fn in_memory_lease_is_exclusive_and_expires() {
    factum_core::testing::run(
        || async { Some(factum_core::InMemoryLease::new()) },
        factum_core::testing::projection::lease_is_exclusive_and_expires,
    );
}

#[test]
fn in_memory_checkpoint_and_dead_letter_stores() {
    factum_core::testing::run(
        || async {
            Some((
                factum_core::InMemoryCheckpointStore::new(),
                factum_core::InMemoryDeadLetterStore::new(),
            ))
        },
        |(checkpoints, letters)| {
            factum_core::testing::projection::plain_stores_keep_checkpoints_and_dead_letters(
                checkpoints,
                letters,
            )
        },
    );
}

#[test]
fn in_memory_plain_stores_keep_tenants_apart() {
    factum_core::testing::run(
        || async {
            Some((
                factum_core::InMemoryCheckpointStore::new(),
                factum_core::InMemoryDeadLetterStore::new(),
            ))
        },
        |(checkpoints, letters)| {
            factum_core::testing::projection::plain_stores_keep_tenants_apart(checkpoints, letters)
        },
    );
}

#[test]
fn in_memory_leases_of_tenants_are_apart() {
    factum_core::testing::run(
        || async { Some(factum_core::InMemoryLease::new()) },
        factum_core::testing::projection::leases_of_tenants_are_apart,
    );
}
