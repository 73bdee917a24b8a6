//! One active instance per projection: a lease with a time to live.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::RunnerStatus;
use super::handle::Control;
use super::metrics::MetricsCell;
use crate::backend::{narrow, projection_scope};
use crate::{Error, Tenancy, Tenant};

/// A lease that lets one instance of a projection run while the others wait.
///
/// A holder keeps the lease by renewing it (calling [`acquire`](Self::acquire)
/// again) before its time to live runs out. When the holder dies it stops
/// renewing, the lease expires, and a waiting instance takes it within one
/// time to live plus one polling interval. A runner that cannot renew in time
/// stops handling events before its lease can have expired; a store that
/// commits the checkpoint with a compare-and-set (every [`ProjectionStore`](crate::ProjectionStore)
/// does) fences out a holder that was paused past its lease.
///
/// ```
/// # use std::time::Duration;
/// # use factum_core::{InMemoryLease, Lease};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let lease = InMemoryLease::new();
/// let ttl = Duration::from_secs(10);
/// assert!(lease.acquire("sales", "a", ttl).await?);
/// assert!(!lease.acquire("sales", "b", ttl).await?, "a holds it");
/// lease.release("sales", "a").await?;
/// assert!(lease.acquire("sales", "b", ttl).await?);
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait Lease: Send + Sync + 'static {
    /// Takes the lease on `projection` for `holder` for `ttl` when it is free
    /// or expired, or renews it when `holder` holds it; true when `holder`
    /// holds it afterwards.
    fn acquire(
        &self,
        projection: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Gives the lease up, when `holder` holds it, so another instance can
    /// take it at once.
    fn release(&self, projection: &str, holder: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Leases in memory, for instances in one process (and for tests). Clones
/// share the same leases; a view of a tenant ([`Tenancy::for_tenant`])
/// holds leases apart from every other tenant's.
///
/// ```
/// # use factum_core::InMemoryLease;
/// let lease = InMemoryLease::new();
/// assert_eq!(lease.holder("sales"), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryLease {
    /// By scope (see [`projection_scope`]) and projection.
    leases: Arc<Mutex<HashMap<(String, String), Held>>>,
    tenant: Option<Tenant>,
}

#[derive(Debug)]
struct Held {
    holder: String,
    expires_at: Instant,
}

impl InMemoryLease {
    /// No lease is held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Who holds the lease on `projection` now, if anyone.
    pub fn holder(&self, projection: &str) -> Option<String> {
        let leases = self.lock();
        let held = leases.get(&self.key(projection))?;
        (held.expires_at > Instant::now()).then(|| held.holder.clone())
    }

    fn key(&self, projection: &str) -> (String, String) {
        (
            projection_scope(self.tenant.as_ref()).to_owned(),
            projection.to_owned(),
        )
    }

    // A panic while the lock is held cannot leave a half-written entry.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tenancy for InMemoryLease {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            leases: Arc::clone(&self.leases),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

impl Lease for InMemoryLease {
    async fn acquire(&self, projection: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let now = Instant::now();
        let key = self.key(projection);
        let mut leases = self.lock();
        let free = leases
            .get(&key)
            .is_none_or(|held| held.holder == holder || held.expires_at <= now);
        if free {
            leases.insert(
                key,
                Held {
                    holder: holder.to_owned(),
                    expires_at: now + ttl,
                },
            );
        }
        Ok(free)
    }

    async fn release(&self, projection: &str, holder: &str) -> Result<(), Error> {
        let key = self.key(projection);
        let mut leases = self.lock();
        if leases.get(&key).is_some_and(|held| held.holder == holder) {
            leases.remove(&key);
        }
        Ok(())
    }
}

/// A [`Lease`] behind a pointer, so the runner's type does not name it.
pub(crate) trait DynLease: Send + Sync {
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    fn release<'a>(&'a self, projection: &'a str, holder: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

impl<L: Lease> DynLease for L {
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(Lease::acquire(self, projection, holder, ttl))
    }

    fn release<'a>(&'a self, projection: &'a str, holder: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(Lease::release(self, projection, holder))
    }
}

/// How a runner uses a lease: which one, as whom, for how long.
#[derive(Clone)]
pub(crate) struct LeaseConfig {
    pub(crate) lease: Arc<dyn DynLease>,
    pub(crate) holder: String,
    pub(crate) ttl: Duration,
}

impl LeaseConfig {
    /// How often to renew, or to try again while another instance holds it.
    pub(crate) fn interval(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(1))
    }
}

