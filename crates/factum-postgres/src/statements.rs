//! The statements the store prepares, with its names filled in.

use crate::options::Names;
use crate::rows::COLUMNS;
use crate::schema::{POSITION_BITS, last_handed_out, stream_turn};

/// The statements the store prepares, built once per store. Every statement
/// that touches a stream takes its tenant as its last parameter; a tenant's
/// view runs them as the tenant role too (see `scope`).
pub(crate) struct Sql {
    pub(crate) append: String,
    pub(crate) append_batches: String,
    pub(crate) append_one: String,
    pub(crate) append_many: String,
    pub(crate) append_new: String,
    /// The appends of a group (see `group`), one statement.
    pub(crate) append_group: String,
    pub(crate) set_horizon: String,
    pub(crate) read_page: String,
    /// A page of the default tenant's log (no parameter for the tenant).
    pub(crate) read_default_page: String,
    /// A page of another tenant's log (`$3`: the tenant).
    pub(crate) read_tenant_page: String,
    pub(crate) horizon: String,
    /// The default tenant's last position up to the horizon just set.
    pub(crate) default_head: String,
    /// Another tenant's last position up to the horizon just set.
    pub(crate) tenant_head: String,
    pub(crate) read_stream: String,
    pub(crate) stream_version: String,
    pub(crate) by_event_ids: String,
    pub(crate) taken_ids: String,
    pub(crate) save_snapshot: String,
    pub(crate) load_snapshot: String,
}

impl Sql {
    pub(crate) fn new(names: &Names) -> Self {
        Self {
            append: format!(
                "SELECT stream_version, positions FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                names.append
            ),
            append_batches: format!(
                "SELECT actual_versions, positions FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                names.append_batches
            ),
            append_one: append_one(names),
            append_many: append_many(names),
            append_new: append_new(names),
            append_group: append_group(names),
            set_horizon: set_horizon(names),
            read_page: read_page(names, "", "$3"),
            read_default_page: read_page(names, "tenant = 'default' AND", "$3"),
            // Naming the default tenant out lets the planner use the partial
            // index on `(tenant, position)` with a generic plan.
            read_tenant_page: read_page(names, "tenant = $3 AND tenant <> 'default' AND", "$4"),
            horizon: format!("SELECT {}()", names.horizon),
            default_head: tenant_head(names, "tenant = 'default'"),
            tenant_head: tenant_head(names, "tenant = $1 AND tenant <> 'default'"),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {} WHERE tenant = $5 AND stream_type = $1 AND stream_id = $2 \
                 AND version >= $3 ORDER BY version LIMIT $4",
                names.events
            ),
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {} WHERE tenant = $3 AND stream_type = $1 AND stream_id = $2",
                names.events
            ),
            by_event_ids: format!("SELECT {COLUMNS} FROM {} WHERE event_id = ANY ($1)", names.events),
            taken_ids: format!("SELECT * FROM {}($1)", names.taken_ids),
            save_snapshot: crate::snapshot::save_sql(names),
            load_snapshot: crate::snapshot::load_sql(names),
        }
    }
}

/// The opening CTEs of the one-statement appends: `position_lock` takes the
/// shared position lock keyed with the last position handed out and tries
/// to share the stream's turn (`turn`: false while a retry holds it; the
/// append then writes nothing and runs again, taking its turn), and
/// `current_version` reads the stream's version (parameters `$1`, `$2`, and
/// the tenant `$10`).
fn locked_version(names: &Names) -> String {
    let Names { events, lock_tag, .. } = names;
    let shift = 1_i64 << POSITION_BITS;
    let last_handed_out = last_handed_out(names);
    let share_turn = stream_turn(names, "pg_try_advisory_xact_lock_shared", "$1", "$2");
    format!(
        "WITH position_lock AS MATERIALIZED (
             SELECT pg_advisory_xact_lock_shared({lock_tag} * {shift} + {last_handed_out}) AS locked,
                    {share_turn} AS turn
         ), current_version AS MATERIALIZED (
             SELECT coalesce(max(e.version), 0) AS actual
               FROM {events} e WHERE e.tenant = $10 AND e.stream_type = $1 AND e.stream_id = $2
         )"
    )
}

/// The statement of a first attempt to append one event: one round trip, one
/// plan, no PL/pgSQL.
///
/// Returns the stream's version before the append, the new event's
/// position (NULL when nothing was written) and whether the stream's turn
/// was shared (when not, nothing is written and the append runs again;
/// otherwise a NULL position means the expected version did not match).
/// The order that exactness needs is carried by the data: `nextval` sits
/// in the target list of a join with the `position_lock` CTE, so it runs
/// only once the lock's row exists, i.e. after the lock is taken, and the
/// lock's key was read from the sequence before.
fn append_one(names: &Names) -> String {
    let Names { events, sequence, .. } = names;
    let sequence_literal = sequence.replace('\'', "''");
    let locked_version = locked_version(names);
    format!(
        "{locked_version}, inserted AS (
             INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                                   schema_version, payload, metadata, occurred_at, tenant)
             SELECT nextval('{sequence_literal}'::regclass), $1, $2, c.actual + 1, $4, $5, $6, $7::text::json,
                    $8::text::json, $9, $10
               FROM current_version c, position_lock l
              WHERE l.turn AND ($3::bigint IS NULL OR c.actual = $3::bigint)
             RETURNING position
         )
         SELECT c.actual, (SELECT i.position FROM inserted i), l.turn FROM current_version c, position_lock l"
    )
}

