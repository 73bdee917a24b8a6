//! Tenants: a tenant is part of where an event lives, and a store's view of
//! one tenant can reach only that tenant's streams, log, snapshots and
//! projections.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The name of a tenant, checked: 1 to [`Tenant::MAX_LEN`] bytes of ASCII
/// letters, digits, `_`, `-` and `.`, starting with a letter or a digit.
///
/// The character set keeps a tenant name safe wherever it goes (a SQL
/// setting, a file name, a log line, a URL path) and leaves room for names
/// no tenant can take: `$all` marks the state of the unscoped handle's
/// projections. Names are case-sensitive: `Acme` and `acme` are two tenants.
///
/// Cheap to clone: [`Tenant::DEFAULT`] is a static string, other names one
/// shared allocation.
///
/// ```
/// # use factum_core::{Error, Tenant};
/// let acme = Tenant::new("acme")?;
/// assert_eq!(acme.as_str(), "acme");
/// assert_eq!(Tenant::new("default")?, Tenant::DEFAULT);
/// assert!(matches!(Tenant::new(""), Err(Error::InvalidTenant { .. })));
/// assert!(matches!(Tenant::new("acme corp"), Err(Error::InvalidTenant { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Tenant(Name);

#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Tenant {
    /// The tenant of every event written through an unscoped handle, and of
    /// every event stored before factum knew tenants.
    pub const DEFAULT: Tenant = Tenant(Name::Static("default"));

    /// The longest tenant name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Checks `name` and makes it a tenant; [`Error::InvalidTenant`] saying
    /// what is wrong when it is empty, longer than [`MAX_LEN`](Self::MAX_LEN)
    /// bytes, or holds a character outside the set.
    pub fn new(name: &str) -> Result<Self, Error> {
        check(name).map_err(|reason| invalid(name, reason))?;
        if name == Self::DEFAULT.as_str() {
            return Ok(Self::DEFAULT);
        }
        Ok(Self(Name::Shared(Arc::from(name))))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }

    /// True for [`Tenant::DEFAULT`].
    pub fn is_default(&self) -> bool {
        self.as_str() == Self::DEFAULT.as_str()
    }
}

/// What is wrong with `name` as a tenant, if anything.
fn check(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("a tenant name cannot be empty".to_owned());
    };
    if name.len() > Tenant::MAX_LEN {
        return Err(format!(
            "a tenant name has at most {} bytes, this one {}",
            Tenant::MAX_LEN,
            name.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "a tenant name starts with an ASCII letter or digit, not {first:?}"
        ));
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(bad) => Err(format!(
            "a tenant name holds only ASCII letters, digits, `_`, `-` and `.`, not {bad:?}"
        )),
        None => Ok(()),
    }
}

/// The error for `name`, shortened so that a huge input does not make a
/// huge error.
fn invalid(name: &str, reason: String) -> Error {
    const SHOWN: usize = 80;
    let tenant = match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    };
    Error::InvalidTenant { tenant, reason }
}

impl PartialEq for Tenant {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Tenant {}

impl Hash for Tenant {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Tenant {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tenant {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl AsRef<str> for Tenant {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for Tenant {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Self::new(name)
    }
}

impl TryFrom<&str> for Tenant {
    type Error = Error;

