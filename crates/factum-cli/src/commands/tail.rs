//! `tail [--from POS | --from-end] [--type T] [--event E]`: the global log,
//! live, until Ctrl-C. Catching up from an old position shows a progress
//! bar (at a terminal) until the head it found at the start.

use factum_core::{RecordedEvent, Start};
use futures::StreamExt;

use super::{Context, Store};
use crate::cli::TailArgs;
use crate::error::CliError;
use crate::line::LineOut;
use crate::output::{self, Out};

/// Without `--from`, the tail starts this many positions before the head,
/// as `tail -f` shows the last lines first.
const LAST: u64 = 10;

/// Lines written between flushes while catching up; live lines go out at once.
const FLUSH_EVERY: u64 = 1000;

pub(crate) async fn run<S: Store>(store: &S, args: &TailArgs, context: &Context) -> Result<(), CliError> {
    let head = store.head_position().await?;
    let start = match (args.from, args.from_end) {
        (Some(position), _) => Start::After(position),
        (None, true) => Start::End,
        (None, false) => Start::After(head.saturating_sub(LAST)),
    };
    let mut events = store.subscribe(start).await?;
    let mut out = Out::new();
    let width = out.width();
    let first = match start {
        Start::After(position) => position,
        _ => head,
    };
    let bar = output::progress(
        head.saturating_sub(first),
        "catching up",
        out.terminal && head > first + LAST,
    );
    if !context.json {
        out.line(output::event_header(true))?;
        out.flush()?;
    }
    let mut since_flush = 0;
    let stop = stopped();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = &mut stop => break,
        };
        let Some(event) = event else { break };
        let event = event?;
        if event.position <= head {
            bar.set_position(event.position.saturating_sub(first));
        } else if !bar.is_finished() {
            bar.finish_and_clear();
        }
        if wanted(&event, args) {
            let line = if context.json {
                serde_json::to_string(&LineOut::new(&event).map_err(|error| {
                    CliError::failed(format!(
                        "the payload at position {} is not JSON: {error}",
                        event.position
                    ))
                })?)
                .map_err(|error| CliError::failed(error.to_string()))?
            } else {
                output::event_line(&event, true, width)
            };
            bar.suspend(|| out.line(line))?;
            since_flush += 1;
        }
        if event.position >= head || since_flush >= FLUSH_EVERY {
            if event.position >= head && !bar.is_finished() {
                bar.finish_and_clear();
            }
            out.flush()?;
            since_flush = 0;
        }
    }
    bar.finish_and_clear();
    out.flush()
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
pub(crate) async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn wanted(event: &RecordedEvent, args: &TailArgs) -> bool {
    args.aggregate_type
        .as_deref()
        .is_none_or(|wanted| event.aggregate_type() == wanted)
        && args
            .event_type
            .as_deref()
            .is_none_or(|wanted| &*event.event_type == wanted)
}
