//! The command line: global options and one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Stores:
  app.db, ./data/app.db, sqlite:app.db       a SQLite file
  postgres://user@host:5432/db                a PostgreSQL database (--schema picks the schema)

Examples:
  factum --store app.db status
  factum --store app.db events Counter/42 --json
  factum --store app.db export -o backup.jsonl
  factum --store app.db console                (then open http://127.0.0.1:7070/)
  FACTUM_STORE=postgres://postgres@127.0.0.1/postgres factum import backup.jsonl

Exit codes: 0 done, 1 failed, 2 wrong command line, 3 store unavailable or at another schema
version, 4 input refused (a corrupt import line, an import into a store holding other events).";

/// Inspect, follow, export and import a factum event store.
#[derive(Debug, Parser)]
#[command(name = "factum", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The store: a SQLite path, `sqlite:PATH`, or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "FACTUM_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) store: Option<String>,

    /// The PostgreSQL schema of the store's tables [default: public].
    #[arg(
        long,
        global = true,
        env = "FACTUM_SCHEMA",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub(crate) schema: Option<String>,

    /// Print JSON (JSON lines for lists and events) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the store's tables, or bring them to this version; print the schema version.
    Migrate,
    /// Schema version, streams, events, head, size on disk, projections.
    Status,
    /// List streams: type, id, version, last event time.
    Streams(StreamsArgs),
    /// Print one stream's events, as they are read (a table, or JSON lines with --json).
    Events(EventsArgs),
    /// Follow the global log live (Ctrl-C stops).
    Tail(TailArgs),
    /// Projections: checkpoint, lag, lease holder, dead letters; `reset NAME` moves a checkpoint.
    Projections(ProjectionsArgs),
    /// A projection's dead letters: list, ask for a replay, or discard one.
    #[command(name = "dead-letters")]
    DeadLetters(DeadLettersArgs),
    /// Write events as JSON lines, in log order (every envelope field).
    Export(ExportArgs),
    /// Read JSON lines written by `export` into the store, keeping ids, versions and order.
    Import(ImportArgs),
    /// Run the README's benchmark workloads on a scratch copy beside the store.
    Bench(BenchArgs),
    /// Serve a read-only web console of the store (overview, streams, live log, projections, /metrics).
    Console(crate::console::ConsoleArgs),
    /// Serve the store over gRPC (factum-server): tokens, tenants, TLS.
    Serve(crate::commands::serve::ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StreamsArgs {
    /// Only streams of this aggregate type.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) aggregate_type: Option<String>,
    /// At most this many streams.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// The stream, as TYPE/ID (e.g. `Counter/42`).
    #[arg(value_name = "TYPE/ID")]
    pub(crate) stream: String,
    /// Start at this version.
    #[arg(long, default_value_t = 1, value_name = "VERSION")]
    pub(crate) from: u64,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Start after this position of the log [default: the last 10 events, then live].
    #[arg(long, value_name = "POS", conflicts_with = "from_end")]
    pub(crate) from: Option<u64>,
    /// Print only events committed from now on.
    #[arg(long)]
    pub(crate) from_end: bool,
    /// Only events of this aggregate type.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) aggregate_type: Option<String>,
    /// Only events of this event type.
    #[arg(long = "event", value_name = "EVENT")]
    pub(crate) event_type: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ProjectionsArgs {
    #[command(subcommand)]
    pub(crate) action: Option<ProjectionsAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionsAction {
    /// Move a projection's checkpoint (stop its runners first): its runner
    /// handles the events after it again. Dead letters above it are deleted.
    Reset {
        /// The projection's name.
        name: String,
        /// The new checkpoint: the position of the last event counted as handled.
        #[arg(long, default_value_t = 0, value_name = "POS")]
        to: u64,
        /// Reset even while an instance holds the projection's lease.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DeadLettersArgs {
    /// The projection's name.
    pub(crate) name: String,
    #[command(subcommand)]
    pub(crate) action: Option<DeadLettersAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLettersAction {
    /// List the dead letters (the default).
    List,
    /// Ask the projection's runner to handle them again (all, or the one at ID).
    Replay {
        /// The dead letter's ID: its event's position in the log.
        id: Option<u64>,
    },
    /// Delete one dead letter without handling its event.
    Discard {
        /// The dead letter's ID: its event's position in the log.
        id: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only events of this aggregate type.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) aggregate_type: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A file written by `factum export` (`-` reads standard input).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Add the file's events to a store that already holds other events.
    #[arg(long)]
    pub(crate) append: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Events in the large workloads [default: 100000; the README's figures use 1000000].
    #[arg(long, value_name = "N")]
    pub(crate) events: Option<usize>,
}

impl Cli {
    /// The command line as parsed; `--help` and `--version` print and exit.
    pub(crate) fn parse_args() -> Self {
        <Self as Parser>::parse()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
