//! Reading stored data with the evolution applied: old names, retired
//! types, old schema versions lifted once as a `Value` and decoded from it.

use std::cmp::Ordering;

use serde_json::Value;

use crate::aggregate::DecodeError;
use crate::{Aggregate, DomainEvent, Error, Payload, RecordedEvent, Upcasters};

/// A stored event read into the aggregate's terms.
pub(crate) enum Decoded<E> {
    /// An event of the aggregate, at its current schema.
    Event(E),
    /// An event of a type the aggregate retired: replay skips it.
    Retired,
}

/// The schema version new `event_type` events of `A` are written at: the
/// declared one, or one above the run-time registry's last step.
pub(crate) fn current_version<A: Aggregate>(event_type: &str, upcasters: &Upcasters) -> u32 {
    let declared = A::EVOLUTION.event(event_type).map_or(1, |event| event.version());
    declared.max(upcasters.current_version(event_type))
}

/// Turns a stored event into the aggregate's event enum: under its current
/// name, lifted to its current schema version first.
pub(crate) fn decode<A: Aggregate>(
    recorded: &RecordedEvent,
    upcasters: &Upcasters,
) -> Result<Decoded<A::Event>, Error> {
    // Most aggregates declare nothing and most events are at version 1:
    // straight to the generated decoder, without a single look-up.
    if A::EVOLUTION.is_plain() && upcasters.is_empty() && recorded.schema_version <= 1 {
        return from_payload::<A>(recorded, &recorded.event_type).map(Decoded::Event);
    }
    let evolution = &A::EVOLUTION;
    let stored_type: &str = &recorded.event_type;
    if evolution.is_retired(stored_type) {
        return Ok(Decoded::Retired);
    }
    let declared = evolution.event(stored_type);
    if declared.is_none() && !evolution.events().is_empty() {
        // The generated list is complete: a type outside it is unknown, at
        // whatever schema version it was stored.
        return Err(unknown_event_type(recorded));
    }
    let name = declared.map_or(stored_type, |event| event.name());
    let current = declared
        .map_or(1, |event| event.version())
        .max(upcasters.current_version(name));
    // Schema versions start at 1; a 0 from a hand-made event reads as 1.
    let stored = recorded.schema_version.max(1);
    match stored.cmp(&current) {
        Ordering::Equal => from_payload::<A>(recorded, name).map(Decoded::Event),
        Ordering::Greater => Err(Error::SchemaTooNew {
            stream: recorded.stream.clone(),
            version: recorded.version,
            event_type: recorded.event_type.to_string(),
            schema_version: recorded.schema_version,
            current_version: current,
        }),
        Ordering::Less => {
            let value = lift::<A>(recorded, name, stored, current, upcasters)?;
            A::Event::from_value(name, value)
                .map(Decoded::Event)
                .map_err(|error| decode_error(recorded, error))
        }
    }
}

/// Lifts the payload of `recorded` from schema version `stored` to
/// `current`: parsed once, each step handed the previous one's `Value`.
fn lift<A: Aggregate>(
    recorded: &RecordedEvent,
    name: &str,
    stored: u32,
    current: u32,
    upcasters: &Upcasters,
) -> Result<Value, Error> {
    let upcast_error = |reason: String| Error::Upcast {
        stream: recorded.stream.clone(),
        version: recorded.version,
        event_type: recorded.event_type.to_string(),
        schema_version: recorded.schema_version,
        current_version: current,
        reason,
    };
    let mut value = recorded
        .payload
        .to_value()
        .map_err(|source| serialization(recorded, source))?;
    for from in stored..current {
        let lifted = match A::EVOLUTION.upcaster(name, from) {
            Some(step) => step(value).map_err(|error| error.message().to_owned()),
            None => match upcasters.step(name, from) {
                Some(step) => step(value),
                // Checked when the repository was built; reachable through
                // `RecordedEvent::decode_with` and an incomplete registry.
                None => {
                    return Err(upcast_error(format!(
                        "no upcaster lifts it from schema version {from}"
                    )));
                }
            },
        };
        value = lifted.map_err(|reason| {
            upcast_error(format!(
                "the upcaster from schema version {from} to {} failed: {reason}",
                from + 1
            ))
        })?;
    }
    Ok(value)
}

/// The snapshot state stored at `stored_version`, lifted to the aggregate's
/// current snapshot version by its declared upcasters; `None` when no chain
/// leads there (the snapshot is then ignored and the aggregate replayed).
pub(crate) fn lift_snapshot<A: Aggregate>(
    stored_version: u32,
    state: &Payload,
) -> Option<Result<Value, String>> {
    let current = A::EVOLUTION.snapshot_version();
    let declared = A::EVOLUTION.snapshot_upcasters().len();
    // A chain longer than the declared upcasters has a gap: no need to walk
    // it (a derived version may be billions above a stored one).
    if stored_version >= current || (current - stored_version) as usize > declared {
        return None;
    }
    let steps: Option<Vec<_>> = (stored_version..current)
        .map(|from| A::EVOLUTION.snapshot_upcaster(from))
        .collect();
    let steps = steps?;
    let lifted = state
        .to_value()
        .map_err(|error| error.to_string())
        .and_then(|value| {
            steps
                .iter()
                .zip(stored_version..)
                .try_fold(value, |value, (step, from)| {
                    step(value).map_err(|error| {
                        format!(
                            "the snapshot upcaster from version {from} to {} failed: {error}",
                            from + 1
                        )
                    })
                })
        });
    Some(lifted)
}

fn from_payload<A: Aggregate>(recorded: &RecordedEvent, name: &str) -> Result<A::Event, Error> {
    A::Event::from_payload(name, &recorded.payload).map_err(|error| decode_error(recorded, error))
}

fn decode_error(recorded: &RecordedEvent, error: DecodeError) -> Error {
    match error {
        DecodeError::UnknownEventType => unknown_event_type(recorded),
        DecodeError::Payload(source) => serialization(recorded, source),
    }
}

fn unknown_event_type(recorded: &RecordedEvent) -> Error {
    Error::UnknownEventType {
        stream: recorded.stream.clone(),
        version: recorded.version,
        event_type: recorded.event_type.to_string(),
    }
}

fn serialization(recorded: &RecordedEvent, source: serde_json::Error) -> Error {
    Error::Serialization {
        stream: recorded.stream.clone(),
        version: recorded.version,
        event_type: recorded.event_type.to_string(),
        source,
    }
}
