//! The outbox's SQL with the store's names filled in: its table and
//! trigger, and the statements of claims.

use crate::PostgresEventStore;
use crate::options::Names;
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
    pub(crate) split: String,
    pub(crate) prune: String,
    pub(crate) parked: String,
    pub(crate) requeue: String,
    pub(crate) pending: String,
}

/// The qualified names of the outbox's table and trigger function, and the
/// trigger's own name (`pg_trigger` keeps it unqualified).
pub(crate) struct OutboxNames {
    pub(crate) outbox: String,
    pub(crate) capture: String,
    pub(crate) trigger: String,
}

impl OutboxNames {
    pub(crate) fn new(names: &Names) -> Self {
        let Names { schema, prefix, .. } = names;
        Self {
            outbox: format!("{schema}.\"{prefix}outbox\""),
            capture: format!("{schema}.\"{prefix}outbox_capture\""),
            trigger: format!("{prefix}outbox_capture"),
        }
    }
}

impl OutboxSql {
    pub(crate) fn new(store: &PostgresEventStore) -> Self {
        let names = &store.shared.names;
        let prefix = &names.prefix;
        let events = &names.events;
        let OutboxNames {
            outbox,
            capture,
            trigger,
        } = OutboxNames::new(names);
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
            finish: finish(&outbox),
            split: split(&outbox, events),
            // Counted in events, like everything the relay sees.
            prune: format!(
                "WITH pruned AS (
                     DELETE FROM {outbox} WHERE sent_at < $1
                     RETURNING last_version - first_version + 1 AS events)
                 SELECT coalesce(sum(events), 0)::bigint FROM pruned"
            ),
            // A parked entry is one event (see `finish`); the join on the
            // range lists every event of a row all the same.
            parked: format!(
                "SELECT {envelope}, o.attempts, o.last_error
                   FROM {outbox} o JOIN {events} e
                     ON e.tenant = o.tenant AND e.stream_type = o.stream_type
                    AND e.stream_id = o.stream_id
                    AND e.version BETWEEN o.first_version AND o.last_version
                  WHERE o.parked_at IS NOT NULL
                  ORDER BY e.position LIMIT $1"
            ),
            requeue: format!(
                "UPDATE {outbox} SET parked_at = NULL \
                  WHERE position = $1 AND parked_at IS NOT NULL AND sent_at IS NULL"
            ),
            pending: format!(
                "SELECT coalesce(sum(last_version - first_version + 1), 0)::bigint
                   FROM {outbox} WHERE sent_at IS NULL"
            ),
        }
    }
}

/// The table, its indexes, the trigger function and the trigger; every
/// statement idempotent.
///
/// - One row (an *entry*) per appending statement and stream: the stream,
///   the first and last version the statement stored (a stream's versions
///   in one statement are contiguous), and `position`, the position of its
///   first event: the entry's key and its place in line, no sequence of
///   its own. A claim reads the envelopes from the events table by stream
///   and version.
/// - `{prefix}outbox_pending` holds only the waiting rows, so a claim finds
///   them without walking the sent rows kept for the retention;
///   `{prefix}outbox_stream` finds a stream's unsent entry by its last
///   version, which a claim asks for the entry before each of its own. Its
///   condition (`sent_at IS NULL`) differs from `outbox_pending`'s, so a
///   lookup can be written that only it serves (see [`claim`]); marking an
///   entry sent takes it out.
/// - The trigger is a statement trigger with a transition table: one
///   `INSERT … SELECT` per appending statement, however many events it
///   stored, so a batch pays for its outbox row once.
fn enable(outbox: &str, capture: &str, trigger: &str, events: &str, prefix: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {outbox} (
    position bigint NOT NULL,
    tenant text NOT NULL,
    stream_type text NOT NULL,
    stream_id text NOT NULL,
    first_version bigint NOT NULL,
    last_version bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    parked_at timestamptz,
    sent_at timestamptz,
    CONSTRAINT "{prefix}outbox_pkey" PRIMARY KEY (position),
    CONSTRAINT "{prefix}outbox_versions" CHECK (first_version BETWEEN 1 AND last_version)
);
{indexes}
{function}
CREATE OR REPLACE TRIGGER "{trigger}" AFTER INSERT ON {events}
    REFERENCING NEW TABLE AS factum_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION {capture}();
"#,
        indexes = indexes(outbox, prefix),
        function = capture_function(outbox, capture),
    )
}

