use factum::prelude::*;

#[derive(Debug)]
pub enum CounterError {
    Negative,
}

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) -> Result<(), CounterError> {
        if amount < 0 {
            return Err(CounterError::Negative);
        }
        self.value += amount;
        Ok(())
    }
}

fn main() {}
