//! The store's tables and functions, and the migrations between versions.

use crate::options::Names;
use crate::outbox::OutboxNames;

/// The schema version this crate writes and reads.
pub(crate) const CURRENT_VERSION: u32 = 7;

/// Positions stay below 2^48: the high 16 bits of a position lock's key
/// carry the store's tag.
pub(crate) const POSITION_BITS: u32 = 48;

/// The steps that take a schema from one version to the next: step `k`
/// (counting from 0) takes version `k` to `k + 1`. The array's length is the
/// current version, so every version has its step by construction.
///
/// Never edit a published step: add a new one. A step runs inside the
/// transaction that records it, so a failed migration leaves the schema as
/// it was.
pub(crate) fn migrations(names: &Names) -> [String; CURRENT_VERSION as usize] {
    [
        version_1(names),
        version_2(names),
        version_3(names),
        version_4(names),
        version_5(names),
        snapshot_shape_version(names),
        outbox_entries(names),
    ]
}

/// The events table and the sequence of positions.
fn version_1(names: &Names) -> String {
    let Names { events, sequence, .. } = names;
    let max_position = (1_i64 << POSITION_BITS) - 1;
    let prefix = &names.prefix;
    format!(
        "CREATE SEQUENCE {sequence} AS bigint MINVALUE 1 MAXVALUE {max_position} CACHE 1 NO CYCLE;
             CREATE TABLE {events} (
                 position bigint NOT NULL,
                 stream_type text NOT NULL,
                 stream_id text NOT NULL,
                 version bigint NOT NULL CHECK (version > 0),
                 event_id uuid NOT NULL,
                 event_type text NOT NULL,
                 schema_version integer NOT NULL,
                 payload json NOT NULL,
                 metadata json,
                 occurred_at timestamptz NOT NULL,
                 CONSTRAINT \"{prefix}events_pkey\" PRIMARY KEY (position),
                 CONSTRAINT \"{prefix}events_stream_version\" UNIQUE (stream_type, stream_id, version),
                 CONSTRAINT \"{prefix}events_event_id\" UNIQUE (event_id)
             );"
    )
}

/// When each event was committed, for operators: the existing rows get the
/// time of the migration (no table rewrite).
fn version_2(names: &Names) -> String {
    let Names { events, .. } = names;
    format!("ALTER TABLE {events} ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();")
}

/// Projections: checkpoints, dead letters (the whole envelope, so a dead
/// letter is replayed from its row) and leases.
fn version_3(names: &Names) -> String {
    let Names {
        checkpoints,
        dead_letters,
        leases,
        ..
    } = names;
    let prefix = &names.prefix;
    format!(
        "CREATE TABLE {checkpoints} (
                 projection text NOT NULL,
                 position bigint NOT NULL CHECK (position >= 0),
                 CONSTRAINT \"{prefix}checkpoints_pkey\" PRIMARY KEY (projection)
             );
             CREATE TABLE {dead_letters} (
                 projection text NOT NULL,
                 position bigint NOT NULL,
                 stream_type text NOT NULL,
                 stream_id text NOT NULL,
                 version bigint NOT NULL,
                 event_id uuid NOT NULL,
                 event_type text NOT NULL,
                 schema_version integer NOT NULL,
                 payload json NOT NULL,
                 metadata json,
                 occurred_at timestamptz NOT NULL,
                 error text NOT NULL,
                 attempts integer NOT NULL,
                 failed_at timestamptz NOT NULL,
                 CONSTRAINT \"{prefix}dead_letters_pkey\" PRIMARY KEY (projection, position)
             );
             CREATE TABLE {leases} (
                 projection text NOT NULL,
                 holder text NOT NULL,
                 expires_at timestamptz NOT NULL,
                 CONSTRAINT \"{prefix}leases_pkey\" PRIMARY KEY (projection)
             );"
    )
}

/// Snapshots: the latest state of each aggregate, one row per stream.
/// `state` is `json`, kept as written, like payloads.
fn version_4(names: &Names) -> String {
    let Names { snapshots, .. } = names;
    let prefix = &names.prefix;
    format!(
        "CREATE TABLE {snapshots} (
                 stream_type text NOT NULL,
                 stream_id text NOT NULL,
                 version bigint NOT NULL CHECK (version >= 0),
                 state json NOT NULL,
                 taken_at timestamptz NOT NULL,
                 CONSTRAINT \"{prefix}snapshots_pkey\" PRIMARY KEY (stream_type, stream_id)
             );"
    )
}

