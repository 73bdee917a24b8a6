//! Crossing tenants with the calls that came beside tenants: atomic appends
//! across streams, following one stream, and starting at the end of a
//! tenant's log (a subscription, a projection).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;

use super::super::{added, append, events, read_everything, read_stream, stream};
use super::{assert_hidden_duplicate, assert_invalid_tenant, head, tenant_name, version, view};
use crate::{
    AppendBatch, AppendResult, Error, EventStore, EventStream, ExpectedVersion, HandlerError,
    InMemoryCheckpointStore, InMemoryDeadLetterStore, Metadata, NewEvent, Payload, Projection,
    ProjectionRunner, RecordedEvent, Start, StreamId, Tenancy, Tenant,
};

/// How long a live event may take to arrive before the check fails as hung.
const LIVE: Duration = Duration::from_secs(10);

/// A batch of a call before its expected version is chosen.
type Batch<'a> = (&'a StreamId, Vec<NewEvent>);

fn batch(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::new(stream.clone(), expected, events)
}

async fn append_many<S: EventStore>(store: &S, batches: Vec<AppendBatch>) -> Vec<AppendResult> {
    store
        .append_many(batches)
        .await
        .unwrap_or_else(|error| panic!("append_many failed: {error}"))
}

fn stream_versions(results: &[AppendResult]) -> Vec<u64> {
    results.iter().map(|result| result.stream_version).collect()
}

fn own_tenant<S: Tenancy>(store: &S) -> Tenant {
    store.tenant().cloned().unwrap_or(Tenant::DEFAULT)
}

#[track_caller]
fn assert_conflict_on(
    result: Result<Vec<AppendResult>, Error>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(Error::Conflict {
            stream: reported,
            expected: reported_expected,
            actual: reported_actual,
        }) => {
            assert_eq!(&reported, stream, "the conflict names the stream that moved");
            assert_eq!(reported_expected, expected, "the conflict's expected version");
            assert_eq!(
                reported_actual, actual,
                "the conflict reports the tenant's own version"
            );
        }
        other => panic!("expected a conflict on {stream}, got {other:?}"),
    }
}

