//! `dead-letters NAME [list | replay [ID] | discard ID]`.
//!
//! Only the projection's runner has its handler, so `replay` asks it to:
//! the letters are marked, and the runner replays them when it starts and
//! while it is idle.

use serde_json::json;

use super::{Context, Store};
use crate::cli::{DeadLettersAction, DeadLettersArgs};
use crate::error::CliError;
use crate::line::LineOut;
use crate::output::{self, Out};

pub(crate) async fn run<S: Store>(
    store: &S,
    args: &DeadLettersArgs,
    context: &Context,
) -> Result<(), CliError> {
    super::projections::find(store, &args.name).await?;
    match args.action.as_ref().unwrap_or(&DeadLettersAction::List) {
        DeadLettersAction::List => list(store, &args.name, context).await,
        DeadLettersAction::Replay { id } => replay(store, &args.name, *id, context).await,
        DeadLettersAction::Discard { id } => discard(store, &args.name, *id, context).await,
    }
}

async fn list<S: Store>(store: &S, name: &str, context: &Context) -> Result<(), CliError> {
    let letters = store.dead_letters(name).await?;
    let mut out = Out::new();
    if context.json {
        for letter in &letters {
            let event = LineOut::new(&letter.event).map_err(|error| CliError::failed(error.to_string()))?;
            out.json(&json!({
                "id": letter.position(),
                "event": event,
                "error": letter.error,
                "attempts": letter.attempts,
                "failed_at": output::rfc3339(letter.failed_at),
                "replay_requested": letter.replay_requested(),
            }))?;
        }
        return out.flush();
    }
    if letters.is_empty() {
        out.line(format!("projection `{name}` has no dead letters"))?;
        return out.flush();
    }
    let mut table = output::table(&[
        "id",
        "stream",
        "version",
        "event",
        "attempts",
        "failed at (UTC)",
        "error",
    ]);
    for letter in &letters {
        let event = &letter.event;
        let attempts = if letter.replay_requested() {
            "replay requested".to_owned()
        } else {
            letter.attempts.to_string()
        };
        table.add_row(vec![
            letter.position().to_string(),
            format!("{}/{}", event.aggregate_type(), event.aggregate_id()),
            event.version.to_string(),
            event.event_type.to_string(),
            attempts,
            output::time(letter.failed_at),
            letter.error.clone(),
        ]);
    }
    out.line(table)?;
    out.flush()
}

async fn replay<S: Store>(store: &S, name: &str, id: Option<u64>, context: &Context) -> Result<(), CliError> {
    let marked = store.request_replay(name, id).await?;
    if let (Some(id), 0) = (id, marked) {
        return Err(CliError::failed(format!(
            "projection `{name}` has no dead letter {id}"
        )));
    }
    let mut out = Out::new();
    if context.json {
        out.json(&json!({ "name": name, "replays_requested": marked }))?;
    } else {
        out.line(format!(
            "asked the runner of `{name}` to replay {marked} dead letter{}: it does when it starts, or within \
             seconds while it runs and is idle; one that fails again stays, with its new error",
            if marked == 1 { "" } else { "s" }
        ))?;
    }
    out.flush()
}

async fn discard<S: Store>(store: &S, name: &str, id: u64, context: &Context) -> Result<(), CliError> {
    if !store.discard_dead_letter(name, id).await? {
        return Err(CliError::failed(format!(
            "projection `{name}` has no dead letter {id}"
        )));
    }
    let mut out = Out::new();
    if context.json {
        out.json(&json!({ "name": name, "discarded": id }))?;
    } else {
        out.line(format!(
            "discarded dead letter {id} of `{name}`: its event will not be handled"
        ))?;
    }
    out.flush()
}
