use factum::prelude::*;

#[aggregate(defaults)]
#[derive(Debug, Clone)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {}

fn main() {}