/// Tenants: a tenant is part of where an event lives, and the database
/// enforces it with row-level security.
///
/// - Every table gains `tenant`. Events and snapshots of older versions are
///   the `default` tenant's; the projection state of older versions was
///   written by the unscoped store, so it is `$all`'s (the scope of the
///   unscoped store's projections, which no tenant can be named) and its
///   projections go on from their checkpoints. A dead letter also keeps
///   the tenant its event lives in (`event_tenant`). The defaults fill the
///   existing rows without rewriting the tables, and are dropped at once:
///   a row that does not say its tenant is refused.
/// - The unique keys include the tenant (the constraint keeps its name: a
///   lost race is still recognised by it), and a partial index on
///   `(tenant, position)` reads a tenant's log by position. It leaves out
///   the default tenant, so a store with one tenant writes no more than
///   before; a view of the default tenant walks the primary key.
/// - Row-level security on every table: a row is visible and writable only
///   when its tenant is the transaction's `factum.tenant` setting. It binds
///   every role but the tables' owner and superusers (and roles with
///   `BYPASSRLS`): the unscoped store connects as the owner and sees every
///   tenant; a tenant's view runs its statements as the tenant role, which
///   sees only its tenant's rows whatever the SQL asks for. A transaction
///   that sets no tenant (or an empty one, as a setting reads after the
///   transaction that set it) sees nothing.
/// - `factum_append` and `factum_append_batches` take the tenant (their
///   old signatures are dropped, so that no caller reaches a function that
///   writes no tenant), and `factum_read_all` returns it.
fn version_5(names: &Names) -> String {
    let Names {
        events,
        snapshots,
        checkpoints,
        dead_letters,
        leases,
        append,
        append_batches,
        read_all,
        ..
    } = names;
    let prefix = &names.prefix;
    let policies: String = [events, snapshots, checkpoints, dead_letters, leases]
        .iter()
        .map(|table| {
            format!(
                "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
                 CREATE POLICY \"{prefix}tenant_isolation\" ON {table}
                     USING (tenant = nullif(current_setting('factum.tenant', true), ''))
                     WITH CHECK (tenant = nullif(current_setting('factum.tenant', true), ''));\n"
            )
        })
        .collect();
    format!(
        "ALTER TABLE {events} ADD COLUMN tenant text NOT NULL DEFAULT 'default';
         ALTER TABLE {events} ALTER COLUMN tenant DROP DEFAULT;
         ALTER TABLE {events} DROP CONSTRAINT \"{prefix}events_stream_version\";
         ALTER TABLE {events} ADD CONSTRAINT \"{prefix}events_stream_version\"
             UNIQUE (tenant, stream_type, stream_id, version);
         CREATE INDEX \"{prefix}events_tenant_position\" ON {events} (tenant, position)
             WHERE tenant <> 'default';
         ALTER TABLE {snapshots} ADD COLUMN tenant text NOT NULL DEFAULT 'default';
         ALTER TABLE {snapshots} ALTER COLUMN tenant DROP DEFAULT;
         ALTER TABLE {snapshots} DROP CONSTRAINT \"{prefix}snapshots_pkey\";
         ALTER TABLE {snapshots} ADD CONSTRAINT \"{prefix}snapshots_pkey\"
             PRIMARY KEY (tenant, stream_type, stream_id);
         ALTER TABLE {checkpoints} ADD COLUMN tenant text NOT NULL DEFAULT '$all';
         ALTER TABLE {checkpoints} ALTER COLUMN tenant DROP DEFAULT;
         ALTER TABLE {checkpoints} DROP CONSTRAINT \"{prefix}checkpoints_pkey\";
         ALTER TABLE {checkpoints} ADD CONSTRAINT \"{prefix}checkpoints_pkey\" PRIMARY KEY (tenant, projection);
         ALTER TABLE {dead_letters} ADD COLUMN tenant text NOT NULL DEFAULT '$all';
         ALTER TABLE {dead_letters} ADD COLUMN event_tenant text NOT NULL DEFAULT 'default';
         ALTER TABLE {dead_letters} ALTER COLUMN tenant DROP DEFAULT;
         ALTER TABLE {dead_letters} ALTER COLUMN event_tenant DROP DEFAULT;
         ALTER TABLE {dead_letters} DROP CONSTRAINT \"{prefix}dead_letters_pkey\";
         ALTER TABLE {dead_letters} ADD CONSTRAINT \"{prefix}dead_letters_pkey\"
             PRIMARY KEY (tenant, projection, position);
         ALTER TABLE {leases} ADD COLUMN tenant text NOT NULL DEFAULT '$all';
         ALTER TABLE {leases} ALTER COLUMN tenant DROP DEFAULT;
         ALTER TABLE {leases} DROP CONSTRAINT \"{prefix}leases_pkey\";
         ALTER TABLE {leases} ADD CONSTRAINT \"{prefix}leases_pkey\" PRIMARY KEY (tenant, projection);
         DROP FUNCTION IF EXISTS {append}(text, text, bigint, boolean, uuid[], text[], integer[], text[],
                                          text[], timestamptz[]);
         DROP FUNCTION IF EXISTS {append_batches}(text[], text[], bigint[], integer[], integer[], uuid[],
                                                  text[], integer[], text[], text[], timestamptz[]);
         DROP FUNCTION IF EXISTS {read_all}(bigint, integer);
         {policies}"
    )
}

