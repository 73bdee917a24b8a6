//! A claim on PostgreSQL: entries locked `FOR UPDATE SKIP LOCKED` in a
//! transaction that stays open while the relay publishes, handed out one
//! [`OutboxEntry`] per event.

use std::collections::HashMap;
use std::sync::Arc;

use factum_core::backend::{ClaimedEntry, hand_out, outcome_runs, query_bound};
use factum_core::{Error, OutboxClaim, OutboxEntry, Outcome};
use tokio_postgres::Row;

use super::sql::OutboxSql;
use crate::PostgresEventStore;
use crate::conn::Conn;
use crate::rows::{Decoder, ENVELOPE_COLUMNS, POSITION};

/// The columns after the envelope in a claim's rows.
const ATTEMPTS: usize = ENVELOPE_COLUMNS;
const ENTRY: usize = ENVELOPE_COLUMNS + 1;
const LAST_VERSION: usize = ENVELOPE_COLUMNS + 2;
const WAITING_ON: usize = ENVELOPE_COLUMNS + 3;

/// The outcome of a run of events, as `finish` codes it.
const SENT: i16 = 0;
const RETRY: i16 = 1;
const PARK: i16 = 2;
const RELEASED: i16 = 3;

/// One outbox row a claim took: an append's events of one stream, from
/// `first_version` to `last_version`, of which the claim read the first
/// `read` (all of them unless the claim's limit cut it short).
#[derive(Debug)]
struct Taken {
    /// The row's key: the position of its first event.
    position: i64,
    first_version: u64,
    last_version: u64,
    read: u64,
}

/// Entries locked by one relay's transaction: other relays skip them until
/// it commits (the claim is finished) or ends any other way — the claim
/// dropped, the relay's task or process gone, its connection lost — when
/// the server rolls it back and the rows are free again.
///
/// The claim locks outbox rows, one per append and stream, and hands out
/// their events, one [`OutboxEntry`] per event. The claim owns a pooled
/// connection for as long as it lives. Rows it locked but holds back (an
/// earlier event of their aggregate is held elsewhere) are not handed out,
/// and are released unchanged when it ends; so are the events of its last
/// row beyond the claim's limit.
pub struct PostgresOutboxClaim {
    /// `None` once committed, or when there was nothing to hold.
    conn: Option<Conn>,
    store: PostgresEventStore,
    sql: Arc<OutboxSql>,
    entries: Vec<OutboxEntry>,
    /// The rows read, in the order of their first events.
    taken: Vec<Taken>,
    /// Each event read: its row in `taken`, and its place in the row.
    slots: HashMap<u64, (usize, u64)>,
}

