//! `RemoteEventStore`: a factum event store on a
//! [factum-server](https://docs.rs/factum-server), reached over gRPC, and
//! the wire contract both ends share.
//!
//! The client implements [`EventStore`](factum_core::EventStore),
//! [`SnapshotStore`](factum_core::SnapshotStore) and
//! [`Tenancy`](factum_core::Tenancy), and passes the same conformance suite
//! as the embedded stores.
//!
//! This crate also owns the contract itself: `proto/factum/v1/eventstore.proto`
//! (compiled at build time with protox, so no `protoc` is needed), the
//! generated messages, client and server ([`proto`]), and the conversions
//! between those messages and factum's types ([`convert`], [`status`]).
//! factum-server depends on this crate for them, so each conversion is
//! written once and both ends cannot drift apart; a client needs no server
//! code beyond the generated trait, which costs nothing unused.
//!
//! ```no_run
//! use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
//! use factum_remote::{RemoteEventStore, RemoteOptions};
//!
//! # async fn run() -> Result<(), factum_core::Error> {
//! let store = RemoteEventStore::connect_with("http://127.0.0.1:50051", RemoteOptions::new().token("s3cret")).await?;
//! let stream = StreamId::new("Counter", "1");
//! let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).expect("JSON"));
//! store.append(&stream, ExpectedVersion::Any, vec![event]).await?;
//! # Ok(()) }
//! ```

pub mod convert;
mod error;
pub mod status;
mod store;
mod subscription;

pub use error::RemoteError;
pub use store::{RemoteEventStore, RemoteOptions};

/// The messages, client and server generated from
/// `proto/factum/v1/eventstore.proto` (package `factum.v1`).
///
/// Their docs are the comments of the `.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("factum.v1");
}

/// The backend name in [`factum_core::Error::Store`] for failures of the remote store.
pub const BACKEND: &str = "remote";

/// The request header naming the tenant a call addresses (see the `.proto`).
pub const TENANT_HEADER: &str = "x-factum-tenant";
