//! The `web` example over real HTTP on 127.0.0.1: writes through the
//! application, reads from the projection's read model (read-your-writes),
//! then a graceful shutdown that stops the server, then the runner, with
//! its checkpoint committed.

#![allow(missing_docs)]

#[path = "../examples/web/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use factum::{ProjectionStore, SqliteEventStore, SqliteProjectionStore};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One HTTP/1.1 request on a fresh connection: the status and the JSON body.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let response = String::from_utf8(response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .ok_or_else(|| format!("no status line: {head:?}"))?
        .parse()?;
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)?
    };
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_read_back_from_the_projection_and_shutdown_commits_its_checkpoint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("web.db");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, database.clone(), async {
        let _ = stopped.await;
    }));

    let id = app::CounterId::generate();
    let (status, body) = http(
        address,
        "POST",
        &format!("/counters/{id}/increment"),
        r#"{"amount":2}"#,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2, "created, then incremented: {body}");
    assert_eq!(body["read_model"]["value"], 2, "read-your-writes: {body}");

    let (status, body) = http(address, "POST", &format!("/counters/{id}/increment"), "").await?;
    assert_eq!(
        (status, &body["read_model"]["value"]),
        (200, &Value::from(3)),
        "{body}"
    );

    let other = app::CounterId::generate();
    let (status, _) = http(
        address,
        "POST",
        &format!("/counters/{other}/increment"),
        r#"{"amount":5}"#,
    )
    .await?;
    assert_eq!(status, 200);

    let (status, body) = http(address, "GET", &format!("/counters/{id}"), "").await?;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["value"], &body["increments"]),
        (&Value::from(3), &Value::from(2)),
        "{body}"
    );
    let (status, body) = http(address, "GET", "/counters", "").await?;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");

    let unknown = app::CounterId::generate();
    assert_eq!(
        http(address, "GET", &format!("/counters/{unknown}"), "").await?.0,
        404
    );
    assert_eq!(
        http(address, "POST", "/counters/not-a-uuid/increment", "")
            .await?
            .0,
        400
    );
    let (status, body) = http(
        address,
        "POST",
        &format!("/counters/{id}/increment"),
        r#"{"amount":-1}"#,
    )
    .await?;
    assert_eq!(status, 422, "refused by the command: {body}");

    let (status, body) = http(address, "GET", "/projection", "").await?;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["checkpoint"], &body["lag"]),
        (&body["head"], &Value::from(0)),
        "{body}"
    );

    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert_eq!(stopped.status, factum::RunnerStatus::Stopped, "{stopped:?}");
    assert_eq!(
        stopped.checkpoint, stopped.head,
        "the runner committed everything before stopping"
    );
    assert_eq!(
        stopped.head, 5,
        "two counters: created + 2 increments, created + 1"
    );
    assert!(
        TcpStream::connect(address).await.is_err(),
        "the server no longer accepts connections"
    );

    // The checkpoint and the read model are in the file.
    let events = SqliteEventStore::open(&database).await?;
    let read_model = SqliteProjectionStore::new(&events);
    assert_eq!(read_model.checkpoint(app::PROJECTION).await?, stopped.head);
    let total: Vec<i64> = read_model
        .query(
            "SELECT value FROM counter_totals WHERE counter_id = ?1",
            (id.to_string(),),
            |row| row.get(0),
        )
        .await?;
    assert_eq!(total, [3]);
    events.close().await?;
    Ok(())
}
