//! Group commit: appends that arrive while others are in flight gather in
//! an open group, which commits all of them in one transaction and one
//! statement, each with its own version check.
//!
//! An append that finds nothing in flight runs at once, by the
//! single-append path: with one writer nothing waits and nothing changes.
//! Otherwise it joins the open group, or opens one; the group closes after
//! the window (by default: once the appends ready to run on this runtime
//! have had their turn to join) or when it is full, and commits while the
//! next group gathers: groups never wait for one another, so PostgreSQL
//! still flushes the commits of groups in flight together.
//!
//! Each append of a group gets its own answer: stored, a conflict (its
//! expected version did not hold), or "alone": it runs again by itself,
//! through the single-append path. An append runs alone when its stream's
//! turn was held by a retry, and every append of a group does when the
//! group's statement failed (a refused value, a unique key met, a lost
//! connection): the group's transaction rolled back whole, so each append
//! then meets its own fate, and a bad append fails without taking its
//! neighbours down. After a lost connection the group's outcome is
//! unknown; running alone settles it, because an append whose events are
//! stored comes back as the original positions (idempotent by event id).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use factum_core::backend::{first_repeated_id, to_stored};
use factum_core::{Error, NewEvent, StreamId, Tenancy, Tenant};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use crate::batch::{metadata, schema_version};
use crate::options::GroupCommit;
use crate::{PostgresError, PostgresEventStore};

/// The most events one append may carry to join a group: larger batches
/// are a group of their own already.
const MAX_EVENTS_PER_APPEND: usize = 1_000;

/// How long past its window a group may stay open before the next append
/// closes it (its closing task should have done so long before).
const STALE_AFTER: Duration = Duration::from_secs(1);

/// The open group and the count of appends in flight, shared by a store's
/// clones and views.
pub(crate) struct Gate {
    settings: GroupCommit,
    /// Appends that may run alone at once.
    in_flight: usize,
    state: Mutex<State>,
}

struct State {
    /// Appends and groups running now.
    running: usize,
    /// The group gathering appends, if any.
    open: Option<OpenGroup>,
    /// Numbers the groups, so that a group's timer closes only its own.
    opened: u64,
}

/// A group still taking appends.
struct OpenGroup {
    number: u64,
    /// When it opened: a group left open long past its window (its
    /// closing task was dropped with its runtime) is closed by the next
    /// append instead of holding appends forever.
    opened_at: Instant,
    tenant: Option<Tenant>,
    streams: HashSet<StreamId>,
    events: usize,
    requests: Vec<Request>,
}

/// One append waiting in a group.
pub(crate) struct Request {
    store: PostgresEventStore,
    stream: StreamId,
    expected: Option<i64>,
    events: Arc<[NewEvent]>,
    answer: oneshot::Sender<Answer>,
}

/// What became of an append that joined a group.
pub(crate) enum Answer {
    /// Stored: the stream's new version and the positions.
    Done(i64, Vec<i64>),
    /// Nothing written: the stream was at this version, not the expected one.
    Conflict(i64),
    /// Nothing written: run the append by itself.
    Alone,
}

/// How an append enters the gate.
pub(crate) enum Entry {
    /// Nothing was in flight: run now, and drop the slot after.
    Run(Slot),
    /// In a group: the answer comes through here.
    Grouped(oneshot::Receiver<Answer>),
}

