//! Orders placed and shipped, and a SalesReport read model (revenue, counts,
//! orders awaiting shipment) kept by a projection that follows the global
//! log: catch-up from the start, then live while new orders come in.
//!
//! Run it with `cargo run --example orders`: the events go to `orders.db`
//! (SQLite, created in the current directory), so every run adds orders to
//! the same history. `cargo run --example orders -- other.db` uses another
//! file; `cargo run --example orders -- --memory` keeps them in memory.
//!
//! The report lives in an `InMemoryProjectionStore`, committed with its
//! checkpoint in one step: each event counts exactly once. Its checkpoint
//! lives in memory too, so each run rebuilds the report from the whole log.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use factum::prelude::*;
use factum::{InMemoryProjectionStore, InMemoryTransaction, RetryPolicy, SqliteEventStore};

factum::id!(OrderId);

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Order {
    pub id: OrderId,
    pub customer: String,
    pub total_cents: i64,
    pub shipped: bool,
}

#[aggregate]
impl Order {
    #[event("placed")]
    pub fn place(&mut self, customer: String, total_cents: i64) -> Result<(), String> {
        if total_cents <= 0 {
            return Err(format!("an order of {total_cents} cents is not an order"));
        }
        self.customer = customer;
        self.total_cents = total_cents;
        Ok(())
    }

    #[event("shipped")]
    pub fn ship(&mut self) -> Result<(), String> {
        if self.shipped {
            return Err(format!("order {} was already shipped", self.id));
        }
        self.shipped = true;
        Ok(())
    }
}

/// What sales looks like: the read model.
#[derive(Clone, Debug, Default)]
struct SalesReport {
    placed: u64,
    shipped: u64,
    revenue_cents: i64,
    revenue_by_customer: BTreeMap<String, i64>,
    awaiting_shipment: BTreeMap<String, i64>,
}

/// Keeps the SalesReport, matching on the order's generated event enum.
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
            OrderEvent::Placed {
                customer,
                total_cents,
            } => {
                report.placed += 1;
                report.revenue_cents += total_cents;
                *report.revenue_by_customer.entry(customer).or_default() += total_cents;
                report.awaiting_shipment.insert(order, total_cents);
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

async fn place<S: EventStore>(
    orders: &Application<Order, S>,
    customer: &str,
    total_cents: i64,
) -> Result<(OrderId, u64), Box<dyn std::error::Error>> {
    let id = OrderId::generate();
    let mut order = orders.load_or_create(id).await?;
    order.place(customer.to_owned(), total_cents)?;
    let saved = orders.save(&mut order).await?;
    Ok((id, saved.positions.last().copied().unwrap_or(0)))
}

async fn ship<S: EventStore>(
    orders: &Application<Order, S>,
    id: OrderId,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut order = orders.get(id).await?;
    order.ship()?;
    let saved = orders.save(&mut order).await?;
    Ok(saved.positions.last().copied().unwrap_or(0))
}

fn print_report(report: &SalesReport) {
    println!(
        "  placed {}, shipped {}, revenue {:.2}",
        report.placed,
        report.shipped,
        report.revenue_cents as f64 / 100.0
    );
    for (customer, cents) in &report.revenue_by_customer {
        println!("    {customer}: {:.2}", *cents as f64 / 100.0);
    }
    println!("  awaiting shipment: {}", report.awaiting_shipment.len());
}

async fn run<S: EventStore + Clone>(events: S) -> Result<(), Box<dyn std::error::Error>> {
    let orders = Application::<Order, _>::new(events.clone());

    // Some history before the projection starts: it catches up on it.
    let (first, _) = place(&orders, "ada", 12_50).await?;
    let (second, _) = place(&orders, "grace", 40_00).await?;
    ship(&orders, first).await?;
    if let Err(refused) = place(&orders, "ada", 0).await {
        println!("refused: {refused}");
    }

    let report = InMemoryProjectionStore::new(SalesReport::default());
    let runner = ProjectionRunner::transactional(events.clone(), SalesProjection, report.clone())
        .batch_size(500)
        .retry(RetryPolicy::default().max_attempts(3));
    let handle = runner.spawn();
    let head = events.head_position().await?;
    handle.wait_for_checkpoint(head).await?;
    println!("caught up with the log ({head} events):");
    report.with_read_model(print_report);

    // Live: the runner applies new orders as they are saved.
    place(&orders, "linus", 7_25).await?;
    let last = ship(&orders, second).await?;
    tokio::time::timeout(Duration::from_secs(10), handle.wait_for_checkpoint(last)).await??;
    let metrics = handle.metrics().await?;
    println!(
        "live ({:?}): checkpoint {}, head {}, lag {}, handled {}",
        metrics.status, metrics.checkpoint, metrics.head, metrics.lag, metrics.handled
    );
    report.with_read_model(print_report);

    handle.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "orders.db".to_owned());
    if target == "--memory" {
        println!("events kept in memory: gone when the program ends");
        return run(InMemoryEventStore::new()).await;
    }
    let events = SqliteEventStore::open(&target).await?;
    println!("events stored in {target} (SQLite)");
    run(events.clone()).await?;
    events.close().await?;
    Ok(())
}
