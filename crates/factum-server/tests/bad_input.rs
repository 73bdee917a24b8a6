//! Bad input through a raw gRPC client: every request gets a typed status,
//! nothing is written, and the server keeps serving.

mod common;

use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId};
use factum_remote::RemoteOptions;
use factum_remote::convert::{append_to_wire, snapshot_to_wire};
use factum_remote::proto::event_store_client::EventStoreClient;
use factum_remote::proto::{self, AppendRequest, LoadSnapshotRequest, SaveSnapshotRequest};
use factum_server::{Limits, Server};
use tonic::transport::Channel;
use tonic::{Code, Request};

fn event() -> NewEvent {
    NewEvent::new("added", Payload::parse(r#"{"amount":1}"#).expect("JSON"))
}

fn stream() -> StreamId {
    StreamId::new("Tally", "1")
}

/// A well-formed append, to be damaged by each case.
fn good_append() -> AppendRequest {
    append_to_wire(&stream(), ExpectedVersion::Any, &[event()])
}

async fn client(server: &factum_server::RunningServer) -> EventStoreClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.local_addr()))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server answers");
    EventStoreClient::new(channel).max_encoding_message_size(64 * 1024 * 1024)
}

/// Prints the code each case got (the report lists them) and checks it.
fn check(case: &str, result: Result<impl std::fmt::Debug, tonic::Status>, expected: Code) {
    match result {
        Err(status) => {
            eprintln!("{case}: {:?} ({})", status.code(), status.message());
            assert_eq!(status.code(), expected, "{case}: {}", status.message());
        }
        Ok(answer) => panic!("{case}: accepted: {answer:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_appends_get_typed_statuses_and_write_nothing() {
    let store = InMemoryEventStore::new();
    let server =
        common::start(Server::new(store.clone()).limits(Limits::new().max_message_size(1024 * 1024))).await;
    let mut client = client(&server).await;

    let mut oversized = good_append();
    oversized.events[0].payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    check(
        "oversized append (2 MiB, limit 1 MiB)",
        client.append(oversized).await,
        Code::ResourceExhausted,
    );

    let mut bad_uuid = good_append();
    bad_uuid.events[0].event_id = "not-a-uuid".into();
    check(
        "malformed event id",
        client.append(bad_uuid).await,
        Code::InvalidArgument,
    );

    let mut empty_id = good_append();
    empty_id.stream = Some(proto::StreamId {
        aggregate_type: "Tally".into(),
        aggregate_id: String::new(),
    });
    check(
        "empty aggregate id",
        client.append(empty_id).await,
        Code::InvalidArgument,
    );

    let mut empty_type = good_append();
    empty_type.stream = Some(proto::StreamId {
        aggregate_type: String::new(),
        aggregate_id: "1".into(),
    });
    check(
        "empty aggregate type",
        client.append(empty_type).await,
        Code::InvalidArgument,
    );

    let mut no_stream = good_append();
    no_stream.stream = None;
    check(
        "missing stream",
        client.append(no_stream).await,
        Code::InvalidArgument,
    );

    let mut not_json = good_append();
    not_json.events[0].payload = "{\"amount\": 1".into();
    check(
        "payload not JSON",
        client.append(not_json).await,
        Code::InvalidArgument,
    );

    let mut no_expected = good_append();
    no_expected.expected = None;
    check(
        "missing expected version",
        client.append(no_expected).await,
        Code::InvalidArgument,
    );

    let mut no_time = good_append();
    no_time.events[0].occurred_at = None;
    check(
        "missing occurred_at",
        client.append(no_time).await,
        Code::InvalidArgument,
    );

    let mut bad_nanos = good_append();
    bad_nanos.events[0].occurred_at = Some(prost_types_timestamp(0, -1));
    check(
        "negative nanos",
        client.append(bad_nanos).await,
        Code::InvalidArgument,
    );

    let mut bad_user = good_append();
    bad_user.events[0].metadata = Some(proto::Metadata {
        user: Some("[1, 2]".into()),
        ..Default::default()
    });
    check(
        "metadata user not an object",
        client.append(bad_user).await,
        Code::InvalidArgument,
    );

    let mut bad_tenant = good_append();
    bad_tenant.events[0].metadata = Some(proto::Metadata {
        tenant: Some("acme corp".into()),
        ..Default::default()
    });
    check(
        "metadata tenant malformed",
        client.append(bad_tenant).await,
        Code::InvalidArgument,
    );

    let mut other_tenant = good_append();
    other_tenant.events[0].metadata = Some(proto::Metadata {
        tenant: Some("globex".into()),
        ..Default::default()
    });
    check(
        "metadata naming another tenant",
        client.append(other_tenant).await,
        Code::InvalidArgument,
    );

    let mut empty_type_event = good_append();
    empty_type_event.events[0].event_type = String::new();
    check(
        "empty event type",
        client.append(empty_type_event).await,
        Code::InvalidArgument,
    );

    let mut tenant_header = Request::new(good_append());
    tenant_header
        .metadata_mut()
        .insert("x-factum-tenant", "a b".parse().expect("ASCII"));
    check(
        "tenant header malformed",
        client.append(tenant_header).await,
        Code::InvalidArgument,
    );

    check(
        "append_many without batches",
        client
            .append_many(proto::AppendManyRequest { batches: vec![] })
            .await,
        Code::InvalidArgument,
    );
    let mut bad_batch = good_append();
    bad_batch.events[0].event_id = "nope".into();
    check(
        "append_many with one bad batch",
        client
            .append_many(proto::AppendManyRequest {
                batches: vec![good_append(), bad_batch],
            })
            .await,
        Code::InvalidArgument,
    );

    check(
        "read_stream with an empty stream id",
        client
            .read_stream(proto::ReadStreamRequest {
                stream: Some(proto::StreamId::default()),
                from_version: 0,
            })
            .await
            .map(|_| ()),
        Code::InvalidArgument,
    );

    let snapshot = factum_core::Snapshot {
        stream: stream(),
        version: 1,
        schema_version: 1,
        state: Payload::parse("{}").expect("JSON"),
        taken_at: time::OffsetDateTime::now_utc(),
    };
    let mut bad_state = snapshot_to_wire(&snapshot);
    bad_state.state = "not json".into();
    check(
        "snapshot state not JSON",
        client
            .save_snapshot(SaveSnapshotRequest {
                snapshot: Some(bad_state),
            })
            .await,
        Code::InvalidArgument,
    );
    check(
        "snapshot missing",
        client.save_snapshot(SaveSnapshotRequest { snapshot: None }).await,
        Code::InvalidArgument,
    );
    check(
        "load_snapshot without a stream",
        client.load_snapshot(LoadSnapshotRequest { stream: None }).await,
        Code::InvalidArgument,
    );

    // Not UTF-8: the same message with a byte string where the contract has text.
    check(
        "stream id not UTF-8",
        raw_append(&server, b"Tally", b"\xff\xfe").await,
        Code::InvalidArgument,
    );
    check(
        "event type not UTF-8",
        raw_event_type(&server, b"\xc3\x28").await,
        Code::InvalidArgument,
    );

    // A conflict carries its stream and versions to the Rust client exactly.
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![event()])
        .await
        .expect("a first append");
    let remote = common::connect(&server, RemoteOptions::new()).await;
    match remote
        .append(&stream(), ExpectedVersion::Exact(5), vec![event()])
        .await
    {
        Err(factum_core::Error::Conflict {
            stream: reported,
            expected,
            actual,
        }) => {
            assert_eq!(
                (reported, expected, actual),
                (stream(), ExpectedVersion::Exact(5), 1)
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    check(
        "conflict (expected version 5, stream at 1)",
        client
            .append(append_to_wire(&stream(), ExpectedVersion::Exact(5), &[event()]))
            .await,
        Code::Aborted,
    );

    assert_eq!(
        store.head_position().await.expect("the head"),
        1,
        "only the one good append is stored"
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{}", server.local_addr()))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the server still answers"),
    );
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status;
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.shutdown().await.expect("a clean shutdown");
}

fn prost_types_timestamp(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}

/// `StreamId` and `AppendRequest` with byte strings in place of text, to
/// send what a conforming client cannot.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct StreamId {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) aggregate_type: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) aggregate_id: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct NewEvent {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) event_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) event_type: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) payload: Vec<u8>,
        #[prost(message, optional, tag = "6")]
        pub(crate) occurred_at: Option<prost_types::Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AppendRequest {
        #[prost(message, optional, tag = "1")]
        pub(crate) stream: Option<StreamId>,
        #[prost(message, optional, tag = "2")]
        pub(crate) expected: Option<factum_remote::proto::ExpectedVersion>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) events: Vec<NewEvent>,
    }
}

async fn send_raw(
    server: &factum_server::RunningServer,
    request: raw::AppendRequest,
) -> Result<proto::AppendResponse, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{}", server.local_addr()))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server answers");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/factum.v1.EventStore/Append");
    let codec = tonic_prost::ProstCodec::<raw::AppendRequest, proto::AppendResponse>::default();
    grpc.unary(Request::new(request), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

fn raw_event(event_type: &[u8]) -> raw::NewEvent {
    raw::NewEvent {
        event_id: uuid::Uuid::now_v7().to_string().into_bytes(),
        event_type: event_type.to_vec(),
        payload: b"{}".to_vec(),
        occurred_at: Some(prost_types_timestamp(0, 0)),
    }
}

async fn raw_append(
    server: &factum_server::RunningServer,
    aggregate_type: &[u8],
    aggregate_id: &[u8],
) -> Result<proto::AppendResponse, tonic::Status> {
    let request = raw::AppendRequest {
        stream: Some(raw::StreamId {
            aggregate_type: aggregate_type.to_vec(),
            aggregate_id: aggregate_id.to_vec(),
        }),
        expected: Some(factum_remote::convert::expected_to_wire(ExpectedVersion::Any)),
        events: vec![raw_event(b"added")],
    };
    send_raw(server, request).await
}

async fn raw_event_type(
    server: &factum_server::RunningServer,
    event_type: &[u8],
) -> Result<proto::AppendResponse, tonic::Status> {
    let request = raw::AppendRequest {
        stream: Some(raw::StreamId {
            aggregate_type: b"Tally".to_vec(),
            aggregate_id: b"2".to_vec(),
        }),
        expected: Some(factum_remote::convert::expected_to_wire(ExpectedVersion::Any)),
        events: vec![raw_event(event_type)],
    };
    send_raw(server, request).await
}
