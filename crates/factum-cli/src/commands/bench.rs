//! `bench [--store URL] [--events N]`: the workloads of the README's
//! benchmark tables on the user's own machine and server, printed beside
//! the README's figures (measured on the development machine).
//!
//! It never touches the store's data: it runs on a scratch store beside it
//! (a SQLite file in the same directory, or a new schema in the same
//! PostgreSQL database), removed afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factum_core::{
    ExpectedVersion, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore, NewEvent, Payload,
    Projection, ProjectionRunner, RecordedEvent, Snapshot, StreamId,
};
use factum_postgres::PostgresProjectionStore;
use futures::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

use super::Store;
use crate::cli::BenchArgs;
use crate::error::CliError;
use crate::output::{self, Out};
use crate::store::{self, Access, Location, Opened};

/// Connections to PostgreSQL: one per concurrent writer, as in the
/// README's runs.
const CONNECTIONS: usize = 16;

/// Events of the large workloads unless `--events` says otherwise: a run
/// of seconds. The README's figures use 1,000,000.
const DEFAULT_EVENTS: usize = 100_000;

const PAYLOAD: &str = r#"{"amount":1,"note":"a typical small event payload"}"#;

/// One line of the table.
struct Row {
    workload: &'static str,
    events: usize,
    result: f64,
    unit: &'static str,
    readme: &'static str,
}

/// The README figure of each workload, per backend (`""`: not measured).
struct Figures {
    sqlite: &'static str,
    postgres: &'static str,
}

pub(crate) async fn run(
    location: &Location,
    schema: Option<&str>,
    args: &BenchArgs,
    json: bool,
) -> Result<(), CliError> {
    let events = args.events.unwrap_or(DEFAULT_EVENTS).max(1000);
    let (scratch, cleanup) = scratch(location, schema).await?;
    let description = scratch.describe();
    if !json {
        eprintln!(
            "benchmarking on a scratch store beside yours ({description}), {events} events; removed afterwards"
        );
    }
    let result = match &scratch {
        Opened::Sqlite(store) => workloads(store, events, true).await,
        Opened::Postgres(store) => workloads(store, events, false).await,
    };
    let dropped = match &scratch {
        Opened::Postgres(store) => {
            let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", cleanup.schema);
            PostgresProjectionStore::new(store)
                .execute_batch(&sql)
                .await
                .map_err(CliError::from)
        }
        Opened::Sqlite(_) => Ok(()),
    };
    scratch.close().await?;
    for file in &cleanup.files {
        let _ = std::fs::remove_file(file);
    }
    let rows = result?;
    dropped?;
    print(&rows, &description, json)
}

/// What to remove after the run.
#[derive(Default)]
struct Cleanup {
    files: Vec<PathBuf>,
    schema: String,
}

async fn scratch(location: &Location, schema: Option<&str>) -> Result<(Opened, Cleanup), CliError> {
    let tag = format!("factum_cli_bench_{}", std::process::id());
    let mut cleanup = Cleanup::default();
    let scratch = match location {
        Location::Sqlite(path) => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file = dir.join(format!(".{tag}.db"));
            cleanup.files = ["", "-wal", "-shm"]
                .iter()
                .map(|suffix| PathBuf::from(format!("{}{suffix}", file.display())))
                .collect();
            Location::Sqlite(file)
        }
        Location::Postgres(url) => {
            let _ = schema;
            cleanup.schema = tag.clone();
            Location::Postgres(url.clone())
        }
    };
    let schema = (!cleanup.schema.is_empty()).then_some(cleanup.schema.as_str());
    let (opened, _) = store::open(&scratch, schema, Access::CreateOrMigrate, CONNECTIONS).await?;
    Ok((opened, cleanup))
}

