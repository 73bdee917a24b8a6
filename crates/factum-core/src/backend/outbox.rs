//! The rule that keeps an aggregate's order across relays: which claimed
//! outbox entries a claim may hand out.

use std::collections::HashSet;

use crate::{OutboxEntry, StreamId};

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
