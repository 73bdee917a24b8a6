use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate(retired = ["incremented"])]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

fn main() {}
