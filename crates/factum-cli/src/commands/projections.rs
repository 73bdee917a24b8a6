//! `projections` and `projections reset NAME [--to POS]`.

use comfy_table::Table;
use factum_core::ProjectionSummary;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Context, Store};
use crate::cli::{ProjectionsAction, ProjectionsArgs};
use crate::error::CliError;
use crate::output::{self, Out};

pub(crate) async fn run<S: Store>(
    store: &S,
    args: &ProjectionsArgs,
    context: &Context,
) -> Result<(), CliError> {
    match &args.action {
        None => list(store, context).await,
        Some(ProjectionsAction::Reset { name, to, force }) => reset(store, name, *to, *force, context).await,
    }
}

async fn list<S: Store>(store: &S, context: &Context) -> Result<(), CliError> {
    let head = store.head_position().await?;
    let projections = store.projections().await?;
    let mut out = Out::new();
    if context.json {
        for projection in &projections {
            out.json(&to_json(projection, head))?;
        }
    } else if projections.is_empty() {
        out.line("no projections (none has saved a checkpoint, a dead letter or a lease in this store)")?;
    } else {
        out.line(table(&projections, head))?;
    }
    out.flush()
}

/// The projections' table, as `projections` and `status` print it.
pub(crate) fn table(projections: &[ProjectionSummary], head: u64) -> Table {
    let now = OffsetDateTime::now_utc();
    let mut table = output::table(&["projection", "checkpoint", "lag", "lease holder", "dead letters"]);
    for projection in projections {
        let lease = match &projection.lease {
            Some(lease) if lease.is_held_at(now) => {
                format!("{} (until {})", lease.holder, output::time(lease.expires_at))
            }
            Some(lease) => format!(
                "none ({} lapsed {})",
                lease.holder,
                output::time(lease.expires_at)
            ),
            None => "none".to_owned(),
        };
        let mut letters = output::count(projection.dead_letters);
        if projection.replays_requested > 0 {
            letters.push_str(&format!(" ({} to replay)", projection.replays_requested));
        }
        table.add_row(vec![
            projection.name.clone(),
            output::count(projection.checkpoint),
            output::count(projection.lag(head)),
            lease,
            letters,
        ]);
    }
    table
}

/// One projection as JSON, as `projections --json` and `status --json` print it.
pub(crate) fn to_json(projection: &ProjectionSummary, head: u64) -> Value {
    json!({
        "name": projection.name,
        "checkpoint": projection.checkpoint,
        "lag": projection.lag(head),
        "lease_holder": projection.lease.as_ref().map(|lease| &lease.holder),
        "lease_expires_at": projection.lease.as_ref().map(|lease| output::rfc3339(lease.expires_at)),
        "dead_letters": projection.dead_letters,
        "replays_requested": projection.replays_requested,
    })
}

/// The projection called `name`, or an error listing what there is.
pub(crate) async fn find<S: Store>(store: &S, name: &str) -> Result<ProjectionSummary, CliError> {
    let projections = store.projections().await?;
    let names: Vec<&str> = projections
        .iter()
        .map(|projection| projection.name.as_str())
        .collect();
    let known = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    projections
        .iter()
        .find(|projection| projection.name == name)
        .cloned()
        .ok_or_else(|| CliError::failed(format!("no projection `{name}` in this store (known: {known})")))
}

async fn reset<S: Store>(
    store: &S,
    name: &str,
    to: u64,
    force: bool,
    context: &Context,
) -> Result<(), CliError> {
    let projection = find(store, name).await?;
    let running = projection
        .lease
        .as_ref()
        .filter(|lease| !force && lease.is_held_at(OffsetDateTime::now_utc()));
    if let Some(lease) = running {
        return Err(CliError::refused(format!(
            "projection `{name}` is running: {} holds its lease until {} UTC; stop its runners first, or pass \
             --force",
            lease.holder,
            output::time(lease.expires_at)
        )));
    }
    let report = store.reset_projection(name, to).await?;
    let mut out = Out::new();
    if context.json {
        out.json(&json!({
            "name": name,
            "previous": report.previous,
            "checkpoint": report.checkpoint,
            "dead_letters_removed": report.dead_letters_removed,
        }))?;
    } else {
        out.line(format!(
            "projection `{name}`: checkpoint moved from {} to {}; {} dead letters above it removed. Its runner \
             handles the events after {} when it next starts.",
            output::count(report.previous),
            output::count(report.checkpoint),
            report.dead_letters_removed,
            output::count(report.checkpoint)
        ))?;
    }
    out.flush()
}
