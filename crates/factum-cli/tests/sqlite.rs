//! The `factum` binary against SQLite files: every command, the export and
//! import rules, and the messages and exit codes of bad input.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{factum, run, seeded_sqlite};
use factum_core::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventStore, Lease, NewEvent, Payload, StreamId,
};
use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn path_of(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

#[test]
fn migrate_creates_then_finds_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = path_of(&dir, "app.db");
    let created = run(&store, &["migrate"]).ok();
    assert!(
        created.stdout.contains("created the store at schema version 5"),
        "{}",
        created.stdout
    );
    let again = run(&store, &["migrate"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    let json = run(&store, &["migrate", "--json"]).ok().json_lines();
    assert_eq!(json[0]["schema_version"], 5);
}

#[test]
fn status_streams_and_events_show_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = path_of(&dir, "app.db");
    runtime().block_on(seeded_sqlite(dir.path().join("app.db").as_path(), 3, 4));

    let status = run(&store, &["status", "--json"]).ok().json_lines();
    assert_eq!(status[0]["streams"], 3);
    assert_eq!(status[0]["events"], 12);
    assert_eq!(status[0]["head"], 12);
    assert!(status[0]["bytes_on_disk"].as_u64().unwrap() > 0);
    let table = run(&store, &["status"]).ok();
    assert!(
        table.stdout.contains("head position") && table.stdout.contains("12"),
        "{}",
        table.stdout
    );

    let streams = run(&store, &["streams", "--json"]).ok().json_lines();
    let ids: Vec<_> = streams
        .iter()
        .map(|stream| stream["aggregate_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c-0", "c-1", "c-2"]);
    assert_eq!(streams[1]["version"], 4);
    let limited = run(&store, &["streams", "--limit", "2"]).ok();
    assert!(
        limited.stdout.contains("c-1") && !limited.stdout.contains("c-2"),
        "{}",
        limited.stdout
    );
    assert!(
        limited.stderr.contains("more streams than --limit 2"),
        "{}",
        limited.stderr
    );
    let none = run(&store, &["streams", "--type", "Order"]).ok();
    assert!(none.stdout.contains("no streams"), "{}", none.stdout);

    let events = run(&store, &["events", "Counter/c-1", "--json"])
        .ok()
        .json_lines();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["event_type"], "created");
    assert_eq!(events[3]["aggregate_id"], "c-1");
    assert!(events[0]["metadata"]["correlation_id"].is_string());
    let from = run(&store, &["events", "Counter/c-1", "--from", "3"]).ok();
    assert_eq!(
        from.stdout.lines().count(),
        3,
        "header and versions 3 and 4:\n{}",
        from.stdout
    );

    let missing = run(&store, &["events", "Counter/nope"]).expect(1);
    assert!(
        missing.stderr.contains("no stream Counter/nope"),
        "{}",
        missing.stderr
    );
    let malformed = run(&store, &["events", "Counter"]).expect(2);
    assert!(malformed.stderr.contains("TYPE/ID"), "{}", malformed.stderr);
}

