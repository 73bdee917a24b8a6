//! The Counter of DESIGN.md: an aggregate with one event, saved, reloaded,
//! and looked at as it was in the past.
//!
//! Run it with `cargo run --example counter`: the events go to `counter.db`
//! (SQLite, created in the current directory), so a second run continues
//! where the first stopped. `cargo run --example counter -- other.db` uses
//! another file; `cargo run --example counter -- --memory` keeps them in memory.
//! With `FACTUM_POSTGRES_URL` set (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) it uses PostgreSQL instead.

#![allow(missing_docs)]

use factum::prelude::*;

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

    // a command: validates, then calls event methods
    pub fn add_checked(&mut self, amount: i64) -> Result<(), String> {
        if amount <= 0 {
            return Err("amount must be positive".into());
        }
        self.add(amount);
        Ok(())
    }
}

async fn run<S: EventStore>(store: S, id: CounterId) -> Result<(), Box<dyn std::error::Error>> {
    let app = Application::<Counter, _>::new(store);

    let mut counter = app.load_or_create(id).await?;
    let before = counter.version();
    println!("loaded counter {id}: value {}, version {before}", counter.value);
    counter.add(1);
    counter.add(2);
    if let Err(refused) = counter.add_checked(-5) {
        println!("add_checked(-5) refused: {refused}");
    }
    let pending: Vec<&str> = counter
        .pending_events()
        .iter()
        .map(|event| event.event_type())
        .collect();
    println!("pending events: {pending:?}");
    let saved = app.save(&mut counter).await?;
    println!(
        "saved {} events at positions {:?}; stream version {}",
        saved.positions.len(),
        saved.positions,
        saved.stream_version
    );

    let reloaded: Counter = app.get(id).await?;
    println!(
        "reloaded: value {}, version {}",
        reloaded.value,
        reloaded.version()
    );
    let past: Counter = app.get_at(id, before.max(1) + 1).await?;
    println!("time travel to version {}: value {}", past.version(), past.value);
    Ok(())
}

/// The counter every run works on, so that runs continue one history.
const COUNTER: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id: CounterId = COUNTER.parse()?;
    if let Ok(url) = std::env::var("FACTUM_POSTGRES_URL") {
        let store = factum::PostgresEventStore::connect(&url).await?;
        store.ensure_schema().await?;
        println!(
            "events stored in PostgreSQL at {} (schema {})",
            store.address(),
            store.schema_name()
        );
        return run(store, id).await;
    }
    let target = std::env::args().nth(1).unwrap_or_else(|| "counter.db".to_owned());
    if target == "--memory" {
        println!("events kept in memory: gone when the program ends");
        return run(InMemoryEventStore::new(), id).await;
    }
    let store = SqliteEventStore::open(&target).await?;
    println!("events stored in {target} (SQLite, synchronous=FULL)");
    run(store.clone(), id).await?;
    // Finish the writes and fold the write-ahead log into the file.
    store.close().await?;
    Ok(())
}
