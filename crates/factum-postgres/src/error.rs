use std::time::Duration;

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
        found: i32,
        /// The newest version this crate knows.
        supported: i32,
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
