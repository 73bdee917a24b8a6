//! Crash safety: a process killed with SIGKILL in the middle of a stream of
//! appends leaves every committed batch whole and no partial batch.
//!
//! The test binary re-executes itself as the child: with
//! `FACTUM_SQLITE_CRASH_CHILD` set, the test functions below run the writer
//! loop instead of the check.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};
use futures::StreamExt;

const CHILD: &str = "FACTUM_SQLITE_CRASH_CHILD";
const WRITERS: usize = 4;
/// Batches the parent waits to see committed before it kills the child.
const COMMITS_BEFORE_KILL: usize = 40;

fn batch_size(batch: u64) -> u64 {
    1 + (batch * 389) % 700
}

/// The child: `WRITERS` tasks append batches of varying size to their own
/// streams and print each batch once its append returned.
async fn write_until_killed(path: &Path, durability: Durability) {
    let store = SqliteEventStore::open_with(path, SqliteOptions::new().durability(durability))
        .await
        .expect("child opens the store");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("Crash", writer.to_string());
            for batch in 0.. {
                let size = batch_size(batch);
                let events = (0..size)
                    .map(|index| {
                        let payload = serde_json::json!({ "batch": batch, "index": index, "size": size });
                        NewEvent::new("written", Payload::from(payload))
                    })
                    .collect();
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .expect("child appends");
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "committed {writer} {batch}").expect("child prints");
                stdout.flush().expect("child flushes");
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

fn run_crash_test(test_name: &str, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut committed: BTreeMap<usize, u64> = BTreeMap::new();
    let mut seen = 0;
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("committed ") else {
            continue;
        };
        let mut fields = rest.split(' ').map(|field| field.parse::<u64>().unwrap());
        let (writer, batch) = (fields.next().unwrap() as usize, fields.next().unwrap());
        committed.insert(writer, batch);
        seen += 1;
        if seen == COMMITS_BEFORE_KILL {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child is too slow"
        );
    }
    // Child::kill sends SIGKILL: no destructor, no flush, no close.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        seen, COMMITS_BEFORE_KILL,
        "the child stopped before it was killed"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = SqliteOptions::new().durability(durability);
        let store = SqliteEventStore::open_with(&path, options)
            .await
            .expect("the file reopens after the crash");
        let mut stored_batches = 0;
        let mut total = 0;
        for writer in 0..WRITERS {
            let stream = StreamId::new("Crash", writer.to_string());
            let events: Vec<_> = store.read_stream(&stream, 1).collect().await;
            let mut batches: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for (offset, event) in events.iter().enumerate() {
                let event = event.as_ref().expect("every stored event reads back");
                assert_eq!(event.version, offset as u64 + 1);
                let payload: serde_json::Value = event.payload.decode().unwrap();
                let batch = payload["batch"].as_u64().unwrap();
                assert_eq!(payload["size"].as_u64().unwrap(), batch_size(batch));
                batches.entry(batch).or_default().push(payload["index"].as_u64().unwrap());
            }
            // Batches are stored in order, each one whole.
            for (expected, (batch, indexes)) in batches.iter().enumerate() {
                assert_eq!(*batch, expected as u64, "writer {writer}: batches in order, none missing");
                assert_eq!(
                    indexes,
                    &(0..batch_size(*batch)).collect::<Vec<_>>(),
                    "writer {writer}: batch {batch} is whole"
                );
            }
            // Every batch the child saw committed is there.
            if let Some(last) = committed.get(&writer) {
                let stored = batches.keys().next_back().copied();
                assert!(stored >= Some(*last), "writer {writer}: batch {last} was committed");
            }
            total += events.len();
            stored_batches += batches.len();
        }
        eprintln!(
            "{durability:?}: killed after {seen} printed commits; found {stored_batches} whole batches, {total} events"
        );
        let all = store.read_all(0, usize::MAX).await.unwrap();
        assert_eq!(all.len(), total, "no event outside the streams");
        for (offset, event) in all.iter().enumerate() {
            assert_eq!(event.position, offset as u64 + 1, "no hole in the global log");
        }
        // The file takes appends again.
        store
            .append(
                &StreamId::new("Crash", "after"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("written", Payload::parse("{}").unwrap())],
            )
            .await
            .unwrap();
    });
}

fn child_path() -> Option<std::path::PathBuf> {
    std::env::var_os(CHILD).map(Into::into)
}

fn run_child(path: &Path, durability: Durability) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(write_until_killed(path, durability));
}

#[test]
fn sigkill_mid_append_leaves_whole_batches_normal() {
    match child_path() {
        Some(path) => run_child(&path, Durability::Normal),
        None => run_crash_test(
            "sigkill_mid_append_leaves_whole_batches_normal",
            Durability::Normal,
        ),
    }
}

#[test]
fn sigkill_mid_append_leaves_whole_batches_full() {
    match child_path() {
        Some(path) => run_child(&path, Durability::Full),
        None => run_crash_test("sigkill_mid_append_leaves_whole_batches_full", Durability::Full),
    }
}
