// The Counter of DESIGN.md, with the lints a careful crate turns on: the
// generated code adds no warnings of its own.
#![deny(warnings, missing_docs, unreachable_pub)]
//! A counter.

use factum::prelude::*;

factum::id!(
    /// Identifies a counter.
    CounterId
);

/// A counter.
#[aggregate] // must come before #[derive]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// The aggregate id.
    pub id: CounterId,
    /// The current value.
    pub value: i64,
}

#[aggregate]
impl Counter {
    /// Adds `amount`.
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    /// A command: validates, then calls event methods.
    pub fn add_checked(&mut self, amount: i64) -> Result<(), String> {
        if amount <= 0 {
            return Err("amount must be positive".into());
        }
        self.add(amount);
        Ok(())
    }
}

fn main() {
    let mut counter = Counter::create(CounterId::generate(), 0);
    counter.add(1);
    assert_eq!(counter.add_checked(0), Err("amount must be positive".into()));
    counter.add_checked(2).unwrap();
    assert_eq!(counter.value, 3);
    assert_eq!(counter.version(), 3);
    assert_eq!(
        counter.pending_events()[1..],
        [
            CounterEvent::Incremented { amount: 1 },
            CounterEvent::Incremented { amount: 2 }
        ]
    );
    let fresh = Counter::create_default(counter.id);
    assert_eq!(fresh.value, 0);
    assert_eq!(CounterEvent::EVENT_TYPES, ["created", "incremented"]);
}
