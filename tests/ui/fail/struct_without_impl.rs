use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

impl Counter {
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

fn main() {}
