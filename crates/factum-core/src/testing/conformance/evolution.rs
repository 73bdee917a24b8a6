//! Evolution on a real store: snapshots record the aggregate's shape
//! version, one of another shape is rebuilt from the events and replaced,
//! events of a newer schema are refused by name, and old ones are lifted.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{append, created};
use crate::testing::Tally;
use crate::{
    Aggregate, Application, Error, EventStore, ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotPolicy,
    SnapshotStore, StreamId, Upcasters,
};

fn snapshot(stream: &StreamId, version: u64, schema_version: u32, state: serde_json::Value) -> Snapshot {
    let taken_at = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("the current time is a valid timestamp");
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version,
        state: Payload::from(state),
        taken_at,
    }
}

async fn load<S: SnapshotStore>(store: &S, stream: &StreamId) -> Option<Snapshot> {
    store
        .load_snapshot(stream)
        .await
        .unwrap_or_else(|error| panic!("loading the snapshot of {stream} failed: {error}"))
}

/// A store keeps a snapshot's shape version whole, from 0 to `u32::MAX`.
pub async fn snapshot_shape_versions_round_trip<S: EventStore + SnapshotStore>(store: S) {
    for schema_version in [0, 1, 2, i32::MAX as u32 + 1, u32::MAX] {
        let stream = StreamId::new("Tally", format!("shape-{schema_version}-{}", Uuid::now_v7()));
        let taken = snapshot(&stream, 4, schema_version, json!({ "total": 4 }));
        store
            .save_snapshot(taken.clone())
            .await
            .unwrap_or_else(|error| panic!("saving a snapshot of shape {schema_version} failed: {error}"));
        assert_eq!(
            load(&store, &stream).await,
            Some(taken),
            "shape version {schema_version}"
        );
    }
}

/// A snapshot of another shape version is not restored, even when it would
/// deserialize: the aggregate is rebuilt from its events, and a fresh
/// snapshot of the current shape replaces it.
pub async fn snapshot_of_another_shape_is_rebuilt_and_replaced<S: EventStore + SnapshotStore + Clone>(
    store: S,
) {
    let app = Application::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(100));
    let id = format!("reshaped-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let mut tally = Tally::create(id.clone(), 0);
    for amount in [1, 2] {
        tally.add(amount).expect("adding succeeds");
    }
    app.save(&mut tally).await.expect("the tally saves");
    let current = Tally::EVOLUTION.snapshot_version();
    let other = current + 1;
    let stale = snapshot(&stream, 2, other, json!({ "id": id, "total": 1000 }));
    store
        .save_snapshot(stale)
        .await
        .expect("the stale snapshot saves");

    let loaded = app.get(id.clone()).await.expect("the tally loads");
    assert_eq!(
        (loaded.total, loaded.version()),
        (3, 3),
        "the state of the events, not of the snapshot of shape {other}"
    );
    let fresh = load(&store, &stream).await.expect("a fresh snapshot was written");
    assert_eq!(
        (fresh.version, fresh.schema_version),
        (3, current),
        "written after the replay, at the current shape"
    );
    assert_eq!(fresh.state.to_value().ok(), Some(json!({ "id": id, "total": 3 })));
    let again = app
        .get(id)
        .await
        .expect("the tally loads from the fresh snapshot");
    assert_eq!((again.total, again.version()), (3, 3));
}

/// An event stored at a schema version above the one the code knows is an
/// error naming it, never decoded as if it were current.
pub async fn event_of_a_newer_schema_is_refused<S: EventStore + Clone>(store: S) {
    let id = format!("newer-schema-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    let newer = NewEvent::new("added", Payload::from(json!({ "amount": 1 }))).with_schema_version(2);
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), newer],
    )
    .await;
    match Application::<Tally, _>::new(store).get(id).await {
        Err(Error::SchemaTooNew {
            stream: reported,
            version,
            event_type,
            schema_version,
            current_version,
        }) => {
            assert_eq!(reported, stream);
            assert_eq!(
                (version, event_type.as_str(), schema_version, current_version),
                (2, "added", 2, 1)
            );
        }
        other => panic!("expected SchemaTooNew at version 2, got {other:?}"),
    }
}

/// Payloads stored at an old schema version are lifted while reading and
/// never rewritten; new events are written at the current version.
pub async fn old_schema_versions_are_lifted_while_reading<S: EventStore + Clone>(store: S) {
    let id = format!("old-schema-{}", Uuid::now_v7());
    let stream = StreamId::new("Tally", id.clone());
    // Schema version 1 of `added` called the amount `value`.
    let old = NewEvent::new("added", Payload::from(json!({ "value": 5 })));
    append(
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![created(&stream), old],
    )
    .await;
    let upcasters = Upcasters::new().register("added", 1, |mut payload| {
        let value = payload.get("value").cloned().ok_or("`value` is missing")?;
        payload["amount"] = value;
        Ok(payload)
    });
    let app = Application::<Tally, _>::new(store.clone())
        .with_upcasters(upcasters)
        .expect("the registry fits the tally");
    let mut tally = app.get(id.clone()).await.expect("the old history loads");
    assert_eq!(tally.total, 5);
    tally.add(1).expect("adding succeeds");
    app.save(&mut tally).await.expect("the tally saves");
    let stored = super::read_stream(&store, &stream, 1).await;
    let versions: Vec<u32> = stored.iter().map(|event| event.schema_version).collect();
    assert_eq!(versions, [1, 1, 2], "new events at the current schema version");
    assert_eq!(stored[1].payload.to_value().ok(), Some(json!({ "value": 5 })));
    assert_eq!(app.get(id).await.expect("the tally reloads").total, 6);
}
