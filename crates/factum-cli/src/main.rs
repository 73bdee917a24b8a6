//! `factum`: inspect, follow, export and import a factum event store by URL.
//!
//! ```text
//! factum --store app.db status
//! factum --store postgres://postgres@127.0.0.1/postgres import backup.jsonl
//! ```
//!
//! Every command is documented in `factum --help` and in the README's
//! section "The factum command". Exit codes: 0 done, 1 failed, 2 wrong
//! command line, 3 store unavailable or at another schema version, 4 input
//! refused.

mod cli;
mod commands;
mod console;
mod error;
mod line;
mod output;
mod store;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::{Chain, CliError, Exit};
use crate::store::{Access, Location, Opened};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => Err(CliError::failed("cannot start the async runtime").with_source(error)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.exit == Exit::PipeClosed => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", Chain(&error));
            ExitCode::from(error.exit as u8)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let Some(store) = cli.store.as_deref() else {
        return Err(CliError::usage(
            "no store given: pass --store URL (a SQLite path or postgres://…) or set FACTUM_STORE",
        ));
    };
    let location = Location::parse(store)?;
    if let Command::Bench(args) = &cli.command {
        return commands::bench::run(&location, cli.schema.as_deref(), args, cli.json).await;
    }
    if let Command::Import(args) = &cli.command {
        // Before the store is opened, so a typo creates no store.
        commands::import::check_file(&args.file)?;
    }
    let access = match cli.command {
        Command::Migrate | Command::Import(_) | Command::Serve(_) => Access::CreateOrMigrate,
        _ => Access::Existing,
    };
    let (opened, found) = store::open(&location, cli.schema.as_deref(), access, store::CONNECTIONS).await?;
    let context = commands::Context {
        json: cli.json,
        description: opened.describe(),
        found_version: found,
    };
    let result = match &opened {
        Opened::Sqlite(store) => commands::run(&cli.command, store, &context).await,
        Opened::Postgres(store) => commands::run(&cli.command, store, &context).await,
    };
    let closed = opened.close().await;
    result?;
    closed.map_err(|error| CliError::failed("closing the store failed").with_source(error))
}