// ---- Migration: snapshot shape versions (issue 11) -------------------------
// One self-contained step; at a merge with other new steps, only its place
// in `migrations` (and so its number) changes.

/// Version 6: each snapshot records the version of the aggregate's shape it
/// was written in (`Snapshot::schema_version`, a `u32`). Snapshots taken
/// before it read as shape version 1; adding a column with a constant
/// default does not rewrite the table. It follows the tenants step, whose
/// policies and grants are per row and per table, so they cover the column.
fn snapshot_shape_version(names: &Names) -> String {
    let Names { snapshots, .. } = names;
    format!(
        "ALTER TABLE {snapshots} ADD COLUMN schema_version bigint NOT NULL DEFAULT 1
             CHECK (schema_version BETWEEN 0 AND 4294967295);"
    )
}
// ---- end of migration: snapshot shape versions ----------------------------

// ---- Migration: outbox entries per append ----------------------------------
// One self-contained step; at a merge with other new steps, only its place
// in `migrations` (and so its number) changes.

/// Version 7: the outbox keeps one entry per append and stream (its stream,
/// first and last version) instead of one row per event. The outbox is not
/// part of the versioned schema (`enable_outbox` creates it), so the step
/// changes it only when a release before this one enabled it:
///
/// - the rows gain the new columns, filled from their events: each old row
///   becomes an entry of one event, keeping its attempts, error, and
///   parked and sent times, so what waited still waits, once, in order;
/// - the stream index a claim looks predecessors up in is added;
/// - the trigger function is replaced, so every writer (older releases
///   included) writes entries from the commit of this step on. When the
///   outbox is switched off the function is replaced all the same, and
///   `enable_outbox` creates the trigger again.
///
/// Relays of older releases must be stopped before: they would mark a
/// whole entry sent for its first event.
fn outbox_entries(names: &Names) -> String {
    let Names { events, prefix, .. } = names;
    let OutboxNames { outbox, capture, .. } = OutboxNames::new(names);
    let regclass = outbox.replace('\'', "''");
    let indexes = crate::outbox::indexes(&outbox, prefix);
    let function = crate::outbox::capture_function(&outbox, &capture);
    format!(
        r#"DO $migrate$
BEGIN
    IF to_regclass('{regclass}') IS NULL THEN
        RETURN;
    END IF;
    ALTER TABLE {outbox}
        ADD COLUMN tenant text,
        ADD COLUMN stream_type text,
        ADD COLUMN stream_id text,
        ADD COLUMN first_version bigint,
        ADD COLUMN last_version bigint;
    UPDATE {outbox} o
       SET tenant = e.tenant, stream_type = e.stream_type, stream_id = e.stream_id,
           first_version = e.version, last_version = e.version
      FROM {events} e
     WHERE e.position = o.position;
    ALTER TABLE {outbox}
        ALTER COLUMN tenant SET NOT NULL,
        ALTER COLUMN stream_type SET NOT NULL,
        ALTER COLUMN stream_id SET NOT NULL,
        ALTER COLUMN first_version SET NOT NULL,
        ALTER COLUMN last_version SET NOT NULL,
        ADD CONSTRAINT "{prefix}outbox_versions" CHECK (first_version BETWEEN 1 AND last_version);
    {indexes}
    {function}
END
$migrate$;"#
    )
}
// ---- end of migration: outbox entries per append ---------------------------

