use factum::prelude::*;

#[aggregate(name = "bank-account")]
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: String,
    pub balance: i64,
}

#[aggregate]
impl Account {}

fn main() {}
