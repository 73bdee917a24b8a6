//! The crate's error type, and how the driver's and the pool's failures map
//! onto it.

use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use crate::PostgresEventStore;
use crate::conn::{Conn, connection_lost};

/// What went wrong talking to PostgreSQL.
///
/// The store hands every failure to its caller as
/// [`factum_core::Error::Store`] with `backend: "postgres"` and this error as
/// the source; downcast the source to tell the cases apart. Messages name the
/// server (`host:port`), never the password.
///
/// ```
/// # use factum_postgres::PostgresError;
/// fn is_unreachable(error: &factum_core::Error) -> bool {
///     match error {
///         factum_core::Error::Store { source, .. } => matches!(
///             source.downcast_ref::<PostgresError>(),
///             Some(PostgresError::Connect { .. } | PostgresError::PoolTimeout { .. })
///         ),
///         _ => false,
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection string could not be parsed.
    #[error("invalid PostgreSQL connection string: {}", describe(.source))]
    InvalidDsn {
        /// The parser's complaint.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A store option is not acceptable (an identifier, a pool size).
    #[error("invalid factum-postgres configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// No connection to the server could be opened (refused, timed out,
    /// authentication failed).
    #[error("cannot connect to PostgreSQL at {address}: {reason}")]
    Connect {
        /// The server, as `host:port`.
        address: String,
        /// Why, as the driver reported it.
        reason: String,
        /// The driver's error, when there is one (none for a timeout).
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    /// Every connection of the pool stayed busy for the whole wait timeout.
    #[error(
        "no connection to PostgreSQL at {address} became free within {waited:?} (pool of {max_size}); \
         raise the pool size or the wait timeout"
    )]
    PoolTimeout {
        /// The server, as `host:port`.
        address: String,
        /// How long the store waited.
        waited: Duration,
        /// The pool's size.
        max_size: usize,
    },

    /// The connection broke while a statement was running. For an append
    /// the outcome is unknown: it may or may not have committed. Retrying it
    /// with the same event ids is safe (a committed append comes back as
    /// the original positions).
    #[error("connection to PostgreSQL at {address} lost: {}", describe(.source))]
    ConnectionLost {
        /// The server, as `host:port`.
        address: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The database holds a factum schema written by a newer factum-postgres.
    #[error(
        "the factum schema {schema} at {address} is at version {found}, newer than the version {supported} \
         this factum-postgres supports; upgrade factum-postgres"
    )]
    SchemaTooNew {
        /// The server, as `host:port`.
        address: String,
        /// The schema and table prefix, e.g. `public.factum_`.
        schema: String,
        /// The version found in the database.
        found: u32,
        /// The newest version this crate knows.
        supported: u32,
    },

    /// The tables or functions of the store do not exist.
    #[error(
        "the factum schema {schema} is missing or incomplete at {address}; call \
         PostgresEventStore::ensure_schema() first: {}", describe(.source)
    )]
    SchemaMissing {
        /// The server, as `host:port`.
        address: String,
        /// The schema and table prefix, e.g. `public.factum_`.
        schema: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The outbox table does not exist: the outbox of this schema was never
    /// enabled.
    #[error(
        "the outbox of {schema} at {address} does not exist; call \
         PostgresEventStore::enable_outbox() first"
    )]
    OutboxMissing {
        /// The server, as `host:port`.
        address: String,
        /// The schema and table prefix, e.g. `public.factum_`.
        schema: String,
    },

    /// The store was closed with
    /// [`PostgresEventStore::close`](crate::PostgresEventStore::close): no
    /// operation runs on it any more.
    #[error("the factum store at {address} is closed")]
    Closed {
        /// The server, as `host:port`.
        address: String,
    },

    /// An append could not take the position lock, run after run: something
    /// outside factum holds advisory locks in factum's key range
    /// exclusively. The server is available but the store cannot write.
    #[error(
        "the position lock of {schema} at {address} stayed unavailable for {attempts} attempts: something \
         outside factum holds advisory locks in factum's key range"
    )]
    PositionLockUnavailable {
        /// The server, as `host:port`.
        address: String,
        /// The schema and table prefix, e.g. `public.factum_`.
        schema: String,
        /// How many times the append tried.
        attempts: usize,
    },

    /// A tenant's view could not run as the tenant role
    /// ([`PostgresOptions::tenant_role`](crate::PostgresOptions::tenant_role)),
    /// or the role lacks a privilege the statement needs: the role is
    /// missing, the connecting user may not take it, or the role was not
    /// granted the table (a read model's own tables need grants of their
    /// own). Nothing was written.
    #[error(
        "a tenant's view at {address} runs as role `{role}`, which failed: {}; run \
         PostgresEventStore::ensure_tenant_role() (`factum migrate` does), or the set-up in the factum-postgres \
         documentation",
        describe(.source)
    )]
    TenantRole {
        /// The server, as `host:port`.
        address: String,
        /// The tenant role.
        role: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The tenant role exists, but row-level security would not bind it, so
    /// tenants' views would not be confined: it is a superuser, has
    /// `BYPASSRLS`, or owns (or inherits from the owner of) the tables.
    #[error("the tenant role `{role}` at {address} cannot confine tenants: {reason}")]
    TenantRoleUnsafe {
        /// The server, as `host:port`.
        address: String,
        /// The tenant role.
        role: String,
        /// What makes it unsafe.
        reason: String,
    },

    /// A statement failed.
    #[error("query on PostgreSQL at {address} failed: {}", describe(.source))]
    Query {
        /// The server, as `host:port`.
        address: String,
        /// The driver's error, with the SQLSTATE when the server sent one.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl From<PostgresError> for factum_core::Error {
    fn from(error: PostgresError) -> Self {
        factum_core::Error::store(crate::BACKEND, error)
    }
}

impl PostgresEventStore {
    /// Maps the error of a statement run on `client`, dropping the
    /// connection from the pool when it is gone.
    pub(crate) fn fail(&self, client: &Conn, error: tokio_postgres::Error) -> PostgresError {
        self.query_error(client.check(error))
    }

    /// Maps the failure to take a connection from the pool.
    pub(crate) fn pool_error(&self, error: PoolError) -> PostgresError {
        let address = self.shared.address.clone();
        let timeouts = self.shared.pool.timeouts();
        match error {
            PoolError::Closed => self.closed_error(),
            PoolError::Timeout(TimeoutType::Wait) => PostgresError::PoolTimeout {
                address,
                waited: timeouts.wait.unwrap_or(self.shared.options.wait_timeout),
                max_size: self.shared.pool.status().max_size,
            },
            PoolError::Timeout(_) => PostgresError::Connect {
                address,
                reason: format!(
                    "no answer within {:?}",
                    timeouts.create.unwrap_or(self.shared.options.connect_timeout)
                ),
                source: None,
            },
            PoolError::Backend(source) => PostgresError::Connect {
                address,
                reason: describe(&source),
                source: Some(source),
            },
            other => PostgresError::Connect {
                address,
                reason: other.to_string(),
                source: None,
            },
        }
    }

    /// Maps the driver's error: a lost connection, a missing schema, or a
    /// failed statement.
    pub(crate) fn query_error(&self, source: tokio_postgres::Error) -> PostgresError {
        let address = self.shared.address.clone();
        let code = source.code().map(SqlState::code).unwrap_or_default();
        if connection_lost(&source) {
            PostgresError::ConnectionLost { address, source }
        } else if self.role_failure(&source) {
            PostgresError::TenantRole {
                address,
                role: self.shared.options.tenant_role.clone(),
                source,
            }
        } else if code == SqlState::UNDEFINED_TABLE.code()
            || code == SqlState::UNDEFINED_FUNCTION.code()
            || code == SqlState::INVALID_SCHEMA_NAME.code()
        {
            PostgresError::SchemaMissing {
                address,
                schema: self.shared.names.display.clone(),
                source,
            }
        } else {
            PostgresError::Query { address, source }
        }
    }
}

impl PostgresEventStore {
    /// True when `error`, met by a tenant's view, says its role cannot be
    /// taken (missing, or not the connecting user's to take) or lacks a
    /// privilege: set-up, not the statement's data.
    pub(crate) fn role_failure(&self, error: &tokio_postgres::Error) -> bool {
        if self.view.is_none() {
            return false;
        }
        let code = error.code().map(SqlState::code).unwrap_or_default();
        let about_a_role = || {
            error
                .as_db_error()
                .is_some_and(|db| db.message().contains("role"))
        };
        code == SqlState::INSUFFICIENT_PRIVILEGE.code()
            || ((code == SqlState::UNDEFINED_OBJECT.code()
                || code == SqlState::INVALID_PARAMETER_VALUE.code())
                && about_a_role())
    }
}

/// The driver's error with the server's message, SQLSTATE and detail:
/// tokio-postgres alone prints only "db error".
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return match std::error::Error::source(error) {
            Some(inner) => format!("{error}: {inner}"),
            None => error.to_string(),
        };
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}