async fn workloads<S: Store>(store: &S, events: usize, sqlite: bool) -> Result<Vec<Row>, CliError> {
    let payload = Payload::from_stored(PAYLOAD);
    let event = || NewEvent::new("incremented", payload.clone());
    let pick = |figures: Figures| if sqlite { figures.sqlite } else { figures.postgres };
    let mut rows = Vec::new();

    // The py-event-sourcing workload of the SQLite table.
    let stream = StreamId::new("Bench", "one-stream");
    let batch = events.min(10_000);
    let bar = output::progress(events as u64, "appends of 10,000", output::stdout_is_terminal());
    let started = Instant::now();
    let mut version = 0;
    while version < events as u64 {
        let count = batch.min(events - version as usize);
        let appended = store
            .append(
                &stream,
                ExpectedVersion::Exact(version),
                (0..count).map(|_| event()).collect(),
            )
            .await?;
        version = appended.stream_version;
        bar.set_position(version);
    }
    bar.finish_and_clear();
    rows.push(Row::rate(
        "one stream, appends of 10,000 events",
        events,
        started.elapsed(),
        "events/s",
        pick(Figures {
            sqlite: "777,219 events/s",
            postgres: "",
        }),
    ));

    let started = Instant::now();
    let mut replayed = 0;
    let mut pages = store.read_stream_pages(&stream, 1);
    while let Some(page) = pages.next().await {
        replayed += page?.len();
    }
    drop(pages);
    rows.push(Row::rate(
        "replay of that stream",
        replayed,
        started.elapsed(),
        "events/s",
        pick(Figures {
            sqlite: "3,223,613 events/s",
            postgres: "",
        }),
    ));

    let state = Payload::encode(&json!({ "count": replayed }))
        .map_err(|error| CliError::failed(error.to_string()))?;
    store
        .save_snapshot(Snapshot {
            stream: stream.clone(),
            version: replayed as u64,
            schema_version: 1,
            state,
            taken_at: OffsetDateTime::now_utc(),
        })
        .await?;
    let loads = 1000;
    let started = Instant::now();
    for _ in 0..loads {
        std::hint::black_box(store.load_snapshot(&stream).await?);
    }
    rows.push(Row {
        workload: "snapshot load (mean of 1,000)",
        events: 0,
        result: started.elapsed().as_secs_f64() * 1e6 / f64::from(loads),
        unit: "µs",
        readme: pick(Figures {
            sqlite: "55 µs",
            postgres: "",
        }),
    });

    let commits = (events / 100).max(100);
    let bar = output::progress(commits as u64, "single events", output::stdout_is_terminal());
    let started = Instant::now();
    for index in 0..commits {
        let stream = StreamId::new("Bench", format!("single-{index}"));
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event()])
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    rows.push(Row::rate(
        "new aggregates × 1 event, 1 client",
        commits,
        started.elapsed(),
        "commits/s",
        pick(Figures {
            sqlite: "3,472 commits/s (288 µs a save)",
            postgres: "3,336 commits/s",
        }),
    ));

    let mut row = concurrent(store, (events / 1000).max(20), event).await?;
    row.readme = pick(Figures {
        sqlite: "",
        postgres: "15,514 commits/s",
    });
    rows.push(row);

    let batches = events / 100;
    let bar = output::progress(batches as u64, "100-event batches", output::stdout_is_terminal());
    let started = Instant::now();
    for index in 0..batches {
        // Streams of 10,000 events, the aggregate the next workload reloads.
        let stream = StreamId::new("Bench", format!("batches-{}", index / 100));
        let expected = ExpectedVersion::Exact((index % 100) as u64 * 100);
        store
            .append(&stream, expected, (0..100).map(|_| event()).collect())
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    rows.push(Row::rate(
        "100-event batches, 1 client",
        batches * 100,
        started.elapsed(),
        "events/s",
        pick(Figures {
            sqlite: "",
            postgres: "98,428 events/s",
        }),
    ));

    let stream = StreamId::new("Bench", "batches-0");
    let started = Instant::now();
    let mut reloaded = 0;
    let mut pages = store.read_stream_pages(&stream, 1);
    while let Some(page) = pages.next().await {
        reloaded += page?.len();
    }
    drop(pages);
    rows.push(Row::rate(
        "reload of one 10,000-event aggregate",
        reloaded,
        started.elapsed(),
        "events/s",
        pick(Figures {
            sqlite: "",
            postgres: "1,145,377 events/s",
        }),
    ));

    let head = store.head_position().await?;
    let started = Instant::now();
    let (mut after, mut read) = (0, 0);
    loop {
        let page = store.read_all(after, 4096).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len();
    }
    rows.push(Row::rate(
        "read of the global log",
        read,
        started.elapsed(),
        "events/s",
        pick(Figures {
            sqlite: "",
            postgres: "843,403 events/s",
        }),
    ));

    let runner = ProjectionRunner::new(
        store.clone(),
        Counting(0),
        InMemoryCheckpointStore::new(),
        InMemoryDeadLetterStore::new(),
    )
    .checkpoint_every(50_000);
    let started = Instant::now();
    let handle = runner.spawn();
    handle.wait_for_checkpoint(head).await?;
    let elapsed = started.elapsed();
    handle.stop();
    handle.join().await?;
    rows.push(Row::rate(
        "projection catch-up, counting",
        read,
        elapsed,
        "events/s",
        pick(Figures {
            sqlite: "1,570,000 events/s",
            postgres: "898,480 events/s",
        }),
    ));
    Ok(rows)
}

