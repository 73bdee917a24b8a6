//! A bank account: commands that validate before they record events, and a
//! concurrent update that conflicts and is handled by reloading and retrying.
//!
//! Run it with `cargo run --example bank`.

// Amounts are cents, written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use factum::prelude::*;

factum::id!(
    /// Identifies an account.
    AccountId
);

/// Why a command on an account was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    /// Amounts are positive.
    #[error("the amount must be positive, got {0}")]
    NonPositiveAmount(i64),
    /// A withdrawal would overdraw the account.
    #[error("insufficient funds: the balance is {balance}, {requested} was asked for")]
    InsufficientFunds {
        /// The balance at the time.
        balance: i64,
        /// The amount asked for.
        requested: i64,
    },
    /// The account no longer takes commands.
    #[error("the account is closed")]
    Closed,
}

/// A bank account, in cents.
#[aggregate]
#[derive(Debug, Clone)]
pub struct Account {
    /// The account id.
    pub id: AccountId,
    /// Who owns it.
    pub owner: String,
    /// The balance in cents.
    pub balance: i64,
    /// Whether it was closed.
    pub closed: bool,
}

#[aggregate]
impl Account {
    #[event("deposited")]
    fn credit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("withdrawn")]
    fn debit(&mut self, amount: i64) {
        self.balance -= amount;
    }

    #[event("closed")]
    fn mark_closed(&mut self) {
        self.closed = true;
    }

    /// Opens an empty account.
    pub fn open(id: AccountId, owner: &str) -> Self {
        Self::create(id, owner.to_owned(), 0, false)
    }

    /// Puts money in.
    pub fn deposit(&mut self, amount: i64) -> Result<(), AccountError> {
        self.check_open()?;
        if amount <= 0 {
            return Err(AccountError::NonPositiveAmount(amount));
        }
        self.credit(amount);
        Ok(())
    }

    /// Takes money out, never below zero.
    pub fn withdraw(&mut self, amount: i64) -> Result<(), AccountError> {
        self.check_open()?;
        if amount <= 0 {
            return Err(AccountError::NonPositiveAmount(amount));
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        self.debit(amount);
        Ok(())
    }

    /// Closes the account.
    pub fn close(&mut self) -> Result<(), AccountError> {
        self.check_open()?;
        self.mark_closed();
        Ok(())
    }

    fn check_open(&self) -> Result<(), AccountError> {
        if self.closed {
            Err(AccountError::Closed)
        } else {
            Ok(())
        }
    }
}

/// What can go wrong in this program.
#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error(transparent)]
    Store(#[from] factum::Error),
    #[error(transparent)]
    Refused(#[from] AccountError),
}

/// Runs `command` on the latest state of the account and saves it, reloading
/// and running it again when another writer saved first.
async fn execute<S: EventStore>(
    app: &Application<Account, S>,
    id: AccountId,
    command: impl Fn(&mut Account) -> Result<(), AccountError>,
) -> Result<Account, BankError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let mut account = app.get(id).await?;
        command(&mut account)?;
        match app.save(&mut account).await {
            Ok(_) => return Ok(account),
            Err(conflict @ factum::Error::Conflict { .. }) if attempt < ATTEMPTS => {
                println!("  conflict on attempt {attempt}: {conflict}; reloading and retrying");
                attempt += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
}

fn euros(cents: i64) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}

#[tokio::main]
async fn main() -> Result<(), BankError> {
    let app = Application::<Account, _>::new(InMemoryEventStore::new());
    let id = AccountId::generate();

    let mut account = Account::open(id, "Ada");
    account.deposit(100_00)?;
    app.save(&mut account).await?;
    println!(
        "opened {id} for Ada with {} (version {})",
        euros(account.balance),
        account.version()
    );

    println!("a withdrawal of {} is refused:", euros(500_00));
    match account.withdraw(500_00) {
        Err(error) => println!("  {error}"),
        Ok(()) => println!("  unexpectedly accepted"),
    }

    // Two clients load the same version and both change it.
    let mut phone = app.get(id).await?;
    let mut web = app.get(id).await?;
    phone.withdraw(30_00)?;
    web.withdraw(50_00)?;
    app.save(&mut phone).await?;
    println!(
        "the phone withdrew {}; balance {}",
        euros(30_00),
        euros(phone.balance)
    );
    match app.save(&mut web).await {
        Err(conflict @ factum::Error::Conflict { .. }) => {
            println!("the web client's save was rejected, nothing written: {conflict}");
        }
        other => println!("unexpected: {other:?}"),
    }

    // The usual handling: reload, run the command again on the new state, save.
    let account = execute(&app, id, |account| account.withdraw(50_00)).await?;
    println!(
        "the web client retried on fresh state; balance {}",
        euros(account.balance)
    );

    // A retry can also fail for a business reason once the state moved on.
    match execute(&app, id, |account| account.withdraw(50_00)).await {
        Err(BankError::Refused(error)) => {
            println!("a second withdrawal of {} is refused: {error}", euros(50_00))
        }
        other => println!("unexpected: {other:?}"),
    }

    let account = execute(&app, id, Account::close).await?;
    println!(
        "closed; final balance {}, {} events in the stream",
        euros(account.balance),
        account.version()
    );
    let before_withdrawals = app.get_at(id, 2).await?;
    println!(
        "at version 2 the balance was {}",
        euros(before_withdrawals.balance)
    );
    Ok(())
}
