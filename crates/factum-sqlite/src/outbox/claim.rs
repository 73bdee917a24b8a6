//! A claim on SQLite: a lease on entries, taken in one write transaction,
//! renewed while the claim lives, and given back when it is finished or
//! dropped.

use std::sync::Arc;
use std::time::Duration;

use factum_core::backend::{ClaimedEntry, hand_out, query_bound};
use factum_core::{Error, OutboxClaim, OutboxEntry, Outcome};
use rusqlite::Connection;
use tokio::task::JoinHandle;

use super::finish::record;
use super::sql;
use crate::SqliteEventStore;
use crate::decode::Decoder;
use crate::error::sqlite;
use crate::lease::now_millis;
use crate::writer::{Command, Written};

/// Entries leased to one relay: another relay claims them only once this
/// claim is finished, dropped, or its lease lapsed (its process died).
///
/// While the claim lives a task renews its lease every third of the lease
/// time, so a slow publish keeps it; a relay process that dies stops
/// renewing, and its entries are claimed again once the lease runs out.
/// Dropped unfinished, the claim gives its entries back at once.
#[derive(Debug)]
pub struct SqliteOutboxClaim {
    store: SqliteEventStore,
    token: Arc<str>,
    /// The events handed out, one [`OutboxEntry`] each.
    entries: Vec<OutboxEntry>,
    /// The outbox entries leased: their events are `entries`, in order.
    spans: Arc<[Span]>,
    renewal: Option<JoinHandle<()>>,
    finished: bool,
}

/// An outbox entry: the positions of one append's events to one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) first: i64,
    pub(super) last: i64,
}

/// A waiting entry read for a claim, before `hand_out` decides.
struct Candidate {
    /// The events the claim would take: the entry's, or its first ones
    /// when the claim has room for fewer.
    span: Span,
    /// The entry's last position.
    entry_last: i64,
    attempts: u32,
    /// The position of the event before the entry's first in its stream,
    /// when that event is waiting too.
    waiting_on: Option<u64>,
}

impl SqliteOutboxClaim {
    /// Leases waiting entries holding up to `limit` events for `token`,
    /// for `lease`.
    pub(super) async fn take(
        store: &SqliteEventStore,
        token: Arc<str>,
        limit: usize,
        ahead: Vec<u64>,
        lease: Duration,
    ) -> Result<Self, Error> {
        let lease_millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let holder = Arc::clone(&token);
        let (entries, spans) = store
            .write(move |connection| lease_entries(connection, &holder, limit, &ahead, lease_millis))
            .await?;
        let spans: Arc<[Span]> = spans.into();
        let renewal = (!spans.is_empty()).then(|| {
            tokio::spawn(renew(
                store.clone(),
                Arc::clone(&token),
                Arc::clone(&spans),
                lease,
            ))
        });
        Ok(Self {
            store: store.clone(),
            token,
            entries,
            spans,
            renewal,
            finished: false,
        })
    }

    fn stop_renewing(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }

    fn positions(&self) -> Vec<u64> {
        self.entries.iter().map(|entry| entry.id).collect()
    }
}

/// Reads the candidates and leases the entries whose events the claim may
/// hand out; the rest stay free for the relay that holds their
/// predecessors.
fn lease_entries(
    connection: &Connection,
    token: &str,
    limit: usize,
    ahead: &[u64],
    lease_millis: i64,
) -> Result<(Vec<OutboxEntry>, Vec<Span>), Error> {
    super::require_outbox(connection)?;
    // Read on the writer thread, just before the write: a queue in front of
    // it does not shorten the lease.
    let now = now_millis();
    let candidates = candidates(connection, limit, now)?;
    let claimed = expand(connection, &candidates)?;
    // An entry is handed out whole or held back whole: its first event is
    // held back only with its stream, and so are the events after it.
    let (entries, _held_back) = hand_out(claimed, ahead);
    let mut handed_out = entries.iter().map(|entry| entry.id).peekable();
    let spans: Vec<Span> = candidates
        .iter()
        .map(|candidate| candidate.span)
        .filter(|span| {
            while handed_out
                .next_if(|position| query_bound(*position) < span.first)
                .is_some()
            {}
            handed_out
                .peek()
                .is_some_and(|position| query_bound(*position) <= span.last)
        })
        .collect();
    if spans.is_empty() {
        return Ok((entries, spans));
    }
    // Only the last candidate can have been cut, and only a leased one is.
    if let Some(cut) = candidates
        .last()
        .filter(|candidate| candidate.span.last < candidate.entry_last)
        && spans.last() == Some(&cut.span)
    {
        cut_entry(connection, cut.span)?;
    }
    let until = now.saturating_add(lease_millis);
    connection
        .prepare_cached(sql::LEASE)
        .and_then(|mut lease| lease.execute((token, until, json_positions(&spans))))
        .map_err(sqlite)?;
    Ok((entries, spans))
}

