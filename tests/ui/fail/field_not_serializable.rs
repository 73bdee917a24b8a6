use factum::prelude::*;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub max: i64,
}

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub limits: Limits,
}

#[aggregate]
impl Counter {}

fn main() {}
