//! The rules every event store shares, written once: what a retried append
//! returns, how metadata and numbers cross into a database and back, how a
//! replay checks versions, and how dead letters become rows.
//!
//! For backends (factum-sqlite, factum-postgres, the in-memory store); not
//! a stable API, and hidden from the documentation for that reason.

mod append;
mod atomic;
mod dead_letter;
mod outbox;
mod read;
mod stored;
mod tenant;

pub use crate::subscription::{PollingSubscription, SubscriptionOptions};
pub use append::{check_distinct_ids, first_repeated_id, original_append, repeated_event_id};
pub use atomic::{check_batches, first_conflict, original_append_many};
pub use dead_letter::{DeadLetterRow, Failure, dead_letter_from_row, letter_tenant};
pub use outbox::{ClaimedEntry, OutcomeRun, hand_out, outcome_runs};
pub use read::{EventTypes, check_next_version, check_version};
pub use stored::{
    checkpoint_from_stored, checkpoint_moved, checkpoint_to_stored, corrupt, from_stored, metadata_from_json,
    metadata_to_json, positive_from_stored, query_bound, to_stored,
};
pub use tenant::{ADMIN_SCOPE, check_events, hidden_stream, home, narrow, projection_scope, taken_elsewhere};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::{Error, Metadata, NewEvent, Payload, RecordedEvent, StreamId};

    fn stream() -> StreamId {
        StreamId::new("Counter", "1")
    }

    #[test]
    fn a_negative_stored_number_is_corrupt_not_zero() {
        let error = from_stored::<u64, i64>(-1, "version", &stream(), 3).unwrap_err();
        assert!(matches!(error, Error::Corrupt { version: 3, .. }), "{error}");
        assert_eq!(from_stored::<u64, i64>(7, "version", &stream(), 3).unwrap(), 7);
        assert!(positive_from_stored(0, "position", &stream(), 0).is_err());
    }

    #[test]
    fn a_negative_checkpoint_is_an_error_not_a_fresh_start() {
        assert_eq!(checkpoint_from_stored("p", None).unwrap(), 0);
        assert_eq!(checkpoint_from_stored("p", Some(9)).unwrap(), 9);
        assert!(matches!(
            checkpoint_from_stored("p", Some(-1)),
            Err(Error::Checkpoint { .. })
        ));
        assert!(matches!(
            checkpoint_to_stored("p", u64::MAX),
            Err(Error::Checkpoint { .. })
        ));
    }

    #[test]
    fn a_number_too_large_to_store_is_refused() {
        let error = to_stored::<i64, u64>(u64::MAX, "version", &stream()).unwrap_err();
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error}");
        assert_eq!(query_bound(u64::MAX), i64::MAX);
    }

    #[test]
    fn a_repeated_id_is_found() {
        let event = NewEvent::new("created", Payload::parse("{}").unwrap());
        let other = NewEvent::new("created", Payload::parse("{}").unwrap());
        assert_eq!(first_repeated_id(&[event.clone(), other.clone()]), None);
        let repeated = [event.clone(), other, event.clone()];
        assert_eq!(first_repeated_id(&repeated), Some(event.event_id));
        assert!(check_distinct_ids(&stream(), &repeated).is_err());
    }

    #[test]
    fn metadata_round_trips_and_empty_is_null() {
        let acme = crate::Tenant::new("acme").unwrap();
        let empty = Metadata::default();
        assert_eq!(metadata_to_json(&stream(), Uuid::nil(), &empty).unwrap(), None);
        let only_tenant = Metadata::default().with_tenant(acme.clone());
        assert_eq!(
            metadata_to_json(&stream(), Uuid::nil(), &only_tenant).unwrap(),
            None,
            "the tenant is stored apart"
        );
        let metadata = Metadata::default()
            .with_correlation_id(Uuid::now_v7())
            .with("user", "ada");
        let json = metadata_to_json(&stream(), Uuid::nil(), &metadata)
            .unwrap()
            .unwrap();
        assert!(!json.contains("tenant"), "{json}");
        assert_eq!(
            metadata_from_json(&stream(), 1, Some(json.as_bytes()), &acme).unwrap(),
            metadata.with_tenant(acme.clone())
        );
        assert!(metadata_from_json(&stream(), 1, Some(b"{"), &acme).is_err());
    }

    #[test]
    fn a_stored_tenant_key_is_where_the_event_lives_not_what_it_says() {
        let acme = crate::Tenant::new("acme").unwrap();
        let old = br#"{"tenant":"Acme Corp","user":{"a":1}}"#;
        let read = metadata_from_json(&stream(), 1, Some(old), &acme).unwrap();
        assert_eq!(read.tenant, Some(acme));
        assert_eq!(read.user.get("a"), Some(&serde_json::json!(1)));
        let none = metadata_from_json(&stream(), 1, None, &crate::Tenant::DEFAULT).unwrap();
        assert_eq!(none.tenant, Some(crate::Tenant::DEFAULT));
    }

    #[test]
    fn only_the_next_version_of_the_same_stream_follows() {
        let recorded = |stream: StreamId, version: u64| RecordedEvent {
            event_id: Uuid::now_v7(),
            stream,
            version,
            position: version,
            event_type: Arc::from("added"),
            schema_version: 1,
            payload: Payload::parse("{}").unwrap(),
            metadata: Metadata::default(),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(check_next_version(&stream(), 2, &recorded(stream(), 2)).is_ok());
        let gap = check_next_version(&stream(), 2, &recorded(stream(), 3)).unwrap_err();
        assert!(matches!(gap, Error::Corrupt { version: 2, .. }), "{gap}");
        let other =
            check_next_version(&stream(), 2, &recorded(StreamId::new("Counter", "2"), 2)).unwrap_err();
        assert!(matches!(other, Error::Corrupt { version: 2, .. }), "{other}");
    }

    #[test]
    fn event_types_are_shared() {
        let mut types = EventTypes::default();
        let first = types.intern("created");
        assert!(Arc::ptr_eq(&first, &types.intern("created")));
        for number in 0..100 {
            assert_eq!(&*types.intern(&number.to_string()), number.to_string());
        }
    }

    #[test]
    fn stored_event_types_are_shared_and_checked_once() {
        let mut types = EventTypes::default();
        let first = types.intern_utf8(b"created").unwrap();
        assert!(Arc::ptr_eq(&first, &types.intern_utf8(b"created").unwrap()));
        assert!(Arc::ptr_eq(&first, &types.intern("created")));
        assert_eq!(&*types.intern_utf8("généré".as_bytes()).unwrap(), "généré");
        assert!(types.intern_utf8(b"cr\xffated").is_err());
    }
}