/// The oldest waiting entries free of leases, until they hold `limit`
/// events; the last one cut to the room left when it holds more.
fn candidates(connection: &Connection, limit: usize, now: i64) -> Result<Vec<Candidate>, Error> {
    let mut candidates = Vec::new();
    if limit == 0 {
        return Ok(candidates);
    }
    let mut statement = connection.prepare_cached(sql::CANDIDATES).map_err(sqlite)?;
    let mut rows = statement.query([now]).map_err(sqlite)?;
    let mut events = 0_usize;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let mut span = Span {
            first: row.get(0).map_err(sqlite)?,
            last: row.get(1).map_err(sqlite)?,
        };
        let entry_last = span.last;
        let room = limit - events;
        let size = usize::try_from(span.last - span.first + 1).unwrap_or(usize::MAX);
        if size > room {
            span.last = span.first + i64::try_from(room).unwrap_or(i64::MAX) - 1;
        }
        let attempts: i64 = row.get(2).map_err(sqlite)?;
        let waiting_on: Option<i64> = row.get(3).map_err(sqlite)?;
        candidates.push(Candidate {
            span,
            entry_last,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            waiting_on: waiting_on.and_then(|position| u64::try_from(position).ok()),
        });
        events = events.saturating_add(size.min(room));
        if events >= limit {
            break;
        }
    }
    Ok(candidates)
}

/// Cuts the entry that starts at `span.first` after `span.last`: the rest
/// becomes an entry of its own, in the same state, which the claim leaves
/// in line.
fn cut_entry(connection: &Connection, span: Span) -> Result<(), Error> {
    for statement in [sql::CUT_OFF_REST, sql::CUT] {
        connection
            .prepare_cached(statement)
            .and_then(|mut statement| statement.execute((span.first, span.last)))
            .map_err(sqlite)?;
    }
    Ok(())
}

/// The events of `candidates`, each waiting on the one before it in its
/// entry, the first on the entry's predecessor.
fn expand(connection: &Connection, candidates: &[Candidate]) -> Result<Vec<ClaimedEntry>, Error> {
    let mut statement = connection.prepare_cached(&sql::ENTRY_EVENTS).map_err(sqlite)?;
    let mut decoder = Decoder::default();
    let mut claimed = Vec::new();
    for candidate in candidates {
        let mut rows = statement
            .query((candidate.span.first, candidate.span.last))
            .map_err(sqlite)?;
        let mut waiting_on = candidate.waiting_on;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let event = decoder.log_event(row)?;
            let position = event.position;
            claimed.push(ClaimedEntry {
                entry: OutboxEntry::new(position, event, candidate.attempts),
                waiting_on,
            });
            waiting_on = Some(position);
        }
    }
    Ok(claimed)
}

/// Extends the lease every third of its length until the claim ends (the
/// task is aborted) or a renewal fails (the store was closed).
async fn renew(store: SqliteEventStore, token: Arc<str>, spans: Arc<[Span]>, lease: Duration) {
    let lease_millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let firsts = json_positions(&spans);
    loop {
        tokio::time::sleep(lease / 3).await;
        let (token, firsts) = (Arc::clone(&token), firsts.clone());
        let renewed = store
            .write(move |connection| {
                let until = now_millis().saturating_add(lease_millis);
                connection
                    .prepare_cached(sql::RENEW)
                    .and_then(|mut statement| statement.execute((until, &*token, firsts)))
                    .map(drop)
                    .map_err(sqlite)
            })
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, "renewing an outbox lease failed; the claim may lapse");
            return;
        }
    }
}

impl OutboxClaim for SqliteOutboxClaim {
    fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// One durable write: every outcome, and the lease given back.
    async fn finish(mut self, outcomes: Vec<Outcome>) -> Result<(), Error> {
        self.stop_renewing();
        if self.entries.is_empty() {
            self.finished = true;
            return Ok(());
        }
        let (token, spans, positions) = (Arc::clone(&self.token), Arc::clone(&self.spans), self.positions());
        self.store
            .write(move |connection| record(connection, &token, &spans, &positions, &outcomes))
            .await?;
        // Only now: a finish that failed gives the rows back when dropped.
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteOutboxClaim {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.finished || self.spans.is_empty() {
            return;
        }
        // Give the rows back now rather than when the lease lapses. Sent to
        // the writer without waiting: nothing here can await, and if the
        // store is gone the lease lapses instead.
        let (token, spans, positions) = (Arc::clone(&self.token), Arc::clone(&self.spans), self.positions());
        let _ = self.store.send(Command::Write(Box::new(move |connection| {
            let released = connection
                .map_err(Error::from)
                .and_then(|connection| record(connection, &token, &spans, &positions, &[]));
            if let Err(error) = &released {
                tracing::warn!(%error, "giving back a dropped outbox claim failed; its lease will lapse");
            }
            Written {
                succeeded: released.is_ok(),
                answer: Box::new(|_| {}),
            }
        })));
    }
}

/// The first positions of `spans` as a JSON array, the one parameter of a
/// statement over many entries (`json_each`).
pub(super) fn json_positions(spans: &[Span]) -> String {
    let mut json = String::from("[");
    for (index, span) in spans.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(&span.first.to_string());
    }
    json.push(']');
    json
}
