use std::future::Future;

use time::OffsetDateTime;

use crate::{Error, Payload, StreamId};

/// The saved state of an aggregate at a version: a cache that lets a load
/// skip replaying the events up to that version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The version of the last event the state includes.
    pub version: u64,
    /// The version of the aggregate's shape the state was written in
    /// ([`Evolution::snapshot_version`](crate::Evolution::snapshot_version)):
    /// a snapshot of another shape version is not restored as is.
    pub schema_version: u32,
    /// The serialized aggregate.
    pub state: Payload,
    /// When it was taken.
    pub taken_at: OffsetDateTime,
}

/// Where snapshots are kept: usually the event store itself.
///
/// Only the latest snapshot of a stream matters; saving one at a lower
/// version than the stored one keeps the stored one, and one at the same
/// version replaces it.
///
/// A store keeps what it is given, the shape version included, and does
/// not compare a snapshot with its stream. An [`Application`](crate::Application) uses a snapshot only when
/// the stream holds the snapshot's version (it reads from that event on), so
/// a snapshot ahead of its stream is ignored and the aggregate is replayed.
/// The conformance suite checks both on every backend.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `snapshot`, replacing an older one of the same stream.
    fn save_snapshot(&self, snapshot: Snapshot) -> impl Future<Output = Result<(), Error>> + Send;

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send;
}

/// When an [`Application`](crate::Application) takes snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Never: every load replays the whole stream.
    Never,
    /// Whenever a save carries the stream across a multiple of this many events.
    Every(u64),
}

impl SnapshotPolicy {
    /// True when a save from version `before` to `after` should take a snapshot.
    pub fn due(self, before: u64, after: u64) -> bool {
        match self {
            Self::Never => false,
            Self::Every(0) => false,
            Self::Every(interval) => before / interval != after / interval,
        }
    }
}
