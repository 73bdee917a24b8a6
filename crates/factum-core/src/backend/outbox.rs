//! The rules stores with an outbox share: which claimed outbox entries a
//! claim may hand out (an aggregate's order across relays), and how a row
//! holding several events is split by their outcomes.

use std::collections::HashSet;

use crate::{OutboxEntry, Outcome, StreamId};

/// Consecutive events of one outbox row that ended alike, and so stay one
/// row: the events at offsets `first..=last` from the row's first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeRun<'a> {
    /// Offset of the run's first event in the row.
    pub first: u64,
    /// Offset of the run's last event in the row.
    pub last: u64,
    /// What became of its events; `None`: given back untouched.
    pub outcome: Option<&'a Outcome>,
}

/// Splits a row of `len` events by the outcomes of its first events, in
/// order (`None`, or no outcome given: given back untouched). Consecutive
/// events sent, to be retried, or given back make one run each (a retried
/// run keeps its first event's error); a parked event is a run of its own,
/// so a parked row is one event, listed and requeued by its position. The
/// runs cover the row exactly, in order.
pub fn outcome_runs<'a>(
    len: u64,
    outcomes: impl IntoIterator<Item = Option<&'a Outcome>>,
) -> Vec<OutcomeRun<'a>> {
    let alike = |a: Option<&Outcome>, b: Option<&Outcome>| {
        matches!(
            (a, b),
            (None, None)
                | (Some(Outcome::Sent), Some(Outcome::Sent))
                | (Some(Outcome::Retry(_)), Some(Outcome::Retry(_)))
        )
    };
    let mut outcomes = outcomes.into_iter();
    let mut runs: Vec<OutcomeRun<'a>> = Vec::new();
    for offset in 0..len {
        let outcome = outcomes.next().flatten();
        match runs.last_mut() {
            Some(run) if alike(run.outcome, outcome) => run.last = offset,
            _ => runs.push(OutcomeRun {
                first: offset,
                last: offset,
                outcome,
            }),
        }
    }
    runs
}

/// An entry a store has claimed, with the position of its event's
/// predecessor in the same stream when that one is still waiting (unsent
/// and not parked).
#[derive(Debug)]
pub struct ClaimedEntry {
    /// The entry.
    pub entry: OutboxEntry,
    /// The position of the previous event of the stream, if it is still
    /// waiting in the outbox.
    pub waiting_on: Option<u64>,
}

/// Splits the claimed entries (in position order) into those the claim
/// hands out and those it must hold back: an entry is handed out only when
/// no earlier waiting entry of its stream lies outside the claim, so no
/// relay publishes an event before an earlier one of its aggregate that
/// another relay still holds.
///
/// Checking the predecessor is enough: a stream's waiting entries follow
/// its sent ones (a relay retries the rest of an aggregate with a failed
/// entry), so the predecessor is waiting whenever any earlier entry is.
/// The exception is a requeued entry: the later entries that went out
/// while it was parked do not wait for it, nor do those after them.
/// An entry whose predecessor is in the claim but held back is held back
/// too. Entries of `ahead` (earlier claims of the same relay, see
/// [`Outbox::claim_after`](crate::Outbox::claim_after)) count as in the
/// claim.
pub fn hand_out(claimed: Vec<ClaimedEntry>, ahead: &[u64]) -> (Vec<OutboxEntry>, Vec<OutboxEntry>) {
    let in_claim: HashSet<u64> = claimed
        .iter()
        .map(|claimed| claimed.entry.id)
        .chain(ahead.iter().copied())
        .collect();
    let mut blocked: HashSet<StreamId> = HashSet::new();
    let mut handed_out = Vec::with_capacity(claimed.len());
    let mut held_back = Vec::new();
    for ClaimedEntry { entry, waiting_on } in claimed {
        let outside = waiting_on.is_some_and(|position| !in_claim.contains(&position));
        if outside || blocked.contains(&entry.event.stream) {
            blocked.insert(entry.event.stream.clone());
            held_back.push(entry);
        } else {
            handed_out.push(entry);
        }
    }
    (handed_out, held_back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEvent, Payload};

    fn shape(runs: &[OutcomeRun<'_>]) -> Vec<(u64, u64, Option<Outcome>)> {
        runs.iter()
            .map(|run| (run.first, run.last, run.outcome.cloned()))
            .collect()
    }

    #[test]
    fn a_row_splits_where_its_outcomes_change_and_around_each_park() {
        let park = Outcome::Park("too big".to_owned());
        let retry = Outcome::Retry("timed out".to_owned());
        let outcomes = [
            Outcome::Sent,
            Outcome::Sent,
            park.clone(),
            park.clone(),
            retry.clone(),
            Outcome::Retry("behind".to_owned()),
        ];
        assert_eq!(
            shape(&outcome_runs(7, outcomes.iter().map(Some))),
            [
                (0, 1, Some(Outcome::Sent)),
                (2, 2, Some(park.clone())),
                (3, 3, Some(park)),
                (4, 5, Some(retry)),
                (6, 6, None),
            ],
            "each park alone; the event without an outcome given back"
        );
    }

    #[test]
    fn a_row_with_one_outcome_or_none_is_one_run() {
        let sent = [Outcome::Sent, Outcome::Sent, Outcome::Sent];
        assert_eq!(
            shape(&outcome_runs(3, sent.iter().map(Some))),
            [(0, 2, Some(Outcome::Sent))]
        );
        assert_eq!(shape(&outcome_runs(4, [])), [(0, 3, None)]);
        assert!(outcome_runs(0, sent.iter().map(Some)).is_empty());
    }

    fn claimed(stream: &str, version: u64, position: u64, waiting_on: Option<u64>) -> ClaimedEntry {
        let event = NewEvent::new("noted", Payload::parse("{}").unwrap()).recorded(
            StreamId::new("T", stream),
            version,
            position,
        );
        ClaimedEntry {
            entry: OutboxEntry::new(position, event, 0),
            waiting_on,
        }
    }

    fn positions(entries: &[OutboxEntry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn an_entry_waits_for_a_predecessor_outside_the_claim_and_so_do_its_successors() {
        let (out, back) = hand_out(
            vec![
                claimed("a", 1, 1, None),
                claimed("b", 5, 2, Some(0)),
                claimed("a", 2, 3, Some(1)),
                claimed("b", 6, 4, Some(2)),
                claimed("c", 3, 5, None),
            ],
            &[],
        );
        assert_eq!(positions(&out), [1, 3, 5], "a-2 follows a-1 in the claim");
        assert_eq!(
            positions(&back),
            [2, 4],
            "b-5 waits on position 0, held elsewhere, and b-6 behind it"
        );
    }

    #[test]
    fn entries_of_the_relays_earlier_claims_count_as_in_the_claim() {
        let (out, back) = hand_out(
            vec![claimed("b", 5, 2, Some(0)), claimed("b", 6, 4, Some(2))],
            &[0],
        );
        assert_eq!(positions(&out), [2, 4]);
        assert!(back.is_empty());
    }
}
