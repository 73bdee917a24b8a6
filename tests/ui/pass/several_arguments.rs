use std::collections::BTreeMap;

use factum::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shipping {
    Standard,
    Express { days: u8 },
}

factum::id!(OrderId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Order {
    pub id: OrderId,
    pub lines: Vec<Line>,
    pub note: Option<String>,
    pub shipping: Option<Shipping>,
}

#[aggregate]
impl Order {
    #[event("lines_added")]
    pub fn add_lines(&mut self, lines: Vec<Line>, note: Option<String>, shipping: Option<Shipping>) {
        self.lines.extend(lines);
        self.note = note;
        self.shipping = shipping;
    }

    #[event("reordered")]
    pub fn reorder(&mut self, from: <Self as Aggregate>::Id, mut positions: Vec<usize>) {
        let _ = from;
        positions.dedup();
    }
}

fn main() {
    let mut order = Order::create(OrderId::generate(), Vec::new(), None, None);
    let line = Line {
        sku: "A-1".into(),
        quantity: 2,
        options: BTreeMap::from([("size".into(), "L".into())]),
    };
    order.add_lines(
        vec![line.clone()],
        Some("gift".into()),
        Some(Shipping::Express { days: 2 }),
    );
    let event = order.pending_events()[1].clone();
    let payload = event.to_payload().unwrap();
    assert_eq!(
        payload.to_value().unwrap(),
        serde_json::json!({
            "lines": [{"sku": "A-1", "quantity": 2, "options": {"size": "L"}}],
            "note": "gift",
            "shipping": {"Express": {"days": 2}},
        })
    );
    assert_eq!(OrderEvent::from_payload("lines_added", &payload).unwrap(), event);
    order.reorder(order.id, vec![1, 1, 0]);
    assert_eq!(
        order.pending_events()[2],
        OrderEvent::Reordered {
            from: order.id,
            positions: vec![1, 1, 0]
        }
    );
}
