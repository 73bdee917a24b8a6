//! factum's event store as a gRPC service: any [`EventStore`] (SQLite,
//! PostgreSQL, in memory) served under the contract of
//! `proto/factum/v1/eventstore.proto`, for clients in any language and for
//! [`RemoteEventStore`](factum_remote::RemoteEventStore).
//!
//! - **Authentication and tenants**: bearer tokens from a file
//!   ([`Tokens`]) map to one tenant (read-only or read-write) or to every
//!   tenant (admin). A tenant's token is answered through the store's own
//!   view of that tenant (`for_tenant`), so it reaches nothing else.
//! - **Limits** ([`Limits`]): request size (RESOURCE_EXHAUSTED above it),
//!   open subscriptions, page size. Server streams are pulled: a client
//!   that stops reading stops the server reading the store for it once
//!   HTTP/2 flow control fills, so it cannot grow the server's memory.
//! - **Health**: the standard `grpc.health.v1.Health` service.
//! - **Graceful shutdown**: no new connections, in-flight calls finish,
//!   subscriptions end with UNAVAILABLE (a `RemoteEventStore` resumes them
//!   on the next server without a gap or a duplicate).
//! - **TLS** via rustls, from PEM files.
//!
//! The messages and conversions come from factum-remote, so the server
//! and the Rust client share one definition of each.
//!
//! ```no_run
//! use factum_core::InMemoryEventStore;
//! use factum_server::{Limits, Server, Tokens};
//!
//! # async fn run() -> Result<(), factum_server::ServerError> {
//! let tokens = Tokens::from_toml("[[token]]\ntoken = \"s3cret\"\nadmin = true\n")?;
//! let server = Server::new(InMemoryEventStore::new())
//!     .tokens(tokens)
//!     .limits(Limits::new().max_subscriptions(100))
//!     .start("127.0.0.1:50051".parse().expect("an address"))
//!     .await?;
//! println!("serving on {}", server.local_addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

mod auth;
mod error;
mod limits;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use factum_core::{EventStore, SnapshotStore, Tenancy};
use factum_remote::proto::event_store_server::EventStoreServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

pub use auth::{Grant, Tokens};
pub use error::ServerError;
pub use limits::Limits;

use crate::limits::{SubscriptionSlots, codec_statuses};
use crate::service::Service;

/// A gRPC server over a store, not yet listening: set its tokens, limits
/// and TLS, then [`start`](Self::start) it.
pub struct Server<S> {
    store: S,
    tokens: Option<Tokens>,
    limits: Limits,
    tls: Option<Identity>,
}

impl<S> Server<S>
where
    S: EventStore + SnapshotStore + Tenancy + Clone,
{
    /// A server over `store`, open to every caller (no tokens), with the
    /// default [`Limits`] and no TLS.
    pub fn new(store: S) -> Self {
        Self {
            store,
            tokens: None,
            limits: Limits::new(),
            tls: None,
        }
    }

    /// Requires a bearer token from `tokens` on every call.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Replaces the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves over TLS with this certificate chain and private key (PEM).
    pub fn tls(mut self, certificate_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        self.tls = Some(Identity::from_pem(certificate_pem, key_pem));
        self
    }

    /// Binds `address` (port 0: any free port) and serves in a task of its
    /// own until [`RunningServer::shutdown`].
    pub async fn start(self, address: SocketAddr) -> Result<RunningServer, ServerError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Io {
                what: format!("binding {address}"),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Io {
            what: format!("reading the address bound for {address}"),
            source,
        })?;
        let (stop, stopping) = watch::channel(false);
        let mut builder = tonic::transport::Server::builder()
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024);
        if let Some(identity) = self.tls {
            builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
        }
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EventStoreServer<Service<S>>>().await;
        let service = Service {
            store: self.store,
            tokens: self.tokens.map(Arc::new),
            limits: self.limits,
            slots: SubscriptionSlots::new(&self.limits),
            shutdown: stopping.clone(),
        };
        let service = EventStoreServer::new(service).max_decoding_message_size(self.limits.max_message_size);
        let mut stopped = stopping;
        let router = builder
            .layer(tower::util::MapResponseLayer::new(codec_statuses))
            .add_service(health_service)
            .add_service(service);
        // Small replies must not wait for Nagle's algorithm: with it, a
        // 100-event append took ~40 ms (it meets the peer's delayed ACK).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(async move {
            let signal = async move {
                service::stopping(&mut stopped).await;
                health.set_not_serving::<EventStoreServer<Service<S>>>().await;
            };
            router
                .serve_with_incoming_shutdown(incoming, signal)
                .await
                .map_err(ServerError::from)
        });
        Ok(RunningServer {
            local_addr,
            stop,
            task,
        })
    }
}

/// A server serving in its own task. Dropping it detaches the server,
/// which then serves until the runtime ends.
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address it listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops gracefully: no new connections, in-flight calls finish, open
    /// subscriptions end with UNAVAILABLE; returns when all is done.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        // An error here means the task is gone already; its result says why.
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Waits until the server ends on its own (it does not, unless the
    /// transport fails).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await?
    }

    /// A handle that stops the server from elsewhere (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }
}

/// Stops a [`RunningServer`] from another task.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Begins a graceful shutdown (see [`RunningServer::shutdown`]).
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}
