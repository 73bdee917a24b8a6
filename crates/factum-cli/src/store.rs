//! Where the store is (a SQLite path or a PostgreSQL URL), and opening it
//! with the checks a shell user needs: a missing file, an unreachable
//! server, a schema older or newer than this command's are one line each,
//! saying what to do.

use std::path::{Path, PathBuf};

use factum_core::Error;
use factum_postgres::{PostgresError, PostgresEventStore, PostgresOptions};
use factum_sqlite::{SqliteEventStore, SqliteOptions};

use crate::error::CliError;

/// A store's location, parsed from `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    /// Parses `text`: `postgres://…`, `postgresql://…`, `sqlite:PATH`,
    /// `sqlite://PATH`, or a plain path.
    pub(crate) fn parse(text: &str) -> Result<Self, CliError> {
        if text.trim().is_empty() {
            return Err(CliError::usage(
                "the store is empty: pass a SQLite path or a postgres:// URL",
            ));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_owned()));
        }
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(CliError::usage(format!(
                    "`{text}` names no file: write sqlite:PATH"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(CliError::usage(format!(
                "unsupported store URL scheme `{scheme}`: use a SQLite path, sqlite:PATH or postgres://…"
            )));
        }
        Ok(Self::Sqlite(PathBuf::from(text)))
    }
}

/// What the command will do to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Use it as it is: it must exist at this command's schema version.
    Existing,
    /// Create it when missing and migrate an older schema (`migrate`, `import`).
    CreateOrMigrate,
}

/// An open store of either kind.
pub(crate) enum Opened {
    Sqlite(SqliteEventStore),
    Postgres(PostgresEventStore),
}

