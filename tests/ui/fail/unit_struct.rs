use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter;

fn main() {}
