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
    pub async fn add(&self, amount: i64) -> i64 {
        amount
    }

    #[event("incremented")]
    pub fn add_twice(&mut self, amount: i64) {
        self.value += 2 * amount;
    }

    #[event("9lives")]
    pub fn reset(&mut self) {
        self.value = 0;
    }
}

fn main() {}
