//! `import FILE [--append]`: JSON lines written by `export` into the store.
//!
//! - Order, ids and versions are kept: events are appended in the file's
//!   order, each stream at the versions the file gives (a stream already
//!   further along is a conflict, never a renumbering).
//! - Each event goes to its tenant (its metadata's, see `crate::line`),
//!   through the store's view of that tenant: a multi-tenant export comes
//!   back with every stream where it was.
//! - A batch of lines is parsed and checked whole before any of it is
//!   written: a corrupt line stops the import with its line number, and
//!   nothing of its batch is stored.
//! - A store that is not empty must hold exactly the file's first events,
//!   in order (an earlier import of the same file, complete or cut short):
//!   those lines are skipped, so importing twice writes nothing and an
//!   interrupted import resumes. A store holding other events is refused
//!   unless `--append`, which appends the file's events to them (events
//!   already stored, by id, are skipped by the store's idempotent append).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use factum_core::{AppendBatch, ExpectedVersion, NewEvent, StreamId, Tenant};
use serde_json::json;

use super::{Context, Store};
use crate::cli::ImportArgs;
use crate::error::CliError;
use crate::line::{Imported, LineIn};
use crate::output::{self, Out};

/// Lines parsed and checked before any of them is written.
const BATCH: usize = 10_000;

/// Fails with a usage error when `path` cannot be read (`-` is standard input).
pub(crate) fn check_file(path: &Path) -> Result<(), CliError> {
    if path == Path::new("-") {
        return Ok(());
    }
    File::open(path).map(drop).map_err(|error| {
        CliError::usage(format!("cannot read {}: {error}", path.display())).with_source(error)
    })
}

pub(crate) async fn run<S: Store>(store: &S, args: &ImportArgs, context: &Context) -> Result<(), CliError> {
    let started = Instant::now();
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = if args.file == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = File::open(&args.file).map_err(|error| {
            CliError::usage(format!("cannot read {}: {error}", args.file.display())).with_source(error)
        })?;
        let size = file.metadata().ok().map(|meta| meta.len());
        (Box::new(file), size)
    };
    let mut lines = Lines::new(reader, args.file.display().to_string());
    let bar = output::progress_bytes(
        size.unwrap_or(0),
        "importing",
        output::stdout_is_terminal() && size.is_some(),
    );
    let skipped = if args.append {
        0
    } else {
        skip_stored(store, &mut lines).await?
    };
    let mut imported = 0;
    loop {
        let batch = lines.batch(BATCH)?;
        if batch.is_empty() {
            break;
        }
        imported += write_batch(store, batch, &lines.name).await?;
        bar.set_position(lines.bytes);
        bar.set_message(format!("{} events", output::count(imported)));
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    if context.json {
        out.json(&json!({ "imported": imported, "already_stored": skipped, "lines": lines.number, "seconds": seconds }))?;
    } else {
        out.line(format!(
            "imported {} events from {} into {} in {seconds:.1} s ({}/s); {} were already stored",
            output::count(imported),
            lines.name,
            context.description,
            output::count((imported as f64 / seconds.max(1e-9)) as u64),
            output::count(skipped),
        ))?;
    }
    out.flush()
}

/// An event of the file, with the line it came from.
struct Numbered {
    line: u64,
    imported: Imported,
}

/// The file's lines, parsed one at a time.
struct Lines {
    reader: BufReader<Box<dyn Read + Send>>,
    name: String,
    text: String,
    /// The number of the last line read.
    number: u64,
    /// Bytes read so far, for the progress bar.
    bytes: u64,
}

impl Lines {
    fn new(reader: Box<dyn Read + Send>, name: String) -> Self {
        Self {
            reader: BufReader::with_capacity(256 * 1024, reader),
            name,
            text: String::new(),
            number: 0,
            bytes: 0,
        }
    }

    /// The next event, skipping blank lines; an error naming the line when
    /// it does not parse.
    fn next(&mut self) -> Result<Option<Numbered>, CliError> {
        loop {
            self.text.clear();
            let read = self.reader.read_line(&mut self.text).map_err(|error| {
                CliError::refused(format!(
                    "{}: line {}: cannot read it: {error}",
                    self.name,
                    self.number + 1
                ))
                .with_source(error)
            })?;
            if read == 0 {
                return Ok(None);
            }
            self.number += 1;
            self.bytes += read as u64;
            let text = self.text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let imported = LineIn::parse(text).map_err(|reason| self.corrupt(self.number, &reason))?;
            return Ok(Some(Numbered {
                line: self.number,
                imported,
            }));
        }
    }

    fn corrupt(&self, line: u64, reason: &str) -> CliError {
        CliError::refused(format!(
            "{}: line {line} is not an exported event: {reason}; nothing of its batch was imported",
            self.name
        ))
    }

