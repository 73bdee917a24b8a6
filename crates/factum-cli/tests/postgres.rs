//! The `factum` binary against PostgreSQL (a schema per test, picked with
//! `--schema`), and the move SQLite → PostgreSQL → SQLite.

mod common;

use common::{PAYLOADS, postgres, run, seeded_sqlite};
use factum_core::{CheckpointStore, DeadLetter, DeadLetterStore, EventStore};
use factum_postgres::PostgresProjectionStore;

fn lines_of(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The stored text of each exported payload: `payload` as written, or
/// `payload_text` for one that holds line breaks.
fn payload_texts(export: &str) -> Vec<String> {
    export
        .lines()
        .map(|line| {
            let raw: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(line).unwrap();
            match raw.get("payload") {
                Some(payload) => payload.get().to_owned(),
                None => serde_json::from_str::<String>(raw["payload_text"].get()).unwrap(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back_keeps_every_event_and_payload_byte_for_byte() {
    let Some(pg) = postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    seeded_sqlite(&source, 5, 4).await;
    let first = dir.path().join("first.jsonl");
    run(
        source.to_str().unwrap(),
        &["export", "-o", first.to_str().unwrap()],
    )
    .ok();

    let imported = pg.run(&["import", first.to_str().unwrap()]).ok();
    assert!(
        imported.stdout.contains("imported 20 events") && imported.stdout.contains("PostgreSQL"),
        "{}",
        imported.stdout
    );
    let again = pg
        .run(&["import", first.to_str().unwrap(), "--json"])
        .ok()
        .json_lines();
    assert_eq!(
        (again[0]["imported"].as_u64(), again[0]["already_stored"].as_u64()),
        (Some(0), Some(20))
    );
    let second = pg.run(&["export"]).ok().stdout;

    let back = dir.path().join("back.db");
    let second_file = dir.path().join("second.jsonl");
    std::fs::write(&second_file, &second).unwrap();
    run(back.to_str().unwrap(), &["import", second_file.to_str().unwrap()]).ok();
    let third = run(back.to_str().unwrap(), &["export"]).ok().stdout;

    let original = std::fs::read_to_string(&first).unwrap();
    for copy in [&second, &third] {
        assert_eq!(
            payload_texts(&original),
            payload_texts(copy),
            "payloads byte for byte"
        );
        let (before, after) = (lines_of(&original), lines_of(copy));
        assert_eq!(before.len(), after.len());
        for (was, now) in before.iter().zip(&after) {
            for field in [
                "event_id",
                "aggregate_type",
                "aggregate_id",
                "version",
                "event_type",
                "schema_version",
                "metadata",
            ] {
                assert_eq!(was[field], now[field], "{field}");
            }
            // PostgreSQL keeps microseconds: the times agree to them.
            let micros = |value: &serde_json::Value| {
                let text = value["occurred_at"].as_str().unwrap();
                let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .unwrap();
                at.unix_timestamp_nanos() / 1000
            };
            assert_eq!(micros(was), micros(now));
        }
    }
    assert!(
        payload_texts(&original)
            .iter()
            .any(|payload| payload == PAYLOADS[3]),
        "the pretty payload went through"
    );
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_postgres() {
    let Some(pg) = postgres().await else { return };
    let missing = pg.run(&["status"]).expect(3);
    assert!(
        missing.stderr.contains("no factum store in schema") && missing.stderr.contains("migrate"),
        "{}",
        missing.stderr
    );
    let created = pg.run(&["migrate"]).ok();
    assert!(
        created.stdout.contains("created the store at schema version"),
        "{}",
        created.stdout
    );
    assert!(pg.run(&["migrate"]).ok().stdout.contains("nothing to do"));

    let store = pg.store().await;
    common::seed(&store, 3, 3).await;
    let projections = PostgresProjectionStore::new(&store);
    projections.save("sales", 4).await.unwrap();
    let event = store.read_all(1, 1).await.unwrap().remove(0);
    projections
        .put(DeadLetter::new("sales", event, "price missing", 5))
        .await
        .unwrap();
    store.close().await.unwrap();

    let status = pg.run(&["status", "--json"]).ok().json_lines();
    assert_eq!(
        (
            status[0]["streams"].as_u64(),
            status[0]["events"].as_u64(),
            status[0]["head"].as_u64()
        ),
        (Some(3), Some(9), Some(9))
    );
    assert!(status[0]["bytes_on_disk"].as_u64().unwrap() > 0);
    assert_eq!(status[0]["projections"][0]["lag"], 5);

    let streams = pg.run(&["streams", "--json"]).ok().json_lines();
    assert_eq!(
        streams
            .iter()
            .map(|stream| stream["aggregate_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["c-0", "c-1", "c-2"]
    );
    assert_eq!(streams[2]["version"], 3);
    let page = pg
        .run(&["streams", "--type", "Counter", "--limit", "2", "--json"])
        .ok();
    assert_eq!(page.json_lines().len(), 2);
    assert!(page.stderr.contains("more streams"), "{}", page.stderr);
    assert!(
        pg.run(&["streams", "--type", "Order"])
            .ok()
            .stdout
            .contains("no streams")
    );

    let events = pg
        .run(&["events", "Counter/c-2", "--from", "2", "--json"])
        .ok()
        .json_lines();
    assert_eq!(
        events
            .iter()
            .map(|event| event["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3]
    );

    let listed = pg.run(&["projections"]).ok();
    assert!(listed.stdout.contains("sales"), "{}", listed.stdout);
    let letters = pg.run(&["dead-letters", "sales", "--json"]).ok().json_lines();
    assert_eq!(letters[0]["id"], 2);
    pg.run(&["dead-letters", "sales", "replay"]).ok();
    assert_eq!(
        pg.run(&["dead-letters", "sales", "--json"]).ok().json_lines()[0]["replay_requested"],
        true
    );
    pg.run(&["dead-letters", "sales", "discard", "2"]).ok();
    assert!(
        pg.run(&["dead-letters", "sales"])
            .ok()
            .stdout
            .contains("no dead letters")
    );
    let reset = pg
        .run(&["projections", "reset", "sales", "--to", "1", "--json"])
        .ok()
        .json_lines();
    assert_eq!(
        (reset[0]["previous"].as_u64(), reset[0]["checkpoint"].as_u64()),
        (Some(4), Some(1))
    );

    let rows = pg.run(&["bench", "--events", "2000", "--json"]).ok().json_lines();
    assert!(
        rows.iter()
            .any(|row| row["workload"] == "16 concurrent single-event writers"),
        "{rows:?}"
    );
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_line_writes_nothing_of_its_batch_on_postgres() {
    let Some(pg) = postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    seeded_sqlite(&source, 2, 2).await;
    let exported = run(source.to_str().unwrap(), &["export"]).ok().stdout;
    let file = dir.path().join("corrupt.jsonl");
    std::fs::write(
        &file,
        exported.replacen("\"version\":2", "\"version\":\"two\"", 1),
    )
    .unwrap();
    let failed = pg.run(&["import", file.to_str().unwrap()]).expect(4);
    assert!(
        failed.stderr.contains("line 3 is not an exported event"),
        "{}",
        failed.stderr
    );
    assert_eq!(pg.run(&["status", "--json"]).ok().json_lines()[0]["events"], 0);
    pg.drop().await;
}

#[test]
fn unreachable_and_malformed_servers_are_one_line_with_their_exit_code() {
    let refused = run("postgres://postgres@127.0.0.1:1/postgres", &["status"]).expect(3);
    assert!(
        refused
            .stderr
            .contains("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    let malformed = run("postgres://[::1", &["status"]).expect(2);
    assert!(
        malformed.stderr.contains("invalid PostgreSQL connection string"),
        "{}",
        malformed.stderr
    );
    let schema = common::finish(
        common::factum()
            .args([
                "--store",
                "postgres://postgres@127.0.0.1:1/postgres",
                "--schema",
                "no-dashes",
                "status",
            ])
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(schema.stderr.contains("no-dashes"), "{}", schema.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_tenant_export_moves_to_postgres_and_back_with_its_tenants() {
    let Some(pg) = postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let store = factum_sqlite::SqliteEventStore::open(&source).await.unwrap();
    assert_eq!(common::seed_tenants(&store).await, 18);
    store.close().await.unwrap();
    let first = dir.path().join("first.jsonl");
    run(
        source.to_str().unwrap(),
        &["export", "-o", first.to_str().unwrap()],
    )
    .ok();

    let imported = pg.run(&["import", first.to_str().unwrap()]).ok();
    assert!(
        imported.stdout.contains("imported 18 events"),
        "{}",
        imported.stdout
    );
    let target = pg.store().await;
    for tenant in ["default", "acme", "globex"] {
        let shared = common::tenant_payloads(&target, tenant, "shared").await;
        let expected: Vec<String> = (0..3)
            .map(|round| format!(r#"{{"tenant":"{tenant}","round":{round}}}"#))
            .collect();
        assert_eq!(shared, expected, "{tenant}");
    }
    target.close().await.unwrap();
    let again = pg
        .run(&["import", first.to_str().unwrap(), "--json"])
        .ok()
        .json_lines();
    assert_eq!(again[0]["imported"], 0);

    let second = pg.run(&["export"]).ok().stdout;
    let (before, after) = (
        lines_of(&std::fs::read_to_string(&first).unwrap()),
        lines_of(&second),
    );
    assert_eq!(before.len(), after.len());
    for (was, now) in before.iter().zip(&after) {
        for field in ["event_id", "aggregate_id", "version", "metadata", "payload"] {
            assert_eq!(was[field], now[field], "{field}");
        }
    }
    let second_file = dir.path().join("second.jsonl");
    std::fs::write(&second_file, &second).unwrap();
    let back = dir.path().join("back.db");
    run(back.to_str().unwrap(), &["import", second_file.to_str().unwrap()]).ok();
    let third = run(back.to_str().unwrap(), &["export"]).ok().stdout;
    assert_eq!(payload_texts(&second), payload_texts(&third));
    assert_eq!(lines_of(&third).len(), 18);
    pg.drop().await;
}

/// A user who may not create roles (the usual application user) still
/// migrates a store of its own and imports the default tenant's events:
/// those go through the unscoped handle, which needs no tenant role, and
/// `migrate` says why tenants' views will not work instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_createrole_migrates_and_imports_the_default_tenant() {
    let Some(pg) = postgres().await else { return };
    let url = common::postgres_url();
    let Some(rest) = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
    else {
        println!("SKIPPED: FACTUM_POSTGRES_URL has no user to replace: {url}");
        return;
    };
    let user = format!("{}_owner", pg.schema);
    let user_url = format!("postgres://{user}@{}", rest.1);
    pg.client
        .batch_execute(&format!(
            "CREATE ROLE \"{user}\" LOGIN NOCREATEROLE; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{user}\";
             DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO %I', current_database(), '{user}'); END $$",
            schema = pg.schema
        ))
        .await
        .unwrap();
    let as_user = |args: &[&str]| {
        let mut command = common::factum();
        command
            .args(["--store", &user_url, "--schema", &pg.schema])
            .args(args);
        common::finish(command.output().expect("the factum binary runs"))
    };

    let migrated = as_user(&["migrate"]).ok();
    assert!(
        migrated.stderr.contains("tenants' views") && migrated.stderr.contains("tenant role"),
        "migrate says why tenants' views will not work: {}",
        migrated.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    seeded_sqlite(&source, 5, 4).await;
    let file = dir.path().join("export.jsonl");
    run(
        source.to_str().unwrap(),
        &["export", "-o", file.to_str().unwrap()],
    )
    .ok();
    let imported = as_user(&["import", file.to_str().unwrap()]).ok();
    assert!(
        imported.stdout.contains("imported 20 events"),
        "{}",
        imported.stdout
    );
    let stored: i64 = pg
        .client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".factum_events", pg.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 20);

    pg.client
        .batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{user}\"; DROP ROLE \"{user}\"",
            schema = pg.schema
        ))
        .await
        .unwrap();
}
