//! Where a projection without a checkpoint starts, on a projection store.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::{EVENTS, Ledger, LedgerProjection, event_log, projection_name, read};
use crate::{
    EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, ProjectionRunner, ProjectionStore,
    RunnerHandle, Start, StreamId,
};

async fn append_one(events: &InMemoryEventStore) -> u64 {
    let event = NewEvent::new("added", Payload::from(json!({ "amount": 1 })));
    let appended = events
        .append(&StreamId::new("Tally", "late"), ExpectedVersion::Any, vec![event])
        .await
        .unwrap_or_else(|error| panic!("appending to the in-memory log failed: {error}"));
    appended.positions[0]
}

async fn run_until(handle: RunnerHandle, position: u64) {
    handle
        .wait_for_checkpoint(position)
        .await
        .unwrap_or_else(|error| panic!("the runner failed before checkpoint {position}: {error}"));
    handle
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("the runner failed to stop: {error}"));
}

/// A projection without a checkpoint told to start at [`Start::End`]
/// commits the head it found as its checkpoint before handling anything,
/// then handles only events committed after its runner started; a stored
/// checkpoint wins over where a runner is told to start, either way.
pub async fn a_new_projection_can_start_at_the_end<S, L>(store: S, ledger: L)
where
    S: ProjectionStore + Clone,
    L: Ledger<S>,
{
    let events = event_log().await;
    let ledger = Arc::new(ledger);
    let runner = |name: &str, start: Start| {
        let projection = LedgerProjection {
            name: name.to_owned(),
            ledger: Arc::clone(&ledger),
            kill: None,
            fail_once: HashSet::new(),
        };
        ProjectionRunner::transactional(events.clone(), projection, store.clone())
            .start_at(start)
            .spawn()
    };

    let from_end = projection_name("from-end");
    let handle = runner(&from_end, Start::End);
    handle
        .wait_for_checkpoint(EVENTS)
        .await
        .unwrap_or_else(|error| panic!("the head was not committed as the checkpoint: {error}"));
    assert!(
        read(&*ledger, &store, &from_end).await.is_empty(),
        "a projection started at the end handled the history"
    );
    let first = append_one(&events).await;
    let second = append_one(&events).await;
    run_until(handle, second).await;
    assert_eq!(read(&*ledger, &store, &from_end).await, [first, second]);

    let third = append_one(&events).await;
    run_until(runner(&from_end, Start::Beginning), third).await;
    assert_eq!(
        read(&*ledger, &store, &from_end).await,
        [first, second, third],
        "a restart from the beginning replayed what the checkpoint covers"
    );

    let from_start = projection_name("from-start");
    run_until(runner(&from_start, Start::Beginning), third).await;
    let fourth = append_one(&events).await;
    run_until(runner(&from_start, Start::End), fourth).await;
    let everything: Vec<u64> = (1..=fourth).collect();
    assert_eq!(
        read(&*ledger, &store, &from_start).await,
        everything,
        "a restart at the end skipped what was appended while the projection was stopped"
    );
}
