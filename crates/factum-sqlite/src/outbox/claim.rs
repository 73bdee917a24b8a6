//! A claim on SQLite: a lease on rows, taken in one write transaction,
//! renewed while the claim lives, and given back when it is finished or
//! dropped.

use std::sync::Arc;
use std::time::Duration;

use factum_core::backend::{ClaimedEntry, hand_out, query_bound};
use factum_core::{Error, OutboxClaim, OutboxEntry, Outcome};
use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::sql;
use crate::SqliteEventStore;
use crate::decode::Decoder;
use crate::encode::nanos;
use crate::error::sqlite;
use crate::lease::now_millis;
use crate::writer::{Command, Written};

/// Entries leased to one relay: another relay claims them only once this
/// claim is finished, dropped, or its lease lapsed (its process died).
///
/// While the claim lives a task renews its lease every third of the lease
/// time, so a slow publish keeps it; a relay process that dies stops
/// renewing, and its rows are claimed again once the lease runs out.
/// Dropped unfinished, the claim gives its rows back at once.
#[derive(Debug)]
pub struct SqliteOutboxClaim {
    store: SqliteEventStore,
    token: Arc<str>,
    entries: Vec<OutboxEntry>,
    renewal: Option<JoinHandle<()>>,
    finished: bool,
}

impl SqliteOutboxClaim {
    /// Leases up to `limit` waiting entries for `token`, for `lease`.
    pub(super) async fn take(
        store: &SqliteEventStore,
        token: Arc<str>,
        limit: usize,
        ahead: Vec<u64>,
        lease: Duration,
    ) -> Result<Self, Error> {
        let lease_millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let holder = Arc::clone(&token);
        let entries = store
            .write(move |connection| lease_entries(connection, &holder, limit, &ahead, lease_millis))
            .await?;
        let renewal = (!entries.is_empty()).then(|| {
            let positions = entries.iter().map(|entry| query_bound(entry.id)).collect();
            tokio::spawn(renew(store.clone(), Arc::clone(&token), positions, lease))
        });
        Ok(Self {
            store: store.clone(),
            token,
            entries,
            renewal,
            finished: false,
        })
    }

    fn stop_renewing(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

/// Reads the candidates and leases those the claim may hand out; the rest
/// stay free for the relay that holds their predecessors.
fn lease_entries(
    connection: &Connection,
    token: &str,
    limit: usize,
    ahead: &[u64],
    lease_millis: i64,
) -> Result<Vec<OutboxEntry>, Error> {
    // Read on the writer thread, just before the write: a queue in front of
    // it does not shorten the lease.
    let now = now_millis();
    let mut candidates = Vec::with_capacity(limit.min(4096));
    {
        let mut statement = connection
            .prepare_cached(&sql::CANDIDATES)
            .map_err(super::outbox_error)?;
        let mut rows = statement
            .query((query_bound(limit as u64), now))
            .map_err(sqlite)?;
        let mut decoder = Decoder::default();
        while let Some(row) = rows.next().map_err(sqlite)? {
            let event = decoder.log_event(row)?;
            let attempts: i64 = row.get(sql::after_envelope()).map_err(sqlite)?;
            let waiting_on: Option<i64> = row.get(sql::after_envelope() + 1).map_err(sqlite)?;
            candidates.push(ClaimedEntry {
                entry: OutboxEntry::new(event.position, event, u32::try_from(attempts).unwrap_or(u32::MAX)),
                waiting_on: waiting_on.and_then(|position| u64::try_from(position).ok()),
            });
        }
    }
    let (entries, _held_back) = hand_out(candidates, ahead);
    let until = now.saturating_add(lease_millis);
    let positions = json_positions(entries.iter().map(|entry| query_bound(entry.id)));
    connection
        .prepare_cached(sql::LEASE)
        .and_then(|mut lease| lease.execute((token, until, positions)))
        .map_err(sqlite)?;
    Ok(entries)
}

/// Extends the lease every third of its length until the claim ends (the
/// task is aborted) or a renewal fails (the store was closed).
async fn renew(store: SqliteEventStore, token: Arc<str>, positions: Arc<[i64]>, lease: Duration) {
    let lease_millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(lease / 3).await;
        let (token, positions) = (Arc::clone(&token), Arc::clone(&positions));
        let renewed = store
            .write(move |connection| {
                let until = now_millis().saturating_add(lease_millis);
                let mut statement = connection.prepare_cached(sql::RENEW).map_err(sqlite)?;
                for position in positions.iter() {
                    statement.execute((until, position, &*token)).map_err(sqlite)?;
                }
                Ok(())
            })
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, "renewing an outbox lease failed; the claim may lapse");
            return;
        }
    }
}

/// Records each outcome on the rows the claim still holds (a row whose
/// lease lapsed and was taken over belongs to its new holder).
fn record(
    connection: &Connection,
    token: &str,
    positions: &[i64],
    outcomes: &[Outcome],
) -> Result<(), Error> {
    let now = nanos(OffsetDateTime::now_utc()).map_err(|reason| Error::store(crate::BACKEND, reason))?;
    // Sent is what nearly every row of a claim ends as: one statement.
    let sent = json_positions(
        positions
            .iter()
            .zip(outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Sent))
            .map(|(position, _)| *position),
    );
    connection
        .prepare_cached(sql::SENT)
        .and_then(|mut statement| statement.execute((now, sent, token)))
        .map_err(sqlite)?;
    for (index, position) in positions.iter().enumerate() {
        let changed = match outcomes.get(index) {
            Some(Outcome::Sent) => continue,
            Some(Outcome::Retry(error)) => connection
                .prepare_cached(sql::RETRY)
                .and_then(|mut statement| statement.execute((error, position, token))),
            Some(Outcome::Park(error)) => connection
                .prepare_cached(sql::PARK)
                .and_then(|mut statement| statement.execute((error, position, token, now))),
            None => connection
                .prepare_cached(sql::RELEASE)
                .and_then(|mut statement| statement.execute((position, token))),
        };
        changed.map_err(sqlite)?;
    }
    Ok(())
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
        let token = Arc::clone(&self.token);
        let positions: Vec<i64> = self.entries.iter().map(|entry| query_bound(entry.id)).collect();
        self.store
            .write(move |connection| record(connection, &token, &positions, &outcomes))
            .await?;
        // Only now: a finish that failed gives the rows back when dropped.
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteOutboxClaim {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.finished || self.entries.is_empty() {
            return;
        }
        // Give the rows back now rather than when the lease lapses. Sent to
        // the writer without waiting: nothing here can await, and if the
        // store is gone the lease lapses instead.
        let token = Arc::clone(&self.token);
        let positions: Vec<i64> = self.entries.iter().map(|entry| query_bound(entry.id)).collect();
        let _ = self.store.send(Command::Write(Box::new(move |connection| {
            let released = connection
                .map_err(Error::from)
                .and_then(|connection| record(connection, &token, &positions, &[]));
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

/// `positions` as a JSON array, the one parameter of a statement over many
/// rows (`json_each`).
fn json_positions(positions: impl Iterator<Item = i64>) -> String {
    let mut json = String::from("[");
    for (index, position) in positions.enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(&position.to_string());
    }
    json.push(']');
    json
}
