use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Counter {
    #[event("created")]
    pub fn start(&mut self, value: i64) {
        self.value = value;
    }
}

fn main() {}
