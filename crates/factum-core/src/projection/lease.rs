//! One active instance per projection: a lease with a time to live.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::Error;

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
/// share the same leases.
///
/// ```
/// # use factum_core::InMemoryLease;
/// let lease = InMemoryLease::new();
/// assert_eq!(lease.holder("sales"), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryLease {
    leases: Arc<Mutex<HashMap<String, Held>>>,
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
        let held = leases.get(projection)?;
        (held.expires_at > Instant::now()).then(|| held.holder.clone())
    }

    // A panic while the lock is held cannot leave a half-written entry.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lease for InMemoryLease {
    async fn acquire(&self, projection: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let now = Instant::now();
        let mut leases = self.lock();
        let free = leases
            .get(projection)
            .is_none_or(|held| held.holder == holder || held.expires_at <= now);
        if free {
            leases.insert(
                projection.to_owned(),
                Held {
                    holder: holder.to_owned(),
                    expires_at: now + ttl,
                },
            );
        }
        Ok(free)
    }

    async fn release(&self, projection: &str, holder: &str) -> Result<(), Error> {
        let mut leases = self.lock();
        if leases.get(projection).is_some_and(|held| held.holder == holder) {
            leases.remove(projection);
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