/// The statement of a first attempt to append a batch: [`append_one`] for
/// many events, one round trip and one plan, no PL/pgSQL.
///
/// Returns the stream's version before the append, the positions in
/// version order and whether the stream's turn was shared; no positions
/// when the turn was not shared or the expected version did not match.
/// The rows of `unnest … WITH ORDINALITY` reach the target list in order
/// (a nested loop over one-row CTEs), so `nextval` hands out positions in
/// version order, and only after the position lock's row exists. The batch
/// must not repeat an event id (the caller sends such a batch to
/// `factum_append`, which reports it).
fn append_many(names: &Names) -> String {
    let Names { events, sequence, .. } = names;
    let sequence_literal = sequence.replace('\'', "''");
    let locked_version = locked_version(names);
    format!(
        "{locked_version}, inserted AS (
             INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                                   schema_version, payload, metadata, occurred_at, tenant)
             SELECT nextval('{sequence_literal}'::regclass), $1, $2, c.actual + u.ord, u.event_id, u.event_type,
                    u.schema_version, u.payload::json, u.metadata::json, u.occurred_at, $10
               FROM current_version c, position_lock l,
                    unnest($4::uuid[], $5::text[], $6::integer[], $7::text[], $8::text[], $9::timestamptz[])
                        WITH ORDINALITY AS u(event_id, event_type, schema_version, payload, metadata, occurred_at, ord)
              WHERE l.turn AND ($3::bigint IS NULL OR c.actual = $3::bigint)
             RETURNING position
         )
         SELECT c.actual, ARRAY(SELECT i.position FROM inserted i ORDER BY i.position), l.turn
           FROM current_version c, position_lock l"
    )
}

/// The statement of a first attempt to append one event to a stream
/// expected to be empty (creating an aggregate): no version to read, since
/// an existing stream has a version 1, and the unique key on
/// `(stream, version)` refuses a second one (SQLSTATE `23505`, reported as
/// a conflict). Returns the position, or no row when the stream's turn or
/// the position lock could not be shared without waiting (a retry on the
/// stream holds its turn; the position lock is never taken exclusively
/// unless by something outside factum): the append then runs again through
/// `factum_append`, which waits for them.
///
/// The lock's key is an argument of the lock call and the lock is a
/// one-time filter of the `SELECT`: both happen before `nextval` in its
/// target list.
fn append_new(names: &Names) -> String {
    let Names {
        events,
        sequence,
        lock_tag,
        ..
    } = names;
    let shift = 1_i64 << POSITION_BITS;
    let sequence_literal = sequence.replace('\'', "''");
    let share_turn = stream_turn(names, "pg_try_advisory_xact_lock_shared", "$1", "$2");
    format!(
        "INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                               schema_version, payload, metadata, occurred_at, tenant)
         SELECT nextval('{sequence_literal}'::regclass), $1, $2, 1, $3, $4, $5, $6::text::json, $7::text::json, $8,
                $9
          WHERE {share_turn}
            AND pg_try_advisory_xact_lock_shared({lock_tag} * {shift}
                    + coalesce(pg_sequence_last_value('{sequence_literal}'::regclass), 0))
         RETURNING position"
    )
}

