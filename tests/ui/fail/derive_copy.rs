use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter {
    pub id: u64,
    pub value: i64,
}

#[aggregate]
impl Counter {}

fn main() {}
