use std::fmt;

use factum::prelude::*;

#[derive(Debug, PartialEq)]
pub enum AccountError {
    InsufficientFunds { balance: i64, amount: i64 },
    Closed,
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientFunds { balance, amount } => {
                write!(f, "balance {balance} does not cover {amount}")
            }
            Self::Closed => f.write_str("the account is closed"),
        }
    }
}

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: String,
    pub balance: i64,
    pub closed: bool,
}

#[aggregate]
impl Account {
    #[event("deposited")]
    pub fn deposit(&mut self, amount: i64) -> Result<(), AccountError> {
        if self.closed {
            return Err(AccountError::Closed);
        }
        self.balance += amount;
        Ok(())
    }

    #[event("withdrawn")]
    pub fn withdraw(&mut self, amount: i64) -> Result<(), AccountError> {
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        self.balance -= amount;
        Ok(())
    }

    #[event("closed")]
    pub fn close(&mut self) -> std::io::Result<()> {
        self.closed = true;
        Ok(())
    }
}

fn main() {
    let mut account = Account::create("a-1".into(), 0, false);
    account.deposit(5).unwrap();
    assert_eq!(
        account.withdraw(9),
        Err(AccountError::InsufficientFunds {
            balance: 5,
            amount: 9
        })
    );
    account.withdraw(2).unwrap();
    account.close().unwrap();
    assert_eq!(account.deposit(1), Err(AccountError::Closed));
    assert_eq!(account.version(), 4);

    let mut replayed = Account::create("a-1".into(), 0, false);
    let error = replayed.apply(AccountEvent::Withdrawn { amount: 1 }).unwrap_err();
    assert_eq!(error.message(), "balance 0 does not cover 1");
}
