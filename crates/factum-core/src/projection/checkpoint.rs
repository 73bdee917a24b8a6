//! Where a projection records how far into the global log it has got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::{narrow, projection_scope};
use crate::{Error, Tenancy, Tenant};

/// Keeps each projection's checkpoint: the position in the global log up to
/// which its events have been handled.
///
/// Used by projections whose read model lives outside the checkpoint's
/// store ([`Projection`](crate::Projection)): the runner saves the
/// checkpoint after the handler's effects, so after a crash the events since
/// the last save are handled again (at least once). For exactly once, keep
/// the read model and the checkpoint in one [`ProjectionStore`](crate::ProjectionStore).
///
/// ```
/// # use factum_core::{CheckpointStore, InMemoryCheckpointStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkpoints = InMemoryCheckpointStore::new();
/// assert_eq!(checkpoints.load("sales").await?, 0);
/// checkpoints.save("sales", 42).await?;
/// assert_eq!(checkpoints.load("sales").await?, 42);
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait CheckpointStore: Send + Sync + 'static {
    /// The checkpoint of `projection` (0: nothing handled yet).
    fn load(&self, projection: &str) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Records that `projection` has handled everything up to `position`.
    fn save(&self, projection: &str, position: u64) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Checkpoints in memory: for tests and for projections rebuilt at every
/// start. Clones share the same checkpoints; a view of a tenant
/// ([`Tenancy::for_tenant`]) reaches only that tenant's.
///
/// ```
/// # use factum_core::InMemoryCheckpointStore;
/// let checkpoints = InMemoryCheckpointStore::new();
/// assert_eq!(checkpoints.get("sales"), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryCheckpointStore {
    /// By scope (see [`projection_scope`]) and projection.
    checkpoints: Arc<Mutex<HashMap<(String, String), u64>>>,
    tenant: Option<Tenant>,
}

impl InMemoryCheckpointStore {
    /// An empty store: every projection starts from the beginning.
    pub fn new() -> Self {
        Self::default()
    }

    /// The checkpoint of `projection` (0: none), without awaiting.
    pub fn get(&self, projection: &str) -> u64 {
        self.lock().get(&self.key(projection)).copied().unwrap_or(0)
    }

    fn key(&self, projection: &str) -> (String, String) {
        (
            projection_scope(self.tenant.as_ref()).to_owned(),
            projection.to_owned(),
        )
    }

    // A panic while the lock is held cannot leave a half-written map entry.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tenancy for InMemoryCheckpointStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            checkpoints: Arc::clone(&self.checkpoints),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

impl CheckpointStore for InMemoryCheckpointStore {
    async fn load(&self, projection: &str) -> Result<u64, Error> {
        Ok(self.get(projection))
    }

    async fn save(&self, projection: &str, position: u64) -> Result<(), Error> {
        let key = self.key(projection);
        self.lock().insert(key, position);
        Ok(())
    }
}
