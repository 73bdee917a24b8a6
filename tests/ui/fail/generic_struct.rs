use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter<T> {
    pub id: String,
    pub value: T,
}

fn main() {}
