//! The outbox's SQL: the entry an append writes, the switch, and the
//! statements of claims. The table itself is part of the versioned schema
//! (version 5, in `schema.rs`).

use std::sync::LazyLock;

use crate::decode::LOG_COLUMNS;

/// Writes the entry of one append to one stream, positions `?1` to `?2`,
/// when the outbox is on: one statement per append, whatever its size, and
/// a lookup of one row when it is off.
pub(crate) const CAPTURE: &str = "INSERT INTO factum_outbox (position, last_position) \
     SELECT ?1, ?2 FROM factum_outbox_state WHERE enabled = 1";

/// Switches the outbox on; the row's existence says it was ever on.
pub(crate) const ENABLE: &str = "INSERT INTO factum_outbox_state (id, enabled) VALUES (1, 1) \
     ON CONFLICT (id) DO UPDATE SET enabled = 1";

/// Switches the outbox off; the entries not yet sent stay.
pub(crate) const DISABLE: &str = "UPDATE factum_outbox_state SET enabled = 0";

/// Whether the outbox is on.
pub(crate) const ENABLED: &str = "SELECT coalesce((SELECT enabled FROM factum_outbox_state), 0)";

/// Whether the outbox was ever switched on for this file.
pub(crate) const EVER_ENABLED: &str = "SELECT count(*) FROM factum_outbox_state";

/// The waiting entries (not parked) no live lease holds (`?1`: now, in
/// milliseconds), oldest first: first and last position, attempts, and the position of
/// the event before the entry's first in its stream when that event is
/// waiting too. Read row by row, so the claim stops evaluating once it has
/// its events.
///
/// The predecessor's entry is the one with the greatest first position not
/// after it, found through the primary key; it is waiting when it covers
/// the predecessor and is not parked (sent entries are in another table).
pub(crate) const CANDIDATES: &str = "SELECT o.position, o.last_position, o.attempts,
       (SELECT p.position FROM events e CROSS JOIN events p
         WHERE e.position = o.position AND p.stream_key = e.stream_key AND p.version = e.version - 1
           AND EXISTS (SELECT 1 FROM (SELECT w.last_position, w.parked_at FROM factum_outbox w
                                       WHERE w.position <= p.position ORDER BY w.position DESC LIMIT 1) w
                        WHERE w.last_position >= p.position AND w.parked_at IS NULL))
  FROM factum_outbox o
 WHERE o.parked_at IS NULL
   AND (o.claimed_until IS NULL OR o.claimed_until <= ?1)
 ORDER BY o.position";

/// The events from position `?1` to `?2`: the envelopes of one entry.
pub(crate) static ENTRY_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LOG_COLUMNS} FROM events e CROSS JOIN streams s ON s.stream_key = e.stream_key
 WHERE e.position BETWEEN ?1 AND ?2
 ORDER BY e.position"
    )
});

/// Takes the lease of the entries whose first positions the JSON array
/// `?3` holds, for claim `?1` until `?2`: one statement for the whole claim.
pub(crate) const LEASE: &str = "UPDATE factum_outbox SET claimed_by = ?1, claimed_until = ?2 \
     WHERE position IN (SELECT value FROM json_each(?3))";

/// Extends the lease of the entries of claim `?2` whose first positions the
/// JSON array `?3` holds, to `?1`.
pub(crate) const RENEW: &str = "UPDATE factum_outbox SET claimed_until = ?1 \
     WHERE position IN (SELECT value FROM json_each(?3)) AND claimed_by = ?2";

/// Records the entries of claim `?3` whose first positions the JSON array
/// `?2` holds as sent at `?1` (then [`FORGET`] takes them out of line):
/// one statement for every wholly sent entry of a claim.
pub(crate) const SENT: &str = "INSERT INTO factum_outbox_sent (position, last_position, attempts, sent_at) \
     SELECT position, last_position, attempts, ?1 FROM factum_outbox \
      WHERE position IN (SELECT value FROM json_each(?2)) AND claimed_by = ?3";

/// Takes the entries of claim `?2` whose first positions the JSON array
/// `?1` holds out of line.
pub(crate) const FORGET: &str = "DELETE FROM factum_outbox \
     WHERE position IN (SELECT value FROM json_each(?1)) AND claimed_by = ?2";

/// The attempts and error of entry `?1`, if claim `?2` still holds it.
pub(crate) const HELD: &str =
    "SELECT attempts, last_error FROM factum_outbox WHERE position = ?1 AND claimed_by = ?2";

/// Takes entry `?1` out of line, to be written again as the parts of a split.
pub(crate) const REMOVE: &str = "DELETE FROM factum_outbox WHERE position = ?1";

/// A part of a split entry still to send: positions `?1` to `?2`, with
/// `?3` attempts, error `?4`, parked at `?5`, no lease.
pub(crate) const UNSENT_PART: &str = "INSERT INTO factum_outbox \
     (position, last_position, attempts, last_error, parked_at) VALUES (?1, ?2, ?3, ?4, ?5)";

/// A part of a split entry that was sent: positions `?1` to `?2`, with
/// `?3` attempts, sent at `?4`.
pub(crate) const SENT_PART: &str = "INSERT INTO factum_outbox_sent \
     (position, last_position, attempts, sent_at) VALUES (?1, ?2, ?3, ?4)";

/// Makes the events after position `?2` of entry `?1` an entry of their
/// own, in the entry's state (then [`CUT`] shortens the entry).
pub(crate) const CUT_OFF_REST: &str = "INSERT INTO factum_outbox (position, last_position, attempts, last_error) \
     SELECT ?2 + 1, last_position, attempts, last_error FROM factum_outbox WHERE position = ?1";

/// Ends entry `?1` at position `?2`.
pub(crate) const CUT: &str = "UPDATE factum_outbox SET last_position = ?2 WHERE position = ?1";

/// Deletes the entries sent before `?1`, returning how many events each held.
pub(crate) const PRUNE: &str =
    "DELETE FROM factum_outbox_sent WHERE sent_at < ?1 RETURNING last_position - position + 1";

/// The events of parked entries, oldest first, at most `?1`: the envelope,
/// the attempts and the error.
pub(crate) static PARKED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LOG_COLUMNS}, o.attempts, o.last_error
  FROM factum_outbox o
  CROSS JOIN events e ON e.position BETWEEN o.position AND o.last_position
  CROSS JOIN streams s ON s.stream_key = e.stream_key
 WHERE o.parked_at IS NOT NULL
 ORDER BY e.position
 LIMIT ?1"
    )
});

/// The index of the first column after the envelope in [`PARKED`] rows.
pub(crate) fn after_envelope() -> usize {
    LOG_COLUMNS.split(',').count()
}

/// Puts the parked entry of event `?1` back in line (a relay parks an
/// event in an entry of its own).
pub(crate) const REQUEUE: &str =
    "UPDATE factum_outbox SET parked_at = NULL WHERE position = ?1 AND parked_at IS NOT NULL";

/// The events not yet sent, parked ones included.
pub(crate) const PENDING: &str = "SELECT coalesce(sum(last_position - position + 1), 0) FROM factum_outbox";
