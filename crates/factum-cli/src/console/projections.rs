//! The projections: checkpoint, lag behind the head, who runs each (its
//! lease), and its dead letters with the error that stopped each.

use axum::extract::State;
use axum::response::Html;
use factum_core::{DeadLetter, ProjectionSummary};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::Shared;
use super::html::{self, Nav, PageError};
use crate::commands::Store;
use crate::output;

/// Dead letters listed per projection; the count above says how many
/// there are in all.
const LETTERS_SHOWN: usize = 100;

pub(crate) async fn page<S: Store>(State(console): State<Shared<S>>) -> Result<Html<String>, PageError> {
    let head = console.store.head_position().await?;
    let projections = console.store.projections().await?;
    let mut letters = Vec::new();
    for projection in projections
        .iter()
        .filter(|projection| projection.dead_letters > 0)
    {
        let mut list = console.store.dead_letters(&projection.name).await?;
        list.truncate(LETTERS_SHOWN);
        letters.push((projection, list));
    }
    let now = OffsetDateTime::now_utc();
    let body = html! {
        h1 { "Projections" }
        @if projections.is_empty() {
            p.empty { "No projection has saved a checkpoint, a dead letter or a lease in this store." }
        } @else {
            table.projections {
                thead { tr {
                    th { "projection" } th.num { "checkpoint" } th.num { "lag" } th { "status" } th.num { "dead letters" }
                } }
                tbody { @for projection in &projections { (row(projection, head, now)) } }
            }
            p.note { "Head position " (output::count(head)) ". Lag: positions of the log after the checkpoint." }
        }
        @for (projection, list) in &letters {
            section.letters id=(format!("dead-letters-{}", projection.name)) {
                h2 { "Dead letters of " code { (projection.name) } }
                @if (list.len() as u64) < projection.dead_letters {
                    p.note { "The first " (list.len()) " of " (output::count(projection.dead_letters)) "." }
                }
                @for letter in list { (dead_letter(letter)) }
            }
        }
    };
    Ok(html::page(
        "Projections",
        Nav::Projections,
        &console.description,
        body,
    ))
}

fn row(projection: &ProjectionSummary, head: u64, now: OffsetDateTime) -> Markup {
    let lag = projection.lag(head);
    html! {
        tr data-projection=(projection.name) {
            td { code { (projection.name) } }
            td.num { (output::count(projection.checkpoint)) }
            td.num.behind[lag > 0] { (output::count(lag)) }
            td {
                @match &projection.lease {
                    Some(lease) if lease.is_held_at(now) => {
                        span.badge.running { "running" } " on " code { (lease.holder) }
                        " until " (html::time(lease.expires_at))
                    }
                    Some(lease) => {
                        span.badge.stopped { "stopped" } " (lease of " code { (lease.holder) } " lapsed "
                        (html::time(lease.expires_at)) ")"
                    }
                    None => span.badge.stopped { "no runner" },
                }
            }
            td.num {
                @if projection.dead_letters > 0 {
                    a.bad href=(format!("#dead-letters-{}", projection.name)) { (output::count(projection.dead_letters)) }
                    @if projection.replays_requested > 0 {
                        " (" (projection.replays_requested) " to replay)"
                    }
                } @else { "0" }
            }
        }
    }
}

fn dead_letter(letter: &DeadLetter) -> Markup {
    let event = &letter.event;
    html! {
        article.letter data-position=(letter.position()) {
            header {
                span.meta { "position " (output::count(letter.position())) }
                a href=(html::stream_href(&event.stream, Some(event.version))) {
                    span.type { (event.aggregate_type()) } "/" (event.aggregate_id()) " v" (event.version)
                }
                span.event { (&*event.event_type) }
                span.meta { "failed " (html::time(letter.failed_at)) }
                @if letter.replay_requested() {
                    span.badge.running { "replay requested" }
                } @else {
                    span.meta { (letter.attempts) " attempts" }
                }
            }
            pre.error { (letter.error) }
        }
    }
}
