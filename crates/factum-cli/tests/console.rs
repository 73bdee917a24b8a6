//! `factum console` over plain HTTP: the token rule, `/metrics`, and the
//! pages on PostgreSQL. The pages in a real browser are in `browser.rs`.

mod common;

use std::time::Duration;

use common::console::ConsoleProcess;
use common::{factum, finish, seeded_sqlite};
use factum_core::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventStore, ExpectedVersion, Lease, NewEvent, Payload,
    StreamId,
};
use factum_sqlite::{SqliteEventStore, SqliteProjectionStore};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A SQLite store of 3 streams × 4 events, and a projection `totals` at
/// checkpoint 9 with one dead letter (position 5) and a lease.
fn store_with_a_projection(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("app.db");
    runtime().block_on(async {
        seeded_sqlite(&path, 3, 4).await;
        let events = SqliteEventStore::open(&path).await.unwrap();
        let projections = SqliteProjectionStore::new(&events);
        projections.save("totals", 9).await.unwrap();
        let event = events.read_all(4, 1).await.unwrap().remove(0);
        projections
            .put(DeadLetter::new("totals", event, "<b>price</b> missing", 3))
            .await
            .unwrap();
        projections
            .acquire("totals", "host-a", Duration::from_secs(600))
            .await
            .unwrap();
        events.close().await.unwrap();
    });
    path.display().to_string()
}

#[test]
fn off_loopback_the_console_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_projection(&dir);
    let refused = finish(
        factum()
            .args(["--store", &store, "console", "--addr", "0.0.0.0:0"])
            .output()
            .unwrap(),
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not a loopback address") && refused.stderr.contains("--token"),
        "{}",
        refused.stderr
    );
    let bad_token = finish(
        factum()
            .args(["--store", &store, "console", "--token", "a b"])
            .output()
            .unwrap(),
    );
    assert_eq!(bad_token.code, 2, "{}", bad_token.stderr);
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_projection(&dir);
    let console = ConsoleProcess::start(&["--store", &store], &["--token", "s3cret-token"]);

    for path in [
        "/",
        "/streams",
        "/metrics",
        "/live/events",
        "/assets/console.js",
        "/nowhere",
    ] {
        let response = console.get(path, &[]);
        assert_eq!(response.status, 401, "{path}: {response:?}");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert!(!response.body.contains("Counter"), "{path} shows data");
    }
    let wrong = console.get("/", &[("Authorization", "Bearer s3cret-tokem")]);
    assert_eq!(wrong.status, 401);
    assert_eq!(console.get("/?token=nope", &[]).status, 401);

    let bearer = console.get("/streams", &[("Authorization", "Bearer s3cret-token")]);
    assert_eq!(bearer.status, 200, "{bearer:?}");
    assert!(bearer.body.contains("c-2"), "{}", bearer.body);

    let login = console.get("/streams?type=Counter&token=s3cret-token", &[]);
    assert_eq!(login.status, 303, "{login:?}");
    assert_eq!(login.header("location"), Some("/streams?type=Counter"));
    let cookie = login.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let page = console.get("/streams?type=Counter", &[("Cookie", pair)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("c-1"), "{}", page.body);
    let metrics = console.get("/metrics", &[("Authorization", "Bearer s3cret-token")]);
    assert_eq!(metrics.status, 200);
}

#[test]
fn metrics_expose_the_store_at_scrape_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_projection(&dir);
    let console = ConsoleProcess::start(&["--store", &store], &[]);

    let metrics = console.get("/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/plain; version=0.0.4")),
        "{metrics:?}"
    );
    let body = &metrics.body;
    for line in [
        "factum_store_up 1",
        "factum_store_head_position 12",
        "factum_store_events 12",
        "factum_store_streams 3",
        "factum_store_projection_checkpoint{projection=\"totals\"} 9",
        "factum_store_projection_lag{projection=\"totals\"} 3",
        "factum_store_projection_dead_letters{projection=\"totals\"} 1",
        "# TYPE factum_store_events gauge",
        "# HELP factum_store_head_position Position of the last event of the global log",
    ] {
        assert!(
            body.lines().any(|got| got == line),
            "no line `{line}` in:\n{body}"
        );
    }

    // Gauges are read at each scrape: an append shows at the next one.
    runtime().block_on(async {
        let events = SqliteEventStore::open(dir.path().join("app.db")).await.unwrap();
        let event = NewEvent::new("created", Payload::parse("{}").unwrap());
        events
            .append(
                &StreamId::new("Counter", "later"),
                ExpectedVersion::NoStream,
                vec![event],
            )
            .await
            .unwrap();
        events.close().await.unwrap();
    });
    let later = console.get("/metrics", &[]).body;
    assert!(
        later.lines().any(|line| line == "factum_store_head_position 13"),
        "{later}"
    );
    assert!(
        later
            .lines()
            .any(|line| line == "factum_store_projection_lag{projection=\"totals\"} 4"),
        "{later}"
    );
}

#[test]
fn pages_answer_with_their_content_and_escape_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_projection(&dir);
    let console = ConsoleProcess::start(&["--store", &store], &[]);

    let overview = console.get("/", &[]);
    assert_eq!(overview.status, 200);
    assert!(
        overview.body.contains(r#"data-figure="events">12<"#),
        "{}",
        overview.body
    );
    let csp = overview.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let stream = console.get("/stream?type=Counter&id=c-1&size=2&from=2", &[]);
    assert_eq!(stream.status, 200);
    assert!(stream.body.contains("versions 2 to 3 of 4"), "{}", stream.body);
    assert!(!stream.body.contains("<script>alert"), "{}", stream.body);
    assert!(
        stream.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        stream.body
    );

    let projections = console.get("/projections", &[]);
    assert!(
        projections.body.contains("&lt;b&gt;price&lt;/b&gt; missing"),
        "{}",
        projections.body
    );
    assert!(projections.body.contains("host-a"), "{}", projections.body);

    assert_eq!(console.get("/stream?type=Counter&id=nope", &[]).status, 404);
    assert_eq!(console.get("/stream?type=Counter", &[]).status, 400);
    assert_eq!(console.get("/stream?type=Counter&id=c-1&from=x", &[]).status, 400);
    let found = console.get("/streams?type=Counter&id=c-2", &[]);
    assert_eq!(found.status, 303);
    assert_eq!(found.header("location"), Some("/stream?type=Counter&id=c-2"));
}

#[test]
fn pages_render_a_postgres_store() {
    let runtime = runtime();
    let Some(postgres) = runtime.block_on(common::postgres()) else {
        return;
    };
    runtime.block_on(async {
        let store = postgres.store().await;
        common::seed(&store, 2, 3).await;
        store.close().await.unwrap();
    });
    let url = common::postgres_url();
    let console = ConsoleProcess::start(&["--store", &url, "--schema", &postgres.schema], &[]);
    let overview = console.get("/", &[]);
    assert_eq!(overview.status, 200, "{overview:?}");
    assert!(
        overview.body.contains(r#"data-figure="events">6<"#),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("PostgreSQL"), "{}", overview.body);
    let streams = console.get("/streams?type=Counter", &[]);
    assert!(streams.body.contains("c-1"), "{}", streams.body);
    let stream = console.get("/stream?type=Counter&id=c-0", &[]);
    assert!(stream.body.contains("versions 1 to 3 of 3"), "{}", stream.body);
    let metrics = console.get("/metrics", &[]).body;
    assert!(
        metrics.lines().any(|line| line == "factum_store_events 6"),
        "{metrics}"
    );
    drop(console);
    runtime.block_on(postgres.drop());
}
