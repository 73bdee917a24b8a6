//! Appends: expected versions, conflicts, atomic batches, idempotent
//! retries, and the versions and positions an append hands out.

use super::*;

/// `Any` appends to a fresh stream and to an existing one.
pub async fn any_on_fresh_and_existing_streams<S: EventStore>(store: S) {
    let stream = stream("any");
    let first = append(&store, &stream, ExpectedVersion::Any, events(2)).await;
    assert_eq!(first.stream_version, 2);
    let second = append(&store, &stream, ExpectedVersion::Any, events(3)).await;
    assert_eq!(second.stream_version, 5);
    assert_eq!(second.positions.len(), 3);
}

/// `NoStream` admits a fresh stream and rejects an existing one.
pub async fn no_stream_admits_only_a_fresh_stream<S: EventStore>(store: S) {
    let stream = stream("no-stream");
    append(&store, &stream, ExpectedVersion::NoStream, events(2)).await;
    let again = store.append(&stream, ExpectedVersion::NoStream, events(1)).await;
    assert_conflict(again, ExpectedVersion::NoStream, 2);
}

/// `Exact(n)` admits a stream at `n` only; `Exact(0)` means a fresh stream.
pub async fn exact_version_admits_only_that_version<S: EventStore>(store: S) {
    let stream = stream("exact");
    let ahead = store.append(&stream, ExpectedVersion::Exact(3), events(1)).await;
    assert_conflict(ahead, ExpectedVersion::Exact(3), 0);
    append(&store, &stream, ExpectedVersion::Exact(0), events(2)).await;
    append(&store, &stream, ExpectedVersion::Exact(2), events(1)).await;
    let stale = store.append(&stream, ExpectedVersion::Exact(2), events(1)).await;
    assert_conflict(stale, ExpectedVersion::Exact(2), 3);
    let behind = store.append(&stream, ExpectedVersion::Exact(4), events(1)).await;
    assert_conflict(behind, ExpectedVersion::Exact(4), 3);
    assert_eq!(store.stream_version(&stream).await.ok(), Some(3));
}

/// A conflicting append writes nothing, to the stream or to `$all`.
pub async fn conflict_writes_nothing<S: EventStore>(store: S) {
    let stream = stream("conflict");
    append(&store, &stream, ExpectedVersion::NoStream, events(2)).await;
    let before = read_everything(&store).await;
    let rejected = store.append(&stream, ExpectedVersion::Exact(1), events(5)).await;
    assert_conflict(rejected, ExpectedVersion::Exact(1), 2);
    assert_eq!(
        read_everything(&store).await,
        before,
        "$all changed after a conflict"
    );
    assert_eq!(read_stream(&store, &stream, 1).await.len(), 2);
}

/// An empty append writes nothing but still checks the expected version.
pub async fn empty_append_checks_the_expected_version<S: EventStore>(store: S) {
    let stream = stream("empty");
    append(&store, &stream, ExpectedVersion::Any, events(2)).await;
    let empty = append(&store, &stream, ExpectedVersion::Exact(2), Vec::new()).await;
    assert_eq!(empty.stream_version, 2);
    assert!(empty.positions.is_empty());
    let stale = store.append(&stream, ExpectedVersion::Exact(1), Vec::new()).await;
    assert_conflict(stale, ExpectedVersion::Exact(1), 2);
    assert_eq!(read_everything(&store).await.len(), 2);
}

/// A batch that cannot be stored whole leaves nothing behind.
pub async fn batch_is_atomic<S: EventStore>(store: S) {
    let stream = stream("atomic");
    let other = self::stream("atomic-other");
    let taken = added(1);
    append(&store, &other, ExpectedVersion::Any, vec![taken.clone()]).await;

    // The last event of the batch reuses an id stored elsewhere.
    let mut batch = events(4);
    batch.push(taken);
    let rejected = store.append(&stream, ExpectedVersion::NoStream, batch).await;
    assert!(
        rejected.is_err(),
        "a batch reusing a stored event id was accepted"
    );

    // The same id twice inside one batch.
    let twice = added(7);
    let rejected = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![added(1), twice.clone(), twice],
        )
        .await;
    assert!(
        matches!(rejected, Err(Error::InvalidRequest { .. })),
        "a batch with one id twice: {rejected:?}"
    );

    assert!(
        read_stream(&store, &stream, 1).await.is_empty(),
        "part of a rejected batch is visible"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
    assert_eq!(store.stream_version(&stream).await.ok(), Some(0));
}

