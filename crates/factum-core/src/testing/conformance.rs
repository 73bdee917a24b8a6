//! The guarantees every [`EventStore`] must keep, one async check each.
//!
//! Run them all with [`conformance_suite!`](crate::conformance_suite); each
//! check takes a fresh, empty store and panics with a message on failure.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Tally;
use crate::{
    Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent, Repository, StreamId,
};

mod append;
mod atomic;
mod concurrency;
mod evolution;
mod idempotency;
mod read;
mod snapshots;
mod subscriptions;
mod tenants;

pub use append::*;
pub use atomic::{
    append_many_batch_without_events_checks_its_version,
    append_many_checks_each_stream_against_its_own_version, append_many_is_all_or_nothing,
    append_many_positions_match_read_all, append_many_refuses_bad_input,
    append_many_retry_returns_the_original_positions, atomic_appends_are_contiguous,
    readers_never_see_half_of_an_atomic_append,
};
pub use concurrency::*;
pub use evolution::*;
pub use idempotency::{
    mixed_batch_of_stored_and_new_events_is_invalid, stored_id_with_other_content_is_a_duplicate,
};
pub use read::*;
pub use snapshots::{
    application_loads_from_its_snapshots, latest_snapshot_wins, snapshot_ahead_of_its_stream_is_never_loaded,
    undeserializable_snapshot_means_a_full_replay,
};
pub use subscriptions::*;
pub use tenants::*;

fn stream(name: &str) -> StreamId {
    StreamId::new("Tally", format!("{name}-{}", Uuid::now_v7()))
}

fn added(amount: i64) -> NewEvent {
    NewEvent::new("added", Payload::from(json!({ "amount": amount })))
}

fn created(stream: &StreamId) -> NewEvent {
    NewEvent::new(
        "created",
        Payload::from(json!({ "id": stream.aggregate_id(), "total": 0 })),
    )
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count).map(|amount| added(amount as i64)).collect()
}

async fn read_stream<S: EventStore>(store: &S, stream: &StreamId, from_version: u64) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, from_version)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("reading {stream} failed: {error}"))
}

async fn read_everything<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_all(after, 500)
            .await
            .unwrap_or_else(|error| panic!("reading $all failed: {error}"));
        let Some(last) = page.last() else {
            return all;
        };
        after = last.position;
        all.extend(page);
    }
}

async fn append<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> crate::AppendResult {
    store
        .append(stream, expected, events)
        .await
        .unwrap_or_else(|error| panic!("append to {stream} with {expected} failed: {error}"))
}

#[track_caller]
fn assert_conflict(result: Result<crate::AppendResult, Error>, expected: ExpectedVersion, actual: u64) {
    match result {
        Err(Error::Conflict {
            expected: reported_expected,
            actual: reported_actual,
            ..
        }) => {
            assert_eq!(
                reported_expected, expected,
                "conflict reports the expected version"
            );
            assert_eq!(reported_actual, actual, "conflict reports the actual version");
        }
        other => panic!("expected a conflict ({expected}, actual {actual}), got {other:?}"),
    }
}
