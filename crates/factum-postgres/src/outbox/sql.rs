//! The outbox's SQL with the store's names filled in: its table and
//! trigger, and the statements of claims.

use crate::PostgresEventStore;
use crate::rows::COLUMNS;

/// The outbox statements of one store (schema and prefix).
#[derive(Debug)]
pub(crate) struct OutboxSql {
    pub(crate) enable: String,
    pub(crate) disable: String,
    pub(crate) enabled: String,
    /// The events table, as `to_regclass` reads it.
    pub(crate) events: String,
    /// The trigger's name, as `pg_trigger` keeps it.
    pub(crate) trigger: String,
    pub(crate) claim: String,
    pub(crate) finish: String,
    pub(crate) prune: String,
    pub(crate) parked: String,
    pub(crate) requeue: String,
    pub(crate) pending: String,
}

impl OutboxSql {
    pub(crate) fn new(store: &PostgresEventStore) -> Self {
        let names = &store.shared.names;
        let schema = &store.shared.options.schema;
        let prefix = &names.prefix;
        let events = &names.events;
        let outbox = format!("\"{schema}\".\"{prefix}outbox\"");
        let capture = format!("\"{schema}\".\"{prefix}outbox_capture\"");
        let trigger = format!("{prefix}outbox_capture");
        // The envelope columns in the decoder's order, read from `events e`.
        let envelope = COLUMNS
            .split(", ")
            .map(|column| format!("e.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            enable: enable(&outbox, &capture, &trigger, events, prefix),
            disable: format!("DROP TRIGGER IF EXISTS \"{trigger}\" ON {events}"),
            enabled: "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger \
                      WHERE tgrelid = to_regclass($1) AND tgname = $2)"
                .to_owned(),
            events: events.clone(),
            trigger,
            claim: claim(&outbox, events, &envelope),
            finish: format!(
                "UPDATE {outbox} o
                    SET sent_at = CASE WHEN u.outcome = 0 THEN statement_timestamp() END,
                        parked_at = CASE WHEN u.outcome = 2 THEN statement_timestamp() END,
                        attempts = o.attempts + CASE WHEN u.outcome = 0 THEN 0 ELSE 1 END,
                        last_error = coalesce(u.error, o.last_error)
                   FROM unnest($1::bigint[], $2::smallint[], $3::text[]) AS u(position, outcome, error)
                  WHERE o.position = u.position"
            ),
            prune: format!("DELETE FROM {outbox} WHERE sent_at < $1"),
            parked: format!(
                "SELECT {envelope}, o.attempts, o.last_error
                   FROM {outbox} o JOIN {events} e ON e.position = o.position
                  WHERE o.parked_at IS NOT NULL
                  ORDER BY o.position LIMIT $1"
            ),
            requeue: format!(
                "UPDATE {outbox} SET parked_at = NULL \
                  WHERE position = $1 AND parked_at IS NOT NULL AND sent_at IS NULL"
            ),
            pending: format!(
                "SELECT (SELECT count(*) FROM {outbox} WHERE sent_at IS NULL AND parked_at IS NULL)
                      + (SELECT count(*) FROM {outbox} WHERE parked_at IS NOT NULL AND sent_at IS NULL)"
            ),
        }
    }
}

/// The table, its indexes, the trigger function and the trigger; every
/// statement idempotent.
///
/// - `position` is the event's position: one row per event, no sequence
///   of its own; a claim reads the envelope from the events table by key.
/// - `{prefix}outbox_pending` holds only the waiting rows, so a claim finds
///   them without walking the sent rows kept for the retention.
/// - The trigger is a statement trigger with a transition table: one
///   `INSERT … SELECT` per appending statement, however many events it
///   stored, so a batch pays for its outbox rows once.
fn enable(outbox: &str, capture: &str, trigger: &str, events: &str, prefix: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {outbox} (
    position bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    parked_at timestamptz,
    sent_at timestamptz,
    CONSTRAINT "{prefix}outbox_pkey" PRIMARY KEY (position)
);
CREATE INDEX IF NOT EXISTS "{prefix}outbox_pending" ON {outbox} (position)
    WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS "{prefix}outbox_parked" ON {outbox} (position)
    WHERE parked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{prefix}outbox_sent" ON {outbox} (sent_at)
    WHERE sent_at IS NOT NULL;
CREATE OR REPLACE FUNCTION {capture}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $factum$
BEGIN
    INSERT INTO {outbox} (position) SELECT n.position FROM factum_new_events n;
    RETURN NULL;
END
$factum$;
CREATE OR REPLACE TRIGGER "{trigger}" AFTER INSERT ON {events}
    REFERENCING NEW TABLE AS factum_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION {capture}();
"#
    )
}

/// Locks up to `$1` waiting rows no other claim holds, oldest first, and
/// returns them with their envelope, their attempts, and the outbox
/// position of the stream's previous event when that one is waiting too.
///
/// The locking CTE is materialised: the rows are locked once, then joined.
/// The predecessor is found by key in the events table first, then looked
/// up by key in the outbox: a shape the planner cannot turn into a scan of
/// the outbox per row, even with no statistics on a table that just grew
/// (measured: 14 ms for 2,048 rows, against 270 ms for a join it planned
/// from empty-table statistics).
fn claim(outbox: &str, events: &str, envelope: &str) -> String {
    format!(
        "WITH claimed AS MATERIALIZED (
             SELECT o.position, o.attempts FROM {outbox} o
              WHERE o.sent_at IS NULL AND o.parked_at IS NULL
              ORDER BY o.position LIMIT $1
                FOR UPDATE SKIP LOCKED)
         SELECT {envelope}, c.attempts,
                (SELECT po.position FROM {outbox} po
                  WHERE po.position = ANY (ARRAY(
                            SELECT p.position FROM {events} p
                             WHERE p.tenant = e.tenant AND p.stream_type = e.stream_type
                               AND p.stream_id = e.stream_id
                               AND p.version = e.version - 1))
                    AND po.sent_at IS NULL AND po.parked_at IS NULL
                  LIMIT 1) AS waiting_on
           FROM claimed c JOIN {events} e ON e.position = c.position
          ORDER BY c.position"
    )
}
