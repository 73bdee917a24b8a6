use factum::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[aggregate(name = "billing.Counter", snapshot_version = 3)]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub id: String,
    pub count: i64,
}

#[aggregate(retired = ["viewed", "audit.logged"])]
impl Tally {
    #[event("added", version = 3, aliases = ["incremented", "counter.incremented"])]
    pub fn add(&mut self, amount: i64) {
        self.count += amount;
    }

    #[event("cleared")]
    pub fn clear(&mut self) -> Result<(), String> {
        self.count = 0;
        Ok(())
    }

    #[upcast("added", from = 2)]
    fn added_v2(payload: Value) -> Result<Value, UpcastError> {
        Ok(payload)
    }

    #[upcast("added", from = 1)]
    fn added_v1(mut payload: Value) -> Result<Value, UpcastError> {
        let by = payload.get("by").cloned().ok_or("`by` is missing")?;
        payload["amount"] = by;
        Ok(payload)
    }

    #[upcast("created", from = 1)]
    fn created_v1(payload: Value) -> Result<Value, UpcastError> {
        Ok(payload)
    }

    #[factum::upcast(snapshot, from = 2)]
    fn snapshot_v2(state: Value) -> Result<Value, UpcastError> {
        Ok(state)
    }
}

fn main() {
    assert_eq!(<Tally as Aggregate>::TYPE, "billing.Counter");
    let evolution = Tally::EVOLUTION;
    assert_eq!(evolution.snapshot_version(), 3);
    assert_eq!(evolution.event("counter.incremented").map(|event| event.name()), Some("added"));
    assert_eq!(evolution.event("added").map(|event| event.version()), Some(3));
    assert_eq!(evolution.event("created").map(|event| event.version()), Some(2));
    assert!(evolution.is_retired("audit.logged"));
    let event = <Tally as Aggregate>::Event::from_payload(
        "incremented",
        &factum::Payload::parse(r#"{"amount":2}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(event, TallyEvent::Added { amount: 2 });
}