/// [`append_many`](EventStore::append_many) on a tenant view writes only
/// that tenant's streams: a stream id another tenant holds is a fresh
/// stream here, each batch is checked against the tenant's own version
/// (conflicts report it), the unscoped handle's call writes the default
/// tenant, and a call with an event whose metadata names another tenant is
/// [`Error::InvalidTenant`] with nothing written.
pub async fn append_many_on_a_view_writes_only_its_tenants_streams<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let (first, second) = (stream("many-first"), stream("many-second"));
    append(&globex, &first, ExpectedVersion::NoStream, events(3)).await;
    let results = append_many(
        &acme,
        vec![
            batch(&first, ExpectedVersion::NoStream, events(2)),
            batch(&second, ExpectedVersion::NoStream, vec![added(9)]),
        ],
    )
    .await;
    assert_eq!(stream_versions(&results), [2, 1], "globex's stream is not acme's");
    let versions = async |target: &S| (version(target, &first).await, version(target, &second).await);
    assert_eq!(versions(&acme).await, (2, 1));
    assert_eq!(versions(&globex).await, (3, 0), "acme's call reached globex");
    assert_eq!(
        versions(&store).await,
        (0, 0),
        "acme's call reached the default tenant"
    );
    let acme_log = read_everything(&acme).await;
    let positions: Vec<u64> = results
        .iter()
        .flat_map(|result| result.positions.clone())
        .collect();
    assert_eq!(
        acme_log.iter().map(|event| event.position).collect::<Vec<_>>(),
        positions
    );
    assert!(
        acme_log
            .iter()
            .all(|event| event.metadata.tenant.as_ref() == acme.tenant()),
        "acme's events name acme"
    );

    let unscoped = append_many(
        &store,
        vec![batch(&first, ExpectedVersion::NoStream, vec![added(1)])],
    )
    .await;
    assert_eq!(stream_versions(&unscoped), [1], "the default tenant's own stream");
    assert_eq!(
        read_stream(&store, &first, 1).await[0].metadata.tenant,
        Some(Tenant::DEFAULT)
    );
    assert_eq!((versions(&acme).await, versions(&globex).await), ((2, 1), (3, 0)));

    // Conflicts are judged and reported against the tenant's own versions.
    let behind = acme
        .append_many(vec![
            batch(&second, ExpectedVersion::Exact(1), vec![added(4)]),
            batch(&first, ExpectedVersion::Exact(3), vec![added(5)]),
        ])
        .await;
    assert_conflict_on(behind, &first, ExpectedVersion::Exact(3), 2);
    let guarded = acme
        .append_many(vec![
            batch(&first, ExpectedVersion::Exact(3), vec![]),
            batch(&second, ExpectedVersion::Any, vec![added(8)]),
        ])
        .await;
    assert_conflict_on(guarded, &first, ExpectedVersion::Exact(3), 2);
    let fits = append_many(
        &globex,
        vec![
            batch(&first, ExpectedVersion::Exact(3), vec![added(6)]),
            batch(&second, ExpectedVersion::NoStream, vec![added(7)]),
        ],
    )
    .await;
    assert_eq!(stream_versions(&fits), [4, 1], "globex at its own versions");
    assert_eq!(versions(&acme).await, (2, 1), "a refused call wrote something");

    let naming = |tenant: Tenant| added(1).with_metadata(Metadata::default().with_tenant(tenant));
    let third = stream("many-third");
    assert_invalid_tenant(
        acme.append_many(vec![
            batch(&third, ExpectedVersion::Any, vec![added(1)]),
            batch(&first, ExpectedVersion::Any, vec![naming(own_tenant(&globex))]),
        ])
        .await,
        "acme's call with an event of globex",
    );
    assert_invalid_tenant(
        store
            .append_many(vec![batch(
                &third,
                ExpectedVersion::Any,
                vec![naming(own_tenant(&acme))],
            )])
            .await,
        "the unscoped handle's call with an event of acme",
    );
    assert_eq!(
        (version(&acme, &third).await, version(&store, &third).await),
        (0, 0)
    );
    let own = append_many(
        &acme,
        vec![batch(
            &third,
            ExpectedVersion::NoStream,
            vec![naming(own_tenant(&acme))],
        )],
    )
    .await;
    assert_eq!(stream_versions(&own), [1], "an event may name its own tenant");
}

/// An [`append_many`](EventStore::append_many) carrying an event id stored
/// in another tenant (the same events, one of them beside a new one, an id
/// reused for other content, or behind a batch without events) is
/// [`Error::DuplicateEventId`] naming the batch that carries it and no
/// stream of the other tenant, whatever the expected versions; nothing is
/// written, and the owner's retry still returns its original results.
pub async fn append_many_with_another_tenants_event_ids_reveals_nothing<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let (secret, other, mine) = (stream("many-secret"), stream("many-other"), stream("many-mine"));
    let (stored, beside) = (vec![added(1), added(2)], added(3));
    let call = || {
        vec![
            batch(&secret, ExpectedVersion::NoStream, stored.clone()),
            batch(&other, ExpectedVersion::NoStream, vec![beside.clone()]),
        ]
    };
    let original = append_many(&acme, call()).await;
    let reused = NewEvent::new("other", Payload::from(serde_json::json!({ "x": 1 })))
        .with_event_id(stored[0].event_id);
    let attempts: Vec<(&S, Vec<Batch<'_>>, &StreamId)> = vec![
        (&globex, vec![(&secret, stored.clone())], &secret),
        (
            &globex,
            vec![(&mine, vec![added(4)]), (&secret, vec![stored[1].clone()])],
            &secret,
        ),
        (&globex, vec![(&mine, vec![reused])], &mine),
        (
            &globex,
            vec![(&mine, vec![]), (&other, vec![beside.clone()])],
            &other,
        ),
        (
            &store,
            vec![(&secret, stored.clone()), (&other, vec![beside.clone()])],
            &secret,
        ),
    ];
    for (target, batches, named) in attempts {
        for expected in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::Exact(2),
        ] {
            let call = batches
                .iter()
                .map(|(stream, events)| batch(stream, expected, events.clone()))
                .collect();
            let result = target.append_many(call).await;
            assert_hidden_duplicate(&result, named, &secret);
        }
    }
    assert!(
        read_everything(&globex).await.is_empty(),
        "globex's log gained an event"
    );
    assert_eq!(version(&globex, &mine).await, 0);
    assert_eq!(version(&store, &secret).await, 0);
    assert_eq!(
        read_everything(&store).await.len(),
        3,
        "only acme's three events are stored"
    );
    assert_eq!(
        append_many(&acme, call()).await,
        original,
        "the owner's retry returns its original results"
    );
}

