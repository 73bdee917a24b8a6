//! Finishing a claim: each event's outcome recorded on the entries the
//! claim holds, an entry split where its events' outcomes differ.

use factum_core::backend::query_bound;
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
        let parts = parts(
            *span,
            &positions[start..index],
            outcomes.get(start..).unwrap_or_default(),
        );
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

/// `span` cut where its events' outcomes change, each parked event alone:
/// parts that cover the span from its first position to its last.
fn parts<'a>(span: Span, positions: &[u64], outcomes: &'a [Outcome]) -> Vec<Part<'a>> {
    let kind = |outcome: Option<&Outcome>| match outcome {
        Some(Outcome::Sent) => 1,
        Some(Outcome::Retry(_)) => 2,
        Some(Outcome::Park(_)) => 3,
        None => 0,
    };
    let mut parts: Vec<Part<'a>> = Vec::new();
    for (index, position) in positions.iter().enumerate() {
        let outcome = outcomes.get(index);
        let continues = parts.last().is_some_and(|part| {
            kind(part.outcome) == kind(outcome) && !matches!(outcome, Some(Outcome::Park(_)))
        });
        if continues {
            continue;
        }
        let first = if parts.is_empty() {
            span.first
        } else {
            query_bound(*position)
        };
        if let Some(previous) = parts.last_mut() {
            previous.last = first - 1;
        }
        parts.push(Part {
            first,
            last: span.last,
            outcome,
        });
    }
    if parts.is_empty() {
        parts.push(Part {
            first: span.first,
            last: span.last,
            outcome: None,
        });
    }
    parts
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

    fn shape(parts: &[Part<'_>]) -> Vec<(i64, i64, Option<Outcome>)> {
        parts
            .iter()
            .map(|part| (part.first, part.last, part.outcome.cloned()))
            .collect()
    }

    #[test]
    fn parts_cover_the_span_and_cut_where_outcomes_change() {
        let retry = Outcome::Retry("down".to_owned());
        let park = Outcome::Park("too large".to_owned());
        let outcomes = [
            Outcome::Sent,
            Outcome::Sent,
            park.clone(),
            park.clone(),
            retry.clone(),
        ];
        let parts = parts(Span { first: 10, last: 14 }, &[10, 11, 12, 13, 14], &outcomes);
        assert_eq!(
            shape(&parts),
            [
                (10, 11, Some(Outcome::Sent)),
                (12, 12, Some(park.clone())),
                (13, 13, Some(park)),
                (14, 14, Some(retry)),
            ],
            "each parked event alone"
        );
    }

    #[test]
    fn events_without_an_outcome_are_one_part_given_back() {
        let parts_given_back = parts(Span { first: 3, last: 9 }, &[3, 4, 5, 6, 7, 8, 9], &[]);
        assert_eq!(shape(&parts_given_back), [(3, 9, None)]);
        let sent_then_back = parts(
            Span { first: 3, last: 9 },
            &[3, 4, 5, 6, 7, 8, 9],
            &[Outcome::Sent],
        );
        assert_eq!(
            shape(&sent_then_back),
            [(3, 3, Some(Outcome::Sent)), (4, 9, None)]
        );
    }
}