#[test]
fn tail_prints_the_log_then_what_comes_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let runtime = runtime();
    runtime.block_on(seeded_sqlite(&path, 2, 2));
    let mut child = factum()
        .args([
            "--store",
            path.to_str().unwrap(),
            "tail",
            "--from",
            "1",
            "--type",
            "Counter",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let positions: Vec<u64> = (0..3)
        .map(|_| {
            serde_json::from_str::<serde_json::Value>(&lines.next().unwrap().unwrap()).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(positions, [2, 3, 4], "after position 1, in order");

    // An event appended by another process now shows up live; one of
    // another aggregate type is filtered out.
    runtime.block_on(async {
        let store = SqliteEventStore::open(&path).await.unwrap();
        let event = || NewEvent::new("placed", Payload::parse("{}").unwrap());
        store
            .append(
                &StreamId::new("Order", "o-1"),
                factum_core::ExpectedVersion::NoStream,
                vec![event()],
            )
            .await
            .unwrap();
        store
            .append(
                &StreamId::new("Counter", "c-9"),
                factum_core::ExpectedVersion::NoStream,
                vec![event()],
            )
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    let live: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (live["aggregate_id"].as_str(), live["position"].as_u64()),
        (Some("c-9"), Some(6))
    );
    terminate(&mut child);
}

/// Ends a `tail` the way Ctrl-C does, and checks it stops cleanly.
fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "tail ended with {status}");
}

#[test]
fn tail_from_the_end_prints_only_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let runtime = runtime();
    runtime.block_on(seeded_sqlite(&path, 2, 2));
    let mut child = factum()
        .args(["--store", path.to_str().unwrap(), "tail", "--from-end"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(
        header.contains("POSITION") && header.contains("PAYLOAD"),
        "{header}"
    );
    runtime.block_on(async {
        let store = SqliteEventStore::open(&path).await.unwrap();
        let event = NewEvent::new("placed", Payload::parse(r#"{"total":7}"#).unwrap());
        store
            .append(
                &StreamId::new("Order", "o-1"),
                factum_core::ExpectedVersion::NoStream,
                vec![event],
            )
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.contains("Order/o-1") && line.contains(r#"{"total":7}"#) && line.trim_start().starts_with('5'),
        "{line}"
    );
    terminate(&mut child);
}

#[test]
fn projections_dead_letters_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = path.display().to_string();
    let runtime = runtime();
    runtime.block_on(async {
        seeded_sqlite(&path, 2, 5).await;
        let events = SqliteEventStore::open(&path).await.unwrap();
        let projections = SqliteProjectionStore::new(&events);
        projections.save("sales", 6).await.unwrap();
        projections.save("idle", 10).await.unwrap();
        for position in [3, 5] {
            let event = events.read_all(position - 1, 1).await.unwrap().remove(0);
            projections
                .put(DeadLetter::new("sales", event, "price missing", 5))
                .await
                .unwrap();
        }
        assert!(
            projections
                .acquire("sales", "host-a", Duration::from_secs(600))
                .await
                .unwrap()
        );
        events.close().await.unwrap();
    });

    let listed = run(&store, &["projections", "--json"]).ok().json_lines();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (
            listed[1]["name"].as_str(),
            listed[1]["checkpoint"].as_u64(),
            listed[1]["lag"].as_u64()
        ),
        (Some("sales"), Some(6), Some(4))
    );
    assert_eq!(listed[1]["lease_holder"], "host-a");
    assert_eq!(listed[1]["dead_letters"], 2);
    let table = run(&store, &["projections"]).ok();
    assert!(table.stdout.contains("host-a (until"), "{}", table.stdout);

    let letters = run(&store, &["dead-letters", "sales", "--json"])
        .ok()
        .json_lines();
    assert_eq!(
        letters
            .iter()
            .map(|letter| letter["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 5]
    );
    assert_eq!(letters[0]["error"], "price missing");
    assert_eq!(letters[0]["event"]["position"], 3);
    let replay = run(&store, &["dead-letters", "sales", "replay", "5"]).ok();
    assert!(
        replay.stdout.contains("replay 1 dead letter"),
        "{}",
        replay.stdout
    );
    let shown = run(&store, &["dead-letters", "sales", "list"]).ok();
    assert!(shown.stdout.contains("replay requested"), "{}", shown.stdout);
    run(&store, &["dead-letters", "sales", "discard", "3"]).ok();
    let left = run(&store, &["dead-letters", "sales", "--json"])
        .ok()
        .json_lines();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["replay_requested"], true);
    let gone = run(&store, &["dead-letters", "sales", "discard", "3"]).expect(1);
    assert!(gone.stderr.contains("no dead letter 3"), "{}", gone.stderr);
    let unknown = run(&store, &["dead-letters", "nope"]).expect(1);
    assert!(
        unknown.stderr.contains("known: idle, sales"),
        "{}",
        unknown.stderr
    );

    let refused = run(&store, &["projections", "reset", "sales", "--to", "2"]).expect(4);
    assert!(
        refused.stderr.contains("host-a holds its lease"),
        "{}",
        refused.stderr
    );
    let reset = run(
        &store,
        &["projections", "reset", "sales", "--to", "2", "--force", "--json"],
    )
    .ok()
    .json_lines();
    assert_eq!(
        (reset[0]["previous"].as_u64(), reset[0]["checkpoint"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(
        reset[0]["dead_letters_removed"], 1,
        "the letter at 5 is above the new checkpoint"
    );
    let after = run(&store, &["status", "--json"]).ok().json_lines();
    let sales = &after[0]["projections"][1];
    assert_eq!(
        (sales["checkpoint"].as_u64(), sales["dead_letters"].as_u64()),
        (Some(2), Some(0))
    );
    run(&store, &["projections", "reset", "idle"]).ok();
}

#[test]
fn export_then_import_keeps_ids_versions_order_and_payload_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_of(&dir, "source.db");
    runtime().block_on(seeded_sqlite(dir.path().join("source.db").as_path(), 4, 5));
    let file = path_of(&dir, "events.jsonl");
    let exported = run(&source, &["export", "-o", &file]).ok();
    assert!(
        exported.stderr.contains("exported 20 events"),
        "{}",
        exported.stderr
    );

    let target = path_of(&dir, "target.db");
    let imported = run(&target, &["import", &file]).ok();
    assert!(
        imported.stdout.contains("imported 20 events"),
        "{}",
        imported.stdout
    );
    let copy = path_of(&dir, "copy.jsonl");
    run(&target, &["export", "-o", &copy]).ok();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read_to_string(&copy).unwrap(),
        "the copy exports the same lines"
    );

    let again = run(&target, &["import", &file, "--json"]).ok().json_lines();
    assert_eq!(
        (again[0]["imported"].as_u64(), again[0]["already_stored"].as_u64()),
        (Some(0), Some(20))
    );
    let status = run(&target, &["status", "--json"]).ok().json_lines();
    assert_eq!(status[0]["events"], 20, "a second import writes nothing");

    let only = run(&source, &["export", "--type", "Counter"]).ok();
    assert_eq!(only.stdout.lines().count(), 20);
    let none = run(&source, &["export", "--type", "Order"]).ok();
    assert_eq!(none.stdout, "");
}

#[test]
fn an_interrupted_import_resumes_and_a_store_with_other_events_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_of(&dir, "source.db");
    runtime().block_on(seeded_sqlite(dir.path().join("source.db").as_path(), 2, 3));
    let file = path_of(&dir, "events.jsonl");
    run(&source, &["export", "-o", &file]).ok();
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();

    let half = path_of(&dir, "half.jsonl");
    std::fs::write(&half, lines[..3].join("\n")).unwrap();
    let target = path_of(&dir, "target.db");
    run(&target, &["import", &half]).ok();
    let resumed = run(&target, &["import", &file, "--json"]).ok().json_lines();
    assert_eq!(
        (
            resumed[0]["imported"].as_u64(),
            resumed[0]["already_stored"].as_u64()
        ),
        (Some(3), Some(3))
    );

    let other = path_of(&dir, "other.db");
    runtime().block_on(seeded_sqlite(dir.path().join("other.db").as_path(), 1, 1));
    let refused = run(&other, &["import", &file]).expect(4);
    assert!(
        refused.stderr.contains("already holds other events") && refused.stderr.contains("--append"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        run(&other, &["status", "--json"]).ok().json_lines()[0]["events"],
        1,
        "nothing written"
    );
    // The seeded stream c-0 exists there with other events: its versions conflict.
    let renamed = path_of(&dir, "renamed.jsonl");
    std::fs::write(
        &renamed,
        std::fs::read_to_string(&file).unwrap().replace("\"c-", "\"d-"),
    )
    .unwrap();
    let appended = run(&other, &["import", &renamed, "--append"]).ok();
    assert!(
        appended.stdout.contains("imported 6 events"),
        "{}",
        appended.stdout
    );
    assert_eq!(
        run(&other, &["status", "--json"]).ok().json_lines()[0]["events"],
        7
    );
    run(&other, &["import", &renamed, "--append"]).ok();
    assert_eq!(
        run(&other, &["status", "--json"]).ok().json_lines()[0]["events"],
        7,
        "appending again writes nothing"
    );
    let conflict = run(&other, &["import", &file, "--append"]).expect(1);
    assert!(
        conflict.stderr.contains("line 1") && conflict.stderr.contains("Counter-c-0"),
        "{}",
        conflict.stderr
    );
}

#[test]
fn a_corrupt_line_stops_the_import_with_its_number_and_writes_nothing_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_of(&dir, "source.db");
    runtime().block_on(seeded_sqlite(dir.path().join("source.db").as_path(), 2, 3));
    let exported = run(&source, &["export"]).ok();
    let mut lines: Vec<&str> = exported.stdout.lines().collect();
    lines[4] = r#"{"event_id":"not a uuid"}"#;
    let file = path_of(&dir, "corrupt.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let target = path_of(&dir, "target.db");
    let failed = run(&target, &["import", &file]).expect(4);
    assert!(
        failed.stderr.contains("line 5 is not an exported event"),
        "{}",
        failed.stderr
    );
    assert_eq!(failed.stderr.lines().count(), 1, "one line: {}", failed.stderr);
    assert_eq!(
        run(&target, &["status", "--json"]).ok().json_lines()[0]["events"],
        0
    );

    lines[4] = lines[3];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let repeated = run(&target, &["import", &file]).expect(4);
    assert!(
        repeated.stderr.contains("line 5") && repeated.stderr.contains("appears twice"),
        "{}",
        repeated.stderr
    );
}

#[test]
fn wrong_stores_and_files_are_one_line_each_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(&path_of(&dir, "missing.db"), &["status"]).expect(3);
    assert!(
        missing.stderr.starts_with("error: no factum store at") && missing.stderr.contains("migrate"),
        "{}",
        missing.stderr
    );
    assert!(!dir.path().join("missing.db").exists(), "a read creates no file");

    let scheme = run("mysql://localhost/db", &["status"]).expect(2);
    assert!(
        scheme.stderr.contains("unsupported store URL scheme `mysql`"),
        "{}",
        scheme.stderr
    );
    let unset = common::finish(factum().arg("status").output().unwrap()).expect(2);
    assert!(unset.stderr.contains("FACTUM_STORE"), "{}", unset.stderr);

    let store = path_of(&dir, "app.db");
    let no_file = run(&store, &["import", &path_of(&dir, "nope.jsonl")]).expect(2);
    assert!(
        no_file.stderr.contains("cannot read") && no_file.stderr.contains("nope.jsonl"),
        "{}",
        no_file.stderr
    );
    assert!(
        !dir.path().join("app.db").exists(),
        "a failed import creates no store"
    );

    let foreign = path_of(&dir, "foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let not_factum = run(&foreign, &["status"]).expect(3);
    assert!(
        not_factum.stderr.contains("is not a factum database"),
        "{}",
        not_factum.stderr
    );

    let newer = path_of(&dir, "newer.db");
    run(&newer, &["migrate"]).ok();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    for command in ["status", "migrate"] {
        let refused = run(&newer, &[command]).expect(3);
        assert!(
            refused.stderr.contains("schema version 99, newer") && refused.stderr.contains("upgrade"),
            "{}",
            refused.stderr
        );
        assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    }
}

#[test]
fn events_of_a_long_stream_appear_at_once_in_flat_memory() {
    const EVENTS: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.db");
    runtime().block_on(async {
        let options = factum_sqlite::SqliteOptions::new().durability(factum_sqlite::Durability::Normal);
        let store = SqliteEventStore::open_with(&path, options).await.unwrap();
        let stream = StreamId::new("Counter", "long");
        let payload = Payload::parse(r#"{"amount":1,"note":"a typical small event payload"}"#).unwrap();
        for version in (0..EVENTS).step_by(10_000) {
            let events = (0..10_000)
                .map(|_| NewEvent::new("incremented", payload.clone()))
                .collect();
            store
                .append(&stream, factum_core::ExpectedVersion::Exact(version), events)
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    });
    let mut child = factum()
        .args(["--store", path.to_str().unwrap(), "events", "Counter/long"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("VERSION"));
    let first = lines.next().unwrap().unwrap();
    assert!(first.trim_start().starts_with("1       1"), "{first}");
    // The pipe holds a few dozen kilobytes of the ~100 MB the stream
    // prints: the command is blocked writing, with most of it unread.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the command is still streaming"
    );
    let resident = resident_kib(child.id());
    assert!(
        resident < 96 * 1024,
        "{resident} KiB resident while streaming {EVENTS} events"
    );
    drop(lines);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "a closed pipe ends the command quietly: {status}"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn bench_runs_the_workloads_on_a_scratch_store_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = path_of(&dir, "app.db");
    run(&store, &["migrate"]).ok();
    let rows = run(&store, &["bench", "--events", "2000", "--json"])
        .ok()
        .json_lines();
    let workloads: Vec<_> = rows.iter().map(|row| row["workload"].as_str().unwrap()).collect();
    assert!(
        workloads.contains(&"one stream, appends of 10,000 events"),
        "{workloads:?}"
    );
    assert!(
        workloads.contains(&"projection catch-up, counting"),
        "{workloads:?}"
    );
    assert!(
        rows.iter().all(|row| row["result"].as_f64().unwrap() > 0.0),
        "{rows:?}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|name| !name.to_string_lossy().contains("bench")),
        "{left:?}"
    );
    assert_eq!(
        run(&store, &["status", "--json"]).ok().json_lines()[0]["events"],
        0,
        "the store is untouched"
    );
}

#[test]
fn import_reads_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_of(&dir, "source.db");
    runtime().block_on(seeded_sqlite(dir.path().join("source.db").as_path(), 1, 3));
    let exported = run(&source, &["export"]).ok();
    let mut child = factum()
        .args(["--store", &path_of(&dir, "target.db"), "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exported.stdout.as_bytes())
        .unwrap();
    let done = common::finish(child.wait_with_output().unwrap()).ok();
    assert!(done.stdout.contains("imported 3 events"), "{}", done.stdout);
}

#[test]
fn export_to_a_device_writes_into_it_and_leaves_it_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let store = path_of(&dir, "app.db");
    runtime().block_on(seeded_sqlite(dir.path().join("app.db").as_path(), 1, 2));
    run(&store, &["export", "-o", "/dev/null"]).ok();
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

#[test]
fn a_multi_tenant_export_comes_back_with_every_stream_in_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let store = SqliteEventStore::open(dir.path().join("source.db"))
            .await
            .unwrap();
        assert_eq!(common::seed_tenants(&store).await, 18);
        store.close().await.unwrap();
    });
    let file = path_of(&dir, "events.jsonl");
    run(&path_of(&dir, "source.db"), &["export", "-o", &file]).ok();
    let tenants: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["metadata"]["tenant"].clone())
        .collect();
    assert_eq!(
        tenants.iter().filter(|tenant| *tenant == "acme").count(),
        6,
        "{tenants:?}"
    );
    let target = path_of(&dir, "target.db");
    let imported = run(&target, &["import", &file]).ok();
    assert!(
        imported.stdout.contains("imported 18 events"),
        "{}",
        imported.stdout
    );
    let copy = run(&target, &["export"]).ok().stdout;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        copy,
        "the copy exports the same lines"
    );
    let again = run(&target, &["import", &file, "--json"]).ok().json_lines();
    assert_eq!(again[0]["imported"], 0);

    runtime.block_on(async {
        let store = SqliteEventStore::open(dir.path().join("target.db"))
            .await
            .unwrap();
        for tenant in ["default", "acme", "globex"] {
            let shared = common::tenant_payloads(&store, tenant, "shared").await;
            let expected: Vec<String> = (0..3)
                .map(|round| format!(r#"{{"tenant":"{tenant}","round":{round}}}"#))
                .collect();
            assert_eq!(shared, expected, "{tenant}");
            let own = common::tenant_payloads(&store, tenant, &format!("{tenant}-only")).await;
            assert_eq!(own.len(), 3, "{tenant}");
        }
        assert!(
            common::tenant_payloads(&store, "acme", "globex-only")
                .await
                .is_empty()
        );
        store.close().await.unwrap();
    });
}

/// A damaged row deep in the log fails the export with the event it is,
/// and leaves neither the file nor its partial copy: a failed export must
/// never look like a backup. The page holding it is read on its own task,
/// several pages ahead of the writer.
#[test]
fn a_payload_that_is_not_json_fails_the_export_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    runtime().block_on(seeded_sqlite(&source, 50, 100));
    rusqlite::Connection::open(&source)
        .unwrap()
        .execute("UPDATE events SET payload = 'not json' WHERE position = 4500", [])
        .unwrap();
    let file = dir.path().join("backup.jsonl");
    let failed = run(
        source.to_str().unwrap(),
        &["export", "-o", file.to_str().unwrap()],
    )
    .expect(1);
    assert!(
        failed.stderr.contains("(position 4500) is not JSON"),
        "{}",
        failed.stderr
    );
    assert_eq!(failed.stderr.lines().count(), 1, "{}", failed.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
