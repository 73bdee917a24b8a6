use factum::prelude::*;

#[aggregate]
pub enum Counter {
    Zero,
    Some(i64),
}

fn main() {}
