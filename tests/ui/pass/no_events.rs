use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Constant {
    pub id: String,
    pub value: i64,
}

#[aggregate]
impl Constant {
    pub fn value(&self) -> i64 {
        self.value
    }
}

fn main() {
    let constant = Constant::create("pi".into(), 3);
    assert_eq!(constant.value(), 3);
    assert_eq!(ConstantEvent::EVENT_TYPES, ["created"]);
    let history = constant.pending_events().to_vec();
    let replayed = Constant::from_first_event(history[0].clone()).unwrap();
    assert_eq!(replayed.value, 3);
}
