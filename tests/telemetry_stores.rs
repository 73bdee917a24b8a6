//! Every store reports the same spans and metrics, because they are written
//! once in factum-core: the same scenario on SQLite and PostgreSQL, checked
//! with a layer that keeps every span and metrics-util's `DebuggingRecorder`.

#[path = "../crates/factum-core/src/telemetry/capture.rs"]
mod capture;

use capture::{CapturedSpan, Metrics, SpanCapture};
use factum::prelude::*;
use factum::telemetry::names;
use factum::{PostgresEventStore, PostgresOptions, SqliteEventStore};
use futures::StreamExt;
use metrics_util::debugging::DebuggingRecorder;
use tracing_subscriber::layer::SubscriberExt;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

factum::id!(
    /// Identifies a counter.
    CounterId
);

/// The DESIGN.md counter.
#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// The id.
    pub id: CounterId,
    /// The running value.
    pub value: i64,
}

#[aggregate]
impl Counter {
    /// Adds `amount`.
    #[event("incremented")]
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

/// A payload value no span field may hold.
const SECRET_AMOUNT: i64 = 58_204_117;

/// What the scenario saw: the positions of its first save.
struct Saved {
    id: CounterId,
    positions: Vec<u64>,
}

/// Loads a new counter, saves 3 events, reloads, saves once more, fails a
/// stale save with a conflict and reads the log back.
async fn scenario<S: EventStore + Clone>(store: S) -> TestResult<Saved> {
    let app = Application::<Counter, _>::new(store.clone());
    let id = CounterId::generate();
    let mut counter = app.load_or_create(id).await?;
    counter.add(SECRET_AMOUNT);
    counter.add(1);
    let first = app.save(&mut counter).await?;
    let mut stale: Counter = app.get(id).await?;
    counter.add(1);
    app.save(&mut counter).await?;
    stale.add(1);
    match app.save(&mut stale).await {
        Err(Error::Conflict { .. }) => {}
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    let read: Vec<_> = store.subscribe_all(0).take(4).collect().await;
    assert_eq!(read.len(), 4);
    Ok(Saved {
        id,
        positions: first.positions,
    })
}

/// Runs `scenario` on `store` with the capture and a recorder installed on
/// this thread, and checks what they saw.
fn check<S, F>(open: F)
where
    S: EventStore + Clone,
    F: AsyncFnOnce() -> TestResult<Option<S>>,
{
    let capture = SpanCapture::default();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let saved = tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                match open().await? {
                    Some(store) => scenario(store).await.map(Some),
                    None => Ok(None),
                }
            })
        })
    });
    let Some(saved) = saved.unwrap() else {
        return;
    };
    let metrics = Metrics::take(&snapshotter);
    let id = saved.id.to_string();
    let field = |span: &CapturedSpan, name: &str| span.field(name).map(str::to_owned);

    let saves = capture.named("factum.save");
    assert_eq!(saves.len(), 3, "{saves:#?}");
    assert_eq!(field(&saves[0], "aggregate_type").as_deref(), Some("Counter"));
    assert_eq!(field(&saves[0], "aggregate_id"), Some(id.clone()));
    assert_eq!(field(&saves[0], "event_count").as_deref(), Some("3"));
    assert_eq!(field(&saves[2], "error").as_deref(), Some("conflict"));

    let appends = capture.named("factum.append");
    assert_eq!(appends.len(), 3, "{appends:#?}");
    assert_eq!(appends[0].parent, Some("factum.save"));
    assert_eq!(field(&appends[0], "expected_version").as_deref(), Some("0"));
    assert_eq!(field(&appends[0], "stream_version").as_deref(), Some("3"));
    assert_eq!(
        field(&appends[0], "first_position"),
        Some(saved.positions[0].to_string())
    );
    assert_eq!(
        field(&appends[0], "last_position"),
        Some(saved.positions[2].to_string())
    );
    assert_eq!(field(&appends[2], "expected_version").as_deref(), Some("3"));
    assert_eq!(field(&appends[2], "error").as_deref(), Some("conflict"));
    assert_eq!(field(&appends[2], "otel.status_code").as_deref(), Some("ERROR"));

    let loads = capture.named("factum.load");
    assert_eq!(loads.len(), 2, "{loads:#?}");
    assert_eq!(
        field(&loads[0], "version").as_deref(),
        Some("0"),
        "a new aggregate"
    );
    assert_eq!(field(&loads[1], "events_replayed").as_deref(), Some("3"));
    assert_eq!(field(&loads[1], "from_snapshot").as_deref(), Some("false"));

    let reads = capture.named("factum.subscription.batch");
    assert!(
        reads
            .iter()
            .any(|read| field(read, "event_count").as_deref() == Some("4")),
        "{reads:#?}"
    );

    let secret = SECRET_AMOUNT.to_string();
    for span in capture.spans() {
        assert!(
            span.fields.values().all(|value| !value.contains(&secret)),
            "a payload in {span:#?}"
        );
    }

    let counter = [("aggregate_type", "Counter")];
    assert_eq!(metrics.counter(names::APPENDS, &counter), 2);
    assert_eq!(metrics.counter(names::EVENTS_APPENDED, &counter), 4);
    assert_eq!(metrics.counter(names::APPEND_CONFLICTS, &counter), 1);
    assert_eq!(metrics.counter(names::SAVES, &counter), 2);
    assert_eq!(metrics.counter(names::LOADS, &counter), 2);
    assert_eq!(metrics.counter(names::EVENTS_REPLAYED, &counter), 3);
    assert_eq!(metrics.histogram(names::REPLAY_DURATION, &counter).len(), 2);
}

#[test]
fn sqlite_reports_the_shared_spans_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telemetry.db");
    check(async || Ok(Some(SqliteEventStore::open(&path).await?)));
}

#[test]
fn postgres_reports_the_shared_spans_and_metrics() {
    let url = std::env::var("FACTUM_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let schema = format!("fs_telemetry_{}", std::process::id());
    let dropped = schema.clone();
    check(async || {
        let store = match PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&schema)).await
        {
            Ok(store) => store,
            Err(error) => {
                factum::testing::service_unavailable::<()>("PostgreSQL", error);
                return Ok(None);
            }
        };
        let client = store.pool().get().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
        store.ensure_schema().await?;
        Ok(Some(store))
    });
    // The schema is this test's own: drop it whatever the outcome above.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if let Ok(store) =
            PostgresEventStore::connect_with(&url, PostgresOptions::new().schema(&dropped)).await
            && let Ok(client) = store.pool().get().await
        {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{dropped}\" CASCADE"))
                .await;
        }
    });
}
