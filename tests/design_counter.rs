//! The Counter of DESIGN.md, exactly as written there: the macros section
//! and the Runtime section.

#![allow(missing_docs)]

use factum::prelude::*;

factum::id!(CounterId); // Uuid newtype: generate() (UUID v7), Display, FromStr, serde, Copy, Eq, Hash, Default (nil)

#[aggregate] // must come before #[derive]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: CounterId, // the field named `id` is the aggregate id
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

#[tokio::test]
async fn runtime() -> Result<(), Error> {
    let store = InMemoryEventStore::new(); // or SqliteEventStore::open(path), PostgresEventStore::connect(dsn)
    let app = Application::<Counter, _>::new(store.clone()); // Repository + optional notifier + snapshots

    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await?; // new aggregate: `created` pending, like async-es `load`
    counter.add(1);
    counter.add(2);
    app.save(&mut counter).await?; // appends [created, incremented, incremented]

    let reloaded: Counter = app.get(id).await?; // Error::NotFound if the stream is empty
    assert_eq!(reloaded.value, 3);
    assert_eq!(reloaded.version(), 3);
    let past: Counter = app.get_at(id, 2).await?; // time travel: state after version 2
    assert_eq!(past.value, 1);
    Ok(())
}