impl std::fmt::Debug for PostgresOutboxClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOutboxClaim")
            .field("address", &self.store.address())
            .field("entries", &self.entries.len())
            .field("rows", &self.taken.len())
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl PostgresOutboxClaim {
    /// Begins a transaction, locks the oldest waiting rows and reads the
    /// events of those that fit in `limit` events.
    pub(super) async fn take(
        store: &PostgresEventStore,
        sql: &Arc<OutboxSql>,
        limit: usize,
        ahead: &[u64],
    ) -> Result<Self, Error> {
        let mut claim = Self {
            conn: Some(store.client().await?),
            store: store.clone(),
            sql: Arc::clone(sql),
            entries: Vec::new(),
            taken: Vec::new(),
            slots: HashMap::new(),
        };
        let rows = claim.lock_rows(limit).await?;
        let rows = in_position_order(rows, |error| claim.sql_error(error))?;
        let mut decoder = Decoder::default();
        let mut rows_of: HashMap<i64, usize> = HashMap::new();
        // The position of the last event read of each row.
        let mut last_read: Vec<u64> = Vec::new();
        let mut candidates = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = read_row(&mut decoder, row)?;
            let index = *rows_of.entry(read.entry).or_insert_with(|| {
                claim.taken.push(Taken {
                    position: read.entry,
                    first_version: read.entry_event.version,
                    last_version: read.last_version,
                    read: 0,
                });
                last_read.push(0);
                claim.taken.len() - 1
            });
            let taken = &mut claim.taken[index];
            let in_turn = read.entry_event.version.checked_sub(taken.first_version);
            if in_turn != Some(taken.read) {
                return Err(factum_core::backend::corrupt(
                    &read.entry_event.stream,
                    read.entry_event.version,
                    format!(
                        "outbox entry {} holds versions {}..={} of which version {} came out of order",
                        taken.position,
                        taken.first_version,
                        taken.last_version,
                        taken.first_version + taken.read
                    ),
                ));
            }
            let offset = taken.read;
            taken.read += 1;
            // The first event of a row waits on the row before it (as the
            // claim found it); the others on the event before them, in
            // the claim.
            let waiting_on = if offset == 0 {
                read.waiting_on
            } else {
                Some(last_read[index])
            };
            let position = read.entry_event.position;
            last_read[index] = position;
            claim.slots.insert(position, (index, offset));
            candidates.push(ClaimedEntry {
                entry: OutboxEntry::new(position, read.entry_event, read.attempts),
                waiting_on,
            });
        }
        // A held-back first event blocks its stream, so a row is handed
        // out whole or not at all.
        let (entries, _held_back) = hand_out(candidates, ahead);
        claim.entries = entries;
        if claim.entries.is_empty() {
            // Nothing to publish: let any held-back rows go at once, and
            // the connection back to the pool.
            claim.commit().await?;
        }
        Ok(claim)
    }

    async fn lock_rows(&self, limit: usize) -> Result<Vec<Row>, Error> {
        let conn = self.conn();
        let fail = |error| Error::from(self.store.fail(conn, error));
        conn.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(fail)?;
        let statement = conn
            .prepare_cached(&self.sql.claim)
            .await
            .map_err(|error| self.sql_error(error))?;
        conn.query(&statement, &[&query_bound(limit.max(1) as u64)])
            .await
            .map_err(|error| self.sql_error(error))
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a PostgresOutboxClaim holds its connection until it commits")
    }

    fn sql_error(&self, error: tokio_postgres::Error) -> Error {
        super::outbox_error(&self.store, self.conn(), error)
    }

    /// Commits, and hands the connection back to the pool.
    async fn commit(&mut self) -> Result<(), Error> {
        if let Some(conn) = &self.conn {
            if self.store.is_closed() {
                return Err(self.store.closed_error().into());
            }
            conn.batch_execute("COMMIT")
                .await
                .map_err(|error| Error::from(self.store.fail(conn, error)))?;
        }
        self.conn = None;
        Ok(())
    }

    /// The runs of every row with an outcome (see [`runs`]), as the arrays
    /// of the finishing statements: the runs that start their rows, and
    /// the others.
    fn runs(&self, outcomes: Vec<Outcome>) -> (Runs, Runs) {
        let mut marks: Vec<Vec<Option<Outcome>>> = self
            .taken
            .iter()
            .map(|taken| vec![None; usize::try_from(taken.read).unwrap_or(usize::MAX)])
            .collect();
        for (entry, outcome) in self.entries.iter().zip(outcomes) {
            if let Some(&(row, offset)) = self.slots.get(&entry.id) {
                marks[row][offset as usize] = Some(outcome);
            }
        }
        let mut heads = Runs::default();
        let mut splits = Runs::default();
        for (taken, marks) in self.taken.iter().zip(marks) {
            if marks.iter().all(Option::is_none) {
                continue;
            }
            for run in runs(taken, marks) {
                let into = if run.first_version == taken.first_version {
                    &mut heads
                } else {
                    &mut splits
                };
                into.push(taken.position, run);
            }
        }
        (heads, splits)
    }

    /// Runs one finishing statement over `runs`.
    async fn record(&self, sql: &str, runs: &Runs) -> Result<(), Error> {
        let conn = self.conn();
        let statement = conn
            .prepare_cached(sql)
            .await
            .map_err(|error| self.sql_error(error))?;
        conn.execute(
            &statement,
            &[
                &runs.entries,
                &runs.first_versions,
                &runs.last_versions,
                &runs.outcomes,
                &runs.errors,
            ],
        )
        .await
        .map_err(|error| self.sql_error(error))?;
        Ok(())
    }
}

/// The arrays of the finishing statement, one element per run.
#[derive(Debug, Default)]
struct Runs {
    entries: Vec<i64>,
    first_versions: Vec<i64>,
    last_versions: Vec<i64>,
    outcomes: Vec<i16>,
    errors: Vec<Option<String>>,
}

impl Runs {
    fn push(&mut self, entry: i64, run: Run) {
        self.entries.push(entry);
        self.first_versions.push(query_bound(run.first_version));
        self.last_versions.push(query_bound(run.last_version));
        self.outcomes.push(run.outcome);
        self.errors.push(run.error);
    }
}

/// Consecutive versions of one row with one outcome.
#[derive(Debug, PartialEq)]
struct Run {
    first_version: u64,
    last_version: u64,
    outcome: i16,
    error: Option<String>,
}

/// Splits a row by the outcomes of the events read (`marks`, in version
/// order; `None`: not handed out, or no outcome given) by the rule every
/// store shares ([`outcome_runs`]); the versions the claim did not read
/// are released.
fn runs(taken: &Taken, marks: Vec<Option<Outcome>>) -> Vec<Run> {
    let len = taken.last_version + 1 - taken.first_version;
    outcome_runs(len, marks.iter().map(Option::as_ref))
        .into_iter()
        .map(|run| {
            let (outcome, error) = match run.outcome {
                Some(Outcome::Sent) => (SENT, None),
                Some(Outcome::Retry(error)) => (RETRY, Some(error.clone())),
                Some(Outcome::Park(error)) => (PARK, Some(error.clone())),
                None => (RELEASED, None),
            };
            Run {
                first_version: taken.first_version + run.first,
                last_version: taken.first_version + run.last,
                outcome,
                error,
            }
        })
        .collect()
}