/// The functions of the current version, replaced on every `ensure_schema`.
pub(crate) fn functions(names: &Names) -> String {
    [
        horizon_function(names),
        read_all_function(names),
        append_function(names),
        append_batches_function(names),
        taken_ids_function(names),
    ]
    .join("\n")
}

/// `taken_event_ids(ids)`: which of `ids` are stored, in any tenant.
///
/// A tenant's view whose append meets the unique key on `event_id` cannot
/// see the row it met (another tenant's), and PostgreSQL hides the key in
/// the error when row-level security is on; this tells which id it was,
/// and nothing else about it. It runs as its owner (the tables' owner,
/// whom row-level security does not bind), and only the tenant role may
/// call it besides.
fn taken_ids_function(names: &Names) -> String {
    let Names {
        events, taken_ids, ..
    } = names;
    format!(
        r#"
CREATE OR REPLACE FUNCTION {taken_ids}(p_ids uuid[]) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $factum$
    SELECT e.event_id FROM {events} e WHERE e.event_id = ANY (p_ids)
$factum$;
REVOKE ALL ON FUNCTION {taken_ids}(uuid[]) FROM PUBLIC;
"#
    )
}

/// The privileges the tenant role needs on the store's objects: reading and
/// appending events (never changing or deleting one), snapshots and
/// projection state, positions, and the functions. Row-level security
/// confines all of it to the tenant of the transaction.
pub(crate) fn tenant_grants(names: &Names, role: &str) -> String {
    let Names {
        schema,
        events,
        sequence,
        snapshots,
        checkpoints,
        dead_letters,
        leases,
        horizon,
        read_all,
        append,
        append_batches,
        taken_ids,
        ..
    } = names;
    format!(
        "GRANT USAGE ON SCHEMA {schema} TO \"{role}\";
         GRANT SELECT, INSERT ON {events} TO \"{role}\";
         GRANT SELECT, INSERT, UPDATE, DELETE ON {snapshots}, {checkpoints}, {dead_letters}, {leases}
             TO \"{role}\";
         GRANT USAGE, SELECT ON SEQUENCE {sequence} TO \"{role}\";
         GRANT EXECUTE ON FUNCTION {horizon}(), {read_all}(bigint, integer), {taken_ids}(uuid[]),
             {append}(text, text, bigint, boolean, uuid[], text[], integer[], text[], text[], timestamptz[], text),
             {append_batches}(text[], text[], bigint[], integer[], integer[], uuid[], text[], integer[], text[],
                              text[], timestamptz[], text)
             TO \"{role}\";"
    )
}

/// The last position the sequence has handed out, as an SQL expression
/// (see the crate docs: a fresh sequence has handed out nothing).
pub(crate) fn last_handed_out(names: &Names) -> String {
    format!(
        "(SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END FROM {} s)",
        names.sequence
    )
}

/// A call of the advisory lock `function` on a stream's turn key (two
/// `int4` keys, so readers' scan of position locks never sees it): the
/// stream's type mixed with the store's tag, and its id, as SQL expressions.
///
/// A retry takes the key exclusively, every first attempt shares it: while a
/// retry holds its turn no other append of the stream is open, so the
/// version it reads stays the stream's last until it commits, and a writer
/// that lost a race cannot lose again (without this, first attempts could
/// win every race against it until its attempts ran out).
pub(crate) fn stream_turn(names: &Names, function: &str, stream_type: &str, stream_id: &str) -> String {
    format!("{function}({})", turn_key(names, stream_type, stream_id))
}

/// The two keys of a stream's turn lock (see [`stream_turn`]), as SQL
/// expressions separated by a comma.
fn turn_key(names: &Names, stream_type: &str, stream_id: &str) -> String {
    format!(
        "hashtext({stream_type}) # {}, hashtext({stream_id})",
        names.lock_tag
    )
}

