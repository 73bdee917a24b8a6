use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("checked")]
    pub fn check(&self, limit: i64) {
        assert!(self.value <= limit);
    }
}

fn main() {}