impl Gate {
    pub(crate) fn new(settings: GroupCommit, pool_size: usize) -> Self {
        Self {
            in_flight: settings.in_flight.unwrap_or(pool_size).max(1),
            settings,
            state: Mutex::new(State {
                running: 0,
                open: None,
                opened: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the append at once when nothing is in flight; otherwise adds
    /// it to the open group, opening one when there is none (or the open
    /// one cannot take it: another tenant, the same stream, full).
    pub(crate) fn enter(
        &self,
        store: &PostgresEventStore,
        stream: &StreamId,
        expected: Option<i64>,
        events: &Arc<[NewEvent]>,
    ) -> Entry {
        let mut state = self.state();
        // A group is closed and committed by tasks of its own: without a
        // runtime to spawn them on, the append runs alone.
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if state.running >= self.in_flight || state.open.is_some() => runtime,
            _ => {
                state.running += 1;
                return Entry::Run(Slot { store: store.clone() });
            }
        };
        let (answer, receiver) = oneshot::channel();
        let request = Request {
            store: store.clone(),
            stream: stream.clone(),
            expected,
            events: Arc::clone(events),
            answer,
        };
        let accepts = state.open.as_ref().is_some_and(|open| {
            open.opened_at.elapsed() < self.settings.window + STALE_AFTER
                && open.requests.len() < self.settings.max_appends
                && open.events + events.len() <= self.settings.max_events
                && open.tenant.as_ref() == store.tenant()
                && !open.streams.contains(stream)
        });
        if !accepts {
            if let Some(full) = state.open.take() {
                state.running += 1;
                runtime.spawn(commit_group(store.clone(), full.requests));
            }
            state.opened += 1;
            state.open = Some(OpenGroup {
                number: state.opened,
                opened_at: Instant::now(),
                tenant: store.tenant().cloned(),
                streams: HashSet::new(),
                events: 0,
                requests: Vec::new(),
            });
            runtime.spawn(close_after_window(store.clone(), state.opened));
        }
        if let Some(open) = state.open.as_mut() {
            open.events += events.len();
            open.streams.insert(stream.clone());
            open.requests.push(request);
        }
        Entry::Grouped(receiver)
    }

    /// Takes group `number` for commit, if it is still open.
    fn close(&self, number: u64) -> Option<Vec<Request>> {
        let mut state = self.state();
        if state.open.as_ref().is_none_or(|open| open.number != number) {
            return None;
        }
        state.running += 1;
        state.open.take().map(|open| open.requests)
    }

    fn finished(&self) {
        let mut state = self.state();
        state.running = state.running.saturating_sub(1);
    }
}

/// Closes group `number` after the window and commits it.
async fn close_after_window(store: PostgresEventStore, number: u64) {
    let Some(gate) = store.shared.group.as_ref() else {
        return;
    };
    if gate.settings.window.is_zero() {
        // The appends ready to run on this runtime join before it closes.
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(gate.settings.window).await;
    }
    if let Some(requests) = gate.close(number) {
        commit_group(store.clone(), requests).await;
    }
}

/// A running append's place among those in flight, given back when it is
/// dropped (the append finished, or its future was dropped).
pub(crate) struct Slot {
    store: PostgresEventStore,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.store.shared.group.as_ref() {
            gate.finished();
        }
    }
}

/// Commits one group and answers each of its appends. A group of one is
/// a single append: its caller runs it by the usual path.
async fn commit_group(store: PostgresEventStore, group: Vec<Request>) {
    let _slot = Slot { store };
    let answers = if group.len() > 1 {
        run_group(&group).await.ok()
    } else {
        None
    };
    let mut answers = answers.map(Vec::into_iter);
    for request in group {
        let answer = answers.as_mut().and_then(Iterator::next).unwrap_or(Answer::Alone);
        // A caller that went away needs no answer.
        let _ = request.answer.send(answer);
    }
}

/// A group's statement failed, or its columns could not be sent: every
/// append of the group runs alone (the transaction rolled back whole, or
/// never began).
struct GroupFailed;

impl From<Error> for GroupFailed {
    fn from(_: Error) -> Self {
        Self
    }
}

impl From<PostgresError> for GroupFailed {
    fn from(_: PostgresError) -> Self {
        Self
    }
}

impl From<tokio_postgres::Error> for GroupFailed {
    fn from(_: tokio_postgres::Error) -> Self {
        Self
    }
}

/// The group's statement: one transaction, one round trip. Appends are
/// sent in the order of their streams, so that two groups that write the
/// same streams meet them in one order (a wait, never a deadlock).
async fn run_group(group: &[Request]) -> Result<Vec<Answer>, GroupFailed> {
    let store = &group[0].store;
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by(|&a, &b| group[a].stream.cmp(&group[b].stream));
    let columns = GroupColumns::new(group, &order)?;
    let client = store.client().await?;
    let statement = client
        .prepare_cached(&store.shared.sql.append_group)
        .await
        .map_err(|error| client.check(error))?;
    let tenant = store.home().as_str();
    let params: [&(dyn ToSql + Sync); 12] = [
        &columns.stream_types,
        &columns.stream_ids,
        &columns.expected,
        &columns.appends,
        &columns.places,
        &columns.event_ids,
        &columns.event_types,
        &columns.schema_versions,
        &columns.payloads,
        &columns.metadata,
        &columns.occurred_at,
        &tenant,
    ];
    let rows = store
        .scoped(&client, client.query(&statement, &params))
        .await
        .map_err(|error| {
            store.announce(None);
            client.check(error)
        })?;
    let mut answers: Vec<Option<Answer>> = group.iter().map(|_| None).collect();
    for (row, &index) in rows.iter().zip(&order) {
        let actual: i64 = row.try_get(0)?;
        let turn: bool = row.try_get(1)?;
        let positions: Vec<i64> = row.try_get(2)?;
        let count = group[index].events.len();
        answers[index] = Some(if !turn {
            Answer::Alone
        } else if positions.len() == count {
            let count = i64::try_from(count).map_err(|_| GroupFailed)?;
            Answer::Done(actual.saturating_add(count), positions)
        } else {
            Answer::Conflict(actual)
        });
    }
    Ok(answers
        .into_iter()
        .map(|answer| answer.unwrap_or(Answer::Alone))
        .collect())
}

/// The arrays the group's statement takes: per append, then per event.
struct GroupColumns<'a> {
    stream_types: Vec<&'a str>,
    stream_ids: Vec<&'a str>,
    expected: Vec<Option<i64>>,
    appends: Vec<i32>,
    places: Vec<i32>,
    event_ids: Vec<uuid::Uuid>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    metadata: Vec<Option<String>>,
    occurred_at: Vec<time::OffsetDateTime>,
}

impl<'a> GroupColumns<'a> {
    fn new(group: &'a [Request], order: &[usize]) -> Result<Self, Error> {
        let events: usize = group.iter().map(|request| request.events.len()).sum();
        let mut columns = Self {
            stream_types: Vec::with_capacity(group.len()),
            stream_ids: Vec::with_capacity(group.len()),
            expected: Vec::with_capacity(group.len()),
            appends: Vec::with_capacity(events),
            places: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            occurred_at: Vec::with_capacity(events),
        };
        for (number, &index) in order.iter().enumerate() {
            let request = &group[index];
            let stream = &request.stream;
            columns.stream_types.push(stream.aggregate_type());
            columns.stream_ids.push(stream.aggregate_id());
            columns.expected.push(request.expected);
            let number: i32 = to_stored(number + 1, "append number", stream)?;
            for (place, event) in request.events.iter().enumerate() {
                columns.appends.push(number);
                columns
                    .places
                    .push(to_stored(place + 1, "place in the append", stream)?);
                columns.event_ids.push(event.event_id);
                columns.event_types.push(&event.event_type);
                columns.schema_versions.push(schema_version(stream, event)?);
                columns.payloads.push(event.payload.as_str());
                columns.metadata.push(metadata(stream, event)?);
                columns.occurred_at.push(event.occurred_at);
            }
        }
        Ok(columns)
    }
}

/// Whether an append may join a group: a few events with distinct ids, and
/// no text the server refuses (a NUL character), which would fail the
/// whole group; such an append runs alone and fails alone.
pub(crate) fn groupable(tenant: &Tenant, stream: &StreamId, events: &[NewEvent]) -> bool {
    let clean = |text: &str| !text.contains('\0');
    !events.is_empty()
        && events.len() <= MAX_EVENTS_PER_APPEND
        && clean(stream.aggregate_type())
        && clean(stream.aggregate_id())
        && clean(tenant.as_str())
        && events
            .iter()
            .all(|event| clean(&event.event_type) && clean(event.payload.as_str()))
        && (events.len() == 1 || first_repeated_id(events).is_none())
}
