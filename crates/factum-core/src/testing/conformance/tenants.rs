//! Tenant isolation: every check tries to cross from one tenant's view into
//! another's (or into the default tenant's) and must fail, while the
//! unscoped handle still sees every tenant's events in global order. The
//! cases of `crossing` do the same with atomic appends across streams,
//! stream subscriptions and starting at a tenant's end.

mod crossing;

pub use crossing::*;

use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use super::{added, append, events, read_everything, read_stream, stream};
use crate::backend::hidden_stream;
use crate::testing::Tally;
use crate::{
    Application, Error, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent, Snapshot,
    SnapshotStore, StreamId, Tenancy, Tenant,
};

/// A view of `tenant` (a unique name per check, so a shared database
/// cannot mix checks).
fn view<S: Tenancy>(store: &S, tenant: &str) -> S {
    store
        .for_tenant(tenant)
        .unwrap_or_else(|error| panic!("opening tenant {tenant} failed: {error}"))
}

fn tenant_name(label: &str) -> String {
    format!("{label}-{}", Uuid::now_v7().simple())
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap_or_else(|error| panic!("{error}"))
}

async fn version<S: EventStore>(store: &S, stream: &StreamId) -> u64 {
    store
        .stream_version(stream)
        .await
        .unwrap_or_else(|error| panic!("the version of {stream} failed: {error}"))
}

async fn head<S: EventStore>(store: &S) -> u64 {
    store
        .head_position()
        .await
        .unwrap_or_else(|error| panic!("head_position failed: {error}"))
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.event_id).collect()
}

#[track_caller]
fn assert_invalid_tenant<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    assert!(
        matches!(result, Err(Error::InvalidTenant { .. })),
        "{what}: expected InvalidTenant, got {result:?}"
    );
}

/// An empty name, one too long, and names with characters outside the set
/// are [`Error::InvalidTenant`]; a view of one tenant cannot be widened to
/// another (only narrowed to itself); none of it writes anything.
pub async fn tenant_names_are_checked_and_views_cannot_widen<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let too_long = "t".repeat(Tenant::MAX_LEN + 1);
    for bad in [
        "",
        too_long.as_str(),
        "acme corp",
        "acme/../globex",
        "$all",
        "-acme",
        "acme'--",
        "acmé",
    ] {
        assert_invalid_tenant(store.for_tenant(bad).map(|_| ()), &format!("tenant {bad:?}"));
    }
    assert!(store.tenant().is_none(), "the unscoped handle has no tenant");
    let longest = "t".repeat(Tenant::MAX_LEN);
    assert_eq!(view(&store, &longest).tenant(), Some(&tenant(&longest)));

    let acme_name = tenant_name("acme");
    let acme = view(&store, &acme_name);
    assert_eq!(acme.tenant(), Some(&tenant(&acme_name)));
    assert_eq!(view(&acme, &acme_name).tenant(), Some(&tenant(&acme_name)));
    for other in [tenant_name("globex").as_str(), "default", ""] {
        assert_invalid_tenant(
            acme.for_tenant(other).map(|_| ()),
            &format!("widening to {other:?}"),
        );
    }
    assert!(
        read_everything(&store).await.is_empty(),
        "a refused tenant wrote something"
    );
}

/// The same stream id under two tenants (and the unscoped handle's default
/// tenant) is three streams: each starts at version 1, holds its own events,
/// and an expected version is checked against its own stream only.
pub async fn same_stream_id_under_two_tenants_is_two_streams<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let stream = stream("shared-id");
    let acme_events = events(2);
    let globex_event = added(7);
    let in_acme = append(&acme, &stream, ExpectedVersion::NoStream, acme_events.clone()).await;
    let in_globex = append(
        &globex,
        &stream,
        ExpectedVersion::NoStream,
        vec![globex_event.clone()],
    )
    .await;
    assert_eq!((in_acme.stream_version, in_globex.stream_version), (2, 1));

    // Globex cannot append behind acme's version, nor see it.
    let behind = globex
        .append(&stream, ExpectedVersion::Exact(2), vec![added(8)])
        .await;
    assert!(
        matches!(behind, Err(Error::Conflict { actual: 1, .. })),
        "globex's stream is at its own version 1: {behind:?}"
    );
    assert_eq!(
        (version(&acme, &stream).await, version(&globex, &stream).await),
        (2, 1)
    );
    assert_eq!(
        version(&store, &stream).await,
        0,
        "the default tenant has no such stream"
    );

    let read_acme = read_stream(&acme, &stream, 1).await;
    assert_eq!(
        ids(&read_acme),
        acme_events.iter().map(|event| event.event_id).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&read_stream(&globex, &stream, 1).await),
        [globex_event.event_id]
    );
    assert!(read_stream(&store, &stream, 1).await.is_empty());
    let pages: Vec<Vec<RecordedEvent>> = globex
        .read_stream_pages(&stream, 1)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("reading pages failed: {error}"));
    assert_eq!(
        pages.concat().len(),
        1,
        "pages of globex's stream hold only its event"
    );
    for event in &read_acme {
        assert_eq!(
            event.metadata.tenant,
            acme.tenant().cloned(),
            "an event names its tenant"
        );
    }
}

