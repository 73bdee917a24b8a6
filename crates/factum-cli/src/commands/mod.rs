//! One module per command; each is generic over the store, so SQLite and
//! PostgreSQL run the same code.

pub(crate) mod bench;
mod dead_letters;
mod events;
mod export;
pub(crate) mod import;
mod projections;
pub(crate) mod serve;
mod status;
mod streams;
pub(crate) mod tail;

use factum_core::{SnapshotStore, StoreAdmin, Tenancy};

use crate::cli::Command;
use crate::error::CliError;

/// What every store the command opens can do.
pub(crate) trait Store: StoreAdmin + SnapshotStore + Tenancy + Clone {}

impl<S: StoreAdmin + SnapshotStore + Tenancy + Clone> Store for S {}

/// What a command needs besides the store.
pub(crate) struct Context {
    /// `--json`.
    pub(crate) json: bool,
    /// The store, for messages.
    pub(crate) description: String,
    /// The schema version before this command opened the store (`None`:
    /// there was no store).
    pub(crate) found_version: Option<u32>,
}

pub(crate) async fn run<S: Store>(command: &Command, store: &S, context: &Context) -> Result<(), CliError> {
    match command {
        Command::Migrate => status::migrate(store, context).await,
        Command::Status => status::status(store, context).await,
        Command::Streams(args) => streams::run(store, args, context).await,
        Command::Events(args) => events::run(store, args, context).await,
        Command::Tail(args) => tail::run(store, args, context).await,
        Command::Projections(args) => projections::run(store, args, context).await,
        Command::DeadLetters(args) => dead_letters::run(store, args, context).await,
        Command::Export(args) => export::run(store, args, context).await,
        Command::Import(args) => import::run(store, args, context).await,
        Command::Console(args) => crate::console::run(store, args, context).await,
        Command::Serve(args) => serve::run(store, args, context).await,
        // Runs on a scratch store of its own, before any store is opened.
        Command::Bench(_) => Ok(()),
    }
}
