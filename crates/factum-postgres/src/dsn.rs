//! Connection strings: parsing them, the defaults factum adds, and the
//! address that messages name.

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::{PostgresError, PostgresOptions};

/// The port PostgreSQL listens on unless told otherwise.
const DEFAULT_PORT: u16 = 5432;

/// Parses `dsn` (URL or `key=value` form), adding the connect timeout of
/// `options` and the application name `factum` when the string sets none.
pub(crate) fn parse(dsn: &str, options: &PostgresOptions) -> Result<Config, PostgresError> {
    let mut config: Config = dsn
        .parse()
        .map_err(|source| PostgresError::InvalidDsn { source })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("factum");
    }
    Ok(config)
}

/// `host:port` of the servers of `config`, for messages (never the
/// password).
pub(crate) fn address_of(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports
                .get(index)
                .or(ports.first())
                .copied()
                .unwrap_or(DEFAULT_PORT);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        let port = ports.first().copied().unwrap_or(DEFAULT_PORT);
        format!("localhost:{port}")
    } else {
        hosts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_names_host_and_port_but_not_the_password() {
        let config = parse(
            "postgres://app:secret@db.example:6543/events",
            &PostgresOptions::new(),
        )
        .expect("a valid URL parses");
        let address = address_of(&config);
        assert_eq!(address, "db.example:6543");
        assert_eq!(config.get_application_name(), Some("factum"));
        let config = parse("host=a,b user=app", &PostgresOptions::new()).expect("key=value parses");
        assert_eq!(address_of(&config), "a:5432,b:5432");
    }

    #[test]
    fn a_malformed_string_is_an_invalid_dsn() {
        let error = parse("postgres://[::1", &PostgresOptions::new()).expect_err("malformed");
        assert!(matches!(error, PostgresError::InvalidDsn { .. }), "{error:?}");
    }
}
