//! `migrate` and `status`.

use comfy_table::Cell;
use serde_json::json;

use super::{Context, Store};
use crate::error::CliError;
use crate::output::{self, Out};

pub(crate) async fn migrate<S: Store>(store: &S, context: &Context) -> Result<(), CliError> {
    let version = store.stats().await?.schema_version;
    let mut out = Out::new();
    if context.json {
        out.json(&json!({ "store": context.description, "schema_version": version, "previous": context.found_version }))?;
        return out.flush();
    }
    let done = match context.found_version {
        None => format!("created the store at schema version {version}"),
        Some(found) if found < version => {
            format!("migrated the store from schema version {found} to {version}")
        }
        Some(_) => format!("the store is at schema version {version}: nothing to do"),
    };
    out.line(format!("{}: {done}", context.description))?;
    out.flush()
}

pub(crate) async fn status<S: Store>(store: &S, context: &Context) -> Result<(), CliError> {
    let stats = store.stats().await?;
    let projections = store.projections().await?;
    let mut out = Out::new();
    if context.json {
        let projections: Vec<_> = projections
            .iter()
            .map(|projection| super::projections::to_json(projection, stats.head))
            .collect();
        out.json(&json!({
            "store": context.description,
            "schema_version": stats.schema_version,
            "streams": stats.streams,
            "events": stats.events,
            "head": stats.head,
            "bytes_on_disk": stats.bytes_on_disk,
            "projections": projections,
        }))?;
        return out.flush();
    }
    let mut table = output::table(&["store", &context.description]);
    let size = stats
        .bytes_on_disk
        .map_or_else(|| "unknown".to_owned(), output::bytes);
    for (name, value) in [
        ("schema version", stats.schema_version.to_string()),
        ("streams", output::count(stats.streams)),
        ("events", output::count(stats.events)),
        ("head position", output::count(stats.head)),
        ("size on disk", size),
        ("projections", output::count(projections.len() as u64)),
    ] {
        table.add_row(vec![Cell::new(name), Cell::new(value)]);
    }
    out.line(table)?;
    if !projections.is_empty() {
        out.line(super::projections::table(&projections, stats.head))?;
    }
    out.flush()
}
