//! Bearer tokens and what each may reach: one tenant (read-only or
//! read-write), or everything (an admin token).
//!
//! A token's reach is enforced by the store's own tenant isolation: the
//! service answers a tenant's token through `store.for_tenant(tenant)`, so
//! the server holds no rule of its own about which streams a tenant sees.

use std::collections::HashMap;
use std::path::Path;

use factum_core::{Error, Tenancy, Tenant};
use factum_remote::TENANT_HEADER;
use factum_remote::proto::InvalidTenant;
use factum_remote::proto::error_detail::Kind;
use factum_remote::status::{error_to_status, with_detail};
use serde::Deserialize;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::ServerError;

/// The tokens a server accepts, read from a TOML file:
///
/// ```toml
/// [[token]]
/// token = "admin-secret"
/// admin = true            # every tenant; picks one with the x-factum-tenant header
///
/// [[token]]
/// token = "acme-writer"
/// tenant = "acme"
/// access = "read-write"   # or "read-only" (the default)
/// ```
///
/// ```
/// # use factum_server::Tokens;
/// let tokens = Tokens::from_toml(r#"
///     [[token]]
///     token = "acme-reader"
///     tenant = "acme"
/// "#)?;
/// assert_eq!(tokens.len(), 1);
/// # Ok::<(), factum_server::ServerError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    grants: HashMap<String, Grant>,
}

/// What one token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `None`: every tenant (an admin token).
    pub tenant: Option<Tenant>,
    /// True when the token may append and save snapshots.
    pub write: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    #[serde(default)]
    admin: bool,
    tenant: Option<String>,
    #[serde(default)]
    access: AccessLevel,
}

#[derive(Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum AccessLevel {
    #[default]
    ReadOnly,
    ReadWrite,
}

impl Tokens {
    /// No tokens (add some with [`grant`](Self::grant)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token` with `grant`, replacing an earlier grant of the same token.
    pub fn grant(mut self, token: impl Into<String>, grant: Grant) -> Self {
        self.grants.insert(token.into(), grant);
        self
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Reads the tokens of a TOML file (see the type's docs).
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self, ServerError> {
        let path = path.as_ref();
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ServerError::Io {
                what: format!("reading the token file {}", path.display()),
                source,
            })?;
        Self::from_toml(&text)
    }

    /// Parses the tokens of a TOML document (see the type's docs).
    pub fn from_toml(text: &str) -> Result<Self, ServerError> {
        let invalid = |reason: String| ServerError::Tokens { reason };
        let file: TokenFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let mut tokens = Self::new();
        for (index, entry) in file.token.into_iter().enumerate() {
            if entry.token.is_empty() {
                return Err(invalid(format!("token #{}: the token is empty", index + 1)));
            }
            let tenant = match (entry.admin, entry.tenant) {
                (true, None) => None,
                (false, Some(name)) => Some(
                    Tenant::new(&name).map_err(|error| invalid(format!("token #{}: {error}", index + 1)))?,
                ),
                (true, Some(_)) => {
                    return Err(invalid(format!(
                        "token #{}: an admin token reaches every tenant; drop `tenant` or `admin`",
                        index + 1
                    )));
                }
                (false, None) => {
                    return Err(invalid(format!(
                        "token #{}: give it a `tenant`, or `admin = true`",
                        index + 1
                    )));
                }
            };
            let write = entry.admin || entry.access == AccessLevel::ReadWrite;
            if tokens
                .grants
                .insert(entry.token, Grant { tenant, write })
                .is_some()
            {
                return Err(invalid(format!(
                    "token #{}: the same token is listed twice",
                    index + 1
                )));
            }
        }
        Ok(tokens)
    }
}

/// Who a call comes from: what it may reach and whether it may write.
pub(crate) struct Access {
    grant: Grant,
}

/// Checks the `authorization` header of a call against `tokens` (`None`:
/// an open server, where every call is an admin's).
pub(crate) fn authorize(tokens: Option<&Tokens>, metadata: &MetadataMap) -> Result<Access, Status> {
    let Some(tokens) = tokens else {
        return Ok(Access {
            grant: Grant {
                tenant: None,
                write: true,
            },
        });
    };
    let header = metadata
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("this server needs `authorization: Bearer <token>`"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer <token>`"))?;
    let grant = tokens
        .grants
        .get(token)
        .ok_or_else(|| Status::unauthenticated("unknown token"))?;
    Ok(Access { grant: grant.clone() })
}

impl Access {
    /// Refuses a write for a read-only token.
    pub(crate) fn check_write(&self) -> Result<(), Status> {
        if self.grant.write {
            Ok(())
        } else {
            Err(Status::permission_denied("this token is read-only"))
        }
    }

    /// The view of `store` this call addresses: its token's tenant, or for
    /// an admin the tenant its header names (none: the unscoped store).
    pub(crate) fn store<S: Tenancy + Clone>(&self, store: &S, metadata: &MetadataMap) -> Result<S, Status> {
        let asked =
            match metadata.get(TENANT_HEADER) {
                None => None,
                Some(value) => Some(value.to_str().map_err(|_| {
                    Status::invalid_argument(format!("the {TENANT_HEADER} header is not ASCII"))
                })?),
            };
        let view = |tenant: &str| {
            store
                .for_tenant(tenant)
                .map_err(|error: Error| error_to_status(&error))
        };
        match (&self.grant.tenant, asked) {
            (None, None) => Ok(store.clone()),
            (None, Some(tenant)) => view(tenant),
            (Some(own), None) => view(own.as_str()),
            (Some(own), Some(tenant)) if tenant == own.as_str() => view(tenant),
            (Some(own), Some(tenant)) => {
                let reason = format!("this token reaches tenant `{own}` only");
                let status = Status::permission_denied(format!("tenant `{tenant}`: {reason}"));
                Err(with_detail(
                    status,
                    Some(Kind::InvalidTenant(InvalidTenant {
                        tenant: tenant.to_owned(),
                        reason,
                    })),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_checked() {
        let tokens = Tokens::from_toml(
            r#"
            [[token]]
            token = "root"
            admin = true
            [[token]]
            token = "acme"
            tenant = "acme"
            access = "read-write"
            "#,
        );
        assert_eq!(tokens.map(|tokens| tokens.len()).ok(), Some(2));
        for bad in [
            "[[token]]\ntoken = \"x\"\n",
            "[[token]]\ntoken = \"x\"\nadmin = true\ntenant = \"acme\"\n",
            "[[token]]\ntoken = \"x\"\ntenant = \"a b\"\n",
            "[[token]]\ntoken = \"\"\nadmin = true\n",
            "[[token]]\ntoken = \"x\"\ntenant = \"acme\"\naccess = \"all\"\n",
            "[[token]]\ntoken = \"x\"\nadmin = true\n[[token]]\ntoken = \"x\"\nadmin = true\n",
        ] {
            assert!(Tokens::from_toml(bad).is_err(), "{bad}");
        }
    }
}
