//! `export [--type T] [-o FILE]`: the global log as JSON lines, up to the
//! head found at the start. Pages are read on another task while the last
//! one is written, and a file is written under a temporary name and
//! renamed once complete, so a failed export never looks like a backup.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use factum_core::{EventStore, RecordedEvent};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Context, Store};
use crate::cli::ExportArgs;
use crate::error::CliError;
use crate::line::LineOut;
use crate::output;

/// Events per page of the log.
const PAGE: usize = 4096;
/// Pages read ahead of the writer.
const PAGES_AHEAD: usize = 4;
/// Pages read at once.
const READS_IN_FLIGHT: usize = 3;

pub(crate) async fn run<S: Store>(store: &S, args: &ExportArgs, context: &Context) -> Result<(), CliError> {
    let started = Instant::now();
    let head = store.head_position().await?;
    let mut target = Target::open(args.output.as_deref())?;
    // Lines going to the terminal itself would run through the bar.
    let bar = output::progress(
        head,
        "exporting",
        output::stdout_is_terminal() && args.output.is_some(),
    );
    let (pages, mut received) = mpsc::channel(PAGES_AHEAD);
    let reader = tokio::spawn(read_log(store.clone(), head, args.aggregate_type.clone(), pages));
    let mut exported: u64 = 0;
    while let Some(page) = received.recv().await {
        let page = page?;
        target.writer.write_all(&page.lines)?;
        exported += page.events;
        if let Some(last) = page.last {
            bar.set_position(last);
        }
    }
    reader
        .await
        .map_err(|error| CliError::failed("the export's reader failed").with_source(error))?;
    bar.finish_and_clear();
    target.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let to = args
        .output
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |path| path.display().to_string());
    if context.json {
        eprintln!(
            "{}",
            serde_json::json!({ "exported": exported, "head": head, "seconds": seconds })
        );
    } else {
        eprintln!(
            "exported {} events (up to position {}) from {} to {to} in {seconds:.1} s ({}/s)",
            output::count(exported),
            output::count(head),
            context.description,
            output::count((exported as f64 / seconds.max(1e-9)) as u64)
        );
    }
    Ok(())
}

/// A page of the log as the lines of the file.
struct EncodedPage {
    lines: Vec<u8>,
    events: u64,
    /// The position of the page's last event, if it kept any.
    last: Option<u64>,
}

/// Reads the log up to `head` in pages, keeping `aggregate_type`'s events
/// (all when `None`), and sends the pages, encoded, in order; stops early
/// when the writer is gone.
///
/// Every event up to the head found at the start is committed, so the log
/// below it can be read by position ranges, several at once: a page of
/// [`PAGE`] events after `k × PAGE` always covers the range up to
/// `(k + 1) × PAGE` (it cannot hold more positions), and what it holds
/// beyond is the next range's and dropped. Each range is read, decoded and
/// encoded on a task of its own, so that work spreads over the runtime's
/// threads and the writer only writes.
async fn read_log<S: EventStore + Clone>(
    store: S,
    head: u64,
    aggregate_type: Option<String>,
    pages: mpsc::Sender<Result<EncodedPage, CliError>>,
) {
    let page = PAGE as u64;
    let ranges = head.div_ceil(page);
    let aggregate_type: Option<std::sync::Arc<str>> = aggregate_type.map(Into::into);
    let reads = futures::stream::iter(0..ranges)
        .map(|range| {
            let store = store.clone();
            let aggregate_type = aggregate_type.clone();
            tokio::spawn(async move {
                let after = range * page;
                let last = (after + page).min(head);
                let events = store.read_all(after, PAGE).await?;
                encode(events.iter().filter(|event| {
                    event.position <= last
                        && aggregate_type
                            .as_deref()
                            .is_none_or(|wanted| event.aggregate_type() == wanted)
                }))
            })
        })
        .buffered(READS_IN_FLIGHT);
    futures::pin_mut!(reads);
    while let Some(read) = reads.next().await {
        let page = read
            .map_err(|error| CliError::failed("reading a page of the log failed").with_source(error))
            .and_then(|page| page);
        let failed = page.is_err();
        if pages.send(page).await.is_err() || failed {
            return;
        }
    }
}

/// The lines of `events`, each ended by a line break.
fn encode<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> Result<EncodedPage, CliError> {
    let mut page = EncodedPage {
        lines: Vec::with_capacity(PAGE * 384),
        events: 0,
        last: None,
    };
    for event in events {
        let line = LineOut::new(event).map_err(|error| {
            CliError::failed(format!(
                "the payload of version {} of {} (position {}) is not JSON: {error}",
                event.version, event.stream, event.position
            ))
        })?;
        line.write_to(&mut page.lines).map_err(std::io::Error::from)?;
        page.lines.push(b'\n');
        page.events += 1;
        page.last = Some(event.position);
    }
    Ok(page)
}

/// Where the lines go: standard output, a device, or a regular file
/// written under a temporary name beside it and renamed when complete.
struct Target {
    writer: BufWriter<Box<dyn Write + Send>>,
    file: Option<(PathBuf, PathBuf)>,
}

impl Target {
    fn open(path: Option<&Path>) -> Result<Self, CliError> {
        let Some(path) = path else {
            let stdout: Box<dyn Write + Send> = Box::new(std::io::stdout());
            return Ok(Self {
                writer: BufWriter::with_capacity(256 * 1024, stdout),
                file: None,
            });
        };
        // A device or a pipe (`-o /dev/stdout`) is written in place: only
        // a regular file can be replaced by a rename.
        let regular = std::fs::metadata(path).map_or(true, |meta| meta.is_file());
        if !regular {
            let file = File::create(path).map_err(|error| {
                CliError::usage(format!("cannot write {}: {error}", path.display())).with_source(error)
            })?;
            let file: Box<dyn Write + Send> = Box::new(file);
            return Ok(Self {
                writer: BufWriter::with_capacity(256 * 1024, file),
                file: None,
            });
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial).map_err(|error| {
            CliError::usage(format!("cannot create {}: {error}", partial.display())).with_source(error)
        })?;
        let file: Box<dyn Write + Send> = Box::new(file);
        Ok(Self {
            writer: BufWriter::with_capacity(256 * 1024, file),
            file: Some((partial, path.to_path_buf())),
        })
    }

    fn finish(mut self) -> Result<(), CliError> {
        self.writer.flush()?;
        if let Some((partial, path)) = self.file.take() {
            std::fs::rename(&partial, &path).map_err(|error| {
                CliError::failed(format!(
                    "cannot rename {} to {}: {error}",
                    partial.display(),
                    path.display()
                ))
            })?;
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // An export that failed leaves no file behind.
        if let Some((partial, _)) = self.file.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
}
