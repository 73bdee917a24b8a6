//! The rules every store's [`Outbox`] keeps, one async check each, and the
//! publishers the checks use.
//!
//! Each check takes a store whose outbox is enabled and fresh (no events),
//! and one or two [`Outbox`] values on it: two play two relays (on SQLite,
//! two handles on one file; on PostgreSQL, two pools or one). The checks
//! need no message bus: [`ScriptedBus`] plays one, and [`Watched`] records
//! what a relay handed it.

mod publisher;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;

pub use publisher::{ScriptedBus, Watched};

use crate::{
    AppendBatch, EventStore, ExpectedVersion, NewEvent, Outbox, OutboxClaim, OutboxEntry, OutboxRelay,
    Outcome, Payload, RecordedEvent, RetryPolicy, StreamId, Tenancy,
};

/// How long a check waits for something that should happen soon (a
/// released claim, a relay catching up) before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

fn stream(name: &str) -> StreamId {
    StreamId::new("OutboxCheck", name)
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|index| {
            NewEvent::new(
                "noted",
                Payload::encode(&serde_json::json!({ "index": index })).unwrap(),
            )
        })
        .collect()
}

async fn append<S: EventStore>(store: &S, stream: &StreamId, count: usize) {
    store
        .append(stream, ExpectedVersion::Any, events(count))
        .await
        .unwrap_or_else(|error| panic!("appending to {stream} failed: {error}"));
}

/// Appends one event to each of `streams`, `rounds` times: their entries
/// interleave in the outbox.
async fn interleave<S: EventStore>(store: &S, streams: &[StreamId], rounds: usize) {
    for _ in 0..rounds {
        for stream in streams {
            append(store, stream, 1).await;
        }
    }
}

async fn everything<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    store
        .read_all(0, 100_000)
        .await
        .unwrap_or_else(|error| panic!("reading $all failed: {error}"))
}

async fn claim<O: Outbox>(outbox: &O, limit: usize) -> O::Claim {
    outbox
        .claim(limit)
        .await
        .unwrap_or_else(|error| panic!("claiming {limit} entries failed: {error}"))
}

async fn finish<C: OutboxClaim>(claim: C, outcome: impl Fn(&OutboxEntry) -> Outcome) {
    let outcomes = claim.entries().iter().map(outcome).collect();
    claim
        .finish(outcomes)
        .await
        .unwrap_or_else(|error| panic!("finishing a claim failed: {error}"));
}

async fn pending<O: Outbox>(outbox: &O) -> u64 {
    outbox
        .pending()
        .await
        .unwrap_or_else(|error| panic!("counting pending entries failed: {error}"))
}

fn ids(entries: &[OutboxEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.id).collect()
}

/// The aggregate id and version of each entry, in order: what a check of
/// a claim compares.
pub fn named(entries: &[OutboxEntry]) -> Vec<(String, u64)> {
    entries
        .iter()
        .map(|entry| (entry.event.aggregate_id().to_owned(), entry.event.version))
        .collect()
}

fn pairs(items: &[(&str, u64)]) -> Vec<(String, u64)> {
    items
        .iter()
        .map(|(name, version)| ((*name).to_owned(), *version))
        .collect()
}

