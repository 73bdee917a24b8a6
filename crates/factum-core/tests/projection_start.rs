//! Where the projection runner starts a projection that has no checkpoint:
//! the beginning, after a position, or the head read when it starts; and
//! a rebuild, which always replays from the beginning.

use std::sync::{Arc, Mutex};

use factum_core::{
    CheckpointStore, Error, EventStore, ExpectedVersion, HandlerError, InMemoryCheckpointStore,
    InMemoryDeadLetterStore, InMemoryEventStore, NewEvent, Payload, Projection, ProjectionRunner,
    RecordedEvent, Start, StreamId,
};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Records the position of every event it handles.
#[derive(Clone, Default)]
struct Positions(Arc<Mutex<Vec<u64>>>);

impl Positions {
    fn seen(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

impl Projection for Positions {
    fn name(&self) -> &str {
        "positions"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.position);
        Ok(())
    }
}

async fn append(events: &InMemoryEventStore, count: usize) -> Result<u64, Error> {
    let new = (0..count)
        .map(|_| NewEvent::new("added", Payload::parse(r#"{"amount":1}"#).unwrap()))
        .collect();
    let appended = events
        .append(&StreamId::new("Tally", "1"), ExpectedVersion::Any, new)
        .await?;
    Ok(appended.positions.last().copied().unwrap_or(0))
}

fn runner(
    events: &InMemoryEventStore,
    positions: &Positions,
    checkpoints: &InMemoryCheckpointStore,
    start: Start,
) -> ProjectionRunner<
    InMemoryEventStore,
    factum_core::Plain<Positions, InMemoryCheckpointStore, InMemoryDeadLetterStore>,
> {
    ProjectionRunner::new(
        events.clone(),
        positions.clone(),
        checkpoints.clone(),
        InMemoryDeadLetterStore::new(),
    )
    .start_at(start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_the_end_skips_the_history_and_keeps_what_follows() -> TestResult {
    let events = InMemoryEventStore::new();
    let head = append(&events, 5).await?;
    let positions = Positions::default();
    let checkpoints = InMemoryCheckpointStore::new();
    let handle = runner(&events, &positions, &checkpoints, Start::End).spawn();
    handle.wait_for_checkpoint(head).await?;
    assert_eq!(
        checkpoints.load("positions").await?,
        head,
        "the head is committed before anything is handled"
    );
    let last = append(&events, 2).await?;
    handle.wait_for_checkpoint(last).await?;
    handle.shutdown().await?;
    assert_eq!(positions.seen(), [head + 1, last]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_after_a_position_and_a_checkpoint_wins_over_the_start() -> TestResult {
    let events = InMemoryEventStore::new();
    let head = append(&events, 6).await?;
    let positions = Positions::default();
    let checkpoints = InMemoryCheckpointStore::new();
    let handle = runner(&events, &positions, &checkpoints, Start::After(4)).spawn();
    handle.wait_for_checkpoint(head).await?;
    handle.shutdown().await?;
    assert_eq!(positions.seen(), [5, 6]);

    // Stopped at 6; appended while stopped; restarted "at the end".
    let last = append(&events, 1).await?;
    let handle = runner(&events, &positions, &checkpoints, Start::End).spawn();
    handle.wait_for_checkpoint(last).await?;
    handle.shutdown().await?;
    assert_eq!(positions.seen(), [5, 6, last], "the checkpoint was not resumed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replays_from_the_beginning_whatever_the_start() -> TestResult {
    let events = InMemoryEventStore::new();
    let head = append(&events, 3).await?;
    let positions = Positions::default();
    let checkpoints = InMemoryCheckpointStore::new();
    let handle = runner(&events, &positions, &checkpoints, Start::End).spawn();
    handle.wait_for_checkpoint(head).await?;
    handle.shutdown().await?;
    assert!(positions.seen().is_empty());

    let mut rebuilt = runner(&events, &positions, &checkpoints, Start::End);
    rebuilt.rebuild().await?;
    let handle = rebuilt.spawn();
    handle.wait_for_checkpoint(head).await?;
    handle.shutdown().await?;
    assert_eq!(positions.seen(), [1, 2, 3]);

    // The same through a running runner's handle.
    let handle = runner(&events, &positions, &checkpoints, Start::End).spawn();
    handle.wait_for_checkpoint(head).await?;
    handle.rebuild();
    let mut seen = Vec::new();
    while seen.len() < 6 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        seen = positions.seen();
    }
    handle.shutdown().await?;
    assert_eq!(positions.seen(), [1, 2, 3, 1, 2, 3]);
    Ok(())
}
