//! Failures: a connection killed mid-append, an exhausted pool, a server
//! that is down or does not answer. Each ends in a typed error that names
//! the server, and leaves nothing half-written.

mod common;

use std::time::{Duration, Instant};

use factum_core::{Error, EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
use factum_postgres::{PostgresError, PostgresEventStore, PostgresOptions};
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "incremented",
        Payload::parse(format!(r#"{{"amount":{n}}}"#)).unwrap(),
    )
}

fn postgres_error(error: &Error) -> &PostgresError {
    match error {
        Error::Store {
            backend: "postgres",
            source,
        } => source
            .downcast_ref::<PostgresError>()
            .unwrap_or_else(|| panic!("the source is not a PostgresError: {source:?}")),
        other => panic!("expected a store error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_append_leaves_nothing_and_a_typed_error() {
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(blocker) = common::raw_client().await else {
        return;
    };
    let Some(killer) = common::raw_client().await else {
        return;
    };
    let schema = store.schema_name().trim_end_matches(".factum_").to_owned();
    let stream = StreamId::new("Counter", "victim");

    // Hold version 3 of the stream in an open transaction: the append below
    // inserts versions 1 and 2, then waits on 3, mid-way through its batch.
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".factum_events (position, stream_type, stream_id, version, event_id, \
                 event_type, schema_version, payload, occurred_at, tenant) \
                 VALUES (200000000000, 'Counter', 'victim', 3, $1, 'blocker', 1, '{{}}', now(), 'default')"
            ),
            &[&Uuid::now_v7()],
        )
        .await
        .unwrap();
    let append = {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    vec![event(1), event(2), event(3)],
                )
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        let waiting = killer
            .query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%factum_events%' \
                 AND datname = current_database() AND application_name = 'factum'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = waiting.first() {
            break row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "the append never reached the blocked insert"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // While it waits, it holds back the horizon: nothing can pass it.
    let other = store
        .append(
            &StreamId::new("Counter", "bystander"),
            ExpectedVersion::NoStream,
            vec![event(9)],
        )
        .await
        .unwrap();
    assert!(store.read_all(0, 10).await.unwrap().is_empty());

    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let error = append.await.unwrap().unwrap_err();
    assert!(
        matches!(postgres_error(&error), PostgresError::ConnectionLost { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&common::address()), "{error}");
    blocker.batch_execute("ROLLBACK").await.unwrap();

    // Nothing of the batch is visible, and the horizon moves on once the
    // killed backend has finished exiting (and released its lock).
    assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = store.read_all(0, 10).await.unwrap();
        if !all.is_empty() || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].position, other.positions[0]);
    // The pool drops the dead connection; the store keeps working.
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_after_the_wait_timeout_naming_the_server() {
    let Some(store) =
        common::fresh_store_with(|options| options.pool_size(1).wait_timeout(Duration::from_millis(300)))
            .await
    else {
        return;
    };
    let held = store.pool().get().await.unwrap();
    let started = Instant::now();
    let error = store
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event(1)],
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            postgres_error(&error),
            PostgresError::PoolTimeout { max_size: 1, .. }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&common::address()) && message.contains("pool"),
        "{message}"
    );
    drop(held);
    store
        .append(
            &StreamId::new("Counter", "1"),
            ExpectedVersion::Any,
            vec![event(1)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_a_connect_error_naming_it() {
    // A port nobody listens on: connection refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let started = Instant::now();
    let error = PostgresEventStore::connect(&format!("postgres://factum:secret@127.0.0.1:{port}/postgres"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(postgres_error(&error), PostgresError::Connect { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("secret"), "the password leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // Accepts TCP connections and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let error = PostgresEventStore::connect_with(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        PostgresOptions::new().connect_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(postgres_error(&error), PostgresError::Connect { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    silent.abort();
}
