use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate(default)]
impl Counter {}

fn main() {}