/// `factum_horizon()`: the position up to which the global log can be read.
fn horizon_function(names: &Names) -> String {
    let Names {
        horizon, lock_tag, ..
    } = names;
    let last_handed_out = last_handed_out(names);
    format!(
        r#"
CREATE OR REPLACE FUNCTION {horizon}() RETURNS bigint
LANGUAGE plpgsql VOLATILE
-- Plans fit for any table size from the first call: a custom plan made
-- from stale statistics may sort a whole range instead of walking an index.
SET plan_cache_mode = force_generic_plan AS $factum$
-- The position up to which no event can still appear: see the crate docs.
-- Order matters: the sequence first, then pg_locks, then (in the caller) a
-- fresh snapshot for the rows.
DECLARE
    v_last bigint;
    v_in_flight bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = 'FA004',
            MESSAGE = 'factum: the global log must be read at READ COMMITTED isolation';
    END IF;
    v_last := {last_handed_out};
    SELECT min(((l.classid::int8 & 65535) << 32) | l.objid::int8) INTO v_in_flight
      FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND (l.classid::int8 >> 16) = {lock_tag}
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database());
    RETURN least(v_last, v_in_flight);
END
$factum$;
"#
    )
}

/// `factum_read_all(after, limit)`: a page of the global log, for clients in SQL.
fn read_all_function(names: &Names) -> String {
    let Names {
        events,
        read_all,
        horizon,
        ..
    } = names;
    format!(
        r#"
CREATE OR REPLACE FUNCTION {read_all}(p_after bigint, p_limit integer)
RETURNS TABLE ("position" bigint, stream_type text, stream_id text, version bigint, event_id uuid,
               event_type text, schema_version integer, payload json, metadata json, occurred_at timestamptz,
               tenant text)
LANGUAGE plpgsql VOLATILE
-- Plans fit for any table size from the first call: a custom plan made
-- from stale statistics may sort a whole range instead of walking an index.
SET plan_cache_mode = force_generic_plan AS $factum$
#variable_conflict use_column
DECLARE
    v_horizon bigint;
BEGIN
    v_horizon := {horizon}();
    IF v_horizon IS NULL OR v_horizon <= p_after THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT page.* FROM (
            SELECT e.position, e.stream_type, e.stream_id, e.version, e.event_id, e.event_type,
                   e.schema_version, e.payload, e.metadata, e.occurred_at, e.tenant
              FROM {events} e
             WHERE e.position > p_after
             ORDER BY e.position
             LIMIT p_limit) page
         WHERE page.position <= v_horizon
         ORDER BY page.position;
END
$factum$;
"#
    )
}

/// `factum_append(…)`: the append that takes turns on its stream, for
/// retries and batches that repeat an event id.
fn append_function(names: &Names) -> String {
    let Names {
        events,
        append,
        lock_tag,
        ..
    } = names;
    let shift = 1_i64 << POSITION_BITS;
    let last_handed_out = last_handed_out(names);
    let inserts = append_inserts(names);
    let take_turn = stream_turn(names, "pg_advisory_xact_lock", "p_stream_type", "p_stream_id");
    // The stream's turn is keyed without its tenant: streams of the same id
    // in two tenants share a turn, which only ever costs a wait.
    let share_turn = stream_turn(
        names,
        "pg_advisory_xact_lock_shared",
        "p_stream_type",
        "p_stream_id",
    );
    format!(
        r#"
CREATE OR REPLACE FUNCTION {append}(
    p_stream_type text, p_stream_id text, p_expected bigint, p_take_turns boolean,
    p_event_ids uuid[], p_event_types text[], p_schema_versions integer[],
    p_payloads text[], p_metadata text[], p_occurred_at timestamptz[], p_tenant text,
    OUT stream_version bigint, OUT positions bigint[])
LANGUAGE plpgsql VOLATILE
-- Plans fit for any table size from the first call: a custom plan made
-- from stale statistics may sort a whole range instead of walking an index.
SET plan_cache_mode = force_generic_plan AS $factum$
#variable_conflict use_column
DECLARE
    v_count integer := coalesce(cardinality(p_event_ids), 0);
    v_actual bigint;
BEGIN
    -- After losing a race on this stream, an append takes its turn
    -- exclusively: first attempts share the turn key, so the version read
    -- below is then final and this append cannot lose again (no livelock on
    -- a hot stream). Appends to different streams never wait for one another.
    IF p_take_turns THEN
        PERFORM {take_turn};
    ELSE
        PERFORM {share_turn};
    END IF;
    SELECT coalesce(max(e.version), 0) INTO v_actual
      FROM {events} e WHERE e.tenant = p_tenant AND e.stream_type = p_stream_type AND e.stream_id = p_stream_id;
    IF p_expected IS NOT NULL AND v_actual <> p_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'FA001',
            MESSAGE = 'factum: the stream is not at the expected version', DETAIL = v_actual::text;
    END IF;
    stream_version := v_actual + v_count;
    IF v_count = 0 THEN
        positions := '{{}}';
        RETURN;
    END IF;
    IF v_count > 1 AND (SELECT count(DISTINCT x) FROM unnest(p_event_ids) x) <> v_count THEN
        RAISE EXCEPTION USING ERRCODE = 'FA003', MESSAGE = 'factum: an event id appears twice in one append';
    END IF;
    -- Announce the positions about to be taken: a shared lock keyed with the
    -- last position handed out, held until commit. Shared locks never block
    -- one another, so writers stay parallel.
    PERFORM pg_advisory_xact_lock_shared({lock_tag} * {shift} + {last_handed_out});
{inserts}
END
$factum$;
"#
    )
}

