//! One group commit: every write the writer took in a turn, each in its own
//! savepoint, committed in one transaction, then answered.

use factum_core::{AppendResult, Error, NewEvent};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Command, Write, Writer, execute};
use crate::append::{Head, append};
use crate::atomic;
use crate::error::SqliteError;
use crate::snapshot;

/// What one queued write produced, answered after the commit.
enum Outcome {
    Append(
        oneshot::Sender<Result<AppendResult, Error>>,
        Result<AppendResult, Error>,
    ),
    AppendMany(
        oneshot::Sender<Result<Vec<AppendResult>, Error>>,
        Result<Vec<AppendResult>, Error>,
    ),
    Snapshot(oneshot::Sender<Result<(), Error>>, Result<(), Error>),
    Write(Box<dyn FnOnce(Result<(), SqliteError>) + Send>),
}

impl Writer {
    pub(super) fn commit_group(&mut self, group: Vec<Command>) {
        let connection = &self.connection;
        let begun = execute(connection, "BEGIN IMMEDIATE");
        let mut head = Head::default();
        let mut appended_bytes = 0;
        let mut outcomes = Vec::with_capacity(group.len());
        for command in group {
            let (outcome, bytes) = run(connection, &begun, &mut head, command);
            appended_bytes += bytes;
            outcomes.extend(outcome);
        }
        let committed = begun.and_then(|()| execute(connection, "COMMIT"));
        if let Err(error) = &committed {
            // The transaction may still be open (a failed COMMIT under
            // SQLITE_BUSY keeps it); nothing of it may survive.
            if !connection.is_autocommit() {
                let _ = execute(connection, "ROLLBACK");
            }
            tracing::warn!(%error, "a group of appends failed to commit");
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|outcome| outcome.after_commit(&committed))
            .collect();
        self.publish_head(&outcomes);
        for outcome in outcomes {
            outcome.answer(&committed);
        }
        if committed.is_ok() {
            self.wrote(appended_bytes);
        }
    }

    /// Wakes subscribers before any append is answered, so one that returned
    /// is visible to them.
    fn publish_head(&self, outcomes: &[Outcome]) {
        let head = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Append(_, Ok(result)) => result.positions.last().copied(),
                Outcome::AppendMany(_, Ok(results)) => results
                    .iter()
                    .filter_map(|result| result.positions.last().copied())
                    .max(),
                _ => None,
            })
            .max();
        if let Some(head) = head {
            self.head.send_if_modified(|current| {
                let advanced = head > *current;
                *current = (*current).max(head);
                advanced
            });
        }
    }
}

/// Runs one write of the group (unless the transaction did not begin); what
/// it produced, and the bytes it added to the write-ahead log.
fn run(
    connection: &Connection,
    begun: &Result<(), SqliteError>,
    head: &mut Head,
    command: Command,
) -> (Option<Outcome>, u64) {
    let not_begun = |error: &SqliteError| Error::from(error.clone());
    match command {
        Command::Append {
            tenant,
            stream,
            expected,
            events,
            reply,
        } => {
            let result = match begun {
                Ok(()) => append(connection, head, &tenant, &stream, expected, &events),
                Err(error) => Err(not_begun(error)),
            };
            let bytes = match &result {
                Ok(result) if !result.positions.is_empty() => events.iter().map(appended_bytes).sum(),
                _ => 0,
            };
            (Some(Outcome::Append(reply, result)), bytes)
        }
        Command::AppendMany {
            tenant,
            batches,
            reply,
        } => {
            let result = match begun {
                Ok(()) => atomic::append_many(connection, head, &tenant, &batches),
                Err(error) => Err(not_begun(error)),
            };
            let bytes = match &result {
                Ok(results) if results.iter().any(|result| !result.positions.is_empty()) => batches
                    .iter()
                    .flat_map(|batch| &batch.events)
                    .map(appended_bytes)
                    .sum(),
                _ => 0,
            };
            (Some(Outcome::AppendMany(reply, result)), bytes)
        }
        Command::SaveSnapshot {
            tenant,
            snapshot,
            reply,
        } => {
            let result = match begun {
                Ok(()) => snapshot::save(connection, &tenant, &snapshot),
                Err(error) => Err(not_begun(error)),
            };
            (Some(Outcome::Snapshot(reply, result)), 0)
        }
        Command::Write(write) => {
            let answer = match begun {
                Ok(()) => write_in_savepoint(connection, write),
                Err(error) => write(Err(error.clone())).answer,
            };
            (Some(Outcome::Write(answer)), 0)
        }
        Command::Read(_) | Command::Close(_) | Command::Begin(_) => (None, 0),
    }
}

/// A rough figure for what an event adds to the write-ahead log.
fn appended_bytes(event: &NewEvent) -> u64 {
    event.payload.as_str().len() as u64 + 64
}

impl Outcome {
    /// A write that succeeded in a group that failed to commit failed too.
    fn after_commit(self, committed: &Result<(), SqliteError>) -> Self {
        let Err(error) = committed else {
            return self;
        };
        match self {
            Self::Append(reply, Ok(_)) => Self::Append(reply, Err(error.clone().into())),
            Self::AppendMany(reply, Ok(_)) => Self::AppendMany(reply, Err(error.clone().into())),
            Self::Snapshot(reply, Ok(())) => Self::Snapshot(reply, Err(error.clone().into())),
            other => other,
        }
    }

    fn answer(self, committed: &Result<(), SqliteError>) {
        match self {
            Self::Append(reply, result) => {
                let _ = reply.send(result);
            }
            Self::AppendMany(reply, result) => {
                let _ = reply.send(result);
            }
            Self::Snapshot(reply, result) => {
                let _ = reply.send(result);
            }
            Self::Write(answer) => answer(committed.clone()),
        }
    }
}

/// Runs `write` in a savepoint of its own, undone when it fails.
fn write_in_savepoint(
    connection: &Connection,
    write: Write,
) -> Box<dyn FnOnce(Result<(), SqliteError>) + Send> {
    if let Err(error) = execute(connection, "SAVEPOINT factum_write") {
        return write(Err(error)).answer;
    }
    let written = write(Ok(connection));
    let undone = if written.succeeded {
        Ok(())
    } else {
        execute(connection, "ROLLBACK TO factum_write")
    };
    let released = undone.and_then(|()| execute(connection, "RELEASE factum_write"));
    match released {
        Ok(()) => written.answer,
        Err(error) => {
            let answer = written.answer;
            Box::new(move |_| answer(Err(error)))
        }
    }
}
