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
    let mut child = common::factum()
        .arg("--store")
        .arg(&path)
        .args(["serve", "--addr", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
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
