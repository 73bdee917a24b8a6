//! `/metrics`: the Prometheus text exposition of this process's `metrics`
//! recorder, with gauges of the store read at each scrape: head position,
//! events, streams, and each projection's checkpoint, lag and dead letters.
//! A scrape that cannot read the store still answers, with
//! `factum_store_up 0`, so an alert can tell a down store from a down
//! console.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics::{Unit, describe_gauge, gauge};

use super::Shared;
use crate::commands::Store;

/// Registers the gauges' help texts, once.
pub(crate) fn describe() {
    describe_gauge!(
        "factum_store_up",
        "1 when the last scrape read the store, 0 when it failed"
    );
    describe_gauge!(
        "factum_store_head_position",
        "Position of the last event of the global log"
    );
    describe_gauge!("factum_store_events", Unit::Count, "Events stored");
    describe_gauge!(
        "factum_store_streams",
        Unit::Count,
        "Streams holding at least one event"
    );
    describe_gauge!(
        "factum_store_bytes_on_disk",
        Unit::Bytes,
        "Size of the store on disk"
    );
    describe_gauge!(
        "factum_store_projection_checkpoint",
        "Position of the last event a projection has handled"
    );
    describe_gauge!(
        "factum_store_projection_lag",
        "Positions of the log after a projection's checkpoint"
    );
    describe_gauge!(
        "factum_store_projection_dead_letters",
        Unit::Count,
        "Dead letters a projection holds"
    );
}

pub(crate) async fn scrape<S: Store>(State(console): State<Shared<S>>) -> impl IntoResponse {
    let up = record(&console.store).await.is_ok();
    gauge!("factum_store_up").set(if up { 1.0 } else { 0.0 });
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        console.prometheus.render(),
    )
}

async fn record<S: Store>(store: &S) -> Result<(), factum_core::Error> {
    let stats = store.stats().await?;
    let projections = store.projections().await?;
    gauge!("factum_store_head_position").set(stats.head as f64);
    gauge!("factum_store_events").set(stats.events as f64);
    gauge!("factum_store_streams").set(stats.streams as f64);
    if let Some(bytes) = stats.bytes_on_disk {
        gauge!("factum_store_bytes_on_disk").set(bytes as f64);
    }
    for projection in &projections {
        let name = projection.name.clone();
        gauge!("factum_store_projection_checkpoint", "projection" => name.clone())
            .set(projection.checkpoint as f64);
        gauge!("factum_store_projection_lag", "projection" => name.clone())
            .set(projection.lag(stats.head) as f64);
        gauge!("factum_store_projection_dead_letters", "projection" => name)
            .set(projection.dead_letters as f64);
    }
    Ok(())
}
