use factum::prelude::*;

#[aggregate(retired = ["reset"])]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {}

fn main() {}
