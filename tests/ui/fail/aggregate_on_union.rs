use factum::prelude::*;

#[aggregate]
pub union Counter {
    small: u32,
    large: u64,
}

fn main() {}
