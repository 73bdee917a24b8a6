//! Reads: a stream from a version, the global log from a position, pages,
//! the envelope as written, and stored events that no longer decode.

use super::*;

/// `read_stream` starts at the requested version; beyond the end it is empty.
pub async fn read_stream_from_a_version<S: EventStore>(store: S) {
    let stream = stream("from-version");
    append(&store, &stream, ExpectedVersion::NoStream, events(6)).await;
    let from_four: Vec<u64> = read_stream(&store, &stream, 4)
        .await
        .iter()
        .map(|event| event.version)
        .collect();
    assert_eq!(from_four, vec![4, 5, 6]);
    assert_eq!(
        read_stream(&store, &stream, 0).await.len(),
        6,
        "version 0 reads from the start"
    );
    assert!(read_stream(&store, &stream, 7).await.is_empty());
    assert!(read_stream(&store, &self::stream("unknown"), 1).await.is_empty());
}

/// `read_all(after, ..)` returns only events after `after`, so a reader can
/// resume from its last position without a duplicate.
pub async fn read_all_resumes_after_a_position_exclusively<S: EventStore>(store: S) {
    let stream = stream("resume");
    append(&store, &stream, ExpectedVersion::Any, events(10)).await;
    let all = read_everything(&store).await;
    let middle = all[4].position;
    let rest = store
        .read_all(middle, 100)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(rest, all[5..].to_vec());
    let last = all[9].position;
    assert!(
        store
            .read_all(last, 100)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty()
    );
}

/// `read_all` returns at most `limit` events, in order.
pub async fn read_all_honours_limits<S: EventStore>(store: S) {
    let stream = stream("limits");
    append(&store, &stream, ExpectedVersion::Any, events(7)).await;
    let all = read_everything(&store).await;
    let first_three = store
        .read_all(0, 3)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(first_three, all[..3].to_vec());
    assert!(
        store
            .read_all(0, 0)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .is_empty()
    );
    let many = store
        .read_all(0, 1000)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(many, all);
}

/// Every field of the envelope comes back as written, and the metadata
/// names the tenant the event lives in.
pub async fn envelope_round_trips<S: EventStore>(store: S) {
    let stream = stream("envelope");
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with("user", "ada")
        .with("attempt", 3);
    // Stores keep microseconds at least.
    let occurred_at = OffsetDateTime::from_unix_timestamp(1_700_000_000)
        .unwrap_or_else(|error| panic!("{error}"))
        + time::Duration::microseconds(123_456);
    let mut event = NewEvent::new(
        "added",
        Payload::from(json!({ "amount": 5, "note": "é ☃ \"q\"" })),
    )
    .with_metadata(metadata.clone())
    .with_schema_version(3);
    event.occurred_at = occurred_at;
    let plain = added(9);
    let result = append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![event.clone(), plain.clone()],
    )
    .await;

    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.len(), 2);
    let first = &stored[0];
    assert_eq!(first.event_id, event.event_id);
    assert_eq!(first.stream, stream);
    assert_eq!(first.aggregate_type(), "Tally");
    assert_eq!(first.version, 1);
    assert_eq!(first.position, result.positions[0]);
    assert_eq!(&*first.event_type, "added");
    assert_eq!(first.schema_version, 3);
    assert_eq!(first.payload.to_value().ok(), event.payload.to_value().ok());
    let tenant = first.metadata.tenant.clone();
    assert!(tenant.is_some(), "a stored event names its tenant");
    assert_eq!(
        first.metadata,
        Metadata {
            tenant: tenant.clone(),
            ..metadata
        }
    );
    assert_eq!(first.occurred_at, occurred_at);
    assert_eq!(first.occurred_at.offset(), time::UtcOffset::UTC);
    assert_eq!(
        stored[1].metadata,
        Metadata {
            tenant,
            ..Metadata::default()
        }
    );
    assert_eq!(stored[1].schema_version, 1);
    let via_all = read_everything(&store).await;
    assert_eq!(via_all, stored, "$all and the stream disagree");
}

/// Stream ids, event types and payloads that would break string-built SQL
/// round-trip unchanged.
pub async fn unusual_names_and_payloads_round_trip<S: EventStore>(store: S) {
    let hostile = StreamId::new("Tally'; DROP TABLE events; --", "ïd \"with\" quotes\\ and ☃");
    let event = NewEvent::new(
        "odd.type-name 'quoted'",
        Payload::from(
            json!({ "nested": { "list": [1, null, "x"] }, "empty": {}, "big": 9_007_199_254_740_993_u64 }),
        ),
    );
    append(&store, &hostile, ExpectedVersion::NoStream, vec![event.clone()]).await;
    let stored = read_stream(&store, &hostile, 1).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stream, hostile);
    assert_eq!(stored[0].event_type, event.event_type);
    assert_eq!(stored[0].payload.to_value().ok(), event.payload.to_value().ok());
}

/// A stream longer than any page reads back whole and in order.
pub async fn long_stream_reads_in_order<S: EventStore>(store: S) {
    let stream = stream("long");
    for _ in 0..5 {
        append(&store, &stream, ExpectedVersion::Any, events(1000)).await;
    }
    let mut versions = store
        .read_stream(&stream, 1)
        .map(|event| event.map(|event| event.version));
    let mut expected = 1;
    while let Some(version) = versions.next().await {
        assert_eq!(version.unwrap_or_else(|error| panic!("{error}")), expected);
        expected += 1;
    }
    assert_eq!(expected, 5001);
}

/// `read_stream_pages` yields exactly what `read_stream` does, page by page.
pub async fn stream_pages_match_the_stream<S: EventStore>(store: S) {
    let stream = stream("pages");
    for _ in 0..5 {
        append(&store, &stream, ExpectedVersion::Any, events(500)).await;
    }
    for from_version in [0, 1, 1000, 1025, 2500, 2501] {
        let paged: Vec<RecordedEvent> = store
            .read_stream_pages(&stream, from_version)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_or_else(|error| panic!("reading pages of {stream} failed: {error}"))
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            paged,
            read_stream(&store, &stream, from_version).await,
            "pages from version {from_version}"
        );
    }
    let unknown = self::stream("unknown");
    assert!(store.read_stream_pages(&unknown, 1).next().await.is_none());
}

/// A stored payload that no longer matches the event is an error naming the
/// event, never skipped.
pub async fn undecodable_payload_is_an_error_not_a_skip<S: EventStore>(store: S) {
    let id = format!("bad-payload-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let bad = NewEvent::new("added", Payload::from(json!({ "amount": "twelve" })));
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), added(1), bad],
    )
    .await;
    let repository = Repository::<Tally, _>::new(store);
    match repository.load(&id).await {
        Err(Error::Serialization {
            stream: reported,
            version,
            event_type,
            ..
        }) => {
            assert_eq!(reported, stream);
            assert_eq!(version, 3);
            assert_eq!(event_type, "added");
        }
        other => panic!("expected a serialization error at version 3, got {other:?}"),
    }
}

/// A stored event type the aggregate does not know is an error, never skipped.
pub async fn unknown_event_type_is_an_error_not_a_skip<S: EventStore>(store: S) {
    let id = format!("unknown-type-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let unknown = NewEvent::new("renamed", Payload::from(json!({})));
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), unknown],
    )
    .await;
    let repository = Repository::<Tally, _>::new(store);
    match repository.load(&id).await {
        Err(Error::UnknownEventType {
            version, event_type, ..
        }) => {
            assert_eq!(version, 2);
            assert_eq!(event_type, "renamed");
        }
        other => panic!("expected an unknown event type at version 2, got {other:?}"),
    }
}