/// 16 tasks appending one event at a time to their own streams.
async fn concurrent<S: Store>(store: &S, each: usize, event: impl Fn() -> NewEvent) -> Result<Row, CliError> {
    const WRITERS: usize = 16;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let events: Vec<NewEvent> = (0..each).map(|_| event()).collect();
            tokio::spawn(async move {
                let stream = StreamId::new("Bench", format!("writer-{writer}"));
                for (version, event) in events.into_iter().enumerate() {
                    store
                        .append(&stream, ExpectedVersion::Exact(version as u64), vec![event])
                        .await?;
                }
                Ok::<_, factum_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|error| CliError::failed("a writer task failed").with_source(error))??;
    }
    Ok(Row::rate(
        "16 concurrent single-event writers",
        WRITERS * each,
        started.elapsed(),
        "commits/s",
        "",
    ))
}

struct Counting(u64);

impl Projection for Counting {
    fn name(&self) -> &str {
        "factum-bench-counting"
    }

    async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), HandlerError> {
        self.0 += 1;
        Ok(())
    }
}

impl Row {
    fn rate(
        workload: &'static str,
        events: usize,
        elapsed: Duration,
        unit: &'static str,
        readme: &'static str,
    ) -> Self {
        Self {
            workload,
            events,
            result: events as f64 / elapsed.as_secs_f64().max(1e-9),
            unit,
            readme,
        }
    }
}

fn print(rows: &[Row], description: &str, json: bool) -> Result<(), CliError> {
    let mut out = Out::new();
    if json {
        for row in rows {
            out.json(&json!({ "workload": row.workload, "events": row.events, "result": row.result, "unit": row.unit, "readme": row.readme }))?;
        }
        return out.flush();
    }
    let mut table = output::table(&["workload", "events", "result", "README (development machine)"]);
    for row in rows {
        let result = if row.unit == "µs" {
            format!("{:.0} µs", row.result)
        } else {
            format!("{} {}", output::count(row.result as u64), row.unit)
        };
        let events = if row.events == 0 {
            String::new()
        } else {
            output::count(row.events as u64)
        };
        table.add_row(vec![
            row.workload.to_owned(),
            events,
            result,
            if row.readme.is_empty() {
                "—".to_owned()
            } else {
                row.readme.to_owned()
            },
        ]);
    }
    out.line(description)?;
    out.line(table)?;
    out.flush()
}