/// The claim statement's rows sorted by their events' positions: sorted
/// here, by the key alone, rather than by the server with every column.
fn in_position_order(
    rows: Vec<Row>,
    sql_error: impl Fn(tokio_postgres::Error) -> Error,
) -> Result<Vec<Row>, Error> {
    let mut keyed = rows
        .into_iter()
        .map(|row| Ok((row.try_get::<_, i64>(POSITION).map_err(&sql_error)?, row)))
        .collect::<Result<Vec<_>, Error>>()?;
    keyed.sort_unstable_by_key(|(position, _)| *position);
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}

/// One row of a claim's statement: an event and its outbox row.
struct ReadRow {
    entry_event: factum_core::RecordedEvent,
    attempts: u32,
    entry: i64,
    last_version: u64,
    waiting_on: Option<u64>,
}

fn read_row(decoder: &mut Decoder, row: &Row) -> Result<ReadRow, Error> {
    let event = decoder.decode(row)?;
    let corrupt = |reason: String| factum_core::backend::corrupt(&event.stream, event.version, reason);
    let attempts: i32 = row
        .try_get(ATTEMPTS)
        .map_err(|error| corrupt(format!("outbox attempts: {error}")))?;
    let entry: i64 = row
        .try_get(ENTRY)
        .map_err(|error| corrupt(format!("outbox entry: {error}")))?;
    let last_version: i64 = row
        .try_get(LAST_VERSION)
        .map_err(|error| corrupt(format!("outbox last version: {error}")))?;
    let waiting_on: Option<i64> = row
        .try_get(WAITING_ON)
        .map_err(|error| corrupt(format!("outbox predecessor: {error}")))?;
    let last_version = u64::try_from(last_version)
        .ok()
        .filter(|last| *last >= event.version)
        .ok_or_else(|| corrupt(format!("outbox entry {entry} ends at version {last_version}")))?;
    Ok(ReadRow {
        attempts: u32::try_from(attempts).unwrap_or(0),
        entry,
        last_version,
        waiting_on: waiting_on.and_then(|position| u64::try_from(position).ok()),
        entry_event: event,
    })
}

impl OutboxClaim for PostgresOutboxClaim {
    fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// One statement records every outcome, then `COMMIT`: the outcomes
    /// and the release of every locked row take effect together. A row
    /// whose events all had one outcome is updated in place; a row with
    /// several is split into runs (see the crate documentation): one more
    /// statement, before, inserts the runs after the first.
    async fn finish(mut self, outcomes: Vec<Outcome>) -> Result<(), Error> {
        if self.conn.is_none() {
            return Ok(());
        }
        let (heads, splits) = self.runs(outcomes);
        if !splits.entries.is_empty() {
            // First: it reads each row's state before the outcomes.
            self.record(&self.sql.split, &splits).await?;
        }
        if !heads.entries.is_empty() {
            self.record(&self.sql.finish, &heads).await?;
        }
        self.commit().await
    }
}

impl Drop for PostgresOutboxClaim {
    fn drop(&mut self) {
        // Still open: close the connection, which makes the server roll back
        // and free the rows, rather than hand a connection in the middle of
        // a transaction back to the pool (see `PostgresTransaction`).
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(first_version: u64, last_version: u64, read: u64) -> Taken {
        Taken {
            position: 1,
            first_version,
            last_version,
            read,
        }
    }

    fn run(first_version: u64, last_version: u64, outcome: i16, error: Option<&str>) -> Run {
        Run {
            first_version,
            last_version,
            outcome,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_row_with_one_outcome_is_one_run() {
        let marks = vec![Some(Outcome::Sent); 3];
        assert_eq!(runs(&taken(4, 6, 3), marks), [run(4, 6, SENT, None)]);
    }

    #[test]
    fn a_row_splits_where_its_outcomes_change_and_around_each_park() {
        let marks = vec![
            Some(Outcome::Sent),
            Some(Outcome::Sent),
            Some(Outcome::Park("too big".to_owned())),
            Some(Outcome::Park("too big".to_owned())),
            Some(Outcome::Retry("timed out".to_owned())),
            Some(Outcome::Retry("behind".to_owned())),
            None,
        ];
        assert_eq!(
            runs(&taken(1, 7, 7), marks),
            [
                run(1, 2, SENT, None),
                run(3, 3, PARK, Some("too big")),
                run(4, 4, PARK, Some("too big")),
                run(5, 6, RETRY, Some("timed out")),
                run(7, 7, RELEASED, None),
            ]
        );
    }

    #[test]
    fn the_versions_a_claim_did_not_read_are_released() {
        let marks = vec![Some(Outcome::Sent), None];
        assert_eq!(
            runs(&taken(10, 14, 2), marks),
            [run(10, 10, SENT, None), run(11, 14, RELEASED, None)]
        );
        let marks = vec![Some(Outcome::Sent), Some(Outcome::Sent)];
        assert_eq!(
            runs(&taken(10, 14, 2), marks),
            [run(10, 11, SENT, None), run(12, 14, RELEASED, None)]
        );
    }
}