/// The next event of `subscription`; fails on an error, an end, or a wait
/// longer than [`LIVE`] (a hang guard, not a timing assertion).
async fn next_event(subscription: &mut EventStream<'static>) -> RecordedEvent {
    match tokio::time::timeout(LIVE, subscription.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the subscription failed: {error}"),
        Ok(None) => panic!("the subscription ended on its own"),
        Err(_) => panic!("no event within {LIVE:?}"),
    }
}

/// [`subscribe_stream`](EventStore::subscribe_stream) on a tenant view
/// follows that tenant's stream of the id only: catch-up hands out its own
/// versions, and live it skips the same stream id written by another
/// tenant or the default tenant in between; a stream only another tenant
/// has written is followed from the view's own first event.
pub async fn subscribe_stream_on_a_view_follows_only_its_tenant<S>(store: S)
where
    S: EventStore + Tenancy + Clone,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let followed = stream("follow-shared");
    let acme_events = append(&acme, &followed, ExpectedVersion::NoStream, events(2)).await;
    append(&globex, &followed, ExpectedVersion::NoStream, events(3)).await;
    append(&store, &followed, ExpectedVersion::NoStream, events(1)).await;
    let mut acme_follows = acme.subscribe_stream(&followed, 0);
    let mut globex_follows = globex.subscribe_stream(&followed, 3);
    for expected in &acme_events.positions {
        let event = next_event(&mut acme_follows).await;
        assert_eq!(event.position, *expected, "catch-up of acme's stream");
        assert_eq!(event.metadata.tenant.as_ref(), acme.tenant());
    }
    let globex_third = next_event(&mut globex_follows).await;
    assert_eq!(
        (globex_third.version, globex_third.metadata.tenant.as_ref()),
        (3, globex.tenant())
    );

    append(&globex, &followed, ExpectedVersion::Any, vec![added(7)]).await;
    append(&store, &followed, ExpectedVersion::Any, vec![added(8)]).await;
    let acme_live = append(&acme, &followed, ExpectedVersion::Any, vec![added(9)]).await;
    let event = next_event(&mut acme_follows).await;
    assert_eq!(
        (event.position, event.version),
        (acme_live.positions[0], 3),
        "acme's follower handed out another tenant's event"
    );
    assert_eq!(next_event(&mut globex_follows).await.version, 4);

    let fresh = stream("follow-fresh");
    let mut waiting = acme.subscribe_stream(&fresh, 0);
    append(&globex, &fresh, ExpectedVersion::NoStream, events(2)).await;
    let first_own = append(&acme, &fresh, ExpectedVersion::NoStream, vec![added(1)]).await;
    let event = next_event(&mut waiting).await;
    assert_eq!(
        (event.position, event.version),
        (first_own.positions[0], 1),
        "a stream only globex had written"
    );
}

/// Records the position of every event it handles.
struct Positions(Arc<Mutex<Vec<u64>>>);

impl Projection for Positions {
    fn name(&self) -> &str {
        "tenant-positions"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.position);
        Ok(())
    }
}

