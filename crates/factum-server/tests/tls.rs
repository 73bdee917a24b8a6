//! TLS with rustls: a client that trusts the server's certificate (made by
//! the test with rcgen) works; one that does not is refused.

mod common;

use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId};
use factum_remote::{RemoteEventStore, RemoteOptions};
use factum_server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_the_server_over_tls() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let certificate = certified.cert.pem();
    let key = certified.signing_key.serialize_pem();
    let server = common::start(Server::new(InMemoryEventStore::new()).tls(&certificate, &key)).await;
    let address = format!("https://{}", server.local_addr());

    let options = RemoteOptions::new()
        .ca_certificate_pem(certificate.as_bytes())
        .domain("localhost");
    let store = RemoteEventStore::connect_with(&address, options)
        .await
        .expect("a trusted TLS connection");
    let stream = StreamId::new("Tally", "1");
    let event = NewEvent::new("added", Payload::parse("{}").expect("JSON"));
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event])
        .await
        .expect("an append over TLS");
    assert_eq!(store.stream_version(&stream).await.expect("a version"), 1);

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let untrusting = RemoteOptions::new()
        .ca_certificate_pem(other.cert.pem().as_bytes())
        .domain("localhost")
        .reconnect_attempts(0);
    assert!(
        RemoteEventStore::connect_with(&address, untrusting)
            .await
            .is_err()
    );
    let plain = RemoteOptions::new().reconnect_attempts(0);
    let plain_address = format!("http://{}", server.local_addr());
    assert!(
        RemoteEventStore::connect_with(&plain_address, plain)
            .await
            .is_err()
    );
    server.shutdown().await.expect("a clean shutdown");
}
