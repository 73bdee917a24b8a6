use factum::prelude::*;

pub struct Counter {
    pub value: i64,
}

impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

fn main() {}
