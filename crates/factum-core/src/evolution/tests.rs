//! The evolution of a hand-written aggregate that declares one: `added` at
//! schema version 3, once called `incremented`, and `reset`, retired.
//!
//! Version 1 of `added` was `{"by": n}`; version 2 renamed it `amount`;
//! version 3 counts in cents.

use serde_json::{Value, json};

use super::{Decoded, EventUpcaster, EventVersion, Evolution, UpcastError, check, current_version, decode};
use crate::__private::AggregateState;
use crate::{
    Aggregate, ApplyError, DecodeError, DomainEvent, Error, NewEvent, Payload, RecordedEvent, StreamId,
    Upcasters,
};

#[derive(Debug, Default)]
struct Ledger {
    id: String,
    cents: i64,
    state: AggregateState<Ledger>,
}

#[derive(Clone, Debug, PartialEq)]
enum LedgerEvent {
    Created { id: String },
    Added { amount: i64 },
}

impl DomainEvent for LedgerEvent {
    const EVENT_TYPES: &'static [&'static str] = &["created", "added"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Added { .. } => "added",
        }
    }

    fn to_payload(&self) -> Result<Payload, serde_json::Error> {
        match self {
            Self::Created { id } => Payload::encode(&json!({ "id": id })),
            Self::Added { amount } => Payload::encode(&json!({ "amount": amount })),
        }
    }

    fn from_payload(event_type: &str, payload: &Payload) -> Result<Self, DecodeError> {
        Self::from_value(event_type, payload.to_value()?)
    }

    fn from_value(event_type: &str, payload: Value) -> Result<Self, DecodeError> {
        let field = |name: &str| payload.get(name).cloned().ok_or(DecodeError::UnknownEventType);
        match event_type {
            "created" => Ok(Self::Created {
                id: serde_json::from_value(field("id")?)?,
            }),
            "added" | "incremented" => Ok(Self::Added {
                amount: serde_json::from_value(field("amount")?)?,
            }),
            _ => Err(DecodeError::UnknownEventType),
        }
    }
}

fn renamed(mut payload: Value) -> Result<Value, UpcastError> {
    let by = payload
        .as_object_mut()
        .and_then(|fields| fields.remove("by"))
        .ok_or("`by` is missing")?;
    payload["amount"] = by;
    Ok(payload)
}

fn in_cents(mut payload: Value) -> Result<Value, UpcastError> {
    let amount = payload["amount"].as_i64().ok_or("`amount` is not a number")?;
    payload["amount"] = json!(amount * 100);
    Ok(payload)
}

impl Aggregate for Ledger {
    const TYPE: &'static str = "Ledger";
    const EVOLUTION: Evolution = Evolution::new(
        &[
            EventVersion::new("created", 1, false, &[]),
            EventVersion::new("added", 3, true, &["incremented"]),
        ],
        &["reset"],
        &[
            EventUpcaster::new("added", 1, renamed),
            EventUpcaster::new("added", 2, in_cents),
        ],
        1,
        &[],
    );
    type Id = String;
    type Event = LedgerEvent;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn from_first_event(event: LedgerEvent) -> Result<Self, ApplyError> {
        match event {
            LedgerEvent::Created { id } => Ok(Self {
                id,
                ..Self::default()
            }),
            LedgerEvent::Added { .. } => Err(ApplyError::new("`created` first")),
        }
    }

    fn apply(&mut self, event: LedgerEvent) -> Result<(), ApplyError> {
        if let LedgerEvent::Added { amount } = event {
            self.cents += amount;
        }
        Ok(())
    }

    fn state(&self) -> &AggregateState<Self> {
        &self.state
    }

    fn state_mut(&mut self) -> &mut AggregateState<Self> {
        &mut self.state
    }
}

fn stored(event_type: &str, schema_version: u32, payload: Value) -> RecordedEvent {
    NewEvent::new(event_type, Payload::from(payload))
        .with_schema_version(schema_version)
        .recorded(StreamId::new("Ledger", "l-1"), 2, 7)
}

fn decoded(event: &RecordedEvent) -> Result<Option<LedgerEvent>, Error> {
    match decode::<Ledger>(event, &Upcasters::new())? {
        Decoded::Event(event) => Ok(Some(event)),
        Decoded::Retired => Ok(None),
    }
}