    fn try_from(name: &str) -> Result<Self, Error> {
        Self::new(name)
    }
}

impl Serialize for Tenant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Tenant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// A store (or a store of projection state) that keeps tenants apart:
/// [`for_tenant`](Self::for_tenant) gives a view of the same type that
/// reaches only one tenant's data.
///
/// The view is the same type as the store, so everything written against
/// a store ([`Application`](crate::Application), [`Repository`](crate::Repository),
/// [`ProjectionRunner`](crate::ProjectionRunner)) works on a tenant unchanged.
/// One trait for event stores and projection stores alike, rather than one
/// bound to [`EventStore`](crate::EventStore): a projection's checkpoints,
/// dead letters and leases belong to a tenant as much as its events do.
///
/// What a view of tenant `t` reaches:
///
/// - **Streams** (`append`, `append_many`, `read_stream`,
///   `subscribe_stream`, `stream_version`, snapshots): `t`'s only; every
///   stream of an `append_many` call is `t`'s, and one event naming another
///   tenant refuses the whole call. The same aggregate id under two tenants is two streams.
///   An event whose [`Metadata::tenant`](crate::Metadata::tenant) names
///   another tenant is refused with [`Error::InvalidTenant`]; events read
///   back carry `Some(t)` there.
/// - **The log** (`read_all`, `subscribe_all`): `t`'s events only, in
///   global order, never skipping one. Positions stay global, so a tenant
///   sees gaps where other tenants' events are. `head_position` is the
///   position of `t`'s last event that can be read without a gap (0: none):
///   the position a reader of `t`'s log reaches when it has caught up,
///   and where [`Start::End`](crate::Start::End) starts a subscription or a
///   projection of the view.
/// - **Projections**: checkpoints, dead letters and leases are `t`'s.
/// - **Other tenants**: none. `for_tenant` on a view of `t` answers a view
///   of `t` again for `t`, and [`Error::InvalidTenant`] for any other name,
///   so code handed a view cannot widen it.
///
/// The unscoped handle (what `new`, `open` or `connect` return, for which
/// [`tenant`](Self::tenant) is `None`) is the administrator's: its stream
/// operations and snapshots address [`Tenant::DEFAULT`] (where existing
/// data lives), while its log holds every tenant's events. Its projections
/// keep their state apart from every tenant's, since they read everyone's
/// events.
///
/// ```
/// # use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId, Tenancy};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// let acme = store.for_tenant("acme")?;
/// let globex = store.for_tenant("globex")?;
/// let stream = StreamId::new("Counter", "1");
/// let event = || NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap());
/// acme.append(&stream, ExpectedVersion::NoStream, vec![event()]).await?;
/// globex.append(&stream, ExpectedVersion::NoStream, vec![event()]).await?; // another stream
///
/// assert_eq!(acme.read_all(0, 10).await?.len(), 1);
/// assert_eq!(store.read_all(0, 10).await?.len(), 2); // the unscoped handle sees both
/// assert!(acme.for_tenant("globex").is_err());
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait Tenancy: Sized {
    /// A view of this store confined to `tenant`; [`Error::InvalidTenant`]
    /// for a name that is not a valid [`Tenant`], or for another tenant
    /// than this view's own.
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error>;

    /// The tenant this view is confined to; `None` for the unscoped handle.
    fn tenant(&self) -> Option<&Tenant>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "acme", "Acme-2.eu_west", "0", &"x".repeat(Tenant::MAX_LEN)] {
            assert_eq!(
                Tenant::new(good).map(|tenant| tenant.to_string()).ok(),
                Some(good.to_owned())
            );
        }
        for bad in [
            "",
            "-acme",
            ".acme",
            "$all",
            "acme corp",
            "acme'; DROP TABLE x; --",
            "acmé",
            "a\0b",
            &"x".repeat(Tenant::MAX_LEN + 1),
        ] {
            let error = Tenant::new(bad).map(|tenant| tenant.to_string());
            assert!(
                matches!(error, Err(Error::InvalidTenant { .. })),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn a_huge_name_makes_a_short_error() {
        let huge = "x".repeat(100_000);
        let Err(Error::InvalidTenant { tenant, reason }) = Tenant::new(&huge) else {
            panic!("a huge name is invalid");
        };
        assert!(tenant.len() < 100, "{tenant}");
        assert!(reason.contains("100000"), "{reason}");
    }

    #[test]
    fn the_default_is_one_value() {
        let parsed = Tenant::new("default").map(|tenant| tenant.is_default());
        assert_eq!(parsed.ok(), Some(true));
        assert!(!Tenant::new("acme").is_ok_and(|tenant| tenant.is_default()));
        let round_trip: Result<Tenant, _> = serde_json::from_str("\"acme\"");
        assert_eq!(
            round_trip.ok().map(|tenant| tenant.to_string()),
            Some("acme".to_owned())
        );
        assert!(serde_json::from_str::<Tenant>("\"a b\"").is_err());
    }
}