/// The statement of a group of appends (see `group`): every append's
/// version check, and the inserts of those that pass, in one statement, so
/// one transaction and one round trip.
///
/// Per append (`$1`…`$3`, in the order of their streams, no stream twice):
/// stream type, stream id, expected version (NULL: any); per event (`$4`…
/// `$11`): its append's number (from 1), its place in the append (from 1),
/// and the columns; `$12`: the tenant. Returns one row per append, in
/// order: the stream's version before the group, whether the stream's turn
/// was shared (when not, the append wrote nothing and runs again alone,
/// taking its turn), and its positions, in no particular order (none when
/// its expected version did not hold): sorted, they are in version order.
///
/// Exactness, as for one append: the position lock is taken once, keyed
/// with the last position handed out, and `nextval` sits in the target
/// list of a join with the lock's CTE, so every position of the group is
/// taken after the lock. The positions are then numbered by value and the
/// accepted events by their order in the arrays, and joined on those
/// numbers: whatever order the executor calls `nextval` in, each append's
/// positions increase with its versions. A unique key met by any row (a
/// race with another transaction on a stream, an event id stored already)
/// fails the statement, which rolls the group back whole.
///
/// The positions go back to their appends through one grouping of the
/// inserted rows and one join on the stream (no stream is in a group
/// twice), not a scan of every inserted row per append: that scan grew
/// with the square of the group and cost 13% of the statement at 64
/// appends. The caller sorts each append's positions: an `ORDER BY` in the
/// aggregate set up a sort per append, a tenth of the statement at 16
/// appends.
fn append_group(names: &Names) -> String {
    let Names {
        events,
        sequence,
        lock_tag,
        ..
    } = names;
    let shift = 1_i64 << POSITION_BITS;
    let last_handed_out = last_handed_out(names);
    let sequence_literal = sequence.replace('\'', "''");
    let share_turn = stream_turn(
        names,
        "pg_try_advisory_xact_lock_shared",
        "a.stream_type",
        "a.stream_id",
    );
    format!(
        "WITH position_lock AS MATERIALIZED (
             SELECT pg_advisory_xact_lock_shared({lock_tag} * {shift} + {last_handed_out}) AS locked
         ), appends AS MATERIALIZED (
             SELECT a.n, a.stream_type, a.stream_id, a.expected, {share_turn} AS turn,
                    (SELECT coalesce(max(e.version), 0) FROM {events} e
                      WHERE e.tenant = $12 AND e.stream_type = a.stream_type AND e.stream_id = a.stream_id) AS actual
               FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS a(stream_type, stream_id, expected, n)
         ), accepted AS MATERIALIZED (
             SELECT row_number() OVER (ORDER BY u.ord) AS rank, a.stream_type, a.stream_id,
                    a.actual + u.place AS version, u.event_id, u.event_type, u.schema_version, u.payload,
                    u.metadata, u.occurred_at
               FROM unnest($4::integer[], $5::integer[], $6::uuid[], $7::text[], $8::integer[], $9::text[],
                           $10::text[], $11::timestamptz[])
                        WITH ORDINALITY AS u(append, place, event_id, event_type, schema_version, payload,
                                             metadata, occurred_at, ord)
               JOIN appends a ON a.n = u.append
              WHERE a.turn AND (a.expected IS NULL OR a.actual = a.expected)
         ), positions AS MATERIALIZED (
             SELECT row_number() OVER (ORDER BY p.position) AS rank, p.position
               FROM (SELECT nextval('{sequence_literal}'::regclass) AS position
                       FROM position_lock l, generate_series(1, (SELECT count(*) FROM accepted))) p
         ), inserted AS (
             INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                                   schema_version, payload, metadata, occurred_at, tenant)
             SELECT p.position, x.stream_type, x.stream_id, x.version, x.event_id, x.event_type,
                    x.schema_version, x.payload::json, x.metadata::json, x.occurred_at, $12
               FROM accepted x JOIN positions p ON p.rank = x.rank
              ORDER BY x.rank
             RETURNING position, stream_type, stream_id
         ), written AS (
             SELECT i.stream_type, i.stream_id, array_agg(i.position) AS positions
               FROM inserted i GROUP BY i.stream_type, i.stream_id
         )
         SELECT a.actual, a.turn, coalesce(w.positions, '{{}}')
           FROM appends a LEFT JOIN written w ON w.stream_type = a.stream_type AND w.stream_id = a.stream_id
          ORDER BY a.n"
    )
}

/// The statement that computes the horizon and leaves it in the session, for
/// [`read_page`], sent right before it in the same round trip.
fn set_horizon(names: &Names) -> String {
    format!(
        "SELECT set_config('factum.horizon', {}()::text, false)",
        names.horizon
    )
}

/// A page of the global log up to the horizon [`set_horizon`] just left in
/// the session, of the events that pass `only` (a condition ending in
/// `AND`; empty: every tenant's). A separate statement, so it reads with a
/// snapshot taken after the horizon's scan of `pg_locks` (READ COMMITTED
/// takes one per statement): the order the proof of exactness needs.
/// Leaving out other tenants' events keeps it: every event at or below the
/// horizon is there to be read, whichever tenant's it is.
///
/// `known` names the parameter of a horizon computed earlier (NULL: the
/// one just set). An earlier horizon stays exact for later reads: every
/// event at or below it was committed, or rolled back, before the scan
/// that found it, so any later snapshot sees all of them.
fn read_page(names: &Names, only: &str, known: &str) -> String {
    // The horizon filters the page after the LIMIT (the rows at or below it
    // are a prefix of the page): an open range bounded on both sides makes
    // the planner expect few rows and sort a whole range, while this form
    // always walks the primary key from `$1`. The horizon is read once per
    // page (an init plan), not once per row.
    format!(
        "SELECT {columns} FROM (
             SELECT {columns} FROM {events} WHERE {only} position > $1 ORDER BY position LIMIT $2
         ) page
         WHERE position <= (SELECT coalesce({known}::bigint, current_setting('factum.horizon', true)::bigint))
         ORDER BY position",
        columns = COLUMNS,
        events = names.events,
    )
}

/// The last position of a tenant (`only`) up to the horizon [`set_horizon`]
/// just left in the session (0: none), read backwards by position: the head
/// of the tenant's log.
fn tenant_head(names: &Names, only: &str) -> String {
    format!(
        "SELECT coalesce((SELECT position FROM {events}
                           WHERE {only} AND position <= current_setting('factum.horizon', true)::bigint
                           ORDER BY position DESC LIMIT 1), 0)",
        events = names.events,
    )
}
