//! `ensure_schema`: creating the store's objects, or migrating them from an
//! older version, one process at a time.

use deadpool_postgres::Transaction;
use factum_core::{Error, StreamId};

use crate::schema::{self, CURRENT_VERSION};
use crate::{PostgresError, PostgresEventStore};

/// The first key of the migration lock: the ASCII bytes of `Fact`
/// (`0x46616374`, 1180787572) read as a big-endian `i32`. The second key is
/// `hashtext(schema)`, so migrations of one schema take turns while other
/// schemas migrate in parallel.
///
/// The lock is of the two-key form (`pg_advisory_xact_lock(int4, int4)`),
/// which the readers' scan of position locks (one-key form, `objsubid = 1`)
/// ignores. The value is part of the on-disk protocol: processes of older
/// and newer releases must take the same lock, so it never changes.
pub(crate) const MIGRATION_LOCK_CLASS: i32 = i32::from_be_bytes(*b"Fact");

impl PostgresEventStore {
    /// Creates the tables, sequence and functions, or migrates them from an
    /// older version, and records the version. Idempotent: run it at every
    /// start. Safe to run from several processes at once (they take turns).
    ///
    /// Fails with [`PostgresError::SchemaTooNew`], changing nothing, when the
    /// database was set up by a newer factum-postgres.
    ///
    /// When the tenant role exists (see [`ensure_tenant_role`](Self::ensure_tenant_role)),
    /// grants it its privileges on the store's objects, and fails with
    /// [`PostgresError::TenantRoleUnsafe`] when row-level security would
    /// not bind it.
    pub async fn ensure_schema(&self) -> Result<(), Error> {
        self.migrate_to(CURRENT_VERSION).await
    }

    /// The schema version this crate writes.
    pub fn schema_version() -> u32 {
        CURRENT_VERSION
    }

    /// Migrates the schema up to `target` only (tests of migrations).
    #[doc(hidden)]
    pub async fn migrate_to(&self, target: u32) -> Result<(), Error> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|e| self.query_error(e))?;
        self.lock_and_prepare(&transaction).await?;
        let found = self.found_version(&transaction).await?;
        if found > CURRENT_VERSION {
            return Err(PostgresError::SchemaTooNew {
                address: self.shared.address.clone(),
                schema: self.shared.names.display.clone(),
                found,
                supported: CURRENT_VERSION,
            }
            .into());
        }
        self.apply_steps(&transaction, found, target.min(CURRENT_VERSION))
            .await?;
        if target >= CURRENT_VERSION {
            transaction
                .batch_execute(&schema::functions(&self.shared.names))
                .await
                .map_err(|e| self.query_error(e))?;
        }
        transaction.commit().await.map_err(|e| self.query_error(e))?;
        // Back to the pool first: a pool of one serves the grants too.
        drop(client);
        if target >= CURRENT_VERSION {
            // New objects of a new version need the tenant role's grants too.
            self.grant_tenant_role().await?;
        }
        Ok(())
    }

    /// Takes the migration lock, then creates the schema and the table of
    /// versions when they are missing.
    async fn lock_and_prepare(&self, transaction: &Transaction<'_>) -> Result<(), Error> {
        let names = &self.shared.names;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&MIGRATION_LOCK_CLASS, &self.shared.options.schema],
            )
            .await
            .map_err(|e| self.query_error(e))?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {versions} (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );",
                schema = names.schema,
                versions = names.versions,
            ))
            .await
            .map_err(|e| self.query_error(e).into())
    }

    /// The newest version applied (0: none).
    async fn found_version(&self, transaction: &Transaction<'_>) -> Result<u32, Error> {
        let names = &self.shared.names;
        let found: i32 = transaction
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {}", names.versions),
                &[],
            )
            .await
            .map_err(|e| self.query_error(e))?
            .try_get(0)
            .map_err(|e| self.query_error(e))?;
        u32::try_from(found).map_err(|_| Error::Corrupt {
            stream: StreamId::new("$schema", names.display.as_str()),
            version: 0,
            reason: format!("the table of schema versions records version {found}"),
        })
    }

    /// Runs the steps from version `found` to `target`, recording each.
    async fn apply_steps(&self, transaction: &Transaction<'_>, found: u32, target: u32) -> Result<(), Error> {
        let names = &self.shared.names;
        let steps = schema::migrations(names);
        let record = format!("INSERT INTO {} (version) VALUES ($1)", names.versions);
        // Versions as the table stores them (`integer`); they start at 1.
        for (version, statements) in (1_i32..).zip(&steps).skip(found as usize) {
            if version.unsigned_abs() > target {
                break;
            }
            tracing::info!(schema = %names.display, version, "migrating the factum schema");
            transaction
                .batch_execute(statements)
                .await
                .map_err(|e| self.query_error(e))?;
            transaction
                .execute(&record, &[&version])
                .await
                .map_err(|e| self.query_error(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_lock_class_spells_fact() {
        assert_eq!(MIGRATION_LOCK_CLASS, 1_180_787_572);
        assert_eq!(MIGRATION_LOCK_CLASS.to_be_bytes(), *b"Fact");
    }
}
