//! One stream's events, a page at a time from a version: payload and
//! metadata pretty-printed. A page reads only its own events (the read
//! stops after them), so the first page of a long stream is as quick as
//! that of a short one.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use factum_core::{RecordedEvent, StreamId};
use futures::{StreamExt, TryStreamExt};
use maud::{Markup, html};
use serde::Deserialize;

use super::html::{self, Nav, PageError};
use super::{Shared, json};
use crate::commands::Store;
use crate::output;

/// Events per page unless `size` says otherwise, and the most it may say.
const PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;

#[derive(Debug, Deserialize)]
pub(crate) struct Wanted {
    #[serde(rename = "type")]
    aggregate_type: String,
    id: String,
    /// The first version shown.
    #[serde(default)]
    from: Option<u64>,
    /// Events per page.
    #[serde(default)]
    size: Option<u64>,
}

pub(crate) async fn page<S: Store>(
    State(console): State<Shared<S>>,
    Query(wanted): Query<Wanted>,
) -> Result<Response, PageError> {
    let stream = StreamId::new(wanted.aggregate_type, wanted.id);
    let title = format!("{}/{}", stream.aggregate_type(), stream.aggregate_id());
    let version = console.store.stream_version(&stream).await?;
    if version == 0 {
        let body = html! {
            h1 { (title) }
            p.empty { "This stream has no events in this store (streams of other tenants are not shown here)." }
            p { a href="/streams" { "All streams" } }
        };
        let page = html::page(&title, Nav::Streams, &console.description, body);
        return Ok((StatusCode::NOT_FOUND, page).into_response());
    }
    let size = wanted.size.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let from = wanted.from.unwrap_or(1).clamp(1, version);
    let events: Vec<RecordedEvent> = console
        .store
        .read_stream(&stream, from)
        .take(size as usize)
        .try_collect()
        .await?;
    let last_shown = events.last().map_or(from, |event| event.version);
    let href = |from: u64| {
        let mut href = html::stream_href(&stream, Some(from));
        if size != PAGE {
            href.push_str(&format!("&size={size}"));
        }
        href
    };
    let last_page = version.saturating_sub(size - 1).max(1);
    let links = [
        ("« first", (from > 1).then(|| href(1))),
        (
            "‹ previous",
            (from > 1).then(|| href(from.saturating_sub(size).max(1))),
        ),
        ("next ›", (last_shown < version).then(|| href(last_shown + 1))),
        ("last »", (last_shown < version).then(|| href(last_page))),
    ];
    let summary = format!(
        "versions {} to {} of {}",
        output::count(from),
        output::count(last_shown),
        output::count(version)
    );
    let body = html! {
        h1 { span.type { (stream.aggregate_type()) } "/" (stream.aggregate_id()) }
        (html::pager(&links, &summary))
        @for event in &events { (card(event)) }
        (html::pager(&links, &summary))
    };
    Ok(html::page(&title, Nav::Streams, &console.description, body).into_response())
}

/// One event: its envelope on a line, then payload and metadata.
fn card(event: &RecordedEvent) -> Markup {
    let metadata = serde_json::to_string_pretty(&event.metadata)
        .unwrap_or_else(|error| format!("(the metadata cannot be shown: {error})"));
    html! {
        article.event id=(format!("v{}", event.version)) data-version=(event.version) {
            header {
                span.version { "v" (event.version) }
                span.event { (&*event.event_type) }
                span.meta { "schema " (event.schema_version) }
                span.meta { "position " (output::count(event.position)) }
                span.meta { (html::time(event.occurred_at)) }
                span.meta.id { (event.event_id) }
            }
            div.body {
                div { h3 { "payload" } pre.payload { (json::pretty(event.payload.as_str())) } }
                div { h3 { "metadata" } pre.metadata { (metadata) } }
            }
        }
    }
}
