// The impl block in another module than the struct, reaching it (and
// `CounterCreated`) through a glob import: generated code must not add a
// second, ambiguous `CounterCreated`.
use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

mod events {
    use super::*;

    #[aggregate]
    impl Counter {
        #[event("incremented")]
        pub fn add(&mut self, amount: i64) {
            self.value += amount;
        }
    }
}

fn main() {
    let mut counter = Counter::create("c".into(), 0);
    counter.add(1);
    assert_eq!(counter.pending_events().len(), 2);
}