/// Every way of appending writes one entry per event, in the same
/// transaction: a single append, a batch, an atomic append across streams
/// and appends made at once (which a store may commit together). The
/// entries carry the events exactly as stored, keyed by their positions.
pub async fn every_append_path_writes_entries<S: EventStore, O: Outbox>(store: &S, outbox: &O) {
    append(store, &stream("single"), 1).await;
    append(store, &stream("batch"), 3).await;
    store
        .append_many(vec![
            AppendBatch::new(stream("many-a"), ExpectedVersion::NoStream, events(2)),
            AppendBatch::new(stream("many-b"), ExpectedVersion::NoStream, events(1)),
        ])
        .await
        .unwrap_or_else(|error| panic!("append_many failed: {error}"));
    let concurrent: Vec<StreamId> = (0..16)
        .map(|index| stream(&format!("together-{index}")))
        .collect();
    futures::future::join_all(concurrent.iter().map(|stream| append(store, stream, 2))).await;

    let stored = everything(store).await;
    assert_eq!(stored.len(), 1 + 3 + 3 + 32);
    assert_eq!(pending(outbox).await, stored.len() as u64, "one entry per event");
    let claim = claim(outbox, 1000).await;
    let claimed: Vec<RecordedEvent> = claim.entries().iter().map(|entry| entry.event.clone()).collect();
    assert_eq!(
        claimed, stored,
        "the entries hold the stored events, in position order"
    );
    assert!(
        claim
            .entries()
            .iter()
            .all(|entry| entry.id == entry.event.position && entry.attempts == 0)
    );
    finish(claim, |_| Outcome::Sent).await;
    assert_eq!(pending(outbox).await, 0);
}

/// A tenant view's appends go through the outbox like any other (the
/// trigger works whatever role or tenant writes), the entries name their
/// tenant, and the same stream id under two tenants is two aggregates: the
/// first event of one never holds back the first of the other.
pub async fn tenant_views_append_through_the_outbox<S: EventStore + Tenancy, O: Outbox>(
    store: &S,
    outbox: &O,
) {
    let stream = stream("tenanted");
    let acme = store.for_tenant("acme").expect("a valid tenant");
    append(&acme, &stream, 2).await;
    append(store, &stream, 1).await;
    let claim = claim(outbox, 10).await;
    let tenants: Vec<(Option<String>, u64)> = claim
        .entries()
        .iter()
        .map(|entry| {
            let tenant = entry
                .event
                .metadata
                .tenant
                .as_ref()
                .map(|tenant| tenant.as_str().to_owned());
            (tenant, entry.event.version)
        })
        .collect();
    assert_eq!(
        tenants,
        [
            (Some("acme".to_owned()), 1),
            (Some("acme".to_owned()), 2),
            (Some("default".to_owned()), 1),
        ],
        "every entry, naming its tenant, none held back by the other tenant's stream"
    );
    finish(claim, |_| Outcome::Sent).await;
    assert_eq!(pending(outbox).await, 0);
}

/// A claim holds each aggregate's earliest unsent entries; while it is
/// open, another claim gets none of the later entries of those aggregates
/// (they would overtake), but gets other aggregates' entries. Once the
/// first is finished, the held-back entries are claimed.
pub async fn a_claim_holds_back_the_rest_of_its_aggregates<S: EventStore, O: Outbox>(
    store: &S,
    first: &O,
    second: &O,
) {
    let streams: Vec<StreamId> = ["a", "b", "c"].iter().map(|name| stream(name)).collect();
    interleave(store, &streams, 2).await;
    // Positions: a1 b1 c1 a2 b2 c2.
    let held = claim(first, 2).await;
    assert_eq!(named(held.entries()), pairs(&[("a", 1), ("b", 1)]));

    let other = claim(second, 100).await;
    assert_eq!(
        named(other.entries()),
        pairs(&[("c", 1), ("c", 2)]),
        "a2 and b2 wait for a1 and b1, held by the first claim"
    );
    finish(other, |_| Outcome::Sent).await;
    finish(held, |_| Outcome::Sent).await;

    let rest = claim(second, 100).await;
    assert_eq!(named(rest.entries()), pairs(&[("a", 2), ("b", 2)]));
    finish(rest, |_| Outcome::Sent).await;
    assert_eq!(pending(first).await, 0);
}