impl Opened {
    /// The store, for messages: `SQLite app.db`, `PostgreSQL 127.0.0.1:5432, schema public.factum_`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Sqlite(store) => format!(
                "SQLite {}",
                store
                    .path()
                    .map_or_else(|| ":memory:".to_owned(), |path| path.display().to_string())
            ),
            Self::Postgres(store) => {
                format!("PostgreSQL {}, schema {}", store.address(), store.schema_name())
            }
        }
    }

    pub(crate) async fn close(&self) -> Result<(), Error> {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

const UPGRADE: &str = "upgrade the factum command (cargo install factum-cli)";

/// Connections a command keeps to PostgreSQL: a few pages read at once.
pub(crate) const CONNECTIONS: usize = 4;

/// Opens the store, with the schema version it was at before (`None`: no
/// store there yet); `connections` is the PostgreSQL pool's size.
pub(crate) async fn open(
    location: &Location,
    schema: Option<&str>,
    access: Access,
    connections: usize,
) -> Result<(Opened, Option<u32>), CliError> {
    match location {
        Location::Sqlite(path) => {
            let (store, found) = open_sqlite(path, access).await?;
            Ok((Opened::Sqlite(store), found))
        }
        Location::Postgres(url) => {
            let (store, found) = open_postgres(url, schema, access, connections).await?;
            Ok((Opened::Postgres(store), found))
        }
    }
}

async fn open_sqlite(path: &Path, access: Access) -> Result<(SqliteEventStore, Option<u32>), CliError> {
    let shown = path.display();
    let current = SqliteEventStore::schema_version();
    let mut before = None;
    if path.exists() {
        let found = SqliteEventStore::file_schema_version(path).map_err(|error| {
            CliError::unavailable(format!("cannot use {shown} as a factum store")).with_source(error)
        })?;
        match found {
            Some(found) if found > current => {
                return Err(CliError::unavailable(format!(
                    "{shown} is at factum schema version {found}, newer than the version {current} this command \
                     knows: {UPGRADE}"
                )));
            }
            Some(found) if found < current && access == Access::Existing => {
                return Err(CliError::unavailable(format!(
                    "{shown} is at factum schema version {found}; this command needs version {current}: run \
                     `factum --store {shown} migrate` first"
                )));
            }
            None if access == Access::Existing => {
                return Err(CliError::unavailable(format!(
                    "{shown} is an empty database: run `factum --store {shown} migrate` to create the store"
                )));
            }
            _ => {}
        }
        before = found;
    } else if access == Access::Existing {
        return Err(CliError::unavailable(format!(
            "no factum store at {shown}: the file does not exist (check the path, or create the store with \
             `factum --store {shown} migrate`)"
        )));
    }
    let options = SqliteOptions::new().create_if_missing(access == Access::CreateOrMigrate);
    let store = SqliteEventStore::open_with(path, options)
        .await
        .map_err(|error| CliError::unavailable(format!("cannot open {shown}")).with_source(error))?;
    Ok((store, before))
}

async fn open_postgres(
    url: &str,
    schema: Option<&str>,
    access: Access,
    connections: usize,
) -> Result<(PostgresEventStore, Option<u32>), CliError> {
    let schema = schema.unwrap_or("public");
    let options = PostgresOptions::new().schema(schema).pool_size(connections);
    let store = PostgresEventStore::connect_with(url, options)
        .await
        .map_err(connect_error)?;
    let where_ = format!("schema {schema} at {}", store.address());
    let current = PostgresEventStore::schema_version();
    let found = store.stored_schema_version().await.map_err(|error| {
        CliError::unavailable(format!("cannot read the factum schema version in {where_}")).with_source(error)
    })?;
    match (found, access) {
        (Some(found), _) if found > current => Err(CliError::unavailable(format!(
            "the factum store in {where_} is at schema version {found}, newer than the version {current} this \
             command knows: {UPGRADE}"
        ))),
        (None, Access::Existing) => Err(CliError::unavailable(format!(
            "no factum store in {where_}: run `factum migrate` with the same --store and --schema to create it"
        ))),
        (Some(found), Access::Existing) if found < current => Err(CliError::unavailable(format!(
            "the factum store in {where_} is at schema version {found}; this command needs version {current}: \
             run `factum migrate` with the same --store and --schema first"
        ))),
        (_, Access::CreateOrMigrate) => {
            store.ensure_schema().await?;
            set_up_tenant_role(&store, &where_).await;
            Ok((store, found))
        }
        _ => Ok((store, found)),
    }
}

/// Sets up the role tenants' views run as, so that importing other
/// tenants' events and serving tenant tokens work on a fresh server. A
/// user without `CREATEROLE` still gets a migrated store: the views then
/// fail with their own error, and this says why beforehand.
async fn set_up_tenant_role(store: &PostgresEventStore, where_: &str) {
    if let Err(error) = store.ensure_tenant_role().await {
        eprintln!(
            "note: tenants' views of the store in {where_} will not work until the tenant role is set up \
             (see \"Tenants\" in the factum-postgres documentation): {}",
            crate::error::Chain(&error)
        );
    }
}

/// A malformed URL or option is the command line's fault (2); anything
/// else means the server cannot be used (3).
fn connect_error(error: Error) -> CliError {
    let postgres = match &error {
        Error::Store { source, .. } => source.downcast_ref::<PostgresError>(),
        _ => None,
    };
    match postgres {
        Some(PostgresError::InvalidDsn { .. } | PostgresError::InvalidConfig { .. }) => {
            CliError::usage("wrong --store or --schema").with_source(error)
        }
        _ => CliError::unavailable("cannot open the PostgreSQL store").with_source(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    #[test]
    fn urls_and_paths_name_their_backend() {
        assert_eq!(
            Location::parse("app.db").unwrap(),
            Location::Sqlite("app.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:data/app.db").unwrap(),
            Location::Sqlite("data/app.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:///tmp/a.db").unwrap(),
            Location::Sqlite("/tmp/a.db".into())
        );
        let url = "postgresql://u@h:5432/db";
        assert_eq!(Location::parse(url).unwrap(), Location::Postgres(url.to_owned()));
    }

    #[test]
    fn an_unknown_scheme_is_a_usage_error() {
        let error = Location::parse("mysql://h/db").unwrap_err();
        assert_eq!(error.exit, Exit::Usage);
        assert!(error.to_string().contains("`mysql`"), "{error}");
        assert_eq!(Location::parse(" ").unwrap_err().exit, Exit::Usage);
        assert_eq!(Location::parse("sqlite:").unwrap_err().exit, Exit::Usage);
    }
}
