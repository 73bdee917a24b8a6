//! The check made when a repository is built: the upcasters registered at
//! run time against what the aggregate's code declares.
//!
//! A chain declared in the code is complete by construction (`#[aggregate]`
//! refuses a missing link at compile time); what is left to check is the
//! registry: every chain without a gap, and no event type lifted by both.

use crate::{Aggregate, Error, Upcasters};

/// Holds `upcasters` against `A`'s declared evolution; the first mistake
/// found is [`Error::Evolution`], naming the event type and schema version.
pub(crate) fn check<A: Aggregate>(upcasters: &Upcasters) -> Result<(), Error> {
    let evolution = &A::EVOLUTION;
    let mistake = |event_type: &str, schema_version: u32, reason: String| Error::Evolution {
        aggregate_type: A::TYPE,
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    };
    let mut chains: Vec<_> = upcasters.chains().collect();
    // Reported in a stable order, whatever the registry's hashing.
    chains.sort_by_key(|(event_type, _)| *event_type);
    for (event_type, present) in chains {
        if let Some(first) = present.iter().position(|present| !present) {
            let from = first as u32 + 1;
            return Err(mistake(
                event_type,
                from,
                format!(
                    "the run-time upcasters lift it up to schema version {top}, but none lifts it from schema version {from} to {}: register one with `Upcasters::register(\"{event_type}\", {from}, ...)`",
                    from + 1,
                    top = present.len() + 1,
                ),
            ));
        }
        let Some(event) = evolution.event(event_type) else {
            continue;
        };
        if event.name() != event_type {
            return Err(mistake(
                event_type,
                1,
                format!(
                    "`{event_type}` is an old name of `{}`: register its upcasters under `{}`",
                    event.name(),
                    event.name()
                ),
            ));
        }
        if event.is_declared() {
            return Err(mistake(
                event_type,
                event.version(),
                format!(
                    "the code declares schema version {} of `{event_type}` and its upcasters; the run-time upcasters lift it too: keep the chain in one place (`#[upcast]` functions in the `#[aggregate]` impl block)",
                    event.version()
                ),
            ));
        }
    }
    Ok(())
}
