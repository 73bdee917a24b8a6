use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(counter: &mut Counter, amount: i64) {
        counter.value += amount;
    }
}

fn main() {}
