use factum::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Amount(i64);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: Amount) {
        self.value += amount.0;
    }
}

fn main() {}