/// The outbox's indexes (see [`enable`]), each `IF NOT EXISTS`.
pub(crate) fn indexes(outbox: &str, prefix: &str) -> String {
    format!(
        r#"CREATE INDEX IF NOT EXISTS "{prefix}outbox_pending" ON {outbox} (position)
    WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS "{prefix}outbox_stream" ON {outbox} (tenant, stream_type, stream_id, last_version)
    WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS "{prefix}outbox_parked" ON {outbox} (position)
    WHERE parked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{prefix}outbox_sent" ON {outbox} (sent_at)
    WHERE sent_at IS NOT NULL;"#
    )
}

/// The trigger function: one entry per stream of the appending statement.
/// It runs as its owner (the tables' owner), so a tenant's role, which may
/// not write the outbox, appends through it all the same.
///
/// A statement of one event (the common save: a command on an aggregate)
/// is its own entry; grouping it costs a hash table per statement
/// (measured: about 10 µs of a 40 µs trigger, against 5 µs for the test).
pub(crate) fn capture_function(outbox: &str, capture: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION {capture}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $factum$
BEGIN
    IF NOT EXISTS (SELECT FROM factum_new_events OFFSET 1) THEN
        INSERT INTO {outbox} (position, tenant, stream_type, stream_id, first_version, last_version)
        SELECT n.position, n.tenant, n.stream_type, n.stream_id, n.version, n.version
          FROM factum_new_events n;
    ELSE
        INSERT INTO {outbox} (position, tenant, stream_type, stream_id, first_version, last_version)
        SELECT min(n.position), n.tenant, n.stream_type, n.stream_id, min(n.version), max(n.version)
          FROM factum_new_events n
         GROUP BY n.tenant, n.stream_type, n.stream_id;
    END IF;
    RETURN NULL;
END
$factum$;"#
    )
}

/// Locks the oldest waiting entries no other claim holds, and returns the
/// events of those that fit in `$1` events, in no set order: each with
/// its envelope, its entry's attempts, position and last version, and for
/// the first event of an entry the position of the stream's previous event
/// when that one is waiting too.
///
/// How many entries to lock: `FOR UPDATE SKIP LOCKED` under a `LIMIT` can
/// only count rows, not events. The limit is `$1` divided by the mean
/// number of events of the first waiting entries (at most 32, locked or
/// not: a cheap peek), so a claim locks about the entries it needs, not
/// `$1` entries of 100 events each (the extra ones would be locked and not
/// handed out, holding back their streams from the relay's next claim).
/// The entries are taken whole, oldest first, until the events reach `$1`;
/// the last one taken gives only its first events up to `$1`, and its
/// rest stays in line (`finish` splits it off).
///
/// The locking CTE is materialised: the rows are locked once, then joined.
/// Every lookup is by key, in a shape the planner cannot turn into a scan
/// per entry, even with no statistics on a table that just grew (measured
/// with one row per event: 14 ms for 2,048 rows, against 270 ms for a join
/// it planned from empty-table statistics):
///
/// - the entry before each one: by stream and last version in
///   `outbox_stream` (`sent_at IS NULL`), and not parked, tested as
///   `coalesce(…) IS NULL`, which does not imply the condition of
///   `outbox_pending` (measured: with both conditions written plainly, a
///   planner with the statistics of an empty table walked `outbox_pending`
///   once per entry, 0.55 ms each); when it is waiting, the position of its last event
///   is its own position for an entry of one event, else read from the
///   events table by stream and version;
/// - the events of each entry: by the events table's key `(tenant,
///   stream_type, stream_id, version)`, a range per entry, in a lateral
///   subquery (`OFFSET 0` keeps it one, so one probe of the key per entry;
///   measured: a join was planned as a hash join over the whole events
///   table, and an `= ANY (array)` as a probe per entry that walks the
///   whole array, 110 ms for 2,048 entries).
///
/// The rows are not sorted here: sorting the envelopes, payloads and all,
/// took half the statement's time (1.1 of 2.0 ms for 1,024 events of 11
/// entries); the claim puts them in position order itself (see
/// `PostgresOutboxClaim::take`).
fn claim(outbox: &str, events: &str, envelope: &str) -> String {
    format!(
        "WITH claimed AS MATERIALIZED (
             SELECT o.position, o.tenant, o.stream_type, o.stream_id, o.first_version,
                    o.last_version, o.attempts
               FROM {outbox} o
              WHERE o.sent_at IS NULL AND o.parked_at IS NULL
              ORDER BY o.position
              LIMIT (SELECT greatest(1, least($1::bigint, ceil($1::bigint::numeric / greatest(1, avg(w.size)))))::bigint
                       FROM (SELECT w.last_version - w.first_version + 1 AS size FROM {outbox} w
                              WHERE w.sent_at IS NULL AND w.parked_at IS NULL
                              ORDER BY w.position LIMIT 32) w)
                FOR UPDATE SKIP LOCKED),
         taken AS MATERIALIZED (
             SELECT c.position, c.tenant, c.stream_type, c.stream_id, c.first_version,
                    c.last_version, c.attempts,
                    least(c.last_version, c.first_version + $1 - c.before - 1) AS upto,
                    CASE WHEN pred.position IS NULL THEN NULL
                         WHEN pred.first_version = c.first_version - 1 THEN pred.position
                         ELSE (SELECT p.position FROM {events} p
                                WHERE p.tenant = c.tenant AND p.stream_type = c.stream_type
                                  AND p.stream_id = c.stream_id AND p.version = c.first_version - 1)
                    END AS waiting_on
               FROM (SELECT c.*,
                            coalesce(sum(c.last_version - c.first_version + 1) OVER (
                                ORDER BY c.position ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                                0)::bigint AS before
                       FROM claimed c) c
               LEFT JOIN LATERAL (
                    SELECT po.position, po.first_version FROM {outbox} po
                     WHERE po.tenant = c.tenant AND po.stream_type = c.stream_type
                       AND po.stream_id = c.stream_id AND po.last_version = c.first_version - 1
                       AND po.sent_at IS NULL AND coalesce(po.parked_at, po.sent_at) IS NULL
                     LIMIT 1) pred ON true
              WHERE c.before < $1)
         SELECT {envelope}, t.attempts, t.position, t.last_version,
                CASE WHEN e.version = t.first_version THEN t.waiting_on END
           FROM taken t CROSS JOIN LATERAL (
                SELECT * FROM {events} f
                 WHERE f.tenant = t.tenant AND f.stream_type = t.stream_type AND f.stream_id = t.stream_id
                   AND f.version BETWEEN t.first_version AND t.upto
                 OFFSET 0) e"
    )
}