/// `factum_append_batches(…)`: an atomic append across streams, one
/// statement (so one transaction and one round trip).
///
/// It takes every stream's turn exclusively, in the order of the turn keys
/// (never two calls waiting on each other), so the versions it then reads
/// are final; checks each batch's expected version (SQLSTATE `FA005`, the
/// batch's number and the actual version in its DETAIL); then takes one
/// position lock, as `factum_append` does, and inserts every event with
/// positions in call order. Per batch: stream type and id, expected version
/// (NULL: any); per event: its batch's number (from 1), its place in the
/// batch (from 1), and the columns. Returns each stream's version before
/// the call, and the positions.
///
/// Every stream of the call is `p_tenant`'s: the versions it reads and the
/// rows it inserts. A tenant's view calls it as the tenant role with
/// `factum.tenant` set (see `scope`), so row-level security also holds it
/// to that tenant. The turns are keyed without the tenant, as
/// `factum_append`'s are: every factum append of a stream of any tenant
/// takes the same key, which keeps one total order of keys (the deadlock
/// argument) and costs streams of the same id in two tenants only a wait.
fn append_batches_function(names: &Names) -> String {
    let Names {
        events,
        append_batches,
        sequence,
        lock_tag,
        ..
    } = names;
    let shift = 1_i64 << POSITION_BITS;
    let last_handed_out = last_handed_out(names);
    let sequence_literal = sequence.replace('\'', "''");
    let turn_key = turn_key(names, "s.stream_type", "s.stream_id");
    format!(
        r#"
CREATE OR REPLACE FUNCTION {append_batches}(
    p_stream_types text[], p_stream_ids text[], p_expected bigint[],
    p_batches integer[], p_places integer[], p_event_ids uuid[], p_event_types text[],
    p_schema_versions integer[], p_payloads text[], p_metadata text[], p_occurred_at timestamptz[],
    p_tenant text,
    OUT actual_versions bigint[], OUT positions bigint[])
LANGUAGE plpgsql VOLATILE
-- Plans fit for any table size from the first call: a custom plan made
-- from stale statistics may sort a whole range instead of walking an index.
SET plan_cache_mode = force_generic_plan AS $factum$
#variable_conflict use_column
DECLARE
    v_turn record;
BEGIN
    -- Every turn exclusively, in key order: calls sharing streams take
    -- them in one order, so neither holds a turn the other waits for.
    FOR v_turn IN
        SELECT DISTINCT k.class, k.id
          FROM unnest(p_stream_types, p_stream_ids) AS s(stream_type, stream_id),
               LATERAL (SELECT {turn_key}) AS k(class, id)
         ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(v_turn.class, v_turn.id);
    END LOOP;
    -- A new statement, so a new snapshot: it sees every append that held
    -- a turn before this call took it.
    actual_versions := ARRAY(
        SELECT (SELECT coalesce(max(e.version), 0) FROM {events} e
                 WHERE e.tenant = p_tenant AND e.stream_type = s.stream_type AND e.stream_id = s.stream_id)
          FROM unnest(p_stream_types, p_stream_ids) WITH ORDINALITY AS s(stream_type, stream_id, n)
         ORDER BY s.n);
    FOR b IN 1 .. coalesce(cardinality(p_stream_types), 0) LOOP
        IF p_expected[b] IS NOT NULL AND actual_versions[b] <> p_expected[b] THEN
            RAISE EXCEPTION USING ERRCODE = 'FA005',
                MESSAGE = 'factum: a stream of an atomic append is not at the expected version',
                DETAIL = b::text || ' ' || actual_versions[b]::text;
        END IF;
    END LOOP;
    IF coalesce(cardinality(p_event_ids), 0) = 0 THEN
        positions := '{{}}';
        RETURN;
    END IF;
    -- One position lock for the whole call, before any position is taken:
    -- every event of the call is above its key, so readers see all of the
    -- call or none of it.
    PERFORM pg_advisory_xact_lock_shared({lock_tag} * {shift} + {last_handed_out});
    positions := ARRAY(SELECT nextval('{sequence_literal}'::regclass)
                         FROM generate_series(1, cardinality(p_event_ids)) ORDER BY 1);
    INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                          schema_version, payload, metadata, occurred_at, tenant)
    SELECT positions[u.ord::integer], p_stream_types[u.batch], p_stream_ids[u.batch],
           actual_versions[u.batch] + u.place, u.event_id, u.event_type, u.schema_version, u.payload::json,
           u.metadata::json, u.occurred_at, p_tenant
      FROM unnest(p_batches, p_places, p_event_ids, p_event_types, p_schema_versions, p_payloads,
                  p_metadata, p_occurred_at)
           WITH ORDINALITY AS u(batch, place, event_id, event_type, schema_version, payload, metadata,
                                occurred_at, ord);
END
$factum$;
"#
    )
}