/// An event whose metadata names another tenant than the one it is
/// appended to is [`Error::InvalidTenant`] and nothing is written: on a
/// tenant view, and on the unscoped handle (which appends to the default
/// tenant). Naming its own tenant is fine.
pub async fn metadata_cannot_name_another_tenant<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme_name, globex_name) = (tenant_name("acme"), tenant_name("globex"));
    let acme = view(&store, &acme_name);
    let stream = stream("metadata-tenant");
    let naming = |name: &str| added(1).with_metadata(Metadata::default().with_tenant(tenant(name)));
    for batch in [vec![naming(&globex_name)], vec![added(2), naming(&globex_name)]] {
        assert_invalid_tenant(
            acme.append(&stream, ExpectedVersion::Any, batch).await,
            "acme appending an event of globex",
        );
    }
    assert_invalid_tenant(
        store
            .append(&stream, ExpectedVersion::Any, vec![naming(&acme_name)])
            .await,
        "the unscoped handle appending an event of acme to the default tenant",
    );
    assert!(
        read_everything(&store).await.is_empty(),
        "a refused append wrote something"
    );

    let own = naming(&acme_name);
    append(&acme, &stream, ExpectedVersion::NoStream, vec![own.clone()]).await;
    let stored = read_stream(&acme, &stream, 1).await;
    assert_eq!(stored[0].metadata.tenant, Some(tenant(&acme_name)));
    let default = naming("default");
    append(&store, &stream, ExpectedVersion::NoStream, vec![default]).await;
    assert_eq!(
        read_stream(&store, &stream, 1).await[0].metadata.tenant,
        Some(Tenant::DEFAULT)
    );
}

/// A tenant's log (`read_all`) holds its events only, in global order, at
/// their global positions (with gaps where other tenants' events are), in
/// pages of any size; `head_position` is its last event's position; the
/// unscoped handle's log holds every tenant's events, each naming its
/// tenant.
pub async fn a_tenants_log_holds_only_its_events_in_global_order<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let quiet = view(&store, &tenant_name("quiet"));
    let mut positions: Vec<(usize, u64)> = Vec::new();
    for round in 0..4_i64 {
        for (which, target) in [(0, &acme), (1, &globex), (2, &store)] {
            let stream = stream(&format!("log-{which}"));
            let result = append(
                target,
                &stream,
                ExpectedVersion::Any,
                vec![added(round), added(round)],
            )
            .await;
            positions.extend(result.positions.iter().map(|&position| (which, position)));
        }
    }
    for (which, target) in [(0, &acme), (1, &globex)] {
        let expected: Vec<u64> = positions
            .iter()
            .filter(|(owner, _)| *owner == which)
            .map(|&(_, position)| position)
            .collect();
        let log = read_everything(target).await;
        assert_eq!(
            log.iter().map(|event| event.position).collect::<Vec<_>>(),
            expected
        );
        assert!(
            log.iter()
                .all(|event| event.metadata.tenant.as_ref() == target.tenant())
        );
        // Page by page, starting between its own events: nothing skipped,
        // nothing repeated, nothing of another tenant.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = target
                .read_all(after, 3)
                .await
                .unwrap_or_else(|error| panic!("reading $all failed: {error}"));
            let Some(last) = page.last() else { break };
            after = last.position;
            paged.extend(page.iter().map(|event| event.position));
        }
        assert_eq!(paged, expected, "paging a tenant's log");
        let middle = expected[expected.len() / 2];
        let rest: Vec<u64> = target
            .read_all(middle - 1, 100)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
            .iter()
            .map(|event| event.position)
            .collect();
        assert_eq!(rest, expected[expected.len() / 2..], "resuming between positions");
        assert_eq!(
            head(target).await,
            *expected.last().unwrap_or(&0),
            "a tenant's head"
        );
    }
    assert!(read_everything(&quiet).await.is_empty());
    assert_eq!(head(&quiet).await, 0, "a tenant without events has head 0");

    let all = read_everything(&store).await;
    let everything: Vec<u64> = positions.iter().map(|&(_, position)| position).collect();
    assert_eq!(
        all.iter().map(|event| event.position).collect::<Vec<_>>(),
        everything
    );
    assert_eq!(head(&store).await, *everything.last().unwrap_or(&0));
    let tenants: Vec<Option<Tenant>> = all
        .iter()
        .zip(&positions)
        .map(|(event, _)| event.metadata.tenant.clone())
        .collect();
    let expected_tenants: Vec<Option<Tenant>> = positions
        .iter()
        .map(|(which, _)| match which {
            0 => acme.tenant().cloned(),
            1 => globex.tenant().cloned(),
            _ => Some(Tenant::DEFAULT),
        })
        .collect();
    assert_eq!(
        tenants, expected_tenants,
        "the unscoped log names each event's tenant"
    );
}