    /// Up to `size` events, checked together: each parses, no event id
    /// repeats, and a stream's consecutive events have consecutive versions.
    fn batch(&mut self, size: usize) -> Result<Vec<Numbered>, CliError> {
        let mut batch: Vec<Numbered> = Vec::with_capacity(size.min(1024));
        let mut ids = HashSet::with_capacity(size.min(1024));
        while batch.len() < size {
            let Some(next) = self.next()? else { break };
            if !ids.insert(next.imported.event.event_id) {
                let reason = format!(
                    "event id {} appears twice in the file",
                    next.imported.event.event_id
                );
                return Err(self.corrupt(next.line, &reason));
            }
            if let Some(previous) = batch.last() {
                let (before, now) = (&previous.imported, &next.imported);
                let same_stream = before.stream == now.stream && before.tenant == now.tenant;
                if same_stream && now.version != before.version + 1 {
                    let reason = format!(
                        "version {} of {} follows version {} on line {}",
                        now.version, now.stream, before.version, previous.line
                    );
                    return Err(self.corrupt(next.line, &reason));
                }
            }
            batch.push(next);
        }
        Ok(batch)
    }
}

/// Skips the file's lines that the store already holds, in order; refuses
/// a store that holds anything else. Returns how many were skipped.
async fn skip_stored<S: Store>(store: &S, lines: &mut Lines) -> Result<u64, CliError> {
    let mut after = 0;
    let mut skipped = 0;
    loop {
        let page = store.read_all(after, 4096).await?;
        let Some(last) = page.last() else {
            return Ok(skipped);
        };
        after = last.position;
        for stored in page {
            match lines.next()? {
                Some(numbered) if numbered.imported.event.event_id == stored.event_id => skipped += 1,
                found => {
                    let file_side = match found {
                        Some(numbered) => format!(
                            "line {} holds event {}",
                            numbered.line, numbered.imported.event.event_id
                        ),
                        None => format!("the file ends after {} events", skipped),
                    };
                    return Err(CliError::refused(format!(
                        "the store already holds other events: its event at position {} is {} ({}/{} version {}), \
                         but {file_side}; import into an empty store, or pass --append to add the file's events to \
                         the store's",
                        stored.position,
                        stored.event_id,
                        stored.aggregate_type(),
                        stored.aggregate_id(),
                        stored.version
                    )));
                }
            }
        }
    }
}

/// Appends a checked batch in the file's order: consecutive events of a
/// stream go together, and a call holds each stream once (a store orders a
/// call's batches one after the other), so a stream met again starts the
/// next call, as does an event of another tenant (a call goes through one
/// tenant's view). Returns how many events were appended.
async fn write_batch<S: Store>(store: &S, batch: Vec<Numbered>, name: &str) -> Result<u64, CliError> {
    let total = batch.len() as u64;
    let mut call = Call::default();
    let mut run: Option<Run> = None;
    for numbered in batch {
        let Numbered { line, imported } = numbered;
        let same_stream =
            |current: &&mut Run| current.stream == imported.stream && current.tenant == imported.tenant;
        if let Some(current) = run.as_mut().filter(same_stream) {
            current.events.push(imported.event);
            continue;
        }
        if let Some(done) = run.take() {
            call.push(done);
        }
        if call.streams.contains(&imported.stream)
            || call
                .tenant
                .as_ref()
                .is_some_and(|tenant| *tenant != imported.tenant)
        {
            call.send(store, name).await?;
        }
        run = Some(Run {
            tenant: imported.tenant,
            first_line: line,
            stream: imported.stream,
            first_version: imported.version,
            events: vec![imported.event],
        });
    }
    if let Some(done) = run {
        call.push(done);
    }
    call.send(store, name).await?;
    Ok(total)
}

/// Consecutive events of one stream.
struct Run {
    tenant: Tenant,
    first_line: u64,
    stream: StreamId,
    first_version: u64,
    events: Vec<NewEvent>,
}

/// One `append_many` call in the making, through one tenant's view.
#[derive(Default)]
struct Call {
    /// The tenant of every batch (`None`: no batch yet).
    tenant: Option<Tenant>,
    batches: Vec<AppendBatch>,
    streams: HashSet<StreamId>,
    first_lines: Vec<u64>,
}

impl Call {
    fn push(&mut self, run: Run) {
        self.tenant = Some(run.tenant);
        self.streams.insert(run.stream.clone());
        self.first_lines.push(run.first_line);
        let expected = ExpectedVersion::Exact(run.first_version - 1);
        self.batches
            .push(AppendBatch::new(run.stream, expected, run.events));
    }

    async fn send<S: Store>(&mut self, store: &S, name: &str) -> Result<(), CliError> {
        if self.batches.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.batches);
        let first = self.first_lines.first().copied().unwrap_or(0);
        let tenant = self.tenant.take().unwrap_or(Tenant::DEFAULT);
        self.streams.clear();
        self.first_lines.clear();
        let failed = |error| {
            CliError::failed(format!(
                "{name}: the events from line {first} on (tenant `{tenant}`) were not imported"
            ))
            .with_source(error)
        };
        // The unscoped handle writes to the default tenant itself, without
        // the tenant role a view needs on PostgreSQL.
        if tenant.is_default() && store.tenant().is_none() {
            store.append_many(batches).await.map_err(failed)?;
        } else {
            let view = store.for_tenant(tenant.as_str()).map_err(failed)?;
            view.append_many(batches).await.map_err(failed)?;
        }
        Ok(())
    }
}
