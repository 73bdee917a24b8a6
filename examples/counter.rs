//! The Counter of DESIGN.md: an aggregate with one event, saved, reloaded,
//! and looked at as it was in the past.
//!
//! Run it with `cargo run --example counter`.

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
    let pending: Vec<&str> = counter.pending_events().iter().map(|event| event.event_type()).collect();
    println!("pending events: {pending:?}");
    let saved = app.save(&mut counter).await?;
    println!(
        "saved {} events at positions {:?}; stream version {}",
        saved.positions.len(),
        saved.positions,
        saved.stream_version
    );

    let reloaded: Counter = app.get(id).await?;
    println!("reloaded: value {}, version {}", reloaded.value, reloaded.version());
    let past: Counter = app.get_at(id, before.max(1) + 1).await?;
    println!("time travel to version {}: value {}", past.version(), past.value);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(InMemoryEventStore::new(), CounterId::generate()).await
}
