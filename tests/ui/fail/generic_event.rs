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
    pub fn add<T: Into<i64>>(&mut self, amount: T) {
        self.value += amount.into();
    }
}

fn main() {}
