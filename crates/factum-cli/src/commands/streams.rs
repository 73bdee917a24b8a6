//! `streams [--type T] [--limit N]`.

use serde_json::json;

use super::{Context, Store};
use crate::cli::StreamsArgs;
use crate::error::CliError;
use crate::output::{self, Out};
use factum_core::StreamQuery;

/// Streams asked for per query.
const PAGE: usize = 1000;

pub(crate) async fn run<S: Store>(store: &S, args: &StreamsArgs, context: &Context) -> Result<(), CliError> {
    let mut out = Out::new();
    let mut table = output::table(&["type", "id", "version", "last event (UTC)"]);
    let mut listed = 0;
    let mut after = None;
    let mut more = false;
    while listed < args.limit {
        // One more than the limit: enough to tell whether streams were left out.
        let wanted = (args.limit - listed).min(PAGE) + 1;
        let mut query = StreamQuery::first(wanted);
        query.aggregate_type = args.aggregate_type.clone();
        query.after = after.take();
        let mut page = store.streams(query).await?;
        let full = page.len() == wanted;
        if full {
            page.pop();
        }
        for summary in &page {
            if listed == args.limit {
                more = true;
                break;
            }
            listed += 1;
            if context.json {
                out.json(&json!({
                    "aggregate_type": summary.stream.aggregate_type(),
                    "aggregate_id": summary.stream.aggregate_id(),
                    "version": summary.version,
                    "last_event_at": output::rfc3339(summary.last_event_at),
                }))?;
            } else {
                table.add_row(vec![
                    summary.stream.aggregate_type().to_owned(),
                    summary.stream.aggregate_id().to_owned(),
                    output::count(summary.version),
                    output::time(summary.last_event_at),
                ]);
            }
        }
        more |= full && listed == args.limit;
        match page.last() {
            Some(last) if full => after = Some(last.stream.clone()),
            _ => break,
        }
    }
    if !context.json {
        if listed == 0 {
            out.line("no streams")?;
        } else {
            out.line(table)?;
        }
    }
    out.flush()?;
    if more {
        eprintln!("(more streams than --limit {}: raise it to see them)", args.limit);
    }
    Ok(())
}
