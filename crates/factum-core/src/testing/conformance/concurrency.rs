//! Concurrency: racing writers, live readers, and subscriptions that hand
//! over from catch-up to live without gap or duplicate.

use super::*;

/// Writers racing on one stream: exactly one wins each version, the losers
/// get conflicts, and every winning event is stored once.
pub async fn concurrent_writers_on_one_stream<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const APPENDS_EACH: usize = 20;
    let stream = stream("race");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0_usize;
            while won.len() < APPENDS_EACH {
                let version = store
                    .stream_version(&stream)
                    .await
                    .unwrap_or_else(|error| panic!("{error}"));
                let event = added(1);
                let event_id = event.event_id;
                match store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event])
                    .await
                {
                    Ok(result) => {
                        assert_eq!(result.stream_version, version + 1);
                        won.push((result.stream_version, event_id));
                    }
                    Err(Error::Conflict { actual, .. }) => {
                        assert_ne!(actual, version, "a conflict must report another version");
                        conflicts += 1;
                    }
                    Err(error) => panic!("unexpected error in a race: {error}"),
                }
            }
            (won, conflicts)
        }));
    }
    let mut winners = HashMap::new();
    for task in tasks {
        let (won, _conflicts) = task
            .await
            .unwrap_or_else(|error| panic!("writer panicked: {error}"));
        for (version, event_id) in won {
            assert!(
                winners.insert(version, event_id).is_none(),
                "two writers won version {version}"
            );
        }
    }
    let stored = read_stream(&store, &stream, 1).await;
    assert_eq!(stored.len(), WRITERS * APPENDS_EACH, "events lost or duplicated");
    for event in stored {
        assert_eq!(
            winners.get(&event.version),
            Some(&event.event_id),
            "version {}",
            event.version
        );
    }
}

/// Eight writers on their own streams and two live readers: the readers see
/// every event once, in position order, with each stream's versions in order.
pub async fn writers_and_readers_lose_nothing<S: EventStore + Clone>(store: S) {
    const WRITERS: usize = 8;
    const EVENTS_EACH: usize = 250;
    const TOTAL: usize = WRITERS * EVENTS_EACH;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut subscription = store.subscribe_all(0);
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(TOTAL);
                while seen.len() < TOTAL {
                    match subscription.next().await {
                        Some(Ok(event)) => seen.push(event),
                        Some(Err(error)) => panic!("subscription failed: {error}"),
                        None => panic!("subscription ended on its own"),
                    }
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = stream(&format!("writer-{writer}"));
                let mut written = 0;
                let mut batch_size = 1;
                while written < EVENTS_EACH {
                    let count = batch_size.min(EVENTS_EACH - written);
                    append(
                        &store,
                        &stream,
                        ExpectedVersion::Exact(written as u64),
                        events(count),
                    )
                    .await;
                    written += count;
                    batch_size = batch_size % 5 + 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap_or_else(|error| panic!("writer panicked: {error}"));
    }
    let log = read_everything(&store).await;
    assert_eq!(log.len(), TOTAL);
    for reader in readers {
        let seen = reader
            .await
            .unwrap_or_else(|error| panic!("reader panicked: {error}"));
        assert_eq!(seen.len(), TOTAL);
        let ids: HashSet<Uuid> = seen.iter().map(|event| event.event_id).collect();
        assert_eq!(ids.len(), TOTAL, "a reader saw an event twice");
        assert!(
            seen.windows(2).all(|pair| pair[0].position < pair[1].position),
            "a reader saw events out of order"
        );
        let mut last_version: HashMap<&StreamId, u64> = HashMap::new();
        for event in &seen {
            let last = last_version.entry(&event.stream).or_default();
            assert_eq!(
                event.version,
                *last + 1,
                "versions of {} out of order",
                event.stream
            );
            *last = event.version;
        }
        assert_eq!(seen, log, "a reader's view differs from the log");
    }
}

/// A subscription catches up on stored events and goes live while writes
/// continue, with no gap and no duplicate at the hand-over.
pub async fn catch_up_hands_over_to_live<S: EventStore + Clone>(store: S) {
    const BEFORE: usize = 300;
    const DURING: usize = 300;
    let stream = stream("handover");
    for _ in 0..BEFORE / 50 {
        append(&store, &stream, ExpectedVersion::Any, events(50)).await;
    }
    let mut subscription = store.subscribe_all(0);
    let writer = {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for _ in 0..DURING {
                append(&store, &stream, ExpectedVersion::Any, events(1)).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < BEFORE + DURING {
        match subscription.next().await {
            Some(Ok(event)) => seen.push(event),
            Some(Err(error)) => panic!("subscription failed: {error}"),
            None => panic!("subscription ended on its own"),
        }
    }
    writer
        .await
        .unwrap_or_else(|error| panic!("writer panicked: {error}"));
    assert_eq!(
        seen,
        read_everything(&store).await,
        "the subscription differs from the log"
    );
    let versions: Vec<u64> = seen.iter().map(|event| event.version).collect();
    assert_eq!(versions, (1..=(BEFORE + DURING) as u64).collect::<Vec<_>>());

    // Live: one more event arrives without a new subscription.
    let late = added(42);
    let late_id = late.event_id;
    append(&store, &stream, ExpectedVersion::Any, vec![late]).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), subscription.next()).await;
    match next {
        Ok(Some(Ok(event))) => assert_eq!(event.event_id, late_id),
        other => panic!("the live event did not arrive: {other:?}"),
    }
}

/// A subscription from position `p` starts with the first event after `p`.
pub async fn subscription_starts_after_its_position<S: EventStore + Clone>(store: S) {
    let stream = stream("subscribe-after");
    append(&store, &stream, ExpectedVersion::Any, events(5)).await;
    let all = read_everything(&store).await;
    let mut subscription = store.subscribe_all(all[2].position);
    let mut seen = Vec::new();
    for _ in 0..2 {
        match subscription.next().await {
            Some(Ok(event)) => seen.push(event),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(seen, all[3..].to_vec());
    // Nothing more until something is written.
    let idle = tokio::time::timeout(std::time::Duration::from_millis(200), subscription.next()).await;
    assert!(
        idle.is_err(),
        "the subscription yielded an event that was never written: {idle:?}"
    );
}