#[test]
fn old_versions_are_lifted_step_by_step() {
    let event = stored("added", 1, json!({ "by": 4 }));
    assert_eq!(decoded(&event).unwrap(), Some(LedgerEvent::Added { amount: 400 }));
    let event = stored("added", 2, json!({ "amount": 4 }));
    assert_eq!(decoded(&event).unwrap(), Some(LedgerEvent::Added { amount: 400 }));
    let event = stored("added", 3, json!({ "amount": 4 }));
    assert_eq!(decoded(&event).unwrap(), Some(LedgerEvent::Added { amount: 4 }));
}

#[test]
fn old_names_are_read_as_the_current_one() {
    let event = stored("incremented", 1, json!({ "by": 2 }));
    assert_eq!(decoded(&event).unwrap(), Some(LedgerEvent::Added { amount: 200 }));
}

#[test]
fn retired_types_are_skipped() {
    assert_eq!(decoded(&stored("reset", 1, json!({}))).unwrap(), None);
}

#[test]
fn a_newer_schema_version_is_an_error_naming_both_versions() {
    match decoded(&stored("added", 4, json!({ "amount": 1 }))) {
        Err(Error::SchemaTooNew {
            stream,
            version,
            event_type,
            schema_version,
            current_version,
        }) => {
            assert_eq!(stream, StreamId::new("Ledger", "l-1"));
            assert_eq!(
                (version, event_type.as_str(), schema_version, current_version),
                (2, "added", 4, 3)
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn an_unknown_type_is_unknown_whatever_its_version() {
    assert!(matches!(
        decoded(&stored("bogus", 5, json!({}))),
        Err(Error::UnknownEventType { .. })
    ));
}

#[test]
fn a_failing_upcaster_is_an_error_with_its_message() {
    match decoded(&stored("added", 1, json!({ "amount": 1 }))) {
        Err(Error::Upcast {
            event_type,
            schema_version,
            current_version,
            reason,
            ..
        }) => {
            assert_eq!(
                (event_type.as_str(), schema_version, current_version),
                ("added", 1, 3)
            );
            assert!(reason.contains("from schema version 1 to 2"), "{reason}");
            assert!(reason.contains("`by` is missing"), "{reason}");
        }
        other => panic!("expected Upcast, got {other:?}"),
    }
}

#[test]
fn new_events_are_written_at_the_declared_version() {
    let registry = Upcasters::new();
    assert_eq!(current_version::<Ledger>("added", &registry), 3);
    assert_eq!(current_version::<Ledger>("created", &registry), 1);
}

fn evolution_error(upcasters: &Upcasters) -> (String, u32, String) {
    match check::<Ledger>(upcasters) {
        Err(Error::Evolution {
            aggregate_type: "Ledger",
            event_type,
            schema_version,
            reason,
        }) => (event_type, schema_version, reason),
        other => panic!("expected an evolution error, got {other:?}"),
    }
}

#[test]
fn the_registry_is_checked_against_the_declared_evolution() {
    assert!(check::<Ledger>(&Upcasters::new()).is_ok());
    let other_producer = Upcasters::new().register("audited", 1, Ok);
    assert!(check::<Ledger>(&other_producer).is_ok());

    let gap = Upcasters::new().register("audited", 2, Ok);
    let (event_type, schema_version, reason) = evolution_error(&gap);
    assert_eq!((event_type.as_str(), schema_version), ("audited", 1));
    assert!(reason.contains("Upcasters::register(\"audited\", 1"), "{reason}");

    let both = Upcasters::new().register("added", 1, Ok);
    let (event_type, schema_version, reason) = evolution_error(&both);
    assert_eq!((event_type.as_str(), schema_version), ("added", 3));
    assert!(reason.contains("keep the chain in one place"), "{reason}");

    let old_name = Upcasters::new().register("incremented", 1, Ok);
    let (_, _, reason) = evolution_error(&old_name);
    assert!(reason.contains("old name of `added`"), "{reason}");
}

#[test]
fn a_plain_aggregate_reads_events_at_version_1_directly() {
    assert!(Evolution::NONE.is_plain());
    assert!(!Ledger::EVOLUTION.is_plain());
    assert_eq!(
        Ledger::EVOLUTION.event("incremented").map(EventVersion::name),
        Some("added")
    );
    assert!(Ledger::EVOLUTION.is_retired("reset"));
}