/// On a tenant view, [`Start::End`] is the tenant's head (its last event's
/// position, below other tenants' later events): a subscription from there
/// hands out the tenant's next event and nothing of another tenant, also
/// for a tenant without events (head 0); and a projection started there
/// with [`ProjectionRunner::start_at`] commits that head, then handles
/// only the tenant's later events.
pub async fn start_at_the_end_of_a_view_is_its_tenants_end<S>(store: S)
where
    S: EventStore + Tenancy + Clone + Send + Sync + 'static,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let log = stream("end");
    let acme_last = append(&acme, &log, ExpectedVersion::Any, events(2))
        .await
        .positions[1];
    append(&globex, &log, ExpectedVersion::Any, events(2)).await;
    let end = Start::End
        .after(&acme)
        .await
        .unwrap_or_else(|error| panic!("reading acme's end failed: {error}"));
    assert_eq!(end, acme_last, "acme's end is its last event");
    assert!(head(&store).await > acme_last, "the log runs on past acme's end");

    let subscribe = async |target: &S| {
        target
            .subscribe(Start::End)
            .await
            .unwrap_or_else(|error| panic!("subscribing at the end failed: {error}"))
    };
    let mut from_end = subscribe(&acme).await;
    let quiet = view(&store, &tenant_name("quiet"));
    let mut quiet_from_end = subscribe(&quiet).await;
    append(&globex, &log, ExpectedVersion::Any, vec![added(5)]).await;
    let later = append(&acme, &log, ExpectedVersion::Any, vec![added(6)]).await;
    let quiet_first = append(&quiet, &log, ExpectedVersion::Any, vec![added(7)]).await;
    assert_eq!(next_event(&mut from_end).await.position, later.positions[0]);
    assert_eq!(
        next_event(&mut quiet_from_end).await.position,
        quiet_first.positions[0],
        "a tenant without events starts at 0 and still sees only its own"
    );

    let handled = Arc::new(Mutex::new(Vec::new()));
    let checkpoints = InMemoryCheckpointStore::new();
    let acme_head = head(&acme).await;
    let runner = ProjectionRunner::new(
        acme.clone(),
        Positions(Arc::clone(&handled)),
        checkpoints.clone(),
        InMemoryDeadLetterStore::new(),
    )
    .start_at(Start::End)
    .spawn();
    runner
        .wait_for_checkpoint(acme_head)
        .await
        .unwrap_or_else(|error| panic!("acme's head was not committed: {error}"));
    append(&globex, &log, ExpectedVersion::Any, vec![added(8)]).await;
    let fresh = append(&acme, &log, ExpectedVersion::Any, vec![added(9)]).await;
    runner
        .wait_for_checkpoint(fresh.positions[0])
        .await
        .unwrap_or_else(|error| panic!("the projection stopped early: {error}"));
    runner
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("the projection failed to stop: {error}"));
    let handled = handled.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(
        handled, fresh.positions,
        "the projection handled only acme's later event"
    );
    let checkpoint = crate::CheckpointStore::load(&checkpoints, "tenant-positions").await;
    assert_eq!(checkpoint.ok(), Some(fresh.positions[0]));
}

/// [`subscribe_stream`](EventStore::subscribe_stream) on the unscoped
/// handle follows the default tenant's stream of the id, as its other
/// stream operations address it, never another tenant's stream of the same
/// id. Not in [`conformance_suite!`](crate::conformance_suite): the trait's
/// default follows the handle's whole log, which on an unscoped handle is
/// every tenant's, so only stores that override the method (every factum
/// store, as a store with tenants must) run it.
pub async fn unscoped_stream_subscription_follows_the_default_tenant<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let acme = view(&store, &tenant_name("acme"));
    let followed = stream("follow-default");
    append(&acme, &followed, ExpectedVersion::NoStream, events(2)).await;
    let mut follows = store.subscribe_stream(&followed, 0);
    append(&acme, &followed, ExpectedVersion::Any, vec![added(3)]).await;
    let own = append(&store, &followed, ExpectedVersion::NoStream, vec![added(4)]).await;
    let event = next_event(&mut follows).await;
    assert_eq!(
        (event.position, event.version, event.metadata.tenant),
        (own.positions[0], 1, Some(Tenant::DEFAULT)),
        "the unscoped handle followed acme's stream"
    );
}
