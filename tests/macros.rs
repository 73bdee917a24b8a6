//! What `#[aggregate]` and `#[event]` generate, checked at run time: the
//! event enum and its stored form, recording, replay, and the errors a
//! damaged history produces.

#![allow(missing_docs)]

use std::collections::HashSet;

use factum::prelude::*;
use factum::{ApplyError, DecodeError, ExpectedVersion, NewEvent, Payload};
use serde::{Deserialize, Serialize};
use serde_json::json;

factum::id!(AccountId);

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("insufficient funds: balance {balance}, asked for {amount}")]
    InsufficientFunds { balance: i64, amount: i64 },
    #[error("the account is closed")]
    Closed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
}

#[aggregate]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub owner: String,
    pub balance: i64,
    pub closed: bool,
    pub tags: Vec<String>,
    pub address: Option<Address>,
}

#[aggregate]
impl Account {
    /// Puts money in.
    #[event("money_deposited")]
    pub fn deposit(&mut self, amount: i64, reference: Option<String>) {
        let _ = reference;
        self.balance += amount;
    }

    #[event("money-withdrawn")]
    pub fn withdraw(&mut self, amount: i64) -> Result<(), AccountError> {
        if self.closed {
            return Err(AccountError::Closed);
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        self.balance -= amount;
        Ok(())
    }

    #[event("account.closed")]
    pub fn close(&mut self) -> Result<(), AccountError> {
        if self.closed {
            return Err(AccountError::Closed);
        }
        self.closed = true;
        Ok(())
    }

    #[event("tagged")]
    pub fn tag(&mut self, mut tag: String, also: Vec<String>) {
        // The event keeps the argument as passed; the body may change its copy.
        tag.make_ascii_lowercase();
        self.tags.push(tag);
        self.tags.extend(also);
    }

    #[event("moved")]
    pub fn move_to(&mut self, address: Address) {
        self.address = Some(address);
    }

    /// A command: not an event, passes through untouched.
    pub fn transfer_out(&mut self, amount: i64) -> Result<(), AccountError> {
        self.withdraw(amount)?;
        self.tag("transfer".into(), Vec::new());
        Ok(())
    }
}

fn opened(id: AccountId) -> Account {
    Account::create(id, "ann".into(), 0, false, Vec::new(), None)
}

fn created_event(id: AccountId) -> AccountEvent {
    AccountEvent::Created(AccountCreated {
        id,
        owner: "ann".into(),
        balance: 0,
        closed: false,
        tags: Vec::new(),
        address: None,
    })
}

#[test]
fn the_enum_has_a_variant_per_event_with_its_stored_name() {
    assert_eq!(
        AccountEvent::EVENT_TYPES,
        [
            "created",
            "money_deposited",
            "money-withdrawn",
            "account.closed",
            "tagged",
            "moved"
        ]
    );
    let id = AccountId::generate();
    let events = [
        (created_event(id), "created"),
        (
            AccountEvent::MoneyDeposited {
                amount: 5,
                reference: Some("r1".into()),
            },
            "money_deposited",
        ),
        (AccountEvent::MoneyWithdrawn { amount: 2 }, "money-withdrawn"),
        (AccountEvent::AccountClosed, "account.closed"),
        (
            AccountEvent::Tagged {
                tag: "VIP".into(),
                also: vec!["x".into()],
            },
            "tagged",
        ),
    ];
    for (event, event_type) in events {
        assert_eq!(event.event_type(), event_type);
        let json = serde_json::to_value(&event).expect("events serialize");
        assert_eq!(json["event_type"], event_type);
        let back: AccountEvent = serde_json::from_value(json).expect("events deserialize");
        assert_eq!(back, event);
    }
    let json = serde_json::to_value(AccountEvent::MoneyDeposited {
        amount: 5,
        reference: None,
    })
    .expect("events serialize");
    assert_eq!(
        json,
        json!({"event_type": "money_deposited", "payload": {"amount": 5, "reference": null}})
    );
    assert_eq!(
        AccountEvent::from(AccountCreated {
            id,
            owner: "bob".into(),
            balance: 1,
            closed: false,
            tags: Vec::new(),
            address: None,
        })
        .event_type(),
        "created"
    );
}

#[test]
fn payloads_are_json_objects_of_the_fields_and_round_trip() {
    let id = AccountId::generate();
    let cases = [
        (
            created_event(id),
            json!({"id": id.to_string(), "owner": "ann", "balance": 0, "closed": false, "tags": [], "address": null}),
        ),
        (
            AccountEvent::MoneyDeposited {
                amount: 7,
                reference: Some("r".into()),
            },
            json!({"amount": 7, "reference": "r"}),
        ),
        (AccountEvent::MoneyWithdrawn { amount: 3 }, json!({"amount": 3})),
        (AccountEvent::AccountClosed, json!({})),
        (
            AccountEvent::Tagged {
                tag: "a".into(),
                also: vec!["b".into(), "c".into()],
            },
            json!({"tag": "a", "also": ["b", "c"]}),
        ),
        (
            AccountEvent::Moved {
                address: Address {
                    street: "1 Main St".into(),
                    city: "Springfield".into(),
                },
            },
            json!({"address": {"street": "1 Main St", "city": "Springfield"}}),
        ),
    ];
    for (event, expected) in cases {
        let payload = event.to_payload().expect("payload");
        assert_eq!(payload.to_value().expect("payload is JSON"), expected);
        let back = AccountEvent::from_payload(event.event_type(), &payload).expect("decodes");
        assert_eq!(back, event);
    }
}

#[test]
fn decoding_rejects_unknown_types_and_bad_payloads_without_panicking() {
    let payload = Payload::parse(r#"{"amount": 1}"#).expect("JSON");
    assert!(matches!(
        AccountEvent::from_payload("exploded", &payload),
        Err(DecodeError::UnknownEventType)
    ));
    for bad in [r#"{"amount": "lots"}"#, r#"{}"#, "[1, 2]", "not json", "", "null"] {
        let payload = Payload::from_stored(bad);
        assert!(
            matches!(
                AccountEvent::from_payload("money-withdrawn", &payload),
                Err(DecodeError::Payload(_))
            ),
            "{bad:?} must not decode"
        );
    }
    assert!(matches!(
        AccountEvent::from_payload("account.closed", &Payload::from_stored("{")),
        Err(DecodeError::Payload(_))
    ));
    // Unknown fields are ignored: old readers accept newer payloads.
    let extra = Payload::parse(r#"{"amount": 1, "currency": "EUR"}"#).expect("JSON");
    assert_eq!(
        AccountEvent::from_payload("money-withdrawn", &extra).expect("decodes"),
        AccountEvent::MoneyWithdrawn { amount: 1 }
    );
}

#[test]
fn create_records_created_with_every_field() {
    let id = AccountId::generate();
    let account = opened(id);
    assert_eq!(account.id, id);
    assert_eq!(account.id(), id);
    assert_eq!(account.version(), 1);
    assert_eq!(account.pending_events(), [created_event(id)]);
    assert_eq!(<Account as Aggregate>::TYPE, "Account");
}

#[test]
fn wrappers_record_only_when_the_body_succeeds() {
    let mut account = opened(AccountId::generate());
    account.deposit(10, Some("salary".into()));
    assert_eq!(account.balance, 10);
    assert_eq!(account.version(), 2);

    let refused = account.withdraw(50);
    assert_eq!(
        refused,
        Err(AccountError::InsufficientFunds {
            balance: 10,
            amount: 50
        })
    );
    assert_eq!(account.balance, 10);
    assert_eq!(account.version(), 2, "a failed event records nothing");

    assert_eq!(account.transfer_out(4), Ok(()));
    account.tag("VIP".into(), vec!["gold".into()]);
    assert_eq!(account.close(), Ok(()));
    assert_eq!(account.close(), Err(AccountError::Closed));
    assert_eq!(account.withdraw(1), Err(AccountError::Closed));

    assert_eq!(account.tags, ["transfer", "vip", "gold"]);
    assert_eq!(
        account.pending_events()[1..],
        [
            AccountEvent::MoneyDeposited {
                amount: 10,
                reference: Some("salary".into())
            },
            AccountEvent::MoneyWithdrawn { amount: 4 },
            AccountEvent::Tagged {
                tag: "transfer".into(),
                also: Vec::new()
            },
            AccountEvent::Tagged {
                tag: "VIP".into(),
                also: vec!["gold".into()]
            },
            AccountEvent::AccountClosed,
        ]
    );
    assert_eq!(account.version(), 6);
}

#[test]
fn replaying_through_apply_rebuilds_the_state_and_records_nothing() {
    let mut account = opened(AccountId::generate());
    account.deposit(10, None);
    let _ = account.withdraw(99);
    account.withdraw(3).expect("funds suffice");
    account.tag("VIP".into(), vec!["a".into()]);
    account.move_to(Address {
        street: "s".into(),
        city: "c".into(),
    });
    account.close().expect("open");

    let mut history = account.pending_events().to_vec().into_iter();
    let first = history.next().expect("created");
    let mut replayed = Account::from_first_event(first).expect("created starts it");
    for event in history {
        replayed.apply(event).expect("history replays");
    }
    assert_eq!(
        replayed, account,
        "derived PartialEq ignores the bookkeeping field"
    );
    assert_eq!(replayed.tags, ["vip", "a"]);
    assert!(replayed.pending_events().is_empty(), "replay records nothing");
    assert_eq!(
        replayed.version(),
        0,
        "the repository sets the version after replay"
    );
}

#[test]
fn decode_errors_are_std_errors_that_keep_their_cause() {
    let payload = Payload::parse(r#"{"amount": 1}"#).expect("JSON");
    let unknown = AccountEvent::from_payload("exploded", &payload).expect_err("unknown type");
    assert_eq!(
        unknown.to_string(),
        "the event enum has no variant of this event type"
    );
    assert!(std::error::Error::source(&unknown).is_none());
    let bad = AccountEvent::from_payload("money-withdrawn", &Payload::from_stored(r#"{"amount": "lots"}"#))
        .expect_err("bad payload");
    assert!(
        bad.to_string()
            .starts_with("the payload does not match the event's fields: "),
        "{bad}"
    );
    let cause = std::error::Error::source(&bad).expect("the serde_json error");
    assert!(cause.is::<serde_json::Error>());
}

#[test]
fn apply_keeps_the_error_of_the_body_whole() {
    let mut account = opened(AccountId::generate());
    let error = account
        .apply(AccountEvent::MoneyWithdrawn { amount: 1 })
        .expect_err("no funds");
    let expected = AccountError::InsufficientFunds {
        balance: 0,
        amount: 1,
    };
    assert_eq!(error.to_string(), expected.to_string());
    assert_eq!(
        error
            .get_ref()
            .and_then(|body| body.downcast_ref::<AccountError>()),
        Some(&expected)
    );
    let body = error.into_inner().expect("the body's error");
    assert_eq!(body.downcast::<AccountError>().ok().as_deref(), Some(&expected));
}

#[test]
fn apply_rejects_a_history_that_does_not_start_with_created() {
    let error = Account::from_first_event(AccountEvent::MoneyWithdrawn { amount: 1 })
        .expect_err("needs created first");
    assert_eq!(
        error.message(),
        "the first event of a stream must be `created`, found `money-withdrawn`"
    );
    let mut account = opened(AccountId::generate());
    let error = account
        .apply(created_event(AccountId::generate()))
        .expect_err("created only once");
    assert!(error.message().contains("`created`"), "{}", error.message());
    let error = account
        .apply(AccountEvent::MoneyWithdrawn { amount: 1 })
        .expect_err("no funds");
    assert_eq!(error.message(), "insufficient funds: balance 0, asked for 1");
}

async fn stored(store: &InMemoryEventStore, id: AccountId, events: &[(&str, &str)]) {
    let stream = StreamId::new("Account", id.to_string());
    let events = events
        .iter()
        .map(|(event_type, payload)| NewEvent::new(*event_type, Payload::from_stored(*payload)))
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .expect("append");
}

fn created_json(id: AccountId) -> String {
    json!({"id": id, "owner": "ann", "balance": 0, "closed": false, "tags": [], "address": null}).to_string()
}

#[tokio::test]
async fn a_body_that_fails_on_replay_is_a_replay_error_naming_the_event() {
    let store = InMemoryEventStore::new();
    let app = Application::<Account, _>::new(store.clone());
    let id = AccountId::generate();
    stored(
        &store,
        id,
        &[
            ("created", &created_json(id)),
            ("money_deposited", r#"{"amount": 5, "reference": null}"#),
            ("money-withdrawn", r#"{"amount": 9}"#),
        ],
    )
    .await;
    let error = app.get(id).await.expect_err("the withdrawal cannot be replayed");
    assert_eq!(
        error.to_string(),
        format!(
            "replaying `money-withdrawn` at version 3 of stream Account-{id} failed: insufficient funds: balance 5, asked for 9"
        )
    );
    // The body's own error is the source, whole: it downcasts to its type.
    let source = std::error::Error::source(&error).expect("a replay error has a source");
    assert_eq!(
        source.downcast_ref::<AccountError>(),
        Some(&AccountError::InsufficientFunds {
            balance: 5,
            amount: 9
        })
    );
    match error {
        Error::Replay {
            stream,
            version,
            event_type,
            source,
        } => {
            assert_eq!(stream, StreamId::new("Account", id.to_string()));
            assert_eq!(version, 3);
            assert_eq!(event_type, "money-withdrawn");
            let body = source
                .downcast::<AccountError>()
                .expect("the body's error, by value");
            assert_eq!(
                *body,
                AccountError::InsufficientFunds {
                    balance: 5,
                    amount: 9
                }
            );
        }
        other => panic!("expected Error::Replay, got {other:?}"),
    }
}

#[tokio::test]
async fn a_history_not_starting_with_created_is_a_replay_error() {
    let store = InMemoryEventStore::new();
    let app = Application::<Account, _>::new(store.clone());
    let id = AccountId::generate();
    stored(&store, id, &[("account.closed", "{}")]).await;
    match app.get(id).await {
        Err(Error::Replay { version, source, .. }) => {
            assert_eq!(version, 1);
            // No body ran: the source is factum's own `ApplyError`.
            let apply = source.downcast_ref::<ApplyError>().expect("an ApplyError");
            assert!(apply.get_ref().is_none());
            assert!(apply.message().contains("must be `created`"), "{apply}");
        }
        other => panic!("expected Error::Replay, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_stored_event_type_is_reported_with_its_version() {
    let store = InMemoryEventStore::new();
    let app = Application::<Account, _>::new(store.clone());
    let id = AccountId::generate();
    stored(&store, id, &[("created", &created_json(id)), ("exploded", "{}")]).await;
    match app.get(id).await {
        Err(Error::UnknownEventType {
            stream,
            version,
            event_type,
        }) => {
            assert_eq!(stream.aggregate_id(), id.to_string());
            assert_eq!(version, 2);
            assert_eq!(event_type, "exploded");
        }
        other => panic!("expected Error::UnknownEventType, got {other:?}"),
    }
}

#[tokio::test]
async fn a_payload_that_does_not_decode_is_a_serialization_error() {
    let store = InMemoryEventStore::new();
    let app = Application::<Account, _>::new(store.clone());
    let id = AccountId::generate();
    stored(
        &store,
        id,
        &[
            ("created", &created_json(id)),
            ("money_deposited", r#"{"amount": "lots"}"#),
        ],
    )
    .await;
    match app.get(id).await {
        Err(Error::Serialization {
            version, event_type, ..
        }) => {
            assert_eq!(version, 2);
            assert_eq!(event_type, "money_deposited");
        }
        other => panic!("expected Error::Serialization, got {other:?}"),
    }
}

#[tokio::test]
async fn saved_events_reload_and_time_travel() -> Result<(), Error> {
    let store = InMemoryEventStore::new();
    let app = Application::<Account, _>::new(store.clone());
    let id = AccountId::generate();
    let mut account = app.load_or_create(id).await?;
    assert_eq!(
        account.pending_events(),
        [AccountEvent::Created(AccountCreated {
            id,
            owner: String::new(),
            balance: 0,
            closed: false,
            tags: Vec::new(),
            address: None,
        })]
    );
    account.deposit(10, None);
    account.withdraw(4).expect("funds");
    account.tag("x".into(), Vec::new());
    app.save(&mut account).await?;
    assert!(account.pending_events().is_empty());
    assert_eq!(account.version(), 4);

    let reloaded = app.get(id).await?;
    assert_eq!(reloaded, account);
    assert_eq!(reloaded.version(), 4);
    assert!(reloaded.pending_events().is_empty());

    let after_deposit = app.get_at(id, 2).await?;
    assert_eq!(after_deposit.balance, 10);
    assert!(after_deposit.tags.is_empty());
    assert_eq!(after_deposit.version(), 2);
    assert_eq!(app.get_at(id, 1).await?.balance, 0);

    let mut again = app.load_or_create(id).await?;
    again.close().expect("open");
    app.save(&mut again).await?;
    assert!(app.get(id).await?.closed);
    Ok(())
}

/// An aggregate that derives everything: the hidden field takes no part.
#[aggregate]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub name: String,
}

#[aggregate]
impl Profile {
    #[event("renamed")]
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }
}

#[test]
fn derives_on_the_struct_ignore_the_hidden_field() {
    let mut fresh = Profile::create("p-1".into(), "Ann".into());
    let mut other = Profile::create("p-1".into(), "Bob".into());
    other.rename("Ann".into());
    assert_eq!(fresh, other, "pending events do not take part in equality");
    assert_ne!(fresh.version(), other.version());
    let hashes: HashSet<Profile> = [fresh.clone(), other.clone()].into_iter().collect();
    assert_eq!(hashes.len(), 1);

    let json = serde_json::to_value(&fresh).expect("serializes");
    assert_eq!(json, json!({"id": "p-1", "name": "Ann"}));
    let back: Profile = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, fresh);
    assert!(back.pending_events().is_empty());

    let debug = format!("{fresh:?}");
    assert!(debug.contains("name: \"Ann\""), "{debug}");

    fresh.rename("Cy".into());
    let copy = fresh.clone();
    assert_eq!(copy.pending_events(), fresh.pending_events());
    assert_eq!(Profile::default().id, "");
}

#[tokio::test]
async fn string_ids_name_the_stream() -> Result<(), Error> {
    let store = InMemoryEventStore::new();
    let app = Application::<Profile, _>::new(store.clone());
    let mut profile = app.load_or_create("user-7".to_string()).await?;
    profile.rename("Dee".into());
    app.save(&mut profile).await?;
    let stream = StreamId::new("Profile", "user-7");
    assert_eq!(store.stream_version(&stream).await?, 2);
    assert_eq!(app.get("user-7".into()).await?.name, "Dee");
    Ok(())
}