/// Appending the same events again returns the original result and writes nothing.
pub async fn idempotent_retry_returns_original_positions<S: EventStore>(store: S) {
    let stream = stream("retry");
    let batch = events(3);
    let original = append(&store, &stream, ExpectedVersion::NoStream, batch.clone()).await;
    append(&store, &stream, ExpectedVersion::Any, events(2)).await;

    // The retry carries the expectation of the first attempt, now stale.
    let retried = append(&store, &stream, ExpectedVersion::NoStream, batch.clone()).await;
    assert_eq!(retried, original, "a retry must return the original positions");
    let retried_any = append(&store, &stream, ExpectedVersion::Any, batch).await;
    assert_eq!(retried_any, original);
    assert_eq!(
        read_stream(&store, &stream, 1).await.len(),
        5,
        "a retry wrote events again"
    );
    assert_eq!(read_everything(&store).await.len(), 5);
}

/// The same event id with another payload is an error, not a retry.
pub async fn same_event_id_with_other_content_is_rejected<S: EventStore>(store: S) {
    let stream = stream("reused-id");
    let original = added(1);
    append(&store, &stream, ExpectedVersion::NoStream, vec![original.clone()]).await;
    let mut changed = original;
    changed.payload = Payload::from(json!({ "amount": 2 }));
    let rejected = store.append(&stream, ExpectedVersion::Any, vec![changed]).await;
    assert!(
        matches!(rejected, Err(Error::DuplicateEventId { .. })),
        "same id, other payload: {rejected:?}"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
}

/// Versions start at 1 and have no gaps, in every stream.
pub async fn versions_are_gapless_from_one<S: EventStore>(store: S) {
    let streams: Vec<StreamId> = (0..3).map(|index| stream(&format!("gapless-{index}"))).collect();
    for round in 1..=4 {
        for stream in &streams {
            append(&store, stream, ExpectedVersion::Any, events(round)).await;
        }
    }
    for stream in &streams {
        let versions: Vec<u64> = read_stream(&store, stream, 1)
            .await
            .iter()
            .map(|event| event.version)
            .collect();
        assert_eq!(versions, (1..=10).collect::<Vec<_>>(), "versions of {stream}");
        assert_eq!(store.stream_version(stream).await.ok(), Some(10));
    }
}

/// Positions in `$all` strictly increase and are the ones appends returned.
pub async fn positions_strictly_increase_and_match_append_results<S: EventStore>(store: S) {
    let mut returned = HashMap::new();
    for index in 0..10 {
        let stream = stream(&format!("positions-{}", index % 3));
        let batch = events(index % 4 + 1);
        let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
        let result = append(&store, &stream, ExpectedVersion::Any, batch).await;
        assert_eq!(result.positions.len(), ids.len());
        assert!(result.positions.windows(2).all(|pair| pair[0] < pair[1]));
        returned.extend(ids.into_iter().zip(result.positions));
    }
    let all = read_everything(&store).await;
    assert_eq!(all.len(), returned.len());
    assert!(
        all.windows(2).all(|pair| pair[0].position < pair[1].position),
        "positions not increasing"
    );
    for event in &all {
        assert_eq!(
            Some(&event.position),
            returned.get(&event.event_id),
            "position of {}",
            event.event_id
        );
    }
}

/// A batch of a thousand events lands whole, with consecutive versions.
pub async fn large_batch_is_atomic_and_ordered<S: EventStore>(store: S) {
    let stream = stream("large");
    let batch = events(1000);
    let ids: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
    let result = append(&store, &stream, ExpectedVersion::NoStream, batch).await;
    assert_eq!(result.stream_version, 1000);
    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.iter().map(|event| event.event_id).collect::<Vec<_>>(), ids);
}

/// `head_position` is 0 on an empty store and then the last appended position.
pub async fn head_position_follows_appends<S: EventStore>(store: S) {
    assert_eq!(store.head_position().await.ok(), Some(0));
    let stream = stream("head");
    let result = append(&store, &stream, ExpectedVersion::Any, events(3)).await;
    assert_eq!(store.head_position().await.ok(), result.positions.last().copied());
    assert_eq!(store.stream_version(&self::stream("nothing")).await.ok(), Some(0));
}