/// A relay's next claim, taken behind its own claim still in flight
/// ([`Outbox::claim_after`]), hands out the entries that follow it, while
/// another relay's claim still holds them back.
pub async fn a_claim_behind_the_relays_own_hands_out_what_follows<S: EventStore, O: Outbox>(
    store: &S,
    outbox: &O,
    other: &O,
) {
    let streams: Vec<StreamId> = ["a", "b"].iter().map(|name| stream(name)).collect();
    interleave(store, &streams, 3).await;
    // Positions: a1 b1 a2 b2 a3 b3.
    let first = claim(outbox, 2).await;
    assert_eq!(named(first.entries()), pairs(&[("a", 1), ("b", 1)]));
    let ahead = ids(first.entries());
    let behind = outbox.claim_after(3, &ahead).await.expect("claiming behind");
    assert_eq!(named(behind.entries()), pairs(&[("a", 2), ("b", 2), ("a", 3)]));
    let elsewhere = claim(other, 10).await;
    assert!(
        elsewhere.entries().is_empty(),
        "b3 waits for b2: {:?}",
        named(elsewhere.entries())
    );
    finish(elsewhere, |_| Outcome::Sent).await;
    finish(first, |_| Outcome::Sent).await;
    finish(behind, |_| Outcome::Sent).await;
    assert_eq!(named(&claim_all(other).await), pairs(&[("b", 3)]));
}

/// Two open claims never share an entry, and between them and the entries
/// held back every unsent entry is accounted for.
pub async fn claims_never_share_an_entry<S: EventStore, O: Outbox>(store: &S, first: &O, second: &O) {
    let streams: Vec<StreamId> = (0..8).map(|index| stream(&format!("s{index}"))).collect();
    for (index, stream) in streams.iter().enumerate() {
        append(store, stream, 1 + index % 3).await;
    }
    let total = everything(store).await.len();
    let one = claim(first, 5).await;
    let two = claim(second, 5).await;
    let mine: HashSet<u64> = ids(one.entries()).into_iter().collect();
    let theirs: HashSet<u64> = ids(two.entries()).into_iter().collect();
    assert!(!mine.is_empty() && !theirs.is_empty());
    assert!(mine.is_disjoint(&theirs), "{mine:?} and {theirs:?} overlap");
    finish(two, |_| Outcome::Sent).await;
    finish(one, |_| Outcome::Sent).await;

    let mut sent = mine.len() + theirs.len();
    while sent < total {
        let next = claim(first, 5).await;
        assert!(
            !next.entries().is_empty(),
            "{} entries were never handed out",
            total - sent
        );
        sent += next.entries().len();
        finish(next, |_| Outcome::Sent).await;
    }
    assert_eq!(pending(first).await, 0);
}

