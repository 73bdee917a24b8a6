use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

pub async fn start(app: &Application<Counter, InMemoryEventStore>) -> Result<Counter, Error> {
    Application::<Counter, InMemoryEventStore>::load_or_create(app, "c-1".to_string()).await
}

fn main() {}
