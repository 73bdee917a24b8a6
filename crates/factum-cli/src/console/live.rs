//! The live log: the last events of the global log, then each new one as it
//! commits, without a reload. The page opens a server-sent event stream
//! (`/live/events`) whose messages are table rows rendered here, escaped
//! like every page; a browser that reconnects resumes after the last
//! position it received (`Last-Event-ID`).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use factum_core::{RecordedEvent, Start};
use futures::{Stream, StreamExt, stream};
use maud::html;
use serde::Deserialize;

use super::Shared;
use super::html::{self, Nav, PageError};
use crate::commands::Store;

/// Events of the log the page starts with.
const BACKLOG: u64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    /// Only events of this aggregate type.
    #[serde(default, rename = "type")]
    aggregate_type: String,
    /// Only events of this event type.
    #[serde(default)]
    event: String,
    /// The feed starts after this position (`None`: at the head).
    #[serde(default)]
    after: Option<u64>,
}

impl Filter {
    fn admits(&self, event: &RecordedEvent) -> bool {
        let aggregate_type = self.aggregate_type.trim();
        let event_type = self.event.trim();
        (aggregate_type.is_empty() || event.aggregate_type() == aggregate_type)
            && (event_type.is_empty() || &*event.event_type == event_type)
    }
}

pub(crate) async fn page<S: Store>(
    State(console): State<Shared<S>>,
    Query(filter): Query<Filter>,
) -> Result<Html<String>, PageError> {
    let head = console.store.head_position().await?;
    let mut backlog = console
        .store
        .read_all(head.saturating_sub(BACKLOG), BACKLOG as usize)
        .await?;
    backlog.retain(|event| filter.admits(event));
    backlog.reverse();
    // The feed starts where the backlog read stopped, so no event falls
    // between the two.
    let after = head.max(backlog.first().map_or(0, |event| event.position));
    let source = format!(
        "/live/events?after={after}&type={}&event={}",
        html::encode(filter.aggregate_type.trim()),
        html::encode(filter.event.trim())
    );
    let body = html! {
        h1 { "Live log " span #live-status.status data-state="connecting" { "connecting…" } }
        form.search method="get" action="/live" {
            label { "type " input type="text" name="type" value=(filter.aggregate_type.trim()) placeholder="any"; }
            label { "event " input type="text" name="event" value=(filter.event.trim()) placeholder="any"; }
            button type="submit" { "Filter" }
        }
        p.note { "Newest first. New events appear as they are committed." }
        table.events {
            (html::log_head())
            tbody #live-rows data-source=(source) {
                @for event in &backlog { (html::log_row(event)) }
            }
        }
    };
    Ok(html::page("Live log", Nav::Live, &console.description, body))
}

/// The feed: one `event` message per new event (its data a table row, its
/// id the position), a `failed` message if the store fails, then the end.
pub(crate) async fn feed<S: Store>(
    State(console): State<Shared<S>>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let resumed = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let start = match resumed.or(filter.after) {
        Some(after) => Start::After(after),
        None => Start::End,
    };
    let mut stopping = console.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let events = match console.store.subscribe(start).await {
        Ok(events) => events,
        Err(error) => stream::once(async move { Err(error) }).boxed(),
    };
    let messages = events
        .filter(move |item| std::future::ready(item.as_ref().map_or(true, |event| filter.admits(event))))
        .scan(false, |failed, item| {
            // After an error the subscription is over; so is the feed.
            if *failed {
                return std::future::ready(None);
            }
            let message = match item {
                Ok(event) => Event::default()
                    .event("event")
                    .id(event.position.to_string())
                    .data(html::log_row(&event).into_string()),
                Err(error) => {
                    *failed = true;
                    Event::default()
                        .event("failed")
                        .data(crate::error::Chain(&error).to_string())
                }
            };
            std::future::ready(Some(Ok(message)))
        })
        .take_until(Box::pin(stopped));
    Sse::new(messages).keep_alive(KeepAlive::default())
}
