//! Bearer tokens and tenants: a token reaches only its tenant's data, a
//! read-only token cannot write, an admin token sees everything.

mod common;

use factum_core::{
    Error, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId, Tenancy,
};
use factum_remote::proto::HeadRequest;
use factum_remote::proto::event_store_client::EventStoreClient;
use factum_remote::{RemoteError, RemoteEventStore, RemoteOptions};
use factum_server::{RunningServer, Server, Tokens};
use futures::{StreamExt, TryStreamExt};
use tonic::{Code, Request};

const TOKENS: &str = r#"
[[token]]
token = "root"
admin = true

[[token]]
token = "acme-writer"
tenant = "acme"
access = "read-write"

[[token]]
token = "acme-reader"
tenant = "acme"

[[token]]
token = "globex-writer"
tenant = "globex"
access = "read-write"
"#;

fn event() -> NewEvent {
    NewEvent::new("added", Payload::parse(r#"{"amount":1}"#).expect("JSON"))
}

/// The gRPC code inside a remote store's error.
fn code_of(error: &Error) -> Option<Code> {
    match error {
        Error::Store { source, .. } => source.downcast_ref::<RemoteError>().and_then(RemoteError::code),
        _ => None,
    }
}

async fn server() -> RunningServer {
    let tokens = Tokens::from_toml(TOKENS).expect("the token file parses");
    common::start(Server::new(InMemoryEventStore::new()).tokens(tokens)).await
}

async fn as_token(server: &RunningServer, token: &str) -> RemoteEventStore {
    common::connect(server, RemoteOptions::new().token(token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_tokens_are_unauthenticated() {
    let server = server().await;
    let address = format!("http://{}", server.local_addr());
    for options in [RemoteOptions::new(), RemoteOptions::new().token("guess")] {
        match RemoteEventStore::connect_with(&address, options).await {
            Err(error) => assert_eq!(code_of(&error), Some(Code::Unauthenticated), "{error}"),
            Ok(_) => panic!("a call without a valid token was answered"),
        }
    }
    let mut client = EventStoreClient::connect(address)
        .await
        .expect("the server answers");
    let mut malformed = Request::new(HeadRequest {});
    malformed
        .metadata_mut()
        .insert("authorization", "Basic cm9vdDo=".parse().expect("ASCII"));
    assert_eq!(
        client.head(malformed).await.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unauthenticated)
    );
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reaches_only_its_tenant() {
    let server = server().await;
    let acme = as_token(&server, "acme-writer").await;
    let globex = as_token(&server, "globex-writer").await;
    let stream = StreamId::new("Tally", "1");
    acme.append(&stream, ExpectedVersion::NoStream, vec![event(), event()])
        .await
        .expect("acme writes");

    // globex sees none of it: the same stream id is another (empty) stream.
    assert_eq!(globex.stream_version(&stream).await.expect("a version"), 0);
    assert!(globex.read_all(0, 100).await.expect("a read").is_empty());
    assert_eq!(globex.head_position().await.expect("a head"), 0);
    let events: Vec<_> = globex
        .read_stream(&stream, 0)
        .try_collect()
        .await
        .expect("a read");
    assert!(events.is_empty());
    globex
        .append(&stream, ExpectedVersion::NoStream, vec![event()])
        .await
        .expect("globex has its own stream");

    // Naming another tenant is refused, with the tenant error, and no data.
    let reach = globex.for_tenant("acme").expect("a client-side view");
    match reach.read_all(0, 100).await {
        Err(Error::InvalidTenant { tenant, .. }) => assert_eq!(tenant, "acme"),
        other => panic!("expected the tenant refused, got {other:?}"),
    }
    let mut client = EventStoreClient::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("answers");
    let mut crossing = Request::new(HeadRequest {});
    crossing
        .metadata_mut()
        .insert("authorization", "Bearer globex-writer".parse().expect("ASCII"));
    crossing
        .metadata_mut()
        .insert("x-factum-tenant", "acme".parse().expect("ASCII"));
    assert_eq!(
        client.head(crossing).await.map(|_| ()).map_err(|s| s.code()),
        Err(Code::PermissionDenied)
    );

    // acme's subscription carries acme's events only.
    let mut following = acme.subscribe_all(0);
    for version in 1..=2 {
        let event = following.next().await.expect("an event").expect("no error");
        assert_eq!(
            (event.version, event.metadata.tenant.as_ref().map(|t| t.as_str())),
            (version, Some("acme"))
        );
    }
    acme.append(&stream, ExpectedVersion::Exact(2), vec![event()])
        .await
        .expect("acme writes again");
    assert_eq!(
        following
            .next()
            .await
            .expect("an event")
            .expect("no error")
            .version,
        3
    );
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_cannot_write() {
    let server = server().await;
    let reader = as_token(&server, "acme-reader").await;
    let writer = as_token(&server, "acme-writer").await;
    let stream = StreamId::new("Tally", "1");
    match reader.append(&stream, ExpectedVersion::Any, vec![event()]).await {
        Err(error) => assert_eq!(code_of(&error), Some(Code::PermissionDenied), "{error}"),
        Ok(_) => panic!("a read-only token appended"),
    }
    let batch = factum_core::AppendBatch::new(stream.clone(), ExpectedVersion::Any, vec![event()]);
    let refused = reader
        .append_many(vec![batch])
        .await
        .expect_err("a read-only token cannot append_many");
    assert_eq!(code_of(&refused), Some(Code::PermissionDenied));
    assert_eq!(
        writer.stream_version(&stream).await.expect("a version"),
        0,
        "nothing was written"
    );
    writer
        .append(&stream, ExpectedVersion::Any, vec![event()])
        .await
        .expect("the writer writes");
    assert_eq!(reader.stream_version(&stream).await.expect("the reader reads"), 1);
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_sees_every_tenant() {
    let server = server().await;
    let stream = StreamId::new("Tally", "1");
    for token in ["acme-writer", "globex-writer"] {
        let tenant = as_token(&server, token).await;
        tenant
            .append(&stream, ExpectedVersion::NoStream, vec![event()])
            .await
            .expect("each tenant writes");
    }
    let admin = as_token(&server, "root").await;
    let log = admin.read_all(0, 100).await.expect("the whole log");
    let tenants: Vec<_> = log
        .iter()
        .filter_map(|e| e.metadata.tenant.as_ref().map(|t| t.to_string()))
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    let acme = admin.for_tenant("acme").expect("an admin picks a tenant");
    assert_eq!(acme.read_all(0, 100).await.expect("acme's log").len(), 1);
    assert_eq!(acme.stream_version(&stream).await.expect("a version"), 1);
    assert_eq!(
        admin.stream_version(&stream).await.expect("the default tenant's"),
        0
    );
    server.shutdown().await.expect("a clean shutdown");
}