/// A tenant's subscription (catch-up, then live) delivers its own events
/// only, in order, never one of another tenant appended in between; the
/// unscoped handle's subscription delivers everyone's.
pub async fn a_tenants_subscription_sees_only_its_events<S>(store: S)
where
    S: EventStore + Tenancy + Clone,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let stream = stream("subscribed");
    let caught_up = append(&acme, &stream, ExpectedVersion::Any, events(2)).await;
    append(&globex, &stream, ExpectedVersion::Any, events(2)).await;
    let mut acme_live = acme.subscribe_all(0);
    let mut everyone = store.subscribe_all(0);
    let mut delivered = Vec::new();
    for _ in 0..2 {
        delivered.push(next(&mut acme_live).await);
    }
    assert_eq!(delivered, caught_up.positions, "catch-up delivers acme's events");

    // Live: globex appends before acme; acme's subscription must skip it.
    let globex_live = append(&globex, &stream, ExpectedVersion::Any, vec![added(5)]).await;
    let acme_live_append = append(&acme, &stream, ExpectedVersion::Any, vec![added(6)]).await;
    assert_eq!(next(&mut acme_live).await, acme_live_append.positions[0]);

    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(next(&mut everyone).await);
    }
    assert!(all.windows(2).all(|pair| pair[0] < pair[1]), "in order: {all:?}");
    assert!(all.contains(&globex_live.positions[0]) && all.contains(&acme_live_append.positions[0]));
}

async fn next(subscription: &mut crate::EventStream<'static>) -> u64 {
    match subscription.next().await {
        Some(Ok(event)) => event.position,
        other => panic!("the subscription ended or failed: {other:?}"),
    }
}

/// Snapshots belong to a tenant: one saved by a tenant is not loaded by
/// another (nor by the unscoped handle) for the same stream id, and
/// another tenant's save does not replace it or its shape version.
pub async fn snapshots_cannot_reach_another_tenant<S>(store: S)
where
    S: EventStore + SnapshotStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let stream = StreamId::new("Tally", format!("snapshot-{}", Uuid::now_v7()));
    // Each tenant's snapshot has its own shape version, which stays with it.
    let snapshot = |version: u64, schema_version: u32, total: i64| Snapshot {
        stream: stream.clone(),
        version,
        schema_version,
        state: Payload::from(serde_json::json!({ "id": stream.aggregate_id(), "total": total })),
        taken_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    save_snapshot(&acme, snapshot(3, 2, 30)).await;
    assert_eq!(
        snapshot_versions(&globex, &stream).await,
        None,
        "globex loads acme's snapshot"
    );
    assert_eq!(
        snapshot_versions(&store, &stream).await,
        None,
        "the default tenant loads acme's snapshot"
    );
    save_snapshot(&globex, snapshot(9, 5, 90)).await;
    save_snapshot(&store, snapshot(1, 1, 10)).await;
    assert_eq!(
        snapshot_versions(&acme, &stream).await,
        Some((3, 2)),
        "acme's snapshot was replaced"
    );
    assert_eq!(snapshot_versions(&globex, &stream).await, Some((9, 5)));
    assert_eq!(snapshot_versions(&store, &stream).await, Some((1, 1)));
}

async fn save_snapshot<S: SnapshotStore>(store: &S, snapshot: Snapshot) {
    store
        .save_snapshot(snapshot)
        .await
        .unwrap_or_else(|error| panic!("saving a snapshot failed: {error}"));
}

