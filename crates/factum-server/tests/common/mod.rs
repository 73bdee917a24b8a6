//! Starting a server on an ephemeral port of 127.0.0.1 and connecting to it.

#![allow(dead_code, unreachable_pub)]

use factum_core::{EventStore, SnapshotStore, Tenancy};
use factum_remote::{RemoteEventStore, RemoteOptions};
use factum_server::{RunningServer, Server};

/// Serves `server` on a free port of 127.0.0.1.
pub async fn start<S>(server: Server<S>) -> RunningServer
where
    S: EventStore + SnapshotStore + Tenancy + Clone,
{
    let address = "127.0.0.1:0".parse().expect("a valid address");
    server
        .start(address)
        .await
        .expect("the server starts on a free port")
}

/// A client of `server` with `options`.
pub async fn connect(server: &RunningServer, options: RemoteOptions) -> RemoteEventStore {
    let address = format!("http://{}", server.local_addr());
    RemoteEventStore::connect_with(&address, options)
        .await
        .expect("the client reaches the server")
}

/// A fresh in-memory store served over gRPC, and a client of it; the
/// server lives until the test's runtime ends.
pub async fn remote_memory_store() -> Option<RemoteEventStore> {
    let server = start(Server::new(factum_core::InMemoryEventStore::new())).await;
    Some(connect(&server, RemoteOptions::new()).await)
}
