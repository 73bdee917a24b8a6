//! The py-event-sourcing workload on factum-sqlite, beside a plain
//! prepared-statement loop in rusqlite, at `synchronous = NORMAL` and `FULL`.
//!
//! 1,000,000 events to one stream in appends of 10,000, then a full replay of
//! the stream into a counter state, then a snapshot save and load.
//!
//! Each replay, factum's and the loop's, runs in a process of its own that
//! opens the file afresh (so its peak memory is its own and neither inherits
//! the other's warm connection), in alternating rounds; the best round of
//! each side is reported, the one least disturbed by the machine's other work.
//!
//! ```text
//! cargo bench -p factum-sqlite --bench workload            # 1,000,000 events
//! FACTUM_BENCH_EVENTS=200000 cargo bench -p factum-sqlite --bench workload
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, Snapshot, SnapshotStore, StreamId};
use factum_sqlite::{Durability, SqliteEventStore, SqliteOptions};
use futures::StreamExt;
use rusqlite::params;

const BATCH: usize = 10_000;
const REPLAY_CHILD: &str = "--replay-child";
const BASELINE_REPLAY_CHILD: &str = "--baseline-replay-child";
/// Replays of each side, alternating.
const REPLAY_ROUNDS: usize = 3;

fn events_total() -> usize {
    std::env::var("FACTUM_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The counter state of the py-event-sourcing benchmark.
#[derive(Default)]
struct CounterState {
    count: i64,
}

impl CounterState {
    fn apply(&mut self, event_type: &str) {
        match event_type {
            "Increment" => self.count += 1,
            "Decrement" => self.count -= 1,
            _ => {}
        }
    }
}

fn stream() -> StreamId {
    StreamId::new("Counter", "bench")
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "FULL",
        _ => "NORMAL",
    }
}

fn parse_durability(name: &str) -> Durability {
    if name == "FULL" {
        Durability::Full
    } else {
        Durability::Normal
    }
}

fn database_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            std::fs::metadata(PathBuf::from(file)).ok()
        })
        .map(|metadata| metadata.len())
        .sum()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// What a side's writing gave: events/s and the file's size.
struct Written {
    write: f64,
    bytes: u64,
}

