//! Orders placed and shipped through an `Application`, and a SalesReport
//! read model kept exactly once by a transactional projection that matches
//! on the order's event enum: the shape of `examples/orders.rs`.
//!
//! `Order` is written by hand here, as `#[aggregate]` would generate it.

use std::collections::BTreeMap;
use std::time::Duration;

use factum_core::__private::AggregateState;
use factum_core::{
    Aggregate, Application, ApplyError, DecodeError, DomainEvent, EventStore, HandlerError,
    InMemoryEventStore, InMemoryProjectionStore, InMemoryTransaction, Payload, ProjectionRunner,
    RecordedEvent, TransactionalProjection,
};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Default)]
struct Order {
    id: String,
    amount_cents: i64,
    shipped: bool,
    state: AggregateState<Order>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderCreated {
    id: String,
    amount_cents: i64,
    shipped: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum OrderEvent {
    Created(OrderCreated),
    Placed { amount_cents: i64 },
    Shipped,
}

#[derive(Serialize, Deserialize)]
struct Placed {
    amount_cents: i64,
}

impl Order {
    fn place(id: &str, amount_cents: i64) -> Self {
        let mut order = Self {
            id: id.to_owned(),
            ..Self::default()
        };
        order.state.record(OrderEvent::Created(OrderCreated {
            id: id.to_owned(),
            amount_cents: 0,
            shipped: false,
        }));
        order.amount_cents = amount_cents;
        order.state.record(OrderEvent::Placed { amount_cents });
        order
    }

    fn ship(&mut self) {
        self.shipped = true;
        self.state.record(OrderEvent::Shipped);
    }
}

impl DomainEvent for OrderEvent {
    const EVENT_TYPES: &'static [&'static str] = &["created", "placed", "shipped"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => "created",
            Self::Placed { .. } => "placed",
            Self::Shipped => "shipped",
        }
    }

    fn to_payload(&self) -> Result<Payload, serde_json::Error> {
        match self {
            Self::Created(created) => Payload::encode(created),
            Self::Placed { amount_cents } => Payload::encode(&Placed {
                amount_cents: *amount_cents,
            }),
            Self::Shipped => Payload::encode(&serde_json::json!({})),
        }
    }

    fn from_payload(event_type: &str, payload: &Payload) -> Result<Self, DecodeError> {
        match event_type {
            "created" => Ok(Self::Created(payload.decode()?)),
            "placed" => {
                let Placed { amount_cents } = payload.decode()?;
                Ok(Self::Placed { amount_cents })
            }
            "shipped" => Ok(Self::Shipped),
            _ => Err(DecodeError::UnknownEventType),
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Id = String;
    type Event = OrderEvent;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn from_first_event(event: OrderEvent) -> Result<Self, ApplyError> {
        match event {
            OrderEvent::Created(OrderCreated {
                id,
                amount_cents,
                shipped,
            }) => Ok(Self {
                id,
                amount_cents,
                shipped,
                state: AggregateState::default(),
            }),
            _ => Err(ApplyError::new("the first event must be `created`")),
        }
    }

    fn apply(&mut self, event: OrderEvent) -> Result<(), ApplyError> {
        match event {
            OrderEvent::Created(_) => return Err(ApplyError::new("`created` twice")),
            OrderEvent::Placed { amount_cents } => self.amount_cents = amount_cents,
            OrderEvent::Shipped => self.shipped = true,
        }
        Ok(())
    }

    fn state(&self) -> &AggregateState<Self> {
        &self.state
    }

    fn state_mut(&mut self) -> &mut AggregateState<Self> {
        &mut self.state
    }
}

/// Revenue and counts of orders.
#[derive(Clone, Debug, Default, PartialEq)]
struct SalesReport {
    placed: u64,
    shipped: u64,
    revenue_cents: i64,
    awaiting_shipment: BTreeMap<String, i64>,
}

struct SalesProjection;

impl TransactionalProjection<InMemoryProjectionStore<SalesReport>> for SalesProjection {
    fn name(&self) -> &str {
        "sales_report"
    }

    fn aggregate_types(&self) -> Option<&[&str]> {
        Some(&[Order::TYPE])
    }

    async fn handle(
        &mut self,
        transaction: &mut InMemoryTransaction<SalesReport>,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let Some(order_event) = event.decode::<Order>()? else {
            return Ok(());
        };
        let report = transaction.read_model_mut();
        let order = event.aggregate_id().to_owned();
        match order_event {
            OrderEvent::Created(_) => {}
            OrderEvent::Placed { amount_cents } => {
                report.placed += 1;
                report.revenue_cents += amount_cents;
                report.awaiting_shipment.insert(order, amount_cents);
            }
            OrderEvent::Shipped => {
                report.shipped += 1;
                report.awaiting_shipment.remove(&order);
            }
        }
        Ok(())
    }

    async fn reset(
        &mut self,
        transaction: &mut InMemoryTransaction<SalesReport>,
    ) -> Result<(), HandlerError> {
        *transaction.read_model_mut() = SalesReport::default();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sales_report_follows_orders_placed_and_shipped() -> TestResult {
    let events = InMemoryEventStore::new();
    let orders = Application::<Order, _>::new(events.clone());
    let report = InMemoryProjectionStore::new(SalesReport::default());

    for (id, amount) in [("o-1", 1_500), ("o-2", 2_000)] {
        orders.save(&mut Order::place(id, amount)).await?;
    }
    let handle = ProjectionRunner::transactional(events.clone(), SalesProjection, report.clone()).spawn();
    handle.wait_for_checkpoint(events.head_position().await?).await?;
    assert_eq!(report.read_model().placed, 2);

    // Live: writes keep coming while the runner runs.
    let mut first = orders.get("o-1".to_owned()).await?;
    first.ship();
    orders.save(&mut first).await?;
    let last = orders.save(&mut Order::place("o-3", 700)).await?;
    tokio::time::timeout(
        Duration::from_secs(20),
        handle.wait_for_checkpoint(last.positions[1]),
    )
    .await??;
    let metrics = handle.metrics().await?;
    handle.shutdown().await?;

    assert_eq!(
        report.read_model(),
        SalesReport {
            placed: 3,
            shipped: 1,
            revenue_cents: 4_200,
            awaiting_shipment: BTreeMap::from([("o-2".to_owned(), 2_000), ("o-3".to_owned(), 700)]),
        }
    );
    assert_eq!((metrics.checkpoint, metrics.head, metrics.lag), (7, 7, 0));
    Ok(())
}
