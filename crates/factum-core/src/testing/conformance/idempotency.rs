//! The idempotency rule by event id, with its exact errors: a batch that
//! mixes stored events with new ones is [`Error::InvalidRequest`], a stored
//! id with other content is [`Error::DuplicateEventId`], and neither writes
//! anything. Every backend answers alike, whatever the expected version.

use serde_json::json;

use super::{added, append, events, read_everything, read_stream, stream};
use crate::{AppendResult, Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};

/// The expected versions an append to a stream at version 2 can carry:
/// admitted ones, and stale ones (a retry carries the first attempt's).
const EXPECTATIONS: [ExpectedVersion; 4] = [
    ExpectedVersion::Any,
    ExpectedVersion::Exact(2),
    ExpectedVersion::NoStream,
    ExpectedVersion::Exact(1),
];

/// Checks that `stream` still holds exactly `stored`, and the log nothing else.
async fn holds_only<S: EventStore>(store: &S, stream: &StreamId, stored: &[NewEvent]) {
    let ids: Vec<_> = read_stream(store, stream, 1)
        .await
        .iter()
        .map(|event| event.event_id)
        .collect();
    let expected: Vec<_> = stored.iter().map(|event| event.event_id).collect();
    assert_eq!(ids, expected, "a rejected append changed {stream}");
    assert_eq!(
        read_everything(store).await.len(),
        stored.len(),
        "a rejected append reached $all"
    );
}

/// A batch that repeats a stored event (same content) beside new ones is
/// neither a retry nor a new append: [`Error::InvalidRequest`], in either
/// order and with any expected version, and nothing is written (the new
/// ids stay free).
pub async fn mixed_batch_of_stored_and_new_events_is_invalid<S: EventStore>(store: S) {
    let stream = stream("mixed");
    let stored = events(2);
    append(&store, &stream, ExpectedVersion::NoStream, stored.clone()).await;
    let fresh = added(9);
    for expected in EXPECTATIONS {
        for batch in [
            vec![stored[1].clone(), fresh.clone()],
            vec![fresh.clone(), stored[0].clone()],
            vec![stored[0].clone(), stored[1].clone(), fresh.clone()],
        ] {
            let result = store.append(&stream, expected, batch).await;
            assert!(
                matches!(&result, Err(Error::InvalidRequest { stream: reported, .. }) if *reported == stream),
                "stored and new events with {expected}: expected InvalidRequest, got {result:?}"
            );
        }
    }
    holds_only(&store, &stream, &stored).await;
    let later = append(&store, &stream, ExpectedVersion::Exact(2), vec![fresh]).await;
    assert_eq!(later.stream_version, 3, "a rejected batch kept its new id");
}

/// A stored event id with other content (payload, type or metadata), or in
/// another stream, is [`Error::DuplicateEventId`] naming both streams and
/// the id: alone, beside new events, and with any expected version.
pub async fn stored_id_with_other_content_is_a_duplicate<S: EventStore>(store: S) {
    let stream = stream("duplicate");
    let original = added(1);
    let stored = vec![original.clone(), added(2)];
    append(&store, &stream, ExpectedVersion::NoStream, stored.clone()).await;
    let mut payload = original.clone();
    payload.payload = Payload::from(json!({ "amount": 2 }));
    let mut event_type = original.clone();
    event_type.event_type = "removed".into();
    let metadata = original
        .clone()
        .with_metadata(Metadata::default().with("note", "changed"));
    for changed in [payload, event_type, metadata] {
        for expected in EXPECTATIONS {
            for batch in [
                vec![changed.clone()],
                vec![added(3), changed.clone()],
                vec![changed.clone(), added(3)],
            ] {
                let result = store.append(&stream, expected, batch).await;
                assert_duplicate(&result, &stream, &stream, &original);
            }
        }
    }
    let other = self::stream("duplicate-other");
    for batch in [vec![original.clone()], vec![added(3), original.clone()]] {
        let result = store.append(&other, ExpectedVersion::Any, batch).await;
        assert_duplicate(&result, &other, &stream, &original);
    }
    holds_only(&store, &stream, &stored).await;
    assert_eq!(store.stream_version(&other).await.ok(), Some(0));
}

#[track_caller]
fn assert_duplicate(
    result: &Result<AppendResult, Error>,
    stream: &StreamId,
    existing: &StreamId,
    original: &NewEvent,
) {
    match result {
        Err(Error::DuplicateEventId {
            stream: reported,
            existing_stream,
            event_id,
        }) => {
            assert_eq!(reported, stream, "the stream appended to");
            assert_eq!(existing_stream, existing, "the stream that holds the id");
            assert_eq!(*event_id, original.event_id);
        }
        other => panic!("a stored id with other content: expected DuplicateEventId, got {other:?}"),
    }
}
