//! The write-ahead log's checkpoints: a background thread copies the log
//! into the database, so that commits never pay for a checkpoint.

use std::path::PathBuf;
use std::sync::mpsc;

use rusqlite::Connection;

use crate::{SqliteOptions, schema};

/// Copies what it can of the write-ahead log into the database without
/// waiting for readers or the writer.
pub(crate) fn checkpoint(connection: &Connection) {
    let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match checkpoint {
        Ok((log, copied)) => tracing::debug!(log, copied, "checkpointed the write-ahead log"),
        // Not fatal: the log keeps growing until the next checkpoint succeeds.
        Err(error) => tracing::warn!(%error, "checkpoint failed; will retry"),
    }
}

/// A background thread that checkpoints the write-ahead log when woken.
pub(crate) struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread; `None` (with a warning: the log is then
    /// checkpointed by the writer) when it cannot start.
    pub(crate) fn start(path: PathBuf, options: SqliteOptions) -> Option<Self> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("factum-sqlite-checkpoint".into())
            .spawn(move || {
                let connection = match schema::open_secondary(&path, &options) {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "cannot open the checkpoint connection; the write-ahead log will be checkpointed when the store closes");
                        return;
                    }
                };
                while woken.recv().is_ok() {
                    checkpoint(&connection);
                }
            });
        match spawned {
            Ok(thread) => Some(Self {
                wake,
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the checkpoint thread; the write-ahead log will be checkpointed when the store closes");
                None
            }
        }
    }

    /// Asks for a checkpoint; false when the thread is gone.
    pub(crate) fn wake(&self) -> bool {
        // A full channel means a checkpoint is already due: nothing to add.
        !matches!(self.wake.try_send(()), Err(mpsc::TrySendError::Disconnected(())))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (closed, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.wake, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
