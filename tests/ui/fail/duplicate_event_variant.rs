use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: String,
    pub balance: i64,
}

#[aggregate]
impl Account {
    #[event("money_deposited")]
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("money-deposited")]
    pub fn deposit_cash(&mut self, amount: i64) {
        self.balance += amount;
    }
}

fn main() {}
