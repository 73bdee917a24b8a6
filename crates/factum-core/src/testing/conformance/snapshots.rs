//! The snapshot guarantees: what a [`SnapshotStore`] keeps, and how an
//! [`Application`] with snapshots loads from it.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::testing::Tally;
use crate::{Aggregate, Application, EventStore, Payload, Snapshot, SnapshotPolicy, SnapshotStore, StreamId};

/// A snapshot of `stream` at `version`, taken at a whole second (every
/// backend keeps that exactly).
fn snapshot(stream: &StreamId, version: u64, state: serde_json::Value) -> Snapshot {
    let taken_at = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("the current time is a valid timestamp");
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version: Tally::EVOLUTION.snapshot_version(),
        state: Payload::from(state),
        taken_at,
    }
}

async fn save<S: SnapshotStore>(store: &S, snapshot: Snapshot) {
    let stream = snapshot.stream.clone();
    store
        .save_snapshot(snapshot)
        .await
        .unwrap_or_else(|error| panic!("saving a snapshot of {stream} failed: {error}"));
}

async fn load<S: SnapshotStore>(store: &S, stream: &StreamId) -> Option<Snapshot> {
    store
        .load_snapshot(stream)
        .await
        .unwrap_or_else(|error| panic!("loading the snapshot of {stream} failed: {error}"))
}

/// A tally with `created` and `added(1)`, `added(2)` saved: version 3,
/// total 3.
async fn saved_tally<S: EventStore>(app: &Application<Tally, S>, name: &str) -> String {
    let id = format!("{name}-{}", Uuid::now_v7());
    let mut tally = Tally::create(id.clone(), 0);
    for amount in [1, 2] {
        tally
            .add(amount)
            .unwrap_or_else(|error| panic!("adding {amount} failed: {error}"));
    }
    app.save(&mut tally)
        .await
        .unwrap_or_else(|error| panic!("saving tally {id} failed: {error}"));
    id
}

/// Only the latest snapshot of a stream is kept: an older one saved later
/// changes nothing, one of the same version replaces it, and streams do not
/// share snapshots.
pub async fn latest_snapshot_wins<S: EventStore + SnapshotStore>(store: S) {
    let stream = StreamId::new("Tally", format!("latest-{}", Uuid::now_v7()));
    let other = StreamId::new("Tally", format!("latest-other-{}", Uuid::now_v7()));
    assert_eq!(load(&store, &stream).await, None, "a stream without snapshot");
    let five = snapshot(&stream, 5, json!({ "total": 5 }));
    save(&store, five.clone()).await;
    assert_eq!(load(&store, &stream).await.as_ref(), Some(&five));
    save(&store, snapshot(&stream, 3, json!({ "total": 3 }))).await;
    assert_eq!(
        load(&store, &stream).await.as_ref(),
        Some(&five),
        "an older snapshot is kept out"
    );
    let seven = snapshot(&stream, 7, json!({ "total": 7 }));
    save(&store, seven.clone()).await;
    assert_eq!(
        load(&store, &stream).await.as_ref(),
        Some(&seven),
        "a newer snapshot wins"
    );
    let again = snapshot(&stream, 7, json!({ "total": 70 }));
    save(&store, again.clone()).await;
    assert_eq!(
        load(&store, &stream).await.as_ref(),
        Some(&again),
        "the same version replaces"
    );
    assert_eq!(load(&store, &other).await, None, "streams do not share snapshots");
}

/// `Application::with_snapshots` takes snapshots by its policy on this store
/// and loads from them: the loaded state is the snapshot's plus the events
/// after it.
pub async fn application_loads_from_its_snapshots<S: EventStore + SnapshotStore + Clone>(store: S) {
    let app = Application::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(3));
    let id = saved_tally(&app, "policy").await;
    let stream = StreamId::new("Tally", id.clone());
    let taken = load(&store, &stream)
        .await
        .expect("a save across version 3 takes a snapshot");
    assert_eq!(taken.version, 3);
    assert_eq!(taken.state.to_value().ok(), Some(json!({ "id": id, "total": 3 })));
    // A snapshot the events do not explain shows that loads start from it.
    save(&store, snapshot(&stream, 3, json!({ "id": id, "total": 1000 }))).await;
    let mut tally = app.get(id.clone()).await.expect("the tally loads");
    assert_eq!((tally.total, tally.version()), (1000, 3));
    tally.add(4).expect("adding 4 succeeds");
    app.save(&mut tally)
        .await
        .expect("a tally loaded from a snapshot saves");
    let reloaded = app.get(id).await.expect("the tally reloads");
    assert_eq!((reloaded.total, reloaded.version()), (1004, 4));
}

/// A snapshot whose version its stream does not hold is never loaded: the
/// application replays the events instead, and the aggregate saves at its
/// real version.
pub async fn snapshot_ahead_of_its_stream_is_never_loaded<S: EventStore + SnapshotStore + Clone>(store: S) {
    let app = Application::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(100));
    let id = saved_tally(&app, "ahead").await;
    let stream = StreamId::new("Tally", id.clone());
    save(&store, snapshot(&stream, 10, json!({ "id": id, "total": 999 }))).await;
    let mut tally = app.get(id.clone()).await.expect("the tally loads");
    assert_eq!((tally.total, tally.version()), (3, 3), "the state of the events");
    tally.add(4).expect("adding 4 succeeds");
    let saved = app
        .save(&mut tally)
        .await
        .expect("the tally saves at its real version");
    assert_eq!(saved.stream_version, 4);
    let empty = StreamId::new("Tally", format!("ahead-empty-{}", Uuid::now_v7()));
    save(
        &store,
        snapshot(&empty, 2, json!({ "id": empty.aggregate_id(), "total": 7 })),
    )
    .await;
    assert!(
        matches!(
            app.get(empty.aggregate_id().to_owned()).await,
            Err(crate::Error::NotFound { .. })
        ),
        "a snapshot of an empty stream does not make an aggregate"
    );
}

/// A snapshot that no longer deserializes into the aggregate costs a full
/// replay, not an error.
pub async fn undeserializable_snapshot_means_a_full_replay<S: EventStore + SnapshotStore + Clone>(store: S) {
    let app = Application::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(100));
    let id = saved_tally(&app, "stale-shape").await;
    let stream = StreamId::new("Tally", id.clone());
    save(
        &store,
        snapshot(&stream, 2, json!({ "identifier": id, "sum": "two" })),
    )
    .await;
    let tally = app
        .get(id.clone())
        .await
        .expect("the tally loads despite the snapshot");
    assert_eq!((tally.total, tally.version()), (3, 3));
    let past = app.get_at(id, 2).await.expect("time travel loads too");
    assert_eq!((past.total, past.version()), (1, 2));
}
