//! `events TYPE/ID [--from V] [--json]`: the stream's events as they are
//! read, a page at a time, so the first lines of a long stream show at once
//! and memory stays flat.

use factum_core::StreamId;
use futures::StreamExt;

use super::{Context, Store};
use crate::cli::EventsArgs;
use crate::error::CliError;
use crate::line::LineOut;
use crate::output::{self, Out};

/// `TYPE/ID` as a stream: the type ends at the first `/` (ids may hold more).
pub(crate) fn parse_stream(text: &str) -> Result<StreamId, CliError> {
    match text.split_once('/') {
        Some((aggregate_type, aggregate_id)) if !aggregate_type.is_empty() => {
            Ok(StreamId::new(aggregate_type, aggregate_id))
        }
        _ => Err(CliError::usage(format!(
            "`{text}` is not a stream: write TYPE/ID, e.g. Counter/42 (`factum streams` lists them)"
        ))),
    }
}

pub(crate) async fn run<S: Store>(store: &S, args: &EventsArgs, context: &Context) -> Result<(), CliError> {
    let stream = parse_stream(&args.stream)?;
    if store.stream_version(&stream).await? == 0 {
        return Err(CliError::failed(format!(
            "no stream {}/{} in {} (`factum streams --type {}` lists that type's streams)",
            stream.aggregate_type(),
            stream.aggregate_id(),
            context.description,
            stream.aggregate_type()
        )));
    }
    let mut out = Out::new();
    let width = out.width();
    if !context.json {
        out.line(output::event_header(false))?;
    }
    let mut pages = store.read_stream_pages(&stream, args.from);
    while let Some(page) = pages.next().await {
        for event in page? {
            if context.json {
                let line = LineOut::new(&event).map_err(|error| {
                    CliError::failed(format!(
                        "the payload of version {} of {} is not JSON: {error}",
                        event.version, event.stream
                    ))
                })?;
                out.json(&line)?;
            } else {
                out.line(output::event_line(&event, false, width))?;
            }
        }
        out.flush()?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_ends_at_the_first_slash() {
        let stream = parse_stream("Order/eu/42").unwrap();
        assert_eq!(
            (stream.aggregate_type(), stream.aggregate_id()),
            ("Order", "eu/42")
        );
        assert!(parse_stream("Order").is_err());
        assert!(parse_stream("/42").is_err());
    }
}
