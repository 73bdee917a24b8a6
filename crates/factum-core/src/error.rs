use uuid::Uuid;

use crate::{ExpectedVersion, StreamId};

/// Result alias used throughout factum.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, saving or reading events.
///
/// Every variant names the stream involved, and where it applies the version
/// and event type, so an error in a log says which event to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the expected version: another writer got there
    /// first. Nothing of the batch was written; reload and retry.
    #[error("conflict on stream {stream}: expected {expected}, but the stream is at version {actual}")]
    Conflict {
        /// The stream written to.
        stream: StreamId,
        /// The version the writer expected.
        expected: ExpectedVersion,
        /// The version the stream was actually at (0: no events).
        actual: u64,
    },

    /// The stream has no events.
    #[error("stream {stream} not found")]
    NotFound {
        /// The stream looked up.
        stream: StreamId,
    },

    /// A version beyond the end of the stream was asked for.
    #[error("stream {stream} has no version {requested}: it ends at version {actual}")]
    VersionNotFound {
        /// The stream looked up.
        stream: StreamId,
        /// The version asked for.
        requested: u64,
        /// The last version of the stream.
        actual: u64,
    },

    /// An event payload could not be serialized or no longer deserializes.
    #[error("event `{event_type}` at version {version} of stream {stream} does not (de)serialize: {source}")]
    Serialization {
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in its stream (for a new event, the version it would get).
        version: u64,
        /// The event type.
        event_type: String,
        /// The serde_json error.
        #[source]
        source: serde_json::Error,
    },

    /// A stored event type that the aggregate's event enum does not know.
    #[error("unknown event type `{event_type}` at version {version} of stream {stream}")]
    UnknownEventType {
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The unknown event type.
        event_type: String,
    },

    /// Replaying a stored event failed: its method body returned `Err`, or
    /// the history is not one the aggregate can start from.
    ///
    /// The source is the body's own error (downcast it to your error type)
    /// when that type implements `std::error::Error`; otherwise an
    /// [`ApplyError`](crate::ApplyError) holding its text.
    #[error("replaying `{event_type}` at version {version} of stream {stream} failed: {source}")]
    Replay {
        /// The stream being replayed.
        stream: StreamId,
        /// The version of the event that failed.
        version: u64,
        /// The event type.
        event_type: String,
        /// What the body or the check reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An old payload could not be lifted to the current schema version:
    /// an upcaster returned an error (its message is in `reason`).
    #[error(
        "upcasting `{event_type}` at version {version} of stream {stream} from schema version {schema_version} to {current_version} failed: {reason}"
    )]
    Upcast {
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event type, as stored.
        event_type: String,
        /// The schema version the payload was stored with.
        schema_version: u32,
        /// The schema version the code reads it at.
        current_version: u32,
        /// Which step failed and what the upcaster reported.
        reason: String,
    },

    /// A stored event has a schema version above the one the code knows for
    /// its type: it was written by newer code. It is never decoded as if it
    /// were current.
    #[error(
        "event `{event_type}` at version {version} of stream {stream} has schema version {schema_version}, but this code knows `{event_type}` only up to schema version {current_version}: it was written by newer code; read it with that code (or declare `version = {schema_version}` and its upcaster here)"
    )]
    SchemaTooNew {
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// The event type, as stored.
        event_type: String,
        /// The schema version the event was stored with.
        schema_version: u32,
        /// The newest schema version of this type the code knows.
        current_version: u32,
    },

    /// The upcasters registered at run time do not fit the evolution the
    /// aggregate's code declares: found when the application (or
    /// repository) is built, before anything is read.
    #[error(
        "evolution of `{aggregate_type}`, event `{event_type}` at schema version {schema_version}: {reason}"
    )]
    Evolution {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// The event type concerned.
        event_type: String,
        /// The schema version where the chain is broken.
        schema_version: u32,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// A stored event is damaged (a gap in versions, a bad column value).
    #[error("corrupt event at version {version} of stream {stream}: {reason}")]
    Corrupt {
        /// The stream holding the event.
        stream: StreamId,
        /// The version where the damage was found.
        version: u64,
        /// What is wrong.
        reason: String,
    },

    /// An event id was appended before with different content. Retrying an
    /// append with the same ids and content is fine and returns the original
    /// positions; reusing an id for another event is this error.
    ///
    /// Event ids are unique across tenants. An id taken in another tenant
    /// than the append's is this error too, and the error does not say
    /// where: `existing_stream` is then `$other-tenant-hidden`.
    #[error(
        "event id {event_id} was already appended to stream {existing_stream} with different content (now appended to {stream})"
    )]
    DuplicateEventId {
        /// The stream of the rejected append.
        stream: StreamId,
        /// The stream that holds the event with this id.
        existing_stream: StreamId,
        /// The reused event id.
        event_id: Uuid,
    },

    /// A tenant name that is not a valid [`Tenant`](crate::Tenant), or a
    /// tenant the caller cannot reach: another tenant than its view's own,
    /// or an event whose metadata names another tenant than the one it is
    /// appended to. Nothing was written.
    #[error("tenant `{tenant}`: {reason}")]
    InvalidTenant {
        /// The tenant name given (shortened when very long).
        tenant: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The caller passed something the store cannot accept.
    #[error("invalid request on stream {stream}: {reason}")]
    InvalidRequest {
        /// The stream involved.
        stream: StreamId,
        /// What is wrong with the request.
        reason: String,
    },

    /// An atomic append across streams
    /// ([`EventStore::append_many`](crate::EventStore::append_many)) was
    /// given no batch. Nothing was written.
    #[error("an atomic append across streams needs at least one batch, and was given none")]
    EmptyBatchList,

    /// The same stream has two batches in one atomic append across streams.
    /// Nothing was written: put the stream's events in one batch.
    #[error("stream {stream} has two batches in one atomic append: give each stream one batch")]
    DuplicateStream {
        /// The stream named twice.
        stream: StreamId,
    },

    /// A projection's handler kept failing on an event and the runner's
    /// poison policy is [`Stop`](crate::PoisonPolicy::Stop): the runner
    /// stopped with its checkpoint before the event, so nothing is lost.
    #[error(
        "projection `{projection}` failed on `{event_type}` at position {position} (version {version} of stream {stream}): {message}"
    )]
    Projection {
        /// The projection's name.
        projection: String,
        /// The event's position in the global log.
        position: u64,
        /// The event type.
        event_type: String,
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in its stream.
        version: u64,
        /// What the handler reported on its last attempt.
        message: String,
    },

    /// A projection's checkpoint could not be kept: another instance moved
    /// it (the compare-and-set of a commit failed), or a checkpoint store
    /// refused the write.
    #[error("checkpoint of projection `{projection}`: {message}")]
    Checkpoint {
        /// The projection's name.
        projection: String,
        /// What went wrong.
        message: String,
    },

    /// A projection runner ended abnormally (its task panicked or was
    /// cancelled from outside).
    #[error("runner of projection `{projection}` ended abnormally: {message}")]
    Runner {
        /// The projection's name.
        projection: String,
        /// What happened.
        message: String,
    },

    /// The events were saved, but the application's
    /// [`Notifier`](crate::Notifier) failed: do not save them again. Without
    /// an outbox, this notification is lost; see the table in the notifier
    /// docs.
    #[error("events of stream {stream} up to version {version} are saved, but notifying failed: {source}")]
    Notify {
        /// The stream saved to.
        stream: StreamId,
        /// The stream's version after the save.
        version: u64,
        /// The notifier's error.
        #[source]
        source: crate::NotifyError,
    },

    /// The backend failed (connection lost, I/O error, schema mismatch).
    #[error("{backend} event store: {source}")]
    Store {
        /// Which backend (`"postgres"`, `"sqlite"`, ...).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Wraps a backend's error, keeping it as the source.
    pub fn store(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Store {
            backend,
            source: source.into(),
        }
    }

    /// True for [`Error::Conflict`]: the caller should reload and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}
