//! `factum serve`: a SQLite store served over gRPC to remote clients, with
//! tokens, stopped by SIGTERM with a clean exit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use factum_core::{EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
use factum_remote::{RemoteEventStore, RemoteOptions};

#[test]
fn serve_answers_remote_clients_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("app.db");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, "[[token]]\ntoken = \"root\"\nadmin = true\n").expect("the token file");
    let (mut child, address) = serve(
        common::factum()
            .arg("--store")
            .arg(&path)
            .args(["serve", "--addr", "127.0.0.1:0", "--tokens"])
            .arg(&tokens),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let refused =
            RemoteEventStore::connect_with(&address, RemoteOptions::new().reconnect_attempts(0)).await;
        assert!(refused.is_err(), "a client without a token is refused");
        let store = RemoteEventStore::connect_with(&address, RemoteOptions::new().token("root"))
            .await
            .expect("the server answers");
        let stream = StreamId::new("Counter", "1");
        let event = NewEvent::new("incremented", Payload::parse(r#"{"amount":1}"#).expect("JSON"));
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event])
            .await
            .expect("an append");
        assert_eq!(store.stream_version(&stream).await.expect("a version"), 1);
    });

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("factum serve ends");
    assert!(status.success(), "serve ended with {status}");
    let events = common::run(
        path.to_str().expect("a UTF-8 path"),
        &["--json", "events", "Counter/1"],
    )
    .ok();
    let stored = events.json_lines();
    assert_eq!(stored.len(), 1, "the served append is in the SQLite file");
    assert_eq!(stored[0]["event_type"], "incremented");
}

#[test]
fn serve_speaks_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let certificate = certified.cert.pem();
    std::fs::write(dir.path().join("server.pem"), &certificate).expect("the certificate file");
    std::fs::write(
        dir.path().join("server.key"),
        certified.signing_key.serialize_pem(),
    )
    .expect("the key file");
    let (mut child, address) = serve(
        common::factum()
            .arg("--store")
            .arg(dir.path().join("app.db"))
            .args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"])
            .arg(dir.path().join("server.pem"))
            .arg("--tls-key")
            .arg(dir.path().join("server.key")),
    );
    assert!(address.starts_with("https://"), "{address}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let options = RemoteOptions::new()
            .ca_certificate_pem(certificate.as_bytes())
            .domain("localhost");
        let store = RemoteEventStore::connect_with(&address, options)
            .await
            .expect("a TLS connection");
        assert_eq!(store.head_position().await.expect("a head"), 0);
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("factum serve ends");
    assert!(status.success(), "serve ended with {status}");
}

/// Starts `factum serve` as `command` says, and reads the address it
/// listens on from its first line.
fn serve(command: &mut std::process::Command) -> (std::process::Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("factum serve starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("a piped stdout"))
        .read_line(&mut first)
        .expect("the address line");
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .expect("`listening on URL`")
        .to_owned();
    (child, address)
}
