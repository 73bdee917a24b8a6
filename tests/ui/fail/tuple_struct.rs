use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter(String, i64);

fn main() {}
