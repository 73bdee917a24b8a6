use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Shipment {
    pub id: String,
    pub state: String,
}

#[aggregate]
impl Shipment {
    #[event("shipment-dispatched")]
    pub fn dispatch(&mut self) {
        self.state = "dispatched".into();
    }

    #[event("shipment.delivered")]
    pub fn deliver(&mut self, signed_by: String) {
        self.state = format!("delivered to {signed_by}");
    }

    #[event("returnRequested")]
    pub fn request_return(&mut self) {
        self.state = "returning".into();
    }

    #[event("v2.HTTPCallbackReceived")]
    pub fn callback(&mut self) {}
}

fn main() {
    let mut shipment = Shipment::create("s-1".into(), String::new());
    shipment.dispatch();
    shipment.deliver("Ann".into());
    shipment.request_return();
    shipment.callback();
    let events = shipment.pending_events();
    assert_eq!(events[1], ShipmentEvent::ShipmentDispatched);
    assert_eq!(
        events[2],
        ShipmentEvent::ShipmentDelivered {
            signed_by: "Ann".into()
        }
    );
    assert_eq!(events[3], ShipmentEvent::ReturnRequested);
    assert_eq!(events[4], ShipmentEvent::V2HttpCallbackReceived);
    let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "created",
            "shipment-dispatched",
            "shipment.delivered",
            "returnRequested",
            "v2.HTTPCallbackReceived"
        ]
    );
    assert_eq!(
        serde_json::to_value(&events[2]).unwrap(),
        serde_json::json!({"event_type": "shipment.delivered", "payload": {"signed_by": "Ann"}})
    );
    assert_eq!(events[1].to_payload().unwrap().as_str(), "{}");
}
