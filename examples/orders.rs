//! Orders placed and shipped, and a SalesReport read model (revenue, counts,
//! orders awaiting shipment) kept by a projection that follows the global
//! log: catch-up from its checkpoint, then live while new orders come in.
//!
//! Run it with `cargo run --example orders`: everything goes to `orders.db`
//! (SQLite, created in the current directory), the events and the report
//! alike. The report's tables and the projection's checkpoint live in that
//! file and commit in one transaction, so each event counts exactly once:
//! run it again and the report starts from where the last run left it,
//! counts only the new orders, and still agrees with the log.
//! `cargo run --example orders -- other.db` uses another file;
//! `cargo run --example orders -- orders.db --rebuild` empties the report and
//! rebuilds it from the whole log first.

#![allow(missing_docs)]

use std::time::Duration;

use factum::prelude::*;
use factum::sqlite::rusqlite;
use factum::{RetryPolicy, SqliteEventStore, SqliteProjectionStore, SqliteTransaction};
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

/// The read model's tables, beside the events in the same file.
const SALES_REPORT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sales_totals (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    placed        INTEGER NOT NULL,
    shipped       INTEGER NOT NULL,
    revenue_cents INTEGER NOT NULL
);
INSERT OR IGNORE INTO sales_totals VALUES (1, 0, 0, 0);
CREATE TABLE IF NOT EXISTS sales_by_customer (
    customer      TEXT PRIMARY KEY,
    revenue_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sales_awaiting_shipment (
    order_id    TEXT PRIMARY KEY,
    total_cents INTEGER NOT NULL
);
";

/// Keeps the SalesReport tables, matching on the order's generated event
/// enum; its SQL runs in the transaction that also moves its checkpoint.
struct SalesProjection;

impl TransactionalProjection<SqliteProjectionStore> for SalesProjection {
    fn name(&self) -> &str {
        "sales_report"
    }

    fn aggregate_types(&self) -> Option<&[&str]> {
        Some(&[Order::TYPE])
    }

    async fn handle(
        &mut self,
        transaction: &mut SqliteTransaction,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let Some(order_event) = event.decode::<Order>()? else {
            return Ok(());
        };
        let order = event.aggregate_id().to_owned();
        match order_event {
            OrderEvent::Created(_) => {}
            OrderEvent::Placed {
                customer,
                total_cents,
            } => {
                // Three statements, one round trip to the writer thread.
                transaction
                    .call(move |tx| {
                        tx.execute(
                            "UPDATE sales_totals SET placed = placed + 1, revenue_cents = revenue_cents + ?1",
                            (total_cents,),
                        )?;
                        tx.execute(
                            "INSERT INTO sales_by_customer VALUES (?1, ?2) \
                             ON CONFLICT (customer) DO UPDATE SET revenue_cents = revenue_cents + excluded.revenue_cents",
                            (customer, total_cents),
                        )?;
                        tx.execute("INSERT INTO sales_awaiting_shipment VALUES (?1, ?2)", (order, total_cents))
                    })
                    .await?;
            }
            OrderEvent::Shipped => {
                transaction
                    .call(move |tx| {
                        tx.execute("UPDATE sales_totals SET shipped = shipped + 1", ())?;
                        tx.execute(
                            "DELETE FROM sales_awaiting_shipment WHERE order_id = ?1",
                            (order,),
                        )
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut SqliteTransaction) -> Result<(), HandlerError> {
        transaction
            .execute_batch(
                "UPDATE sales_totals SET placed = 0, shipped = 0, revenue_cents = 0; \
                 DELETE FROM sales_by_customer; DELETE FROM sales_awaiting_shipment;",
            )
            .await?;
        Ok(())
    }
}

/// The SalesReport as the tables hold it (committed data only).
#[derive(Debug, Default)]
struct SalesReport {
    placed: i64,
    shipped: i64,
    revenue_cents: i64,
    revenue_by_customer: Vec<(String, i64)>,
    awaiting_shipment: i64,
}

async fn sales_report(store: &SqliteProjectionStore) -> Result<SalesReport, factum::Error> {
    store
        .with_connection(|connection: &rusqlite::Connection| {
            let (placed, shipped, revenue_cents) = connection.query_row(
                "SELECT placed, shipped, revenue_cents FROM sales_totals",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?;
            let revenue_by_customer = connection
                .prepare("SELECT customer, revenue_cents FROM sales_by_customer ORDER BY customer")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let awaiting_shipment =
                connection.query_row("SELECT count(*) FROM sales_awaiting_shipment", [], |row| {
                    row.get(0)
                })?;
            Ok(SalesReport {
                placed,
                shipped,
                revenue_cents,
                revenue_by_customer,
                awaiting_shipment,
            })
        })
        .await
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
    println!("  awaiting shipment: {}", report.awaiting_shipment);
}

/// How many orders the log says were placed: what the report must count.
async fn placed_in_log(events: &SqliteEventStore) -> Result<i64, factum::Error> {
    let (mut after, mut placed) = (0, 0);
    loop {
        let page = events.read_all(after, 1_000).await?;
        let Some(last) = page.last() else {
            return Ok(placed);
        };
        after = last.position;
        placed += page
            .iter()
            .filter(|event| event.aggregate_type() == Order::TYPE && &*event.event_type == "placed")
            .count() as i64;
    }
}

async fn run(events: SqliteEventStore, rebuild: bool) -> Result<(), Box<dyn std::error::Error>> {
    let report = SqliteProjectionStore::new(&events);
    report.execute_batch(SALES_REPORT_SCHEMA).await?;
    let checkpoint = report.checkpoint("sales_report").await?;
    if checkpoint == 0 {
        println!("no report yet: the projection starts from the beginning of the log");
    } else {
        println!("report kept by an earlier run, up to position {checkpoint}:");
        print_report(&sales_report(&report).await?);
    }

    let orders = Application::<Order, _>::new(events.clone());
    // Some history before the projection starts: it catches up on it.
    let (first, _) = place(&orders, "ada", 12_50).await?;
    let (second, _) = place(&orders, "grace", 40_00).await?;
    ship(&orders, first).await?;
    if let Err(refused) = place(&orders, "ada", 0).await {
        println!("refused: {refused}");
    }

    let mut runner = ProjectionRunner::transactional(events.clone(), SalesProjection, report.clone())
        .batch_size(500)
        .retry(RetryPolicy::default().max_attempts(3));
    if rebuild {
        runner.rebuild().await?;
        println!("report emptied and checkpoint reset: rebuilding from the whole log");
    }
    let handle = runner.spawn();
    let head = events.head_position().await?;
    handle.wait_for_checkpoint(head).await?;
    println!("caught up with the log ({head} events):");
    print_report(&sales_report(&report).await?);

    // Live: the runner applies new orders as they are saved.
    place(&orders, "linus", 7_25).await?;
    let last = ship(&orders, second).await?;
    tokio::time::timeout(Duration::from_secs(10), handle.wait_for_checkpoint(last)).await??;
    let metrics = handle.metrics().await?;
    println!(
        "live ({:?}): checkpoint {}, head {}, lag {}, handled {}",
        metrics.status, metrics.checkpoint, metrics.head, metrics.lag, metrics.handled
    );
    handle.shutdown().await?;

    let final_report = sales_report(&report).await?;
    print_report(&final_report);
    let in_log = placed_in_log(&events).await?;
    println!(
        "the report counts {} placed orders, the log holds {in_log}: {}",
        final_report.placed,
        if final_report.placed == in_log {
            "each event counted exactly once"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "checkpoint committed at {}; run again to see the report carry on",
        report.checkpoint("sales_report").await?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let rebuild = arguments.iter().any(|argument| argument == "--rebuild");
    arguments.retain(|argument| argument != "--rebuild");
    let target = arguments
        .first()
        .cloned()
        .unwrap_or_else(|| "orders.db".to_owned());
    let events = SqliteEventStore::open(&target).await?;
    println!("events and sales report stored in {target} (SQLite)");
    let outcome = run(events.clone(), rebuild).await;
    events.close().await?;
    outcome
}
