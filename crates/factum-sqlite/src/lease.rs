//! One active instance per projection, across every process that opens the
//! file: a lease row with a holder and an expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use factum_core::backend::projection_scope;
use factum_core::{Error, Lease};

use crate::SqliteProjectionStore;
use crate::error::sqlite;

/// Leases in the `factum_leases` table: taken when free or expired (by the
/// wall clock, in milliseconds, since the instances may be different
/// processes), renewed by their holder, released by their holder only.
/// Each tenant's store holds leases of its own.
///
/// Each call is one durable write through the store's writer.
///
/// ```
/// # use std::time::Duration;
/// # use factum_core::Lease;
/// # use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir()?;
/// let events = SqliteEventStore::open(dir.path().join("app.db")).await?;
/// let leases = SqliteProjectionStore::new(&events);
/// let ttl = Duration::from_secs(10);
/// assert!(leases.acquire("sales", "host-a", ttl).await?);
/// assert!(!leases.acquire("sales", "host-b", ttl).await?, "host-a holds it");
/// leases.release("sales", "host-a").await?;
/// assert!(leases.acquire("sales", "host-b", ttl).await?);
/// # events.close().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
impl Lease for SqliteProjectionStore {
    async fn acquire(&self, projection: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let (projection, holder) = (projection.to_owned(), holder.to_owned());
        let scope = projection_scope(self.events().view_tenant()).to_owned();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.events()
            .write(move |connection| {
                // The time is read on the writer thread, just before the
                // write: a queue in front of it does not shorten the lease.
                let now = now_millis();
                let taken = connection
                    .prepare_cached(
                        "INSERT INTO factum_leases (projection, holder, expires_at, tenant) VALUES (?1, ?2, ?3, ?5) \
                         ON CONFLICT (tenant, projection) DO UPDATE \
                         SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE factum_leases.holder = excluded.holder OR factum_leases.expires_at <= ?4",
                    )
                    .and_then(|mut statement| {
                        statement.execute((projection, holder, now.saturating_add(ttl), now, scope))
                    })
                    .map_err(sqlite)?;
                Ok(taken > 0)
            })
            .await
    }

    async fn release(&self, projection: &str, holder: &str) -> Result<(), Error> {
        let (projection, holder) = (projection.to_owned(), holder.to_owned());
        let scope = projection_scope(self.events().view_tenant()).to_owned();
        self.events()
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "DELETE FROM factum_leases WHERE tenant = ?3 AND projection = ?1 AND holder = ?2",
                    )
                    .and_then(|mut statement| statement.execute((projection, holder, scope)))
                    .map_err(sqlite)?;
                Ok(())
            })
            .await
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 for a clock set
/// before 1970, which only makes leases look expired).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