/// The inserts of `factum_append`, once its checks passed and the position
/// lock is held: positions in version order, one row per event.
fn append_inserts(names: &Names) -> String {
    let Names { events, sequence, .. } = names;
    let sequence_literal = sequence.replace('\'', "''");
    format!(
        r#"    -- A stored event id fails the insert on the unique key of event_id:
    -- the caller then compares the stored events (an idempotent retry).
    IF v_count = 1 THEN
        -- The common case, without the cost of unnest.
        positions := ARRAY[nextval('{sequence_literal}'::regclass)];
        INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                              schema_version, payload, metadata, occurred_at, tenant)
        VALUES (positions[1], p_stream_type, p_stream_id, stream_version, p_event_ids[1], p_event_types[1],
                p_schema_versions[1], p_payloads[1]::json, p_metadata[1]::json, p_occurred_at[1], p_tenant);
        RETURN;
    END IF;
    positions := ARRAY(SELECT nextval('{sequence_literal}'::regclass)
                         FROM generate_series(1, v_count) ORDER BY 1);
    INSERT INTO {events} (position, stream_type, stream_id, version, event_id, event_type,
                          schema_version, payload, metadata, occurred_at, tenant)
    SELECT positions[u.ord::integer], p_stream_type, p_stream_id, v_actual + u.ord, u.event_id,
           u.event_type, u.schema_version, u.payload::json, u.metadata::json, u.occurred_at, p_tenant
      FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_payloads, p_metadata, p_occurred_at)
           WITH ORDINALITY AS u(event_id, event_type, schema_version, payload, metadata, occurred_at, ord);"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_steps_name_their_objects_once() {
        let names = Names::new("public", "factum_");
        let steps = migrations(&names);
        assert!(steps[0].contains("CREATE TABLE \"public\".\"factum_events\""));
        assert!(steps[3].contains("CREATE TABLE \"public\".\"factum_snapshots\""));
        for (step, statements) in steps.iter().enumerate() {
            assert!(
                !statements.contains('{'),
                "step {step} left a placeholder: {statements}"
            );
        }
    }

    #[test]
    fn lock_tags_are_marked_and_keys_stay_positive() {
        for (schema, prefix) in [("public", "factum_"), ("billing", ""), ("a", "b")] {
            let names = Names::new(schema, prefix);
            assert_eq!(names.lock_tag >> 8, 0x46, "{schema}.{prefix}");
            let largest_key = names.lock_tag * (1_i64 << POSITION_BITS) + ((1_i64 << POSITION_BITS) - 1);
            assert!(largest_key > 0);
        }
        assert_ne!(
            Names::new("public", "factum_").lock_tag,
            Names::new("public", "other_").lock_tag
        );
    }
}