/// Records a claim's outcomes, one element of the arrays per *run*: a
/// stretch of one entry's versions (`$2`…`$3`) with one outcome (`$4`: 0
/// sent, 1 retry, 2 park, 3 none: released as it was) and its error
/// (`$5`). This statement takes the runs that start an entry (`$1`, its
/// position), which update it in place, down to the run's last version:
/// all of a claim's runs when no entry is split, which is one run per
/// entry.
fn finish(outbox: &str) -> String {
    format!(
        "UPDATE {outbox} o
            SET last_version = r.last_version,
                sent_at = CASE WHEN r.outcome = 0 THEN statement_timestamp() ELSE o.sent_at END,
                parked_at = CASE WHEN r.outcome = 2 THEN statement_timestamp() ELSE o.parked_at END,
                attempts = o.attempts + CASE WHEN r.outcome IN (1, 2) THEN 1 ELSE 0 END,
                last_error = coalesce(r.error, o.last_error)
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[], $5::text[])
                AS r(entry, first_version, last_version, outcome, error)
          WHERE o.position = r.entry AND o.first_version = r.first_version"
    )
}

/// Records the runs that split entries (same arrays as [`finish`]): each
/// run that does not start its entry becomes an entry of its own, keyed by
/// the position of its first event, with the entry's attempts and error as
/// they were before the claim's outcomes. Runs before [`finish`] in the
/// same transaction, which cuts the entries down to their first runs.
/// Together the runs of an entry cover its versions exactly.
fn split(outbox: &str, events: &str) -> String {
    format!(
        "INSERT INTO {outbox} (position, tenant, stream_type, stream_id, first_version, last_version,
                               attempts, last_error, parked_at, sent_at)
         SELECT e.position, o.tenant, o.stream_type, o.stream_id, r.first_version, r.last_version,
                o.attempts + CASE WHEN r.outcome IN (1, 2) THEN 1 ELSE 0 END,
                coalesce(r.error, o.last_error),
                CASE WHEN r.outcome = 2 THEN statement_timestamp() ELSE o.parked_at END,
                CASE WHEN r.outcome = 0 THEN statement_timestamp() ELSE o.sent_at END
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[], $5::text[])
                AS r(entry, first_version, last_version, outcome, error)
           JOIN {outbox} o ON o.position = r.entry AND o.first_version < r.first_version
                          AND r.last_version <= o.last_version
           JOIN {events} e
             ON e.tenant = o.tenant AND e.stream_type = o.stream_type AND e.stream_id = o.stream_id
            AND e.version = r.first_version"
    )
}