/// The stored snapshot's stream version and shape version.
async fn snapshot_versions<S: SnapshotStore>(store: &S, stream: &StreamId) -> Option<(u64, u32)> {
    store
        .load_snapshot(stream)
        .await
        .unwrap_or_else(|error| panic!("loading a snapshot failed: {error}"))
        .map(|snapshot| (snapshot.version, snapshot.schema_version))
}

/// Retrying with an event id stored in another tenant (same content, or
/// the id reused, alone or beside new events, to the same or another
/// stream id) is [`Error::DuplicateEventId`] that names no stream of the
/// other tenant, returns none of its positions, and writes nothing; the
/// owner's own retry still returns its original positions.
pub async fn retry_with_another_tenants_event_id_reveals_nothing<S>(store: S)
where
    S: EventStore + Tenancy,
{
    let (acme, globex) = (
        view(&store, &tenant_name("acme")),
        view(&store, &tenant_name("globex")),
    );
    let secret = stream("secret");
    let stored = vec![added(1), added(2)];
    let original = append(&acme, &secret, ExpectedVersion::NoStream, stored.clone()).await;
    let mine = stream("mine");
    let reused = NewEvent::new("other", Payload::from(serde_json::json!({ "x": 1 })))
        .with_event_id(stored[0].event_id);
    let attempts: Vec<(&S, &StreamId, Vec<NewEvent>)> = vec![
        (&globex, &secret, stored.clone()),
        (&globex, &secret, vec![stored[0].clone()]),
        (&globex, &mine, vec![stored[1].clone()]),
        (&globex, &mine, vec![added(3), stored[0].clone()]),
        (&globex, &mine, vec![reused.clone()]),
        (&store, &mine, stored.clone()),
        (&store, &secret, vec![stored[1].clone()]),
    ];
    for (target, target_stream, batch) in attempts {
        for expected in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::Exact(2),
        ] {
            let result = target.append(target_stream, expected, batch.clone()).await;
            assert_hidden_duplicate(&result, target_stream, &secret);
        }
    }
    assert!(
        read_everything(&globex).await.is_empty(),
        "globex's log gained an event"
    );
    assert_eq!(version(&globex, &mine).await, 0);
    assert_eq!(version(&globex, &secret).await, 0);
    assert_eq!(version(&store, &mine).await, 0);
    assert_eq!(
        read_everything(&store).await.len(),
        2,
        "only acme's two events are stored"
    );

    let retried = append(&acme, &secret, ExpectedVersion::NoStream, stored).await;
    assert_eq!(
        retried, original,
        "the owner's retry returns its original positions"
    );
}

#[track_caller]
fn assert_hidden_duplicate<T: std::fmt::Debug>(
    result: &Result<T, Error>,
    target: &StreamId,
    secret: &StreamId,
) {
    match result {
        Err(
            error @ Error::DuplicateEventId {
                stream,
                existing_stream,
                ..
            },
        ) => {
            assert_eq!(stream, target, "the stream appended to");
            assert_eq!(
                *existing_stream,
                hidden_stream(),
                "the other tenant's stream is hidden"
            );
            if target != secret {
                let text = format!("{error} {error:?}");
                assert!(
                    !text.contains(secret.aggregate_id()),
                    "the error names the other tenant's stream: {text}"
                );
            }
        }
        other => panic!("an id of another tenant: expected DuplicateEventId, got {other:?}"),
    }
}

/// An [`Application`] on a tenant view loads and saves that tenant's
/// aggregates: the same aggregate id under two tenants is two aggregates,
/// and the unscoped handle's application (the default tenant) sees neither.
pub async fn applications_on_tenant_views_keep_aggregates_apart<S>(store: S)
where
    S: EventStore + Tenancy + Clone,
{
    let id = format!("app-{}", Uuid::now_v7());
    let mut totals = Vec::new();
    for (name, amount) in [(tenant_name("acme"), 3), (tenant_name("globex"), 40)] {
        let app = Application::<Tally, _>::new(view(&store, &name));
        let mut tally = Tally::create(id.clone(), 0);
        tally
            .add(amount)
            .unwrap_or_else(|error| panic!("adding failed: {error}"));
        app.save(&mut tally)
            .await
            .unwrap_or_else(|error| panic!("saving in {name} failed: {error}"));
        let loaded = app
            .get(id.clone())
            .await
            .unwrap_or_else(|error| panic!("loading in {name} failed: {error}"));
        totals.push(loaded.total);
    }
    assert_eq!(totals, [3, 40]);
    let unscoped = Application::<Tally, _>::new(store.clone()).get(id).await;
    assert!(matches!(unscoped, Err(Error::NotFound { .. })), "{unscoped:?}");
}
