//! Group commit: appends that arrive while others are in flight gather in
//! an open group, which commits all of them in one transaction and one
//! statement, each with its own version check.
//!
//! At most `in_flight` appends and groups run at once. An append that
//! finds a place free and no group waiting runs at once, by the
//! single-append path: with one writer nothing waits and nothing changes.
//! Otherwise it joins the open group, or opens one. A group commits when a
//! place frees up (and its window, if one is set, has passed), so while
//! the groups in flight wait for their commit, the next one gathers every
//! append made meanwhile: the busier the store, the larger the groups, and
//! one statement and one commit serve them all. A group that is full, or
//! meets an append it cannot take (another tenant, a stream it already
//! holds), waits in line for a place while a new one gathers.
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

mod gate;

use std::sync::Arc;

use factum_core::backend::first_repeated_id;
use factum_core::{Error, NewEvent, StreamId, Tenant};

pub(crate) use gate::{Entry, Gate, Slot};
use tokio::sync::oneshot;

use crate::batch::Appends;
use crate::{PostgresError, PostgresEventStore};

/// The most events one append may carry to join a group: larger batches
/// are a group of their own already.
const MAX_EVENTS_PER_APPEND: usize = 1_000;

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
    /// Nothing written: run the append by itself, in the place in flight
    /// given with it (a group of one), or beside the others (its group
    /// failed, or a retry held its stream's turn).
    Alone(Option<Slot>),
}

/// Commits one group and answers each of its appends. A group of one is
/// a single append: its caller runs it by the usual path, in this place.
async fn commit_group(slot: Slot, mut group: Vec<Request>) {
    if group.len() == 1 {
        if let Some(request) = group.pop() {
            // A caller that went away needs no answer; the slot comes back
            // with the refused answer and is dropped.
            let _ = request.answer.send(Answer::Alone(Some(slot)));
        }
        return;
    }
    let answers = run_group(&group).await.ok();
    let mut answers = answers.map(Vec::into_iter);
    for request in group {
        let answer = answers
            .as_mut()
            .and_then(Iterator::next)
            .unwrap_or(Answer::Alone(None));
        let _ = request.answer.send(answer);
    }
    // The place is kept for one more turn: the appends just answered, made
    // again at once, gather for the next group instead of one taking the
    // place alone.
    tokio::task::yield_now().await;
    drop(slot);
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
    let columns = columns_of(group, &order)?;
    let client = store.client().await?;
    let statement = client
        .prepare_cached(&store.shared.sql.append_group)
        .await
        .map_err(|error| client.check(error))?;
    let tenant = store.home().as_str();
    let params = columns.params(&tenant);
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
        let mut positions: Vec<i64> = row.try_get(2)?;
        // Positions increase with versions within an append; the
        // statement leaves their order to the caller.
        positions.sort_unstable();
        let count = group[index].events.len();
        answers[index] = Some(if !turn {
            Answer::Alone(None)
        } else if positions.len() == count {
            let count = i64::try_from(count).map_err(|_| GroupFailed)?;
            Answer::Done(actual.saturating_add(count), positions)
        } else {
            Answer::Conflict(actual)
        });
    }
    Ok(answers
        .into_iter()
        .map(|answer| answer.unwrap_or(Answer::Alone(None)))
        .collect())
}

/// The group's appends as the statement takes them, in `order`.
fn columns_of<'a>(group: &'a [Request], order: &[usize]) -> Result<Appends<'a>, Error> {
    let events = group.iter().map(|request| request.events.len()).sum();
    let mut columns = Appends::with_capacity(group.len(), events);
    for &index in order {
        let request = &group[index];
        columns.push(&request.stream, request.expected, &request.events)?;
    }
    Ok(columns)
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