impl std::fmt::Debug for LeaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseConfig")
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Waits until the lease is ours; `None` when told to stop meanwhile.
pub(crate) async fn acquire_lease(
    name: &str,
    metrics: &MetricsCell,
    config: LeaseConfig,
    commands: &mut watch::Receiver<Control>,
) -> Result<Option<HeldLease>, Error> {
    loop {
        if matches!(*commands.borrow_and_update(), Control::Stop | Control::Abort) {
            return Ok(None);
        }
        let asked_at = Instant::now();
        if config.lease.acquire(name, &config.holder, config.ttl).await? {
            tracing::info!(projection = %name, holder = %config.holder, "lease acquired");
            return Ok(Some(HeldLease::start(config, name.to_owned(), asked_at)));
        }
        metrics.set_status(RunnerStatus::Standby);
        tokio::select! {
            () = tokio::time::sleep(config.interval()) => {}
            _ = commands.changed() => {}
        }
    }
}

/// The lease while a runner holds it, renewed in the background.
pub(crate) struct HeldLease {
    pub(crate) config: LeaseConfig,
    projection: String,
    valid_until: Arc<Mutex<Instant>>,
    renewal: JoinHandle<()>,
}

impl HeldLease {
    pub(crate) fn start(config: LeaseConfig, projection: String, asked_at: Instant) -> Self {
        let valid_until = Arc::new(Mutex::new(Self::safe_until(&config, asked_at)));
        let renewal = tokio::spawn({
            let config = config.clone();
            let projection = projection.clone();
            let valid_until = Arc::clone(&valid_until);
            async move {
                loop {
                    tokio::time::sleep(config.interval()).await;
                    let asked_at = Instant::now();
                    match config
                        .lease
                        .acquire(&projection, &config.holder, config.ttl)
                        .await
                    {
                        Ok(true) => {
                            *valid_until.lock().unwrap_or_else(PoisonError::into_inner) =
                                Self::safe_until(&config, asked_at);
                        }
                        Ok(false) => {
                            *valid_until.lock().unwrap_or_else(PoisonError::into_inner) = asked_at;
                            return;
                        }
                        // The lease runs out on its own unless a later renewal works.
                        Err(error) => tracing::warn!(%projection, %error, "renewing the lease failed"),
                    }
                }
            }
        });
        Self {
            config,
            projection,
            valid_until,
            renewal,
        }
    }

    // A fifth of the time to live is kept as margin for clock drift and the
    // time a commit takes.
    fn safe_until(config: &LeaseConfig, asked_at: Instant) -> Instant {
        asked_at + config.ttl - config.ttl / 5
    }

    pub(crate) fn is_valid(&self) -> bool {
        Instant::now() < *self.valid_until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn release(self) {
        self.renewal.abort();
        if let Err(error) = self
            .config
            .lease
            .release(&self.projection, &self.config.holder)
            .await
        {
            // Not fatal: the lease expires on its own.
            tracing::warn!(projection = %self.projection, %error, "releasing the lease failed");
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_can_be_taken_over() {
        let lease = InMemoryLease::new();
        let ttl = Duration::from_secs(5);
        assert!(Lease::acquire(&lease, "p", "a", ttl).await.is_ok_and(|held| held));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(
            Lease::acquire(&lease, "p", "b", ttl)
                .await
                .is_ok_and(|held| !held)
        );
        assert!(
            Lease::acquire(&lease, "p", "a", ttl).await.is_ok_and(|held| held),
            "renewal"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            lease.holder("p").as_deref(),
            Some("a"),
            "renewed 4 s ago, ttl 5 s"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lease.holder("p"), None);
        assert!(Lease::acquire(&lease, "p", "b", ttl).await.is_ok_and(|held| held));
        Lease::release(&lease, "p", "a").await.ok();
        assert_eq!(
            lease.holder("p").as_deref(),
            Some("b"),
            "only the holder releases"
        );
    }
}
