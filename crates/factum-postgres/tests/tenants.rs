//! Row-level security: the database itself keeps tenants apart. SQL run the
//! way a tenant's view runs it (as the tenant role, with `factum.tenant`
//! set, in one transaction) cannot see, change or add another tenant's rows
//! in any of the store's tables, even when the SQL asks for them, and even
//! on a superuser's connection; the tenant role is set up idempotently and
//! safely when processes race; an unsafe or missing role is a typed error.

mod common;

use std::time::Duration;

use factum_core::{
    CheckpointStore, DeadLetter, DeadLetterStore, Error, EventStore, ExpectedVersion, Lease, NewEvent,
    Payload, ProjectionStore, Snapshot, SnapshotStore, StreamId, Tenancy,
};
use factum_postgres::{PostgresError, PostgresEventStore, PostgresProjectionStore};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

const TABLES: [&str; 5] = [
    "factum_events",
    "factum_snapshots",
    "factum_checkpoints",
    "factum_dead_letters",
    "factum_leases",
];

fn event() -> NewEvent {
    NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).unwrap())
}

fn schema_of(store: &PostgresEventStore) -> String {
    store.schema_name().trim_end_matches(".factum_").to_owned()
}

/// Acme and globex each with two events of the same stream id, a snapshot,
/// a checkpoint, a dead letter and a lease.
async fn two_tenants(store: &PostgresEventStore) {
    let stream = StreamId::new("Counter", "shared");
    for name in ["acme", "globex"] {
        let view = store.for_tenant(name).unwrap();
        let appended = view
            .append(&stream, ExpectedVersion::NoStream, vec![event(), event()])
            .await
            .unwrap();
        view.save_snapshot(Snapshot {
            stream: stream.clone(),
            version: 2,
            schema_version: 1,
            state: Payload::parse(r#"{"value":2}"#).unwrap(),
            taken_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
        let projections = PostgresProjectionStore::new(&view);
        projections.save("sales", appended.positions[1]).await.unwrap();
        let recorded = view.read_all(0, 1).await.unwrap().remove(0);
        projections
            .put(DeadLetter::new("sales", recorded, "boom", 3))
            .await
            .unwrap();
        assert!(
            projections
                .acquire("sales", name, Duration::from_secs(60))
                .await
                .unwrap()
        );
    }
}

/// Begins a transaction on `raw` the way a tenant's view does.
async fn begin_as(raw: &Client, tenant: Option<&str>) {
    let set = tenant.map_or(String::new(), |tenant| {
        format!("; SELECT set_config('factum.tenant', '{tenant}', true)")
    });
    raw.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL ROLE factum_tenant{set}"
    ))
    .await
    .unwrap();
}

async fn count(raw: &Client, sql: &str) -> i64 {
    raw.query_one(sql, &[]).await.unwrap().get(0)
}

/// Runs `sql` in a transaction of `tenant` and expects row-level security
/// (or a missing privilege) to refuse it.
async fn refused(raw: &Client, tenant: &str, sql: &str) {
    begin_as(raw, Some(tenant)).await;
    let error = raw.batch_execute(sql).await.expect_err(sql);
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {error:?}"
    );
    raw.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_run_the_way_a_view_runs_it_cannot_see_another_tenants_rows() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(raw) = common::raw_client().await else {
        return;
    };
    two_tenants(&store).await;
    let schema = schema_of(&store);
    let superuser: bool = raw
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        superuser,
        "the point: even a superuser's connection is confined once it takes the role"
    );

    begin_as(&raw, Some("globex")).await;
    for table in TABLES {
        let all = count(&raw, &format!("SELECT count(*) FROM \"{schema}\".{table}")).await;
        let acme = count(
            &raw,
            &format!("SELECT count(*) FROM \"{schema}\".{table} WHERE tenant = 'acme'"),
        )
        .await;
        let expected = if table == "factum_events" { 2 } else { 1 };
        assert_eq!(
            (all, acme),
            (expected, 0),
            "{table}: globex sees only its own rows"
        );
    }
    let through_function = count(
        &raw,
        &format!("SELECT count(*) FROM \"{schema}\".factum_read_all(0, 100) WHERE tenant <> 'globex'"),
    )
    .await;
    assert_eq!(
        through_function, 0,
        "factum_read_all returns another tenant's events"
    );
    for table in &TABLES[1..] {
        let changed = raw
            .execute(
                &format!("UPDATE \"{schema}\".{table} SET tenant = tenant WHERE tenant = 'acme'"),
                &[],
            )
            .await
            .unwrap();
        let deleted = raw
            .execute(
                &format!("DELETE FROM \"{schema}\".{table} WHERE tenant = 'acme'"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!((changed, deleted), (0, 0), "{table}: globex changed acme's rows");
    }
    raw.batch_execute("ROLLBACK").await.unwrap();

    // Writing another tenant's rows, or moving one's own to another tenant.
    refused(
        &raw,
        "globex",
        &format!(
            "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, event_type, \
             schema_version, payload, occurred_at, tenant) \
             VALUES (nextval('\"{schema}\".factum_position'), 'Counter', 'x', 1, gen_random_uuid(), 'e', 1, '{{}}', \
             now(), 'acme')"
        ),
    )
    .await;
    refused(
        &raw,
        "globex",
        &format!("INSERT INTO \"{schema}\".factum_checkpoints (tenant, projection, position) VALUES ('acme', 'p', 1)"),
    )
    .await;
    // Factum's own functions are held to it too: an atomic append across
    // streams asked to write acme's streams from globex's transaction.
    refused(
        &raw,
        "globex",
        &format!(
            "SELECT \"{schema}\".factum_append_batches(ARRAY['Counter', 'Counter'], ARRAY['shared', 'y'], \
             ARRAY[NULL, NULL]::bigint[], ARRAY[1, 2], ARRAY[1, 1], ARRAY[gen_random_uuid(), gen_random_uuid()], \
             ARRAY['e', 'e'], ARRAY[1, 1], ARRAY['{{}}', '{{}}'], ARRAY[NULL, NULL]::text[], ARRAY[now(), now()], \
             'acme')"
        ),
    )
    .await;
    refused(
        &raw,
        "globex",
        &format!("UPDATE \"{schema}\".factum_snapshots SET tenant = 'acme'"),
    )
    .await;
    // Events are never changed, not even one's own.
    refused(
        &raw,
        "globex",
        &format!("UPDATE \"{schema}\".factum_events SET payload = '{{}}'"),
    )
    .await;
    refused(&raw, "globex", &format!("DELETE FROM \"{schema}\".factum_events")).await;

    // Without a tenant set (never, or set empty, as a pooled connection's
    // setting is after its first transaction), the role sees and writes
    // nothing.
    begin_as(&raw, None).await;
    for table in TABLES {
        assert_eq!(
            count(&raw, &format!("SELECT count(*) FROM \"{schema}\".{table}")).await,
            0,
            "{table}"
        );
    }
    raw.batch_execute("ROLLBACK").await.unwrap();
    refused(
        &raw,
        "",
        &format!("INSERT INTO \"{schema}\".factum_leases (tenant, projection, holder, expires_at) VALUES ('', 'p', 'h', now())"),
    )
    .await;

    // The unscoped store (the tables' owner) still sees both tenants.
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_through_a_views_projection_store_cannot_cross_tenants() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    two_tenants(&store).await;
    let schema = schema_of(&store);
    let globex = PostgresProjectionStore::new(&store.for_tenant("globex").unwrap());
    // SQL that asks for acme's rows: the kind of bug a read model's query
    // could have. The view runs it as the tenant role with globex set.
    let rows = globex
        .query(
            &format!("SELECT count(*) FROM \"{schema}\".factum_events WHERE tenant = 'acme'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    let rows = globex
        .query(
            &format!("SELECT DISTINCT tenant FROM \"{schema}\".factum_events"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>(),
        ["globex"]
    );
    let written = globex
        .execute_batch(&format!(
            "DELETE FROM \"{schema}\".factum_checkpoints WHERE tenant = 'acme'"
        ))
        .await;
    assert!(written.is_ok(), "{written:?}");
    let acme = PostgresProjectionStore::new(&store.for_tenant("acme").unwrap());
    assert_ne!(
        CheckpointStore::load(&acme, "sales").await.unwrap(),
        0,
        "globex deleted acme's checkpoint"
    );

    // Inside a projection transaction of globex, the same.
    let transaction = globex.begin("sales").await.unwrap();
    let row = transaction
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".factum_dead_letters"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "a transaction of globex sees only its dead letter"
    );
    globex.rollback(transaction).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_role_is_set_up_once_when_stores_race() {
    let Some(raw) = common::raw_client().await else {
        return;
    };
    // A role of this test's own, so that it is really created here.
    let role = format!("factum_tenant_race_{}", std::process::id());
    let mut stores = Vec::new();
    for index in 0..6 {
        // Three schemas, two stores each: the role races, and grants on
        // one schema race too.
        let schema = format!("{}_{}", common::schema_name(), index % 3);
        let options = common::options(&schema).tenant_role(role.clone());
        let store = PostgresEventStore::connect_with(&common::url(), options)
            .await
            .unwrap();
        store.ensure_schema().await.unwrap();
        stores.push(store);
    }
    let results = futures::future::join_all(stores.iter().map(PostgresEventStore::ensure_tenant_role)).await;
    for result in results {
        result.unwrap();
    }
    for store in &stores {
        store.ensure_tenant_role().await.unwrap();
        let acme = store.for_tenant("acme").unwrap();
        acme.append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event()],
        )
        .await
        .unwrap();
        assert!(!acme.read_all(0, 10).await.unwrap().is_empty());
    }
    let roles = count(
        &raw,
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
    )
    .await;
    assert_eq!(roles, 1);
    for store in &stores {
        store.close().await.unwrap();
    }
    raw.batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

fn postgres_error(error: &Error) -> Option<&PostgresError> {
    match error {
        Error::Store { source, .. } => source.downcast_ref::<PostgresError>(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_row_level_security_does_not_bind_is_refused() {
    let Some(raw) = common::raw_client().await else {
        return;
    };
    let superuser: String = raw
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let options = common::options(&common::schema_name()).tenant_role(superuser);
    let store = PostgresEventStore::connect_with(&common::url(), options)
        .await
        .unwrap();
    // The schema is created, then the role refused; so is setting it up.
    for error in [
        store.ensure_schema().await.unwrap_err(),
        store.ensure_tenant_role().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                postgres_error(&error),
                Some(PostgresError::TenantRoleUnsafe { .. })
            ),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_role_is_missing_fails_typed_and_writes_nothing() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let missing = format!("factum_missing_{}", uuid::Uuid::new_v4().simple());
    let options = common::options(&schema_of(&store)).tenant_role(missing);
    let unset = PostgresEventStore::connect_with(&common::url(), options)
        .await
        .unwrap();
    let acme = unset.for_tenant("acme").unwrap();
    let error = acme
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(postgres_error(&error), Some(PostgresError::TenantRole { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("ensure_tenant_role"), "{error}");
    let error = acme.read_all(0, 10).await.unwrap_err();
    assert!(
        matches!(postgres_error(&error), Some(PostgresError::TenantRole { .. })),
        "{error}"
    );
    assert!(
        store.read_all(0, 10).await.unwrap().is_empty(),
        "something was written"
    );
}
