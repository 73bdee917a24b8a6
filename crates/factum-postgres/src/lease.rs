//! Leases of projections in the `factum_leases` table.

use std::time::Duration;

use factum_core::{Error, Lease};

use crate::PostgresProjectionStore;

/// The longest lease taken: a time to live beyond it is cut to it (the
/// server's timestamps end in the year 294276).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Leases in the `factum_leases` table: one upsert that takes the lease
/// when it is free or expired, or renews it for its holder
/// (`… ON CONFLICT DO UPDATE … WHERE holder = $me OR expires_at <= clock_timestamp()`),
/// and a delete by the holder only.
///
/// Expiry is judged by the server's clock, so instances on hosts whose
/// clocks disagree still agree on when a lease ran out. A table rather than
/// a session advisory lock: an advisory lock belongs to one connection, so
/// it would pin a pooled connection for as long as the projection runs and
/// vanish whenever that connection is recycled, while the lease's time to
/// live is what lets the runner stop before another instance can take over.
///
/// ```no_run
/// # use std::time::Duration;
/// # use factum_core::Lease;
/// # use factum_postgres::{PostgresEventStore, PostgresProjectionStore};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let events = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// events.ensure_schema().await?;
/// let leases = PostgresProjectionStore::new(&events);
/// let ttl = Duration::from_secs(10);
/// assert!(leases.acquire("sales", "host-a", ttl).await?);
/// assert!(!leases.acquire("sales", "host-b", ttl).await?, "host-a holds it");
/// leases.release("sales", "host-a").await?;
/// assert!(leases.acquire("sales", "host-b", ttl).await?);
/// # Ok(()) }
/// ```
impl Lease for PostgresProjectionStore {
    async fn acquire(&self, projection: &str, holder: &str, ttl: Duration) -> Result<bool, Error> {
        let micros = i64::try_from(ttl.min(MAX_TTL).as_micros()).unwrap_or(i64::MAX);
        let taken = self
            .autocommit(&self.sql.acquire, async |client, statement| {
                client
                    .execute(statement, &[&projection, &holder, &micros, &self.scope])
                    .await
            })
            .await?;
        Ok(taken > 0)
    }

    async fn release(&self, projection: &str, holder: &str) -> Result<(), Error> {
        self.autocommit(&self.sql.release, async |client, statement| {
            client
                .execute(statement, &[&projection, &holder, &self.scope])
                .await
        })
        .await?;
        Ok(())
    }
}
