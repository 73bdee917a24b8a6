//! Runtime of [factum](https://docs.rs/factum): the traits, types and
//! in-memory store that every factum backend and application builds on.
//!
//! Users depend on the `factum` facade, which re-exports this crate together
//! with the `#[aggregate]` and `#[event]` macros; backends depend on this crate
//! directly so the facade can re-export them without a dependency cycle.

mod admin;
mod aggregate;
mod application;
#[doc(hidden)]
pub mod backend;
mod error;
mod event;
mod evolution;
mod id;
mod memory;
mod notify;
mod outbox;
mod projection;
mod repository;
mod snapshot;
mod start;
mod store;
mod subscription;
pub mod telemetry;
mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
mod unit_of_work;
mod upcast;

pub use admin::{
    LeaseInfo, ProjectionSummary, ResetReport, StoreAdmin, StoreStats, StreamQuery, StreamSummary,
};
pub use aggregate::{Aggregate, AggregateId, ApplyError, DecodeError, DefaultAggregate, DomainEvent};
pub use application::Application;
pub use error::{Error, Result};
pub use event::{Metadata, NewEvent, Payload, RecordedEvent, StreamId};
pub use evolution::{EventUpcaster, EventVersion, Evolution, SnapshotUpcaster, UpcastError, UpcastFn};
pub use memory::InMemoryEventStore;
pub use notify::{
    BroadcastNotifier, Notifications, Notifier, NotifyError, PendingAnswers, PublishError, Publisher,
    Received,
};
pub use outbox::{Outbox, OutboxClaim, OutboxEntry, OutboxRelay, Outcome, RelayHandle, RelayMetrics};
pub use projection::{
    CheckpointStore, DeadLetter, DeadLetterStore, HandlerError, InMemoryCheckpointStore,
    InMemoryDeadLetterStore, InMemoryLease, InMemoryProjectionStore, InMemoryTransaction, Lease, Plain,
    PoisonPolicy, Projection, ProjectionMetrics, ProjectionRunner, ProjectionStore, ReplayReport,
    RetryPolicy, RunnerHandle, RunnerStatus, Transactional, TransactionalProjection,
};
pub use repository::Repository;
pub use snapshot::{Snapshot, SnapshotPolicy, SnapshotStore};
pub use start::Start;
pub use store::{AppendBatch, AppendResult, EventPages, EventStore, EventStream, ExpectedVersion};
pub use tenant::{Tenancy, Tenant};
pub use unit_of_work::UnitOfWork;
pub use upcast::Upcasters;

/// The names an application author uses daily: `use factum::prelude::*;`.
///
/// The aggregate traits, `Application` and `Repository`, the in-memory
/// store, projections, and the types they hand back. What only code that
/// talks to a store directly needs (`NewEvent`, `ExpectedVersion`,
/// `Payload`, `Snapshot`...) stays a path away.
pub mod prelude {
    pub use crate::{
        Aggregate, AggregateId, Application, DefaultAggregate, DomainEvent, Error, EventStore, HandlerError,
        InMemoryEventStore, Metadata, Projection, ProjectionRunner, ProjectionStore, RecordedEvent,
        Repository, SnapshotPolicy, StreamId, Tenancy, Tenant, TransactionalProjection, UnitOfWork,
        UpcastError, Upcasters,
    };
}

/// Support for generated code and for backends; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::{
        AggregateEvents, AggregateFields, AggregateState, EventField, derive_order, from_value, record,
        replay_error, start, upcaster,
    };
    pub use serde;
    pub use serde_json;
    pub use uuid;
}
