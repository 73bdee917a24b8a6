//! Tenant views: which tenant a store value reaches, and how each of its
//! statements is confined to that tenant in the database itself.
//!
//! A view of tenant `t` runs every statement inside a transaction that
//! first takes the tenant role and names the tenant, all in the round trip
//! of the statement itself:
//!
//! ```sql
//! BEGIN ISOLATION LEVEL READ COMMITTED;
//! SET LOCAL ROLE "factum_tenant";
//! SELECT set_config('factum.tenant', 't', true);
//! -- the statement
//! COMMIT;
//! ```
//!
//! The three messages are sent together (tokio-postgres pipelines requests
//! made on one connection), so a view pays no extra round trip. Row-level
//! security then shows and accepts only rows whose `tenant` is `t`, whatever
//! the statement says: factum's own filter on the tenant is the first
//! guard, the database the second. Both settings are `LOCAL`, so they end
//! with the transaction and the connection goes back to the pool as it
//! came.

use std::future::Future;
use std::sync::Arc;

use factum_core::Tenant;

use crate::PostgresEventStore;
use crate::conn::Conn;

/// What a tenant's view adds to the store it views.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) tenant: Tenant,
    /// `BEGIN …; SET LOCAL ROLE …; SELECT set_config('factum.tenant', …)`.
    pub(crate) begin: String,
}

impl View {
    /// The view of `tenant`, running as `role`.
    pub(crate) fn new(tenant: Tenant, role: &str) -> Arc<Self> {
        // Both names are checked to a set without quotes (a tenant name, an
        // identifier of the options), so the literals cannot be broken out
        // of; the doubling is for the reader who checks.
        let begin = format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL ROLE \"{}\"; \
             SELECT set_config('factum.tenant', '{}', true)",
            role.replace('"', "\"\""),
            tenant.as_str().replace('\'', "''"),
        );
        Arc::new(Self { tenant, begin })
    }
}

impl PostgresEventStore {
    /// Runs `work`, the statements of one operation on `client`, as this
    /// view may: as they are for the unscoped store, and inside a
    /// transaction confined to the tenant for a tenant's view.
    ///
    /// `work` must send its statements when first polled (a prepared
    /// statement's `query`, `execute` or `batch_execute`, or a join of
    /// them), so that they go out between `BEGIN` and `COMMIT`, and must
    /// read its rows whole (not `query_raw`): the `COMMIT`'s answer comes
    /// after them. A future dropped once polled leaves nothing open: the
    /// three requests are on their way, `COMMIT` included.
    pub(crate) async fn scoped<T>(
        &self,
        client: &Conn,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        let Some(view) = &self.view else {
            return work.await;
        };
        // A failed statement leaves the transaction aborted; the `COMMIT`
        // sent behind it then rolls back. All three answers are awaited (they
        // come in one round trip) and judged in order, so the error is the
        // `BEGIN` batch's when the role cannot be taken, not the statement's
        // "transaction is aborted" that follows from it.
        let (begun, value, committed) = futures::join!(
            client.batch_execute(&view.begin),
            work,
            client.batch_execute("COMMIT")
        );
        begun?;
        let value = value?;
        committed?;
        Ok(value)
    }
}
