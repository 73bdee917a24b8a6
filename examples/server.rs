//! Serving the store over gRPC: one process serves a SQLite file with
//! factum-server; a second process (this program again, started as a child)
//! points its `Application` and a projection at it through
//! `RemoteEventStore`. The first saves a counter; the second's projection
//! sees each save and its application loads the same counter.
//!
//! Run it with `cargo run --example server`. The same server runs from the
//! command line as `factum --store app.db serve --tokens tokens.toml`.

#![allow(missing_docs)]

use std::process::Stdio;
use std::time::Duration;

use factum::prelude::*;
use factum::{InMemoryCheckpointStore, InMemoryDeadLetterStore, SqliteEventStore};
use factum_remote::{RemoteEventStore, RemoteOptions};
use factum_server::{Server, Tokens};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

factum::id!(CounterId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: CounterId,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

const TOKEN: &str = "example-admin-token";

/// The second process's read model: the sum of every counter, published
/// on a watch channel as it changes.
struct Totals {
    total: i64,
    published: watch::Sender<(i64, Option<String>)>,
}

impl Projection for Totals {
    fn name(&self) -> &str {
        "counter_totals"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if let Some(CounterEvent::Incremented { amount }) = event.decode::<Counter>()? {
            self.total += amount;
            self.published
                .send_replace((self.total, Some(event.aggregate_id().to_owned())));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("watch") => watch_process(args.get(2).ok_or("watch needs the server's address")?).await,
        _ => serving_process().await,
    }
}

/// Serves a SQLite store, starts the watching process, and saves a counter.
async fn serving_process() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("factum-server-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteEventStore::open(dir.join("app.db")).await?;
    let tokens = Tokens::from_toml(&format!("[[token]]\ntoken = \"{TOKEN}\"\nadmin = true\n"))?;
    let server = Server::new(store.clone())
        .tokens(tokens)
        .start("127.0.0.1:0".parse()?)
        .await?;
    let address = format!("http://{}", server.local_addr());
    println!("server: serving {} on {address}", dir.join("app.db").display());

    let mut watcher = tokio::process::Command::new(std::env::current_exe()?)
        .args(["watch", &address])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(watcher.stdout.take().ok_or("the watcher's output")?).lines();

    let remote = RemoteEventStore::connect_with(&address, RemoteOptions::new().token(TOKEN)).await?;
    let app = Application::<Counter, _>::new(remote);
    let mut counter = app.load_or_create(CounterId::generate()).await?;
    counter.add(1);
    app.save(&mut counter).await?;
    println!("saver: saved {} at value {}", counter.id, counter.value);
    counter.add(2);
    counter.add(3);
    app.save(&mut counter).await?;
    println!("saver: saved {} at value {}", counter.id, counter.value);

    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await?? {
        println!("{line}");
    }
    let status = watcher.wait().await?;
    server.shutdown().await?;
    store.close().await?;
    std::fs::remove_dir_all(&dir)?;
    if !status.success() {
        return Err(format!("the watching process ended with {status}").into());
    }
    Ok(())
}

/// The second process: a projection and an application over the remote store.
async fn watch_process(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let remote = RemoteEventStore::connect_with(address, RemoteOptions::new().token(TOKEN)).await?;
    let (published, mut totals) = watch::channel((0, None));
    let projection = Totals { total: 0, published };
    let runner = ProjectionRunner::new(
        remote.clone(),
        projection,
        InMemoryCheckpointStore::new(),
        InMemoryDeadLetterStore::new(),
    )
    .spawn();
    let mut seen = 0;
    let id = loop {
        tokio::time::timeout(Duration::from_secs(20), totals.changed()).await??;
        let (total, id) = totals.borrow_and_update().clone();
        if total != seen {
            seen = total;
            println!("watcher: the projection's total is now {total}");
        }
        if let (6, Some(id)) = (total, id) {
            break id;
        }
    };
    runner.shutdown().await?;
    let app = Application::<Counter, _>::new(remote);
    let counter = app.get(id.parse::<CounterId>()?).await?;
    println!(
        "watcher: its application loads counter {id} at value {}",
        counter.value
    );
    Ok(())
}
