use factum::prelude::*;
use serde_json::Value;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented", version = 2)]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    #[upcast("incremented", from = 1)]
    fn incremented_v1(payload: Value) -> Value {
        payload
    }
}

fn main() {}
