use factum::prelude::*;

// The derives expand first, before `#[aggregate]` adds its hidden field.
#[derive(Debug, Clone, Default)]
#[aggregate]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

fn main() {}
