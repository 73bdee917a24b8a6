use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("added", aliases = ["incremented"])]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    #[event("incremented")]
    pub fn increment(&mut self) {
        self.value += 1;
    }
}

fn main() {}
