//! The tenant role: the role tenants' views run as, its privileges on the
//! store's objects, and the checks that row-level security binds it.

use factum_core::Error;
use tokio_postgres::error::SqlState;

use crate::migrate::MIGRATION_LOCK_CLASS;
use crate::{PostgresError, PostgresEventStore, schema};

/// How often creating the role is tried when another process (in another
/// database: roles belong to the whole cluster) races to do the same.
const ATTEMPTS: usize = 5;

impl PostgresEventStore {
    /// Sets up the tenant role ([`PostgresOptions::tenant_role`](crate::PostgresOptions::tenant_role),
    /// default `factum_tenant`) for this store's schema: creates it when
    /// missing (`NOLOGIN`), lets the connecting user take it (`GRANT … TO
    /// CURRENT_USER`), and grants it what tenants' views need on the
    /// store's tables (reading and appending events, never changing them).
    /// Idempotent, and safe from several processes at once. Run it after
    /// [`ensure_schema`](Self::ensure_schema), which creates the tables.
    ///
    /// Creating a role needs `CREATEROLE`; without it, have an operator run
    /// the SQL of the crate documentation ("Tenants") once, after which
    /// [`ensure_schema`](Self::ensure_schema) keeps the grants up to date.
    ///
    /// Fails with [`PostgresError::TenantRoleUnsafe`] when the role exists
    /// but row-level security would not bind it (a superuser, `BYPASSRLS`,
    /// or a member of the tables' owner).
    pub async fn ensure_tenant_role(&self) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            match self.try_ensure_tenant_role().await {
                Ok(()) => return self.grant_tenant_role().await,
                Err(Grant::Driver(error)) if raced(&error) && attempt < ATTEMPTS => attempt += 1,
                Err(Grant::Driver(error)) => return Err(self.query_error(error).into()),
                Err(Grant::Store(error)) => return Err(error),
            }
        }
    }

    /// Creates the role when missing and lets the connecting user take it.
    async fn try_ensure_tenant_role(&self) -> Result<(), Grant> {
        let role = &self.shared.options.tenant_role;
        let mut client = self.client().await.map_err(|error| Grant::Store(error.into()))?;
        let transaction = client.transaction().await?;
        // Processes of one database take turns; other databases may still
        // race, which `raced` lets the caller retry.
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext('factum tenant role'))",
                &[&MIGRATION_LOCK_CLASS],
            )
            .await?;
        let exists = transaction
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[role])
            .await?
            .is_some();
        if !exists {
            transaction
                .batch_execute(&format!(
                    "CREATE ROLE \"{role}\" NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT"
                ))
                .await?;
        }
        let member: bool = transaction
            .query_one(
                "SELECT pg_catalog.pg_has_role(CURRENT_USER, $1, 'MEMBER')",
                &[role],
            )
            .await?
            .try_get(0)?;
        if !member {
            transaction
                .batch_execute(&format!("GRANT \"{role}\" TO CURRENT_USER"))
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Grants the tenant role its privileges when it exists (from
    /// `ensure_schema`, so a new version's objects are granted too), and
    /// checks that row-level security binds it.
    pub(crate) async fn grant_tenant_role_if_present(&self) -> Result<(), Grant> {
        let role = &self.shared.options.tenant_role;
        let names = &self.shared.names;
        let mut client = self.client().await.map_err(|error| Grant::Store(error.into()))?;
        let transaction = client.transaction().await?;
        // Processes granting on one schema take turns (concurrent grants on
        // one table fail with "tuple concurrently updated").
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&MIGRATION_LOCK_CLASS, &self.shared.options.schema],
            )
            .await?;
        let found = transaction
            .query_opt(
                "SELECT r.rolsuper OR r.rolbypassrls,
                        pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
                   FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
                  WHERE r.rolname = $1 AND c.oid = $2::text::regclass",
                &[role, &names.events],
            )
            .await?;
        let Some(found) = found else {
            return Ok(());
        };
        let (privileged, owner): (bool, bool) = (found.try_get(0)?, found.try_get(1)?);
        if privileged || owner {
            return Err(Grant::Store(
                PostgresError::TenantRoleUnsafe {
                    address: self.shared.address.clone(),
                    role: role.clone(),
                    reason: if privileged {
                        "it is a superuser or has BYPASSRLS".to_owned()
                    } else {
                        format!("it owns, or is a member of the owner of, {}", names.events)
                    },
                }
                .into(),
            ));
        }
        transaction
            .batch_execute(&schema::tenant_grants(names, role))
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// [`grant_tenant_role_if_present`](Self::grant_tenant_role_if_present)
    /// with its errors as the store's.
    pub(crate) async fn grant_tenant_role(&self) -> Result<(), Error> {
        match self.grant_tenant_role_if_present().await {
            Ok(()) => Ok(()),
            Err(Grant::Driver(error)) => Err(self.query_error(error).into()),
            Err(Grant::Store(error)) => Err(error),
        }
    }
}

/// Why setting up the tenant role failed: the server refused a statement,
/// or the store's own error (no connection, an unsafe role).
pub(crate) enum Grant {
    Driver(tokio_postgres::Error),
    Store(Error),
}

impl From<tokio_postgres::Error> for Grant {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Driver(error)
    }
}

/// True when `error` is what losing a race to create or grant the role
/// looks like: a duplicate, or a catalog row another transaction changed.
fn raced(error: &tokio_postgres::Error) -> bool {
    let code = error.code().map(SqlState::code).unwrap_or_default();
    code == SqlState::DUPLICATE_OBJECT.code()
        || code == SqlState::UNIQUE_VIOLATION.code()
        || (code == SqlState::INTERNAL_ERROR.code()
            && error
                .as_db_error()
                .is_some_and(|db| db.message().contains("concurrently")))
}
