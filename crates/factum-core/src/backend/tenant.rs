//! Where a view's operations go: the tenant rules every store shares.

use crate::{Error, NewEvent, StreamId, Tenant};

/// The key under which the unscoped handle keeps its projections'
/// checkpoints, dead letters and leases: no tenant can be named so (a
/// tenant name starts with a letter or digit), so no tenant view reaches
/// them. They are apart from the default tenant's because the unscoped
/// handle's projections read every tenant's events.
pub const ADMIN_SCOPE: &str = "$all";

/// The tenant whose streams and snapshots a view addresses: its own, or
/// [`Tenant::DEFAULT`] for the unscoped handle.
pub fn home(tenant: Option<&Tenant>) -> &Tenant {
    tenant.unwrap_or(&Tenant::DEFAULT)
}

/// The key of a view's projection state: its tenant's name, or
/// [`ADMIN_SCOPE`] for the unscoped handle.
pub fn projection_scope(tenant: Option<&Tenant>) -> &str {
    tenant.map_or(ADMIN_SCOPE, Tenant::as_str)
}

/// The tenant of a view opened with `requested` from a view of `current`
/// (`None`: the unscoped handle): a valid name, and the view's own when it
/// has one. A view can never be widened to another tenant.
pub fn narrow(current: Option<&Tenant>, requested: &str) -> Result<Tenant, Error> {
    let tenant = Tenant::new(requested)?;
    match current {
        Some(own) if *own != tenant => Err(Error::InvalidTenant {
            tenant: tenant.to_string(),
            reason: format!("a view of tenant `{own}` cannot open another tenant"),
        }),
        _ => Ok(tenant),
    }
}

/// Refuses `events` when one's metadata names another tenant than
/// `tenant`, the one they are appended to: a caller cannot write another
/// tenant's name into an event. Every append path checks this before it
/// writes anything.
pub fn check_events(tenant: &Tenant, stream: &StreamId, events: &[NewEvent]) -> Result<(), Error> {
    let foreign = events
        .iter()
        .find_map(|event| event.metadata.tenant.as_ref().filter(|named| *named != tenant));
    match foreign {
        Some(named) => Err(Error::InvalidTenant {
            tenant: named.to_string(),
            reason: format!(
                "an event appended to stream {stream} of tenant `{tenant}` cannot name another tenant in its metadata"
            ),
        }),
        None => Ok(()),
    }
}

/// The stream [`Error::DuplicateEventId`] names when the id is taken in
/// another tenant: the error says the id is taken, not where.
pub fn hidden_stream() -> StreamId {
    StreamId::new("$other-tenant", "hidden")
}

/// The error for an append of `event_id` to `stream` when the id is stored
/// in another tenant.
pub fn taken_elsewhere(stream: &StreamId, event_id: uuid::Uuid) -> Error {
    Error::DuplicateEventId {
        stream: stream.clone(),
        existing_stream: hidden_stream(),
        event_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metadata, Payload};

    fn tenant(name: &str) -> Tenant {
        Tenant::new(name).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_view_narrows_only_to_itself() {
        assert_eq!(narrow(None, "acme").ok(), Some(tenant("acme")));
        assert_eq!(narrow(Some(&tenant("acme")), "acme").ok(), Some(tenant("acme")));
        assert!(matches!(
            narrow(Some(&tenant("acme")), "globex"),
            Err(Error::InvalidTenant { .. })
        ));
        assert!(matches!(
            narrow(Some(&tenant("acme")), ""),
            Err(Error::InvalidTenant { .. })
        ));
    }

    #[test]
    fn the_unscoped_handle_lives_in_the_default_tenant_and_projects_apart() {
        assert_eq!(home(None), &Tenant::DEFAULT);
        assert_eq!(projection_scope(None), ADMIN_SCOPE);
        assert!(
            Tenant::new(ADMIN_SCOPE).is_err(),
            "no tenant can take the admin scope"
        );
        assert_eq!(projection_scope(Some(&Tenant::DEFAULT)), "default");
    }

    #[test]
    fn events_may_name_only_their_own_tenant() {
        let stream = StreamId::new("Counter", "1");
        let event =
            |metadata: Metadata| NewEvent::new("added", Payload::from_stored("{}")).with_metadata(metadata);
        let acme = tenant("acme");
        let own = [
            event(Metadata::default()),
            event(Metadata::default().with_tenant(acme.clone())),
        ];
        assert!(check_events(&acme, &stream, &own).is_ok());
        let foreign = [
            event(Metadata::default()),
            event(Metadata::default().with_tenant(tenant("globex"))),
        ];
        assert!(matches!(
            check_events(&acme, &stream, &foreign),
            Err(Error::InvalidTenant { tenant, .. }) if tenant == "globex"
        ));
    }
}
