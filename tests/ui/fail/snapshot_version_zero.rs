use factum::prelude::*;

#[aggregate(snapshot_version = 0)]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {}

fn main() {}
