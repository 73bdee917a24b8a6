//! The streams: a page at a time in order of type then id, narrowed to one
//! type, and looked up by id within it. An id that names a stream opens
//! it; one that does not lists the streams that follow it.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use factum_core::{StreamId, StreamQuery};
use maud::{Markup, html};
use serde::Deserialize;

use super::Shared;
use super::html::{self, Nav, PageError};
use crate::commands::Store;
use crate::output;

/// Streams per page.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    /// Only streams of this aggregate type.
    #[serde(default, rename = "type")]
    aggregate_type: String,
    /// The stream to open, or to list from.
    #[serde(default)]
    id: String,
    /// The last stream of the previous page.
    #[serde(default)]
    after_type: Option<String>,
    #[serde(default)]
    after_id: Option<String>,
}

pub(crate) async fn page<S: Store>(
    State(console): State<Shared<S>>,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    let aggregate_type = search.aggregate_type.trim();
    let id = search.id.trim();
    let mut notes = Vec::new();
    let mut after = match (search.after_type, search.after_id) {
        (Some(after_type), Some(after_id)) => Some(StreamId::new(after_type, after_id)),
        _ => None,
    };
    if !id.is_empty() {
        if aggregate_type.is_empty() {
            notes.push("Ids are looked up within a type: give the type too.".to_owned());
        } else {
            let wanted = StreamId::new(aggregate_type, id);
            if console.store.stream_version(&wanted).await? > 0 {
                return Ok(Redirect::to(&html::stream_href(&wanted, None)).into_response());
            }
            notes.push(format!(
                "No stream {aggregate_type}/{id}: the streams of {aggregate_type} after it are listed."
            ));
            after = after.or(Some(wanted));
        }
    }
    let mut query = StreamQuery::first(PAGE + 1);
    if !aggregate_type.is_empty() {
        query = query.of_type(aggregate_type);
    }
    query.after = after.clone();
    let mut streams = console.store.streams(query).await?;
    let more = streams.len() > PAGE;
    streams.truncate(PAGE);
    let next = streams.last().filter(|_| more).map(|last| {
        format!(
            "/streams?type={}&after_type={}&after_id={}",
            html::encode(aggregate_type),
            html::encode(last.stream.aggregate_type()),
            html::encode(last.stream.aggregate_id())
        )
    });
    let first = after
        .is_some()
        .then(|| format!("/streams?type={}", html::encode(aggregate_type)));
    let summary = match (streams.first(), streams.last()) {
        (Some(first), Some(last)) => format!("{} to {}", shown(&first.stream), shown(&last.stream)),
        _ => String::new(),
    };
    let body = html! {
        h1 { "Streams" }
        (form(aggregate_type, id))
        @for note in &notes { p.note { (note) } }
        @if streams.is_empty() {
            p.empty { "No streams" @if !aggregate_type.is_empty() { " of type " code { (aggregate_type) } } " here." }
        } @else {
            table.streams {
                thead { tr { th { "type" } th { "id" } th.num { "version" } th { "last event (UTC)" } } }
                tbody {
                    @for summary in &streams {
                        tr {
                            td { span.type { (summary.stream.aggregate_type()) } }
                            td { a href=(html::stream_href(&summary.stream, None)) { (summary.stream.aggregate_id()) } }
                            td.num { (output::count(summary.version)) }
                            td.nowrap { (html::time(summary.last_event_at)) }
                        }
                    }
                }
            }
            (html::pager(&[("« first", first), ("next »", next)], &summary))
        }
    };
    Ok(html::page("Streams", Nav::Streams, &console.description, body).into_response())
}

fn shown(stream: &StreamId) -> String {
    format!("{}/{}", stream.aggregate_type(), stream.aggregate_id())
}

fn form(aggregate_type: &str, id: &str) -> Markup {
    html! {
        form.search method="get" action="/streams" {
            label { "type " input type="text" name="type" value=(aggregate_type) placeholder="e.g. Counter"; }
            label { "id " input type="text" name="id" value=(id) placeholder="open or list from"; }
            button type="submit" { "Search" }
        }
    }
}
