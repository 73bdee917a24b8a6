//! Schema versions: an older schema is migrated in place without losing
//! events, and a newer one is refused.

mod common;

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
use factum_postgres::{PostgresError, PostgresEventStore};
use futures::TryStreamExt;
use uuid::Uuid;

async fn bare_store() -> Option<(PostgresEventStore, tokio_postgres::Client, String)> {
    let raw = common::raw_client().await?;
    let schema = common::schema_name();
    let store = PostgresEventStore::connect_with(&common::url(), common::options(&schema))
        .await
        .ok()?;
    Some((store, raw, schema))
}

async fn columns(raw: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    raw.query(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'factum_events'",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<_, String>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_migrated_with_its_events_intact() {
    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(1).await.unwrap();
    // Events as the version 1 store wrote them.
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (index, id) in ids.iter().enumerate() {
        raw.execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata, occurred_at) \
                 VALUES (nextval('\"{schema}\".factum_position'), 'Counter', 'old', $1, $2, 'incremented', 1, \
                 $3::text::json, NULL, now())"
            ),
            &[&(index as i64 + 1), id, &format!(r#"{{"amount":{index}}}"#)],
        )
        .await
        .unwrap();
    }
    assert!(!columns(&raw, &schema).await.contains(&"recorded_at".to_owned()));

    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();

    assert!(columns(&raw, &schema).await.contains(&"recorded_at".to_owned()));
    let versions: Vec<i32> = raw
        .query(
            &format!("SELECT version FROM \"{schema}\".factum_schema_version ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
    let stream = StreamId::new("Counter", "old");
    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events.iter().map(|event| event.event_id).collect::<Vec<_>>(), ids);
    assert_eq!(events[2].payload.as_str(), r#"{"amount":2}"#);
    // The log goes on where version 1 left it.
    let appended = store
        .append(
            &stream,
            ExpectedVersion::Exact(3),
            vec![NewEvent::new("incremented", Payload::parse("{}").unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(appended.stream_version, 4);
    assert_eq!(appended.positions, [4]);
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_release_is_refused_untouched() {
    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.ensure_schema().await.unwrap();
    raw.execute(
        &format!("INSERT INTO \"{schema}\".factum_schema_version (version) VALUES (99)"),
        &[],
    )
    .await
    .unwrap();
    let error = store.ensure_schema().await.unwrap_err();
    match &error {
        factum_core::Error::Store { source, .. } => match source.downcast_ref::<PostgresError>() {
            Some(PostgresError::SchemaTooNew {
                found: 99, supported, ..
            }) => {
                assert_eq!(*supported, PostgresEventStore::schema_version());
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        },
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(error.to_string().contains("upgrade"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_schema_gains_the_projection_tables_with_its_events_intact() {
    use factum_core::{CheckpointStore, ProjectionStore};
    use factum_postgres::PostgresProjectionStore;

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(2).await.unwrap();
    let stream = StreamId::new("Counter", "v2");
    // Events as the version 2 store wrote them (its functions are not
    // installed below the current version).
    for version in 1..=3_i64 {
        raw.execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata, occurred_at) \
                 VALUES (nextval('\"{schema}\".factum_position'), 'Counter', 'v2', $1, $2, 'incremented', 1, \
                 $3::text::json, NULL, now())"
            ),
            &[&version, &Uuid::now_v7(), &format!(r#"{{"amount":{version}}}"#)],
        )
        .await
        .unwrap();
    }
    assert!(
        !tables(&raw, &schema)
            .await
            .contains(&"factum_checkpoints".to_owned())
    );

    store.ensure_schema().await.unwrap();

    let found = tables(&raw, &schema).await;
    for table in ["factum_checkpoints", "factum_dead_letters", "factum_leases"] {
        assert!(found.contains(&table.to_owned()), "{table} in {found:?}");
    }
    let before: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(before[2].payload.as_str(), r#"{"amount":3}"#);
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 3);
    let projections = PostgresProjectionStore::new(&store);
    projections.save("sales", 3).await.unwrap();
    assert_eq!(projections.checkpoint("sales").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_schema_gains_the_snapshot_table_with_its_data_intact() {
    use factum_core::{ProjectionStore, Snapshot, SnapshotStore};
    use factum_postgres::PostgresProjectionStore;

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(3).await.unwrap();
    // Data as the version 3 store wrote it (its functions are not installed
    // below the current version).
    for version in 1..=2_i64 {
        raw.execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata, occurred_at) \
                 VALUES (nextval('\"{schema}\".factum_position'), 'Counter', 'v3', $1, $2, 'incremented', 1, \
                 $3::text::json, NULL, now())"
            ),
            &[&version, &Uuid::now_v7(), &format!(r#"{{"amount":{version}}}"#)],
        )
        .await
        .unwrap();
    }
    raw.execute(
        &format!("INSERT INTO \"{schema}\".factum_checkpoints (projection, position) VALUES ('sales', 2)"),
        &[],
    )
    .await
    .unwrap();
    assert!(
        !tables(&raw, &schema)
            .await
            .contains(&"factum_snapshots".to_owned())
    );
    let stream = StreamId::new("Counter", "v3");
    assert!(
        store.load_snapshot(&stream).await.is_err(),
        "no snapshot table before the migration"
    );

    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();

    assert!(
        tables(&raw, &schema)
            .await
            .contains(&"factum_snapshots".to_owned())
    );
    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].payload.as_str(), r#"{"amount":2}"#);
    let projections = PostgresProjectionStore::new(&store);
    assert_eq!(projections.checkpoint("sales").await.unwrap(), 2);
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), None);
    let snapshot = Snapshot {
        stream: stream.clone(),
        version: 2,
        schema_version: 1,
        state: Payload::parse(r#"{"value": 3}"#).unwrap(),
        taken_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    };
    store.save_snapshot(snapshot.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot));
}

async fn tables(raw: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    raw.query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_snapshot_gains_shape_version_1() {
    use factum_core::SnapshotStore;

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(4).await.unwrap();
    raw.execute(
        &format!(
            "INSERT INTO \"{schema}\".factum_snapshots (stream_type, stream_id, version, state, taken_at) \
             VALUES ('Counter', 'old', 2, '{{\"value\": 3}}', now())"
        ),
        &[],
    )
    .await
    .unwrap();
    store.ensure_schema().await.unwrap();
    let snapshot = store
        .load_snapshot(&StreamId::new("Counter", "old"))
        .await
        .unwrap()
        .expect("the version 4 snapshot");
    assert_eq!(
        (snapshot.version, snapshot.schema_version),
        (2, 1),
        "a snapshot from before shape versions reads as shape version 1"
    );
}

/// A version 4 schema with events, a snapshot and projection state gains
/// tenants: its events and snapshot land in the default tenant (seen by the
/// unscoped store and the default tenant's view, not by another tenant),
/// its projection state stays with the unscoped store, every table gets
/// row-level security, and a stream id can then exist in two tenants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_schema_puts_its_data_in_the_default_tenant() {
    use factum_core::{CheckpointStore, DeadLetterStore, Lease, SnapshotStore, Tenancy, Tenant};
    use factum_postgres::PostgresProjectionStore;

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(4).await.unwrap();
    // Data as the version 4 store wrote it.
    for version in 1..=2_i64 {
        raw.execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
                 schema_version, payload, metadata, occurred_at) \
                 VALUES (nextval('\"{schema}\".factum_position'), 'Counter', 'v4', $1, $2, 'incremented', 1, \
                 $3::text::json, '{{\"tenant\":\"Acme Corp\"}}', now())"
            ),
            &[&version, &Uuid::now_v7(), &format!(r#"{{"amount":{version}}}"#)],
        )
        .await
        .unwrap();
    }
    raw.batch_execute(&format!(
        "INSERT INTO \"{schema}\".factum_snapshots VALUES ('Counter', 'v4', 2, '{{\"value\":3}}', now());
         INSERT INTO \"{schema}\".factum_checkpoints (projection, position) VALUES ('sales', 2);
         INSERT INTO \"{schema}\".factum_dead_letters SELECT 'sales', position, stream_type, stream_id, version,
             event_id, event_type, schema_version, payload, metadata, occurred_at, 'boom', 3, now()
             FROM \"{schema}\".factum_events WHERE version = 2;
         INSERT INTO \"{schema}\".factum_leases VALUES ('sales', 'host-a', now() + interval '1 hour');"
    ))
    .await
    .unwrap();

    store.ensure_schema().await.unwrap();
    store.ensure_tenant_role().await.unwrap();

    let stream = StreamId::new("Counter", "v4");
    for view in [store.clone(), store.for_tenant("default").unwrap()] {
        let events: Vec<_> = view.read_stream(&stream, 1).try_collect().await.unwrap();
        assert_eq!(events.len(), 2, "the default tenant holds the old stream");
        assert!(
            events
                .iter()
                .all(|event| event.metadata.tenant == Some(Tenant::DEFAULT))
        );
        assert_eq!(view.read_all(0, 10).await.unwrap().len(), 2);
        assert_eq!(view.head_position().await.unwrap(), events[1].position);
        let snapshot = view.load_snapshot(&stream).await.unwrap();
        assert_eq!(
            snapshot.map(|snapshot| (snapshot.version, snapshot.schema_version)),
            Some((2, 1))
        );
    }
    let acme = store.for_tenant("acme").unwrap();
    assert_eq!(acme.stream_version(&stream).await.unwrap(), 0);
    assert!(acme.read_all(0, 10).await.unwrap().is_empty());
    assert_eq!(acme.head_position().await.unwrap(), 0);
    assert_eq!(acme.load_snapshot(&stream).await.unwrap(), None);

    let projections = PostgresProjectionStore::new(&store);
    assert_eq!(CheckpointStore::load(&projections, "sales").await.unwrap(), 2);
    let letters = projections.list("sales").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.metadata.tenant, Some(Tenant::DEFAULT));
    assert!(
        !projections
            .acquire("sales", "host-b", std::time::Duration::from_secs(5))
            .await
            .unwrap()
    );
    let default = projections.for_tenant("default").unwrap();
    assert_eq!(CheckpointStore::load(&default, "sales").await.unwrap(), 0);
    assert!(default.list("sales").await.unwrap().is_empty());

    let secured: Vec<(String, bool)> = raw
        .query(
            "SELECT c.relname::text, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'factum_schema_version' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(secured.len(), 5, "{secured:?}");
    assert!(
        secured.iter().all(|(_, on)| *on),
        "row-level security on every table: {secured:?}"
    );

    // The stream id is free in another tenant; the default one goes on.
    let event = || NewEvent::new("incremented", Payload::parse("{}").unwrap());
    let in_acme = acme
        .append(&stream, ExpectedVersion::NoStream, vec![event()])
        .await
        .unwrap();
    let in_default = store
        .append(&stream, ExpectedVersion::Exact(2), vec![event()])
        .await
        .unwrap();
    assert_eq!((in_acme.stream_version, in_default.stream_version), (1, 3));
}

/// A version 4 schema set up by a release with atomic appends had
/// `factum_append_batches` without a tenant: version 5 drops that
/// signature (so nothing can still call a function that writes no tenant)
/// and leaves only the one that takes the tenant, which the unscoped store
/// and a tenant's view (as the tenant role) then call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_5_replaces_the_atomic_append_function_of_version_4() {
    use factum_core::{AppendBatch, Tenancy};

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(4).await.unwrap();
    // The version 4 function's signature; its body does not matter here.
    raw.batch_execute(&format!(
        "CREATE FUNCTION \"{schema}\".factum_append_batches(
             p_stream_types text[], p_stream_ids text[], p_expected bigint[],
             p_batches integer[], p_places integer[], p_event_ids uuid[], p_event_types text[],
             p_schema_versions integer[], p_payloads text[], p_metadata text[], p_occurred_at timestamptz[],
             OUT actual_versions bigint[], OUT positions bigint[])
         LANGUAGE sql AS $$ SELECT NULL::bigint[], NULL::bigint[] $$;"
    ))
    .await
    .unwrap();

    store.ensure_schema().await.unwrap();
    store.ensure_tenant_role().await.unwrap();

    let signatures: Vec<String> = raw
        .query(
            "SELECT p.proname::text || '/' || p.pronargs FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = $1 AND p.proname IN ('factum_append', 'factum_append_batches') ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        signatures,
        ["factum_append/11", "factum_append_batches/12"],
        "one function each, taking the tenant"
    );

    let event = || NewEvent::new("incremented", Payload::parse("{}").unwrap());
    let stream = StreamId::new("Counter", "atomic-v5");
    let call = || {
        vec![AppendBatch::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![event()],
        )]
    };
    let acme = store.for_tenant("acme").unwrap();
    for target in [&store, &acme] {
        let results = target.append_many(call()).await.unwrap();
        assert_eq!(results[0].stream_version, 1);
    }
}

/// A version 5 schema (tenants) gains snapshot shape versions: a tenant's
/// snapshot stays its tenant's and reads as shape version 1 through its
/// view (as the tenant role, so row-level security and the grants cover
/// the new column), and a later save keeps the shape version it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_tenant_snapshot_gains_shape_version_1() {
    use factum_core::{Snapshot, SnapshotStore, Tenancy};

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(5).await.unwrap();
    raw.execute(
        &format!(
            "INSERT INTO \"{schema}\".factum_snapshots (stream_type, stream_id, version, state, taken_at, tenant) \
             VALUES ('Counter', 'v5', 2, '{{\"value\": 3}}', now(), 'acme')"
        ),
        &[],
    )
    .await
    .unwrap();

    store.ensure_schema().await.unwrap();
    store.ensure_tenant_role().await.unwrap();

    let stream = StreamId::new("Counter", "v5");
    let acme = store.for_tenant("acme").unwrap();
    let snapshot = acme
        .load_snapshot(&stream)
        .await
        .unwrap()
        .expect("acme's snapshot");
    assert_eq!((snapshot.version, snapshot.schema_version), (2, 1));
    assert_eq!(
        store.load_snapshot(&stream).await.unwrap(),
        None,
        "not the default tenant's"
    );

    let newer = Snapshot {
        version: 3,
        schema_version: 2,
        ..snapshot
    };
    acme.save_snapshot(newer.clone()).await.unwrap();
    assert_eq!(acme.load_snapshot(&stream).await.unwrap(), Some(newer));
}

/// The outbox of the release before version 7, as its `enable_outbox`
/// created it: one row per event, keyed by the event's position.
fn one_row_per_event_outbox(schema: &str) -> String {
    format!(
        r#"
CREATE TABLE "{schema}".factum_outbox (
    position bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    parked_at timestamptz,
    sent_at timestamptz,
    CONSTRAINT "factum_outbox_pkey" PRIMARY KEY (position)
);
CREATE INDEX "factum_outbox_pending" ON "{schema}".factum_outbox (position)
    WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX "factum_outbox_parked" ON "{schema}".factum_outbox (position)
    WHERE parked_at IS NOT NULL;
CREATE INDEX "factum_outbox_sent" ON "{schema}".factum_outbox (sent_at)
    WHERE sent_at IS NOT NULL;
CREATE FUNCTION "{schema}".factum_outbox_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $factum$
BEGIN
    INSERT INTO "{schema}".factum_outbox (position) SELECT n.position FROM factum_new_events n;
    RETURN NULL;
END
$factum$;
CREATE TRIGGER "factum_outbox_capture" AFTER INSERT ON "{schema}".factum_events
    REFERENCING NEW TABLE AS factum_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".factum_outbox_capture();
"#
    )
}

/// Version 7: an outbox of one row per event, enabled by an earlier
/// release, becomes one of entries: each row an entry of one event with
/// its state kept. Every pending event is claimed exactly once, in order,
/// with its attempts; the parked one stays parked; the sent ones are not
/// published again; and the trigger now writes one entry per append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_outbox_of_rows_per_event_becomes_one_of_entries() {
    use factum_core::{Outbox, OutboxClaim, Outcome};

    let Some((store, raw, schema)) = bare_store().await else {
        return;
    };
    store.migrate_to(6).await.unwrap();
    raw.batch_execute(&one_row_per_event_outbox(&schema))
        .await
        .unwrap();
    // Three events of `a` in one statement (three rows), then `b` and `a`
    // again one at a time.
    let insert = |stream: &str, versions: &[i64]| {
        let values: Vec<String> = versions
            .iter()
            .map(|version| {
                format!(
                    "(nextval('\"{schema}\".factum_position'), 'Counter', '{stream}', {version}, \
                     gen_random_uuid(), 'incremented', 1, '{{}}', now(), 'default')"
                )
            })
            .collect();
        format!(
            "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, \
             event_type, schema_version, payload, occurred_at, tenant) VALUES {};",
            values.join(", ")
        )
    };
    raw.batch_execute(
        &[
            insert("a", &[1, 2, 3]),
            insert("b", &[1]),
            insert("a", &[4]),
            insert("b", &[2]),
        ]
        .concat(),
    )
    .await
    .unwrap();
    let position = |stream: &str, version: i64| {
        format!(
            "(SELECT position FROM \"{schema}\".factum_events WHERE stream_id = '{stream}' AND version = {version})"
        )
    };
    // a1 sent, a2 retried twice, b1 parked; a3, a4 and b2 waiting.
    raw.batch_execute(&format!(
        "UPDATE \"{schema}\".factum_outbox SET sent_at = now() WHERE position = {a1};
         UPDATE \"{schema}\".factum_outbox SET attempts = 2, last_error = 'timed out' WHERE position = {a2};
         UPDATE \"{schema}\".factum_outbox SET attempts = 1, last_error = 'too large', parked_at = now()
          WHERE position = {b1};",
        a1 = position("a", 1),
        a2 = position("a", 2),
        b1 = position("b", 1),
    ))
    .await
    .unwrap();
    let rows: i64 = raw
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".factum_outbox"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 6, "one row per event before");

    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap();

    assert!(store.outbox_enabled().await.unwrap(), "the trigger stays");
    let outbox = store.outbox();
    assert_eq!(outbox.pending().await.unwrap(), 5, "four waiting, one parked");
    let parked = outbox.parked(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (
            parked[0].0.event.aggregate_id(),
            parked[0].0.event.version,
            parked[0].0.attempts
        ),
        ("b", 1, 1)
    );
    assert_eq!(parked[0].1, "too large");

    let claim = outbox.claim(100).await.unwrap();
    let claimed: Vec<(String, u64, u32)> = claim
        .entries()
        .iter()
        .map(|entry| {
            (
                entry.event.aggregate_id().to_owned(),
                entry.event.version,
                entry.attempts,
            )
        })
        .collect();
    assert_eq!(
        claimed,
        [
            ("a".to_owned(), 2, 2),
            ("a".to_owned(), 3, 0),
            ("a".to_owned(), 4, 0),
            ("b".to_owned(), 2, 0)
        ],
        "every waiting event once, in position order, with its attempts"
    );
    assert!(
        claim
            .entries()
            .iter()
            .all(|entry| entry.id == entry.event.position)
    );
    claim.finish(vec![Outcome::Sent; 4]).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 1, "the parked one");

    // The new trigger: one entry per append.
    store
        .append(
            &StreamId::new("Counter", "a"),
            ExpectedVersion::Exact(4),
            (0..3)
                .map(|_| NewEvent::new("incremented", Payload::parse("{}").unwrap()))
                .collect(),
        )
        .await
        .unwrap();
    let entries: i64 = raw
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".factum_outbox WHERE stream_id = 'a' AND first_version = 5 AND last_version = 7"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(entries, 1);
    assert_eq!(outbox.pending().await.unwrap(), 4);
    let requeued = outbox.requeue(parked[0].0.id).await.unwrap();
    assert!(requeued);
    let claim = outbox.claim(100).await.unwrap();
    let claimed = factum_core::testing::outbox::named(claim.entries());
    assert_eq!(
        claimed,
        [
            ("b".to_owned(), 1),
            ("a".to_owned(), 5),
            ("a".to_owned(), 6),
            ("a".to_owned(), 7)
        ]
    );
    claim.finish(vec![Outcome::Sent; 4]).await.unwrap();
    assert_eq!(outbox.pending().await.unwrap(), 0);
}
