//! The overview: the store's counts, head and events per second now, its
//! projections at a glance and the last events of the log. The figures
//! refresh in place every two seconds from `/overview.json`.

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use maud::html;
use serde_json::{Value, json};

use super::html::{self, Nav, PageError};
use super::{Shared, rate};
use crate::commands::Store;
use crate::output;

/// Events the overview lists at its foot.
const LAST_EVENTS: u64 = 10;

/// The overview's figures, each as shown.
struct Figures {
    /// (key, label, value) in display order; the key names the figure in
    /// `/overview.json` and in the page's `data-figure` attributes.
    items: Vec<(&'static str, &'static str, String)>,
    head: u64,
}

async fn figures_of<S: Store>(console: &Shared<S>) -> Result<Figures, factum_core::Error> {
    let stats = console.store.stats().await?;
    let projections = console.store.projections().await?;
    let max_lag = projections
        .iter()
        .map(|projection| projection.lag(stats.head))
        .max()
        .unwrap_or(0);
    let dead_letters: u64 = projections.iter().map(|projection| projection.dead_letters).sum();
    let size = stats
        .bytes_on_disk
        .map_or_else(|| "unknown".to_owned(), output::bytes);
    Ok(Figures {
        items: vec![
            ("events", "events", output::count(stats.events)),
            ("streams", "streams", output::count(stats.streams)),
            ("head", "head position", output::count(stats.head)),
            ("rate", "events/s now", rate::shown(console.rate.per_second())),
            (
                "projections",
                "projections",
                output::count(projections.len() as u64),
            ),
            ("max_lag", "largest lag", output::count(max_lag)),
            ("dead_letters", "dead letters", output::count(dead_letters)),
            ("size", "size on disk", size),
            ("schema", "schema version", stats.schema_version.to_string()),
        ],
        head: stats.head,
    })
}

pub(crate) async fn page<S: Store>(State(console): State<Shared<S>>) -> Result<Html<String>, PageError> {
    let figures = figures_of(&console).await?;
    let after = figures.head.saturating_sub(LAST_EVENTS);
    let mut last = console.store.read_all(after, LAST_EVENTS as usize).await?;
    last.reverse();
    let body = html! {
        h1 { "Overview" }
        section.figures {
            @for (key, label, value) in &figures.items {
                div.figure {
                    span.value data-figure=(key) { (value) }
                    span.label { (label) }
                }
            }
        }
        h2 { "Last events" }
        @if last.is_empty() {
            p.empty { "The log is empty." }
        } @else {
            table.events {
                (html::log_head())
                tbody { @for event in &last { (html::log_row(event)) } }
            }
            p { a href="/live" { "Follow the log live →" } }
        }
    };
    Ok(html::page("Overview", Nav::Overview, &console.description, body))
}

/// The overview's figures as JSON (`{"events": "1,024", …}`), for the page's
/// refresh.
pub(crate) async fn figures<S: Store>(State(console): State<Shared<S>>) -> Result<Json<Value>, PageError> {
    let figures = figures_of(&console).await?;
    let map: serde_json::Map<String, Value> = figures
        .items
        .into_iter()
        .map(|(key, _, value)| (key.to_owned(), json!(value)))
        .collect();
    Ok(Json(Value::Object(map)))
}
