//! Finishing a claim: each event's outcome recorded on the entries the
//! claim holds, an entry split where its events' outcomes differ.

use factum_core::backend::{outcome_runs, query_bound};
use factum_core::{Error, Outcome};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use super::claim::{Span, json_positions};
use super::sql;
use crate::encode::nanos;
use crate::error::sqlite;

/// A run of an entry's events that ended alike, and so stays one entry.
struct Part<'a> {
    first: i64,
    last: i64,
    /// `None`: given back untouched.
    outcome: Option<&'a Outcome>,
}

/// Records each event's outcome on the entries the claim still holds (an
/// entry whose lease lapsed and was taken over belongs to its new holder).
/// `positions[i]` is the event whose outcome is `outcomes[i]`; events
/// without an outcome are given back.
pub(super) fn record(
    connection: &Connection,
    token: &str,
    spans: &[Span],
    positions: &[u64],
    outcomes: &[Outcome],
) -> Result<(), Error> {
    let now = nanos(OffsetDateTime::now_utc()).map_err(|reason| Error::store(crate::BACKEND, reason))?;
    // Sent whole is what nearly every entry of a claim ends as: one
    // statement for all of them.
    let mut sent = Vec::new();
    let mut index = 0;
    for span in spans {
        let start = index;
        while positions
            .get(index)
            .is_some_and(|position| query_bound(*position) <= span.last)
        {
            index += 1;
        }
        let parts = parts(*span, (start..index).map(|event| outcomes.get(event)));
        match parts.as_slice() {
            [
                Part {
                    outcome: Some(Outcome::Sent),
                    ..
                },
            ] => sent.push(*span),
            _ => split(connection, token, *span, &parts, now)?,
        }
    }
    if !sent.is_empty() {
        let firsts = json_positions(&sent);
        connection
            .prepare_cached(sql::SENT)
            .and_then(|mut statement| statement.execute((now, &firsts, token)))
            .and_then(|_| connection.prepare_cached(sql::FORGET))
            .and_then(|mut statement| statement.execute((&firsts, token)))
            .map_err(sqlite)?;
    }
    Ok(())
}

/// `span` cut where its events' outcomes change (the rule every store
/// shares, [`outcome_runs`]): parts that cover it from its first position
/// to its last. `outcomes` are those of its first events.
fn parts<'a>(span: Span, outcomes: impl IntoIterator<Item = Option<&'a Outcome>>) -> Vec<Part<'a>> {
    let len = u64::try_from(span.last - span.first + 1).unwrap_or(0);
    outcome_runs(len, outcomes)
        .into_iter()
        .map(|run| Part {
            first: span.first + query_bound(run.first),
            last: span.first + query_bound(run.last),
            outcome: run.outcome,
        })
        .collect()
}

/// Rewrites entry `span` as `parts`, each with the state its outcome gives
/// it, when the claim still holds the entry.
fn split(
    connection: &Connection,
    token: &str,
    span: Span,
    parts: &[Part<'_>],
    now: i64,
) -> Result<(), Error> {
    let held: Option<(i64, Option<String>)> = connection
        .prepare_cached(sql::HELD)
        .and_then(|mut statement| {
            statement
                .query_row((span.first, token), |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sqlite)?;
    let Some((attempts, last_error)) = held else {
        return Ok(());
    };
    connection
        .prepare_cached(sql::REMOVE)
        .and_then(|mut statement| statement.execute([span.first]))
        .map_err(sqlite)?;
    for part in parts {
        let (attempts, error, parked_at) = match part.outcome {
            Some(Outcome::Sent) => {
                connection
                    .prepare_cached(sql::SENT_PART)
                    .and_then(|mut statement| statement.execute((part.first, part.last, attempts, now)))
                    .map_err(sqlite)?;
                continue;
            }
            Some(Outcome::Retry(error)) => (attempts + 1, Some(error.as_str()), None),
            Some(Outcome::Park(error)) => (attempts + 1, Some(error.as_str()), Some(now)),
            None => (attempts, last_error.as_deref(), None),
        };
        connection
            .prepare_cached(sql::UNSENT_PART)
            .and_then(|mut statement| statement.execute((part.first, part.last, attempts, error, parked_at)))
            .map_err(sqlite)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_the_shared_runs_at_the_entrys_positions() {
        let park = Outcome::Park("too large".to_owned());
        let outcomes = [Outcome::Sent, Outcome::Sent, park.clone()];
        let parts = parts(Span { first: 10, last: 14 }, outcomes.iter().map(Some));
        let shape: Vec<(i64, i64, Option<&Outcome>)> = parts
            .iter()
            .map(|part| (part.first, part.last, part.outcome))
            .collect();
        assert_eq!(
            shape,
            [
                (10, 11, Some(&Outcome::Sent)),
                (12, 12, Some(&park)),
                (13, 14, None)
            ]
        );
    }
}