/// A claim dropped unfinished (its relay's task died) releases its entries:
/// another relay claims them soon after.
pub async fn a_dropped_claim_releases_its_entries<S: EventStore, O: Outbox>(
    store: &S,
    first: &O,
    second: &O,
) {
    append(store, &stream("dropped"), 3).await;
    let lost = claim(first, 10).await;
    let lost_ids = ids(lost.entries());
    assert_eq!(lost_ids.len(), 3);
    drop(lost);

    let taken = tokio::time::timeout(PATIENCE, async {
        loop {
            let again = claim(second, 10).await;
            if !again.entries().is_empty() {
                return again;
            }
            finish(again, |_| Outcome::Sent).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("another relay claims the entries of a dropped claim");
    assert_eq!(ids(taken.entries()), lost_ids);
    finish(taken, |_| Outcome::Sent).await;
}

/// Outcomes are recorded: a retried entry comes back with its attempts
/// counted; a parked one is listed with its error, still pending, never
/// claimed, and no longer holds back its aggregate; requeued, it is claimed
/// again; a sent entry is done.
pub async fn outcomes_are_recorded<S: EventStore, O: Outbox>(store: &S, outbox: &O) {
    append(store, &stream("x"), 3).await;
    let first = claim(outbox, 1).await;
    let x1 = first.entries()[0].id;
    finish(first, |_| Outcome::Retry("timed out".to_owned())).await;

    let again = claim(outbox, 1).await;
    assert_eq!(ids(again.entries()), [x1]);
    assert_eq!(again.entries()[0].attempts, 1, "the retry was counted");
    finish(again, |_| Outcome::Park("message too large".to_owned())).await;

    let parked = outbox.parked(10).await.expect("listing parked entries");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0.id, x1);
    assert_eq!(parked[0].1, "message too large");
    assert_eq!(pending(outbox).await, 3, "a parked entry is kept, not dropped");

    let rest = claim(outbox, 10).await;
    assert_eq!(
        named(rest.entries()),
        pairs(&[("x", 2), ("x", 3)]),
        "a parked entry holds nothing back and is not claimed"
    );
    let x2 = rest.entries()[0].id;
    finish(rest, |_| Outcome::Sent).await;
    assert_eq!(pending(outbox).await, 1);

    assert!(!outbox.requeue(x2).await.expect("requeue"), "x2 is not parked");
    assert!(outbox.requeue(x1).await.expect("requeue"));
    assert!(
        outbox
            .parked(10)
            .await
            .expect("listing parked entries")
            .is_empty()
    );
    let requeued = claim(outbox, 10).await;
    assert_eq!(ids(requeued.entries()), [x1]);
    assert_eq!(requeued.entries()[0].attempts, 2);
    finish(requeued, |_| Outcome::Sent).await;
    assert_eq!(pending(outbox).await, 0);
}

/// Pruning deletes only sent entries, and only those sent before the cutoff.
pub async fn prune_deletes_only_old_sent_entries<S: EventStore, O: Outbox>(store: &S, outbox: &O) {
    append(store, &stream("p"), 4).await;
    let sent = claim(outbox, 2).await;
    finish(sent, |_| Outcome::Sent).await;
    let hour = time::Duration::hours(1);
    let pruned = outbox
        .prune(OffsetDateTime::now_utc() - hour)
        .await
        .expect("prune");
    assert_eq!(pruned, 0, "nothing was sent an hour ago");
    let pruned = outbox
        .prune(OffsetDateTime::now_utc() + hour)
        .await
        .expect("prune");
    assert_eq!(pruned, 2, "both sent entries go");
    assert_eq!(pending(outbox).await, 2, "unsent entries stay");
    let rest = claim_all(outbox).await;
    assert_eq!(rest.len(), 2);
}

async fn claim_all<O: Outbox>(outbox: &O) -> Vec<OutboxEntry> {
    let claim = claim(outbox, 1000).await;
    let entries = claim.entries().to_vec();
    finish(claim, |_| Outcome::Sent).await;
    entries
}

/// Two relays on one outbox, while events keep coming: every event is
/// published exactly once (no faults here), never by both relays at once,
/// and each aggregate's events in order.
pub async fn two_relays_publish_each_event_once_in_order<S, O>(store: &S, first: O, second: O)
where
    S: EventStore,
    O: Outbox,
{
    let bus = ScriptedBus::new();
    bus.set_delay(Duration::from_millis(2));
    let watched = Watched::new(bus);
    let quick = |relay: OutboxRelay<O, Watched<ScriptedBus>>| {
        relay
            .batch_size(8)
            .poll_interval(Duration::from_millis(5))
            .backoff(RetryPolicy::default().base_delay(Duration::from_millis(5)))
    };
    let relays = [
        quick(OutboxRelay::new(first, watched.clone())).spawn(),
        quick(OutboxRelay::new(second, watched.clone())).spawn(),
    ];
    let streams: Vec<StreamId> = (0..10).map(|index| stream(&format!("r{index}"))).collect();
    interleave(store, &streams, 12).await;
    let total = everything(store).await.len();
    tokio::time::timeout(PATIENCE, async {
        while watched.published().len() < total {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {total} events published", watched.published().len()));
    for relay in &relays {
        relay.shutdown().await.expect("the relay stops cleanly");
    }
    assert!(
        watched.overlaps().is_empty(),
        "published twice at once: {:?}",
        watched.overlaps()
    );
    let started = watched.started();
    assert_eq!(started.len(), total, "each event published once");
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &started {
        versions
            .entry(event.aggregate_id().to_owned())
            .or_default()
            .push(event.version);
    }
    for (aggregate, versions) in versions {
        assert_eq!(versions, (1..=12).collect::<Vec<u64>>(), "order of {aggregate}");
    }
}
