//! What an operator asks of a durable store beyond the [`EventStore`]
//! contract: how big it is, which streams and projections it holds, and
//! the few repairs a projection needs from outside its process.
//!
//! The `factum` command (crate `factum-cli`) is written against
//! [`StoreAdmin`]; the SQLite and PostgreSQL stores implement it.

use std::future::Future;

use time::OffsetDateTime;

use crate::{DeadLetter, Error, EventStore, StreamId};

/// A store's size, as `factum status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// The schema version of the store's tables.
    pub schema_version: u32,
    /// How many streams hold at least one event.
    pub streams: u64,
    /// How many events are stored.
    pub events: u64,
    /// The head of the global log ([`EventStore::head_position`]).
    pub head: u64,
    /// Bytes the store takes on disk (tables, indexes, logs), when known.
    pub bytes_on_disk: Option<u64>,
}

impl StoreStats {
    /// Stats from their parts.
    pub fn new(
        schema_version: u32,
        streams: u64,
        events: u64,
        head: u64,
        bytes_on_disk: Option<u64>,
    ) -> Self {
        Self {
            schema_version,
            streams,
            events,
            head,
            bytes_on_disk,
        }
    }
}

/// One stream, as `factum streams` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSummary {
    /// The stream (aggregate type and id).
    pub stream: StreamId,
    /// The version of its last event.
    pub version: u64,
    /// When its last event happened.
    pub last_event_at: OffsetDateTime,
}

impl StreamSummary {
    /// A summary from its parts.
    pub fn new(stream: StreamId, version: u64, last_event_at: OffsetDateTime) -> Self {
        Self {
            stream,
            version,
            last_event_at,
        }
    }
}

/// Which streams [`StoreAdmin::streams`] lists: a page in order of
/// aggregate type, then aggregate id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Only streams of this aggregate type.
    pub aggregate_type: Option<String>,
    /// Only streams after this one (the last of the previous page).
    pub after: Option<StreamId>,
    /// At most this many streams.
    pub limit: usize,
}

impl StreamQuery {
    /// The first `limit` streams of every type.
    pub fn first(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only streams of `aggregate_type`.
    pub fn of_type(mut self, aggregate_type: impl Into<String>) -> Self {
        self.aggregate_type = Some(aggregate_type.into());
        self
    }

    /// Only streams after `stream`.
    pub fn after(mut self, stream: StreamId) -> Self {
        self.after = Some(stream);
        self
    }
}

/// Who runs a projection, as its lease says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The instance holding the lease.
    pub holder: String,
    /// When the lease lapses unless renewed.
    pub expires_at: OffsetDateTime,
}

impl LeaseInfo {
    /// A lease from its parts.
    pub fn new(holder: impl Into<String>, expires_at: OffsetDateTime) -> Self {
        Self {
            holder: holder.into(),
            expires_at,
        }
    }

    /// True while the lease has not lapsed at `now`.
    pub fn is_held_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now
    }
}

/// One projection known to the store: it has a checkpoint, dead letters or
/// a lease there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionSummary {
    /// The projection's name.
    pub name: String,
    /// Its committed checkpoint (0: none).
    pub checkpoint: u64,
    /// Its lease, if one was ever taken and not released.
    pub lease: Option<LeaseInfo>,
    /// How many dead letters it has.
    pub dead_letters: u64,
    /// How many of them wait for a replay ([`DeadLetter::replay_requested`]).
    pub replays_requested: u64,
}

impl ProjectionSummary {
    /// A summary from its parts.
    pub fn new(
        name: impl Into<String>,
        checkpoint: u64,
        lease: Option<LeaseInfo>,
        dead_letters: u64,
        replays_requested: u64,
    ) -> Self {
        Self {
            name: name.into(),
            checkpoint,
            lease,
            dead_letters,
            replays_requested,
        }
    }

    /// How far the projection is behind `head`, in positions of the log.
    pub fn lag(&self, head: u64) -> u64 {
        head.saturating_sub(self.checkpoint)
    }
}

/// What [`StoreAdmin::reset_projection`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResetReport {
    /// The checkpoint before the reset.
    pub previous: u64,
    /// The checkpoint now.
    pub checkpoint: u64,
    /// Dead letters above the new checkpoint, deleted because the runner
    /// meets their events again.
    pub dead_letters_removed: u64,
}

impl ResetReport {
    /// A report from its parts.
    pub fn new(previous: u64, checkpoint: u64, dead_letters_removed: u64) -> Self {
        Self {
            previous,
            checkpoint,
            dead_letters_removed,
        }
    }
}

/// Inspection and repair of a durable store, for operators: what the
/// `factum` command uses.
///
/// None of these methods is needed by an application; they read the
/// store's tables directly and are cheap enough to call from a console.
///
/// ```
/// # use factum_core::{EventStore, StoreAdmin, StreamQuery};
/// async fn print_streams(store: &impl StoreAdmin) -> Result<(), factum_core::Error> {
///     let stats = store.stats().await?;
///     println!("{} events in {} streams", stats.events, stats.streams);
///     for summary in store.streams(StreamQuery::first(10)).await? {
///         println!("{} at version {}", summary.stream, summary.version);
///     }
///     Ok(())
/// }
/// ```
pub trait StoreAdmin: EventStore {
    /// The schema version, counts, head and size of the store.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, Error>> + Send;

    /// A page of streams, in order of aggregate type then id.
    fn streams(&self, query: StreamQuery) -> impl Future<Output = Result<Vec<StreamSummary>, Error>> + Send;

    /// Every projection with a checkpoint, a dead letter or a lease, by name.
    fn projections(&self) -> impl Future<Output = Result<Vec<ProjectionSummary>, Error>> + Send;

    /// The dead letters of `projection`, in position order.
    fn dead_letters(&self, projection: &str) -> impl Future<Output = Result<Vec<DeadLetter>, Error>> + Send;

    /// Deletes the dead letter of `projection` at `position` without
    /// handling its event; false when there was none.
    fn discard_dead_letter(
        &self,
        projection: &str,
        position: u64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Asks the projection's runner to handle the dead letter at `position`
    /// again (every dead letter of `projection` when `None`): marks them as
    /// [`DeadLetter::replay_requested`]. A runner replays marked letters
    /// when it starts and while it is idle; one that succeeds is deleted,
    /// one that fails again is kept with its new error. Returns how many
    /// letters were marked.
    fn request_replay(
        &self,
        projection: &str,
        position: Option<u64>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Moves the checkpoint of `projection` to `position` (0: the start),
    /// and deletes its dead letters above it, in one transaction: its
    /// runner handles the events after `position` again when it next
    /// starts. The read model is left as it is.
    ///
    /// Stop the projection's runners first: a running one would overwrite
    /// the checkpoint (or, with a transactional projection, stop with
    /// [`Error::Checkpoint`]).
    fn reset_projection(
        &self,
        projection: &str,
        position: u64,
    ) -> impl Future<Output = Result<ResetReport, Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_never_underflows() {
        let summary = ProjectionSummary::new("p", 10, None, 0, 0);
        assert_eq!(summary.lag(25), 15);
        assert_eq!(summary.lag(4), 0);
    }

    #[test]
    fn a_lease_is_held_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let lease = LeaseInfo::new("host-a", now + time::Duration::seconds(5));
        assert!(lease.is_held_at(now));
        assert!(!lease.is_held_at(now + time::Duration::seconds(6)));
    }
}
