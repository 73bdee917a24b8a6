//! The outbox's SQL: its table and trigger, and the statements of claims.

use std::sync::LazyLock;

use crate::decode::LOG_COLUMNS;

/// The outbox table, its indexes and the trigger that fills it; every
/// statement idempotent.
///
/// - `position` is the event's position (the rowid): one row per event, no
///   sequence of its own, and the envelope is read from `events` by key.
/// - `sent_at` and `parked_at` are nanoseconds since the Unix epoch, like
///   `events.occurred_at`; `claimed_until` is milliseconds by the wall
///   clock, like `factum_leases.expires_at` (relays may be other processes).
/// - `factum_outbox_pending` holds only the waiting rows, so a claim finds
///   them without walking the sent rows kept for the retention.
/// - The trigger is a row trigger: SQLite has no statement triggers, and a
///   row of one integer per event is the cheapest that records it.
pub(crate) const ENABLE: &str = "
CREATE TABLE IF NOT EXISTS factum_outbox (
    position      INTEGER PRIMARY KEY,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    parked_at     INTEGER,
    sent_at       INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX IF NOT EXISTS factum_outbox_pending ON factum_outbox (position)
    WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS factum_outbox_parked ON factum_outbox (position)
    WHERE parked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS factum_outbox_sent ON factum_outbox (sent_at)
    WHERE sent_at IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS factum_outbox_capture AFTER INSERT ON events
BEGIN
    INSERT INTO factum_outbox (position) VALUES (NEW.position);
END;
";

/// Drops the trigger; the table and its rows stay.
pub(crate) const DISABLE: &str = "DROP TRIGGER IF EXISTS factum_outbox_capture";

/// Whether the trigger exists.
pub(crate) const ENABLED: &str =
    "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'factum_outbox_capture'";

/// The waiting rows no live lease holds (`?2`: now, in milliseconds), oldest
/// first, at most `?1`: the envelope (`LOG_COLUMNS`), the attempts, and the
/// outbox position of the stream's previous event when that one is
/// waiting too.
pub(crate) static CANDIDATES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LOG_COLUMNS}, o.attempts,
       (SELECT po.position FROM events p CROSS JOIN factum_outbox po ON po.position = p.position
         WHERE p.stream_key = e.stream_key AND p.version = e.version - 1
           AND po.sent_at IS NULL AND po.parked_at IS NULL)
  FROM factum_outbox o
  CROSS JOIN events e ON e.position = o.position
  CROSS JOIN streams s ON s.stream_key = e.stream_key
 WHERE o.sent_at IS NULL AND o.parked_at IS NULL
   AND (o.claimed_until IS NULL OR o.claimed_until <= ?2)
 ORDER BY o.position
 LIMIT ?1"
    )
});

/// Takes the lease of the rows whose positions the JSON array `?3` holds,
/// for claim `?1` until `?2`: one statement for the whole claim.
pub(crate) const LEASE: &str = "UPDATE factum_outbox SET claimed_by = ?1, claimed_until = ?2 \
     WHERE position IN (SELECT value FROM json_each(?3))";

/// Extends the lease of row `?2`, if claim `?3` still holds it, to `?1`.
pub(crate) const RENEW: &str =
    "UPDATE factum_outbox SET claimed_until = ?1 WHERE position = ?2 AND claimed_by = ?3";

/// Marks the rows of claim `?3` whose positions the JSON array `?2` holds
/// sent at `?1`: one statement for every sent row of a claim.
pub(crate) const SENT: &str = "UPDATE factum_outbox SET sent_at = ?1, claimed_by = NULL, claimed_until = NULL \
     WHERE position IN (SELECT value FROM json_each(?2)) AND claimed_by = ?3";

/// Releases row `?2` of claim `?3` with the error `?1`, one more attempt counted.
pub(crate) const RETRY: &str = "UPDATE factum_outbox \
     SET attempts = attempts + 1, last_error = ?1, claimed_by = NULL, claimed_until = NULL \
     WHERE position = ?2 AND claimed_by = ?3";

/// Parks row `?2` of claim `?3` at `?4` with the error `?1`.
pub(crate) const PARK: &str = "UPDATE factum_outbox \
     SET attempts = attempts + 1, last_error = ?1, parked_at = ?4, claimed_by = NULL, claimed_until = NULL \
     WHERE position = ?2 AND claimed_by = ?3";

/// Releases row `?1` of claim `?2` untouched.
pub(crate) const RELEASE: &str = "UPDATE factum_outbox SET claimed_by = NULL, claimed_until = NULL WHERE position = ?1 AND claimed_by = ?2";

/// Deletes the rows sent before `?1`.
pub(crate) const PRUNE: &str = "DELETE FROM factum_outbox WHERE sent_at < ?1";

/// The parked rows, oldest first, at most `?1`: the envelope, the attempts
/// and the error.
pub(crate) static PARKED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LOG_COLUMNS}, o.attempts, o.last_error
  FROM factum_outbox o
  CROSS JOIN events e ON e.position = o.position
  CROSS JOIN streams s ON s.stream_key = e.stream_key
 WHERE o.parked_at IS NOT NULL
 ORDER BY o.position
 LIMIT ?1"
    )
});

/// The index of the first column after the envelope in [`CANDIDATES`] and
/// [`PARKED`] rows.
pub(crate) fn after_envelope() -> usize {
    LOG_COLUMNS.split(',').count()
}

/// Puts parked row `?1` back in line.
pub(crate) const REQUEUE: &str = "UPDATE factum_outbox SET parked_at = NULL \
     WHERE position = ?1 AND parked_at IS NOT NULL AND sent_at IS NULL";

/// The rows not yet sent, counted through the two partial indexes.
pub(crate) const PENDING: &str = "SELECT \
     (SELECT count(*) FROM factum_outbox WHERE sent_at IS NULL AND parked_at IS NULL) + \
     (SELECT count(*) FROM factum_outbox WHERE parked_at IS NOT NULL AND sent_at IS NULL)";