/// factum-sqlite: appends of `BATCH` new events, the events built inside
/// the timed loop as an application would.
fn factum_write(path: &Path, durability: Durability, total: usize) -> f64 {
    runtime().block_on(async {
        let store = SqliteEventStore::open_with(path, SqliteOptions::new().durability(durability))
            .await
            .expect("open");
        let stream = stream();
        let payload = Payload::parse(r#"{"by":1}"#).expect("json");
        let started = Instant::now();
        let mut version = 0;
        while version < total as u64 {
            let events = (0..BATCH)
                .map(|_| NewEvent::new("Increment", payload.clone()))
                .collect();
            let result = store
                .append(&stream, ExpectedVersion::from_loaded(version), events)
                .await
                .expect("append");
            version = result.stream_version;
        }
        let elapsed = started.elapsed();
        store.close().await.expect("close");
        rate(total, elapsed)
    })
}

/// The replay, run in a child process: prints events/s, peak RSS, and the
/// snapshot figures.
fn factum_replay_child(path: &Path, durability: Durability) {
    runtime().block_on(async {
        let store = SqliteEventStore::open_with(path, SqliteOptions::new().durability(durability))
            .await
            .expect("open");
        let stream = stream();
        let started = Instant::now();
        let mut state = CounterState::default();
        let mut replayed = 0;
        let mut events = store.read_stream(&stream, 1);
        while let Some(event) = events.next().await {
            let event = event.expect("event");
            state.apply(&event.event_type);
            replayed += 1;
        }
        drop(events);
        let elapsed = started.elapsed();
        assert_eq!(state.count, replayed as i64);
        let rss = peak_rss_kib();

        let snapshot = Payload::encode(&serde_json::json!({ "count": state.count })).expect("json");
        let snapshot = Snapshot {
            stream: stream.clone(),
            version: replayed,
            schema_version: 1,
            state: snapshot,
            taken_at: time::OffsetDateTime::now_utc(),
        };
        store.save_snapshot(snapshot).await.expect("save");
        let first = Instant::now();
        let loaded = store.load_snapshot(&stream).await.expect("load").expect("saved");
        let first_load = first.elapsed();
        let loads = 1000;
        let started = Instant::now();
        for _ in 0..loads {
            let loaded = store.load_snapshot(&stream).await.expect("load").expect("saved");
            std::hint::black_box(loaded);
        }
        let mean_load = started.elapsed() / loads;
        let count: i64 = loaded.state.decode::<serde_json::Value>().expect("json")["count"]
            .as_i64()
            .unwrap_or(-1);
        assert_eq!(count, state.count);
        store.close().await.expect("close");
        println!(
            "replay {replayed} {} {rss} {} {}",
            rate(replayed as usize, elapsed),
            first_load.as_micros(),
            mean_load.as_micros()
        );
    });
}

struct ReplayFigures {
    replay: f64,
    rss_kib: u64,
    snapshot_first_us: u64,
    snapshot_mean_us: u64,
}

/// Runs a replay child (`flag`) on `path` and returns the fields of the
/// line it prints.
fn run_replay_child(flag: &str, path: &Path, durability: Durability) -> Vec<String> {
    let output = Command::new(std::env::current_exe().expect("exe"))
        .args([flag, &path.display().to_string(), durability_name(durability)])
        .output()
        .expect("run the replay child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("replay "))
        .unwrap_or_else(|| {
            panic!(
                "the replay child printed no figures: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    line.split(' ').map(str::to_owned).collect()
}

fn factum_replay(path: &Path, durability: Durability) -> ReplayFigures {
    let fields = run_replay_child(REPLAY_CHILD, path, durability);
    ReplayFigures {
        replay: fields[2].parse().expect("rate"),
        rss_kib: fields[3].parse().expect("rss"),
        snapshot_first_us: fields[4].parse().expect("first load"),
        snapshot_mean_us: fields[5].parse().expect("mean load"),
    }
}

/// The best of a side's replay rounds: the one least disturbed.
fn best(rounds: &[f64]) -> f64 {
    rounds.iter().copied().fold(0.0, f64::max)
}

fn rounds(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|rate| format!("{rate:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn baseline_replay(path: &Path, durability: Durability) -> f64 {
    run_replay_child(BASELINE_REPLAY_CHILD, path, durability)[2]
        .parse()
        .expect("rate")
}

/// The plain schema of the baseline: the stream in text columns, unique
/// indexes on the stream's versions and the event ids.
fn baseline_connection(path: &Path, durability: Durability) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("open");
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {};
             CREATE TABLE events (
                position INTEGER PRIMARY KEY, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
                version INTEGER NOT NULL, event_id BLOB NOT NULL UNIQUE, event_type TEXT NOT NULL,
                schema_version INTEGER NOT NULL, payload TEXT NOT NULL, metadata TEXT,
                occurred_at INTEGER NOT NULL, UNIQUE (aggregate_type, aggregate_id, version));",
            durability_name(durability)
        ))
        .expect("schema");
    connection
}

/// One prepared INSERT of the baseline.
fn baseline_insert(connection: &rusqlite::Connection, version: i64, event: &NewEvent) {
    let mut insert = connection
        .prepare_cached(
            "INSERT INTO events (aggregate_type, aggregate_id, version, event_id, event_type, \
             schema_version, payload, metadata, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .expect("prepare");
    insert
        .execute(params![
            "Counter",
            "bench",
            version,
            &event.event_id.as_bytes()[..],
            &*event.event_type,
            1,
            event.payload.as_str(),
            Option::<&str>::None,
            event.occurred_at.unix_timestamp_nanos() as i64,
        ])
        .expect("insert");
}

/// The baseline: the obvious rusqlite code (one prepared INSERT per event,
/// one transaction per batch), same pragmas.
fn baseline(path: &Path, durability: Durability, total: usize) -> Written {
    let mut connection = baseline_connection(path, durability);
    let started = Instant::now();
    let mut version = 0i64;
    while version < total as i64 {
        let transaction = connection.transaction().expect("begin");
        for _ in 0..BATCH {
            version += 1;
            let event = NewEvent::new("Increment", Payload::from_stored(r#"{"by":1}"#));
            baseline_insert(&transaction, version, &event);
        }
        transaction.commit().expect("commit");
    }
    let write = rate(total, started.elapsed());
    drop(connection);
    Written {
        write,
        bytes: database_bytes(path),
    }
}

/// The baseline's replay, run in a child process: the obvious rusqlite
/// loop over one prepared SELECT, reading the columns a replay needs as
/// owned strings. Prints events/s.
fn baseline_replay_child(path: &Path, durability: Durability) {
    let connection = rusqlite::Connection::open(path).expect("open");
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {};",
            durability_name(durability)
        ))
        .expect("pragmas");
    let started = Instant::now();
    let mut state = CounterState::default();
    let mut replayed = 0usize;
    {
        let mut select = connection
            .prepare(
                "SELECT position, version, event_id, event_type, schema_version, payload, metadata, occurred_at \
                 FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY version",
            )
            .expect("prepare");
        let mut rows = select.query(["Counter", "bench"]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            let event_type: String = row.get(3).expect("type");
            let payload: String = row.get(5).expect("payload");
            std::hint::black_box(payload);
            state.apply(&event_type);
            replayed += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(state.count, replayed as i64);
    println!("replay {replayed} {}", rate(replayed, elapsed));
}

/// Many small appends at once: 16 tasks appending one event at a time to
/// their own streams. Group commit folds the queued appends into one
/// transaction (one fsync); the baseline commits each event alone.
fn concurrent_small_appends(dir: &Path, durability: Durability) -> (f64, f64) {
    const WRITERS: usize = 16;
    const APPENDS: usize = 400;
    let path = dir.join(format!("small-{}.db", durability_name(durability)));
    let factum = runtime().block_on(async {
        let store = SqliteEventStore::open_with(&path, SqliteOptions::new().durability(durability))
            .await
            .expect("open");
        let payload = Payload::parse(r#"{"by":1}"#).expect("json");
        let started = Instant::now();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = store.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    let stream = StreamId::new("Counter", writer.to_string());
                    for version in 0..APPENDS as u64 {
                        let event = NewEvent::new("Increment", payload.clone());
                        store
                            .append(&stream, ExpectedVersion::from_loaded(version), vec![event])
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let elapsed = started.elapsed();
        store.close().await.expect("close");
        rate(WRITERS * APPENDS, elapsed)
    });

    let path = dir.join(format!("small-baseline-{}.db", durability_name(durability)));
    let connection = baseline_connection(&path, durability);
    let appends = WRITERS * APPENDS / 4;
    let started = Instant::now();
    for version in 1..=appends {
        let event = NewEvent::new("Increment", Payload::from_stored(r#"{"by":1}"#));
        baseline_insert(&connection, version as i64, &event);
    }
    (factum, rate(appends, started.elapsed()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(index) = args.iter().position(|arg| arg == REPLAY_CHILD) {
        let path = PathBuf::from(&args[index + 1]);
        factum_replay_child(&path, parse_durability(&args[index + 2]));
        return;
    }
    if let Some(index) = args.iter().position(|arg| arg == BASELINE_REPLAY_CHILD) {
        let path = PathBuf::from(&args[index + 1]);
        baseline_replay_child(&path, parse_durability(&args[index + 2]));
        return;
    }
    // For profiling small appends alone: `--small-only DIR NORMAL|FULL`.
    if let Some(index) = args.iter().position(|arg| arg == "--small-only") {
        let dir = PathBuf::from(&args[index + 1]);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (grouped, alone) = concurrent_small_appends(&dir, parse_durability(&args[index + 2]));
        println!("small appends {grouped:.0}/s, baseline {alone:.0}/s");
        return;
    }
    // For profiling the write path alone: `--write-only PATH NORMAL|FULL`.
    if let Some(index) = args.iter().position(|arg| arg == "--write-only") {
        let path = PathBuf::from(&args[index + 1]);
        let _ = std::fs::remove_file(&path);
        let rate = factum_write(&path, parse_durability(&args[index + 2]), events_total());
        println!("write {rate:.0} events/s");
        return;
    }
    let total = events_total();
    let temporary = tempfile::tempdir().expect("a temporary directory");
    // FACTUM_BENCH_DIR keeps the databases for inspection (emptied first).
    let kept = std::env::var_os("FACTUM_BENCH_DIR").map(PathBuf::from);
    if let Some(kept) = &kept {
        let _ = std::fs::remove_dir_all(kept);
        std::fs::create_dir_all(kept).expect("FACTUM_BENCH_DIR can be created");
    }
    let dir = kept.as_deref().unwrap_or(temporary.path());
    println!(
        "py-event-sourcing workload: {total} events to one stream in appends of {BATCH}, replay, snapshot"
    );
    for durability in [Durability::Normal, Durability::Full] {
        let name = durability_name(durability);
        let base_path = dir.join(format!("baseline-{name}.db"));
        let base = baseline(&base_path, durability, total);

        let path = dir.join(format!("factum-{name}.db"));
        let factum = Written {
            write: factum_write(&path, durability, total),
            bytes: database_bytes(&path),
        };
        // The first factum replay also gives the peak memory and snapshot figures.
        let replay = factum_replay(&path, durability);
        let mut factum_rounds = vec![replay.replay];
        let mut base_rounds = Vec::new();
        for round in 0..REPLAY_ROUNDS {
            if round > 0 {
                factum_rounds.push(factum_replay(&path, durability).replay);
            }
            base_rounds.push(baseline_replay(&base_path, durability));
        }
        let (factum_replay_rate, base_replay_rate) = (best(&factum_rounds), best(&base_rounds));
        println!("\nsynchronous = {name}");
        println!(
            "  factum-sqlite   write {:>9.0} events/s   replay {:>9.0} events/s   replay peak RSS {:>6.1} MiB   database {:>6.1} MiB",
            factum.write,
            factum_replay_rate,
            replay.rss_kib as f64 / 1024.0,
            factum.bytes as f64 / (1024.0 * 1024.0),
        );
        println!(
            "  rusqlite loop   write {:>9.0} events/s   replay {:>9.0} events/s                              database {:>6.1} MiB",
            base.write,
            base_replay_rate,
            base.bytes as f64 / (1024.0 * 1024.0),
        );
        println!(
            "  ratio           write {:>9.2}x           replay {:>9.2}x",
            factum.write / base.write,
            factum_replay_rate / base_replay_rate
        );
        println!(
            "  replay rounds   factum-sqlite {}; rusqlite loop {} (events/s, alternating; the best is above)",
            rounds(&factum_rounds),
            rounds(&base_rounds)
        );
        println!(
            "  snapshot load   first {} us, mean of 1000: {} us",
            replay.snapshot_first_us, replay.snapshot_mean_us
        );
        let (grouped, alone) = concurrent_small_appends(dir, durability);
        println!(
            "  one-event appends from 16 tasks: factum-sqlite {grouped:.0}/s (group commit), \
             rusqlite one transaction each {alone:.0}/s, ratio {:.1}x",
            grouped / alone
        );
    }
}
