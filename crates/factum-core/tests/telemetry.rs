//! The spans and metrics factum reports, checked with a layer that keeps
//! every span and with metrics-util's `DebuggingRecorder`: names, fields,
//! parents, labels and values, and that no payload is ever recorded.

#[path = "../src/telemetry/capture.rs"]
mod capture;

use std::future::Future;
use std::time::Duration;

use capture::{CapturedSpan, Metrics, SpanCapture};
use factum_core::telemetry::names;
use factum_core::testing::Tally;
use factum_core::{
    Application, Error, EventStore, HandlerError, InMemoryCheckpointStore, InMemoryDeadLetterStore,
    InMemoryEventStore, PoisonPolicy, Projection, ProjectionRunner, RecordedEvent, RetryPolicy,
    SnapshotPolicy, UnitOfWork,
};
use futures::StreamExt;
use metrics_util::debugging::DebuggingRecorder;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A payload value no span field may ever contain.
const SECRET_AMOUNT: i64 = 73_519_246;

/// Runs `work` on a current-thread runtime with the span capture and a
/// debugging recorder installed on this thread (spawned tasks run on it
/// too); returns what both saw.
fn observe<F, Fut>(
    work: F,
) -> (
    Result<(), Box<dyn std::error::Error + Send + Sync>>,
    SpanCapture,
    Metrics,
)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = TestResult>,
{
    let capture = SpanCapture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let result = tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(work())
        })
    });
    (result, capture, Metrics::take(&snapshotter))
}

fn only(capture: &SpanCapture, name: &str) -> CapturedSpan {
    let spans = capture.named(name);
    assert_eq!(spans.len(), 1, "one `{name}` span expected, got {spans:#?}");
    spans.into_iter().next().unwrap()
}

fn assert_fields(span: &CapturedSpan, expected: &[(&str, &str)]) {
    for (field, value) in expected {
        assert_eq!(
            span.field(field),
            Some(*value),
            "field `{field}` of `{}`: {span:#?}",
            span.name
        );
    }
}

fn assert_no_payload(capture: &SpanCapture) {
    let secret = SECRET_AMOUNT.to_string();
    for span in capture.spans() {
        for (field, value) in &span.fields {
            assert!(
                !value.contains(&secret),
                "`{}` recorded a payload in `{field}`: {value}",
                span.name
            );
        }
    }
}

const TALLY: [(&str, &str); 1] = [("aggregate_type", "Tally")];

#[test]
fn save_and_load_report_their_spans_and_metrics() {
    let (result, capture, metrics) = observe(|| async {
        let app = Application::<Tally, _>::new(InMemoryEventStore::new());
        let mut tally = Tally::create("t-1", 0);
        tally.add(SECRET_AMOUNT)?;
        tally.add(1)?;
        app.save(&mut tally).await?;
        let loaded: Tally = app.get("t-1".to_owned()).await?;
        assert_eq!(loaded.total, SECRET_AMOUNT + 1);
        Ok(())
    });
    result.unwrap();

    let save = only(&capture, "factum.save");
    assert_eq!(save.level, Level::INFO);
    assert_fields(
        &save,
        &[
            ("aggregate_type", "Tally"),
            ("aggregate_id", "t-1"),
            ("expected_version", "0"),
            ("event_count", "3"),
            ("stream_version", "3"),
        ],
    );
    assert_eq!(save.field("error"), None);
    let append = only(&capture, "factum.append");
    assert_eq!(
        append.parent,
        Some("factum.save"),
        "an append runs inside its save"
    );
    assert_fields(
        &append,
        &[
            ("aggregate_type", "Tally"),
            ("aggregate_id", "t-1"),
            ("expected_version", "0"),
            ("event_count", "3"),
            ("stream_version", "3"),
            ("first_position", "1"),
            ("last_position", "3"),
        ],
    );
    let load = only(&capture, "factum.load");
    assert_fields(
        &load,
        &[
            ("aggregate_type", "Tally"),
            ("aggregate_id", "t-1"),
            ("from_snapshot", "false"),
            ("events_replayed", "3"),
            ("version", "3"),
        ],
    );
    assert_eq!(
        load.field("up_to"),
        None,
        "a load of the whole stream has no bound"
    );
    assert_no_payload(&capture);

    assert_eq!(metrics.counter(names::APPENDS, &TALLY), 1);
    assert_eq!(metrics.counter(names::EVENTS_APPENDED, &TALLY), 3);
    assert_eq!(metrics.counter(names::SAVES, &TALLY), 1);
    assert_eq!(metrics.counter(names::LOADS, &TALLY), 1);
    assert_eq!(metrics.counter(names::EVENTS_REPLAYED, &TALLY), 3);
    assert_eq!(metrics.counter(names::APPEND_CONFLICTS, &TALLY), 0);
    assert_eq!(metrics.histogram(names::REPLAY_DURATION, &TALLY).len(), 1);
}

#[test]
fn a_conflict_marks_the_spans_failed_and_is_counted() {
    let (result, capture, metrics) = observe(|| async {
        let app = Application::<Tally, _>::new(InMemoryEventStore::new());
        let mut tally = Tally::create("t-2", 0);
        app.save(&mut tally).await?;
        let mut first: Tally = app.get("t-2".to_owned()).await?;
        let mut second: Tally = app.get("t-2".to_owned()).await?;
        first.add(1)?;
        app.save(&mut first).await?;
        second.add(SECRET_AMOUNT)?;
        match app.save(&mut second).await {
            Err(Error::Conflict { .. }) => Ok(()),
            other => Err(format!("expected a conflict, got {other:?}").into()),
        }
    });
    result.unwrap();

    let appends = capture.named("factum.append");
    assert_eq!(appends.len(), 3);
    assert_fields(
        &appends[2],
        &[
            ("expected_version", "1"),
            ("error", "conflict"),
            ("otel.status_code", "ERROR"),
        ],
    );
    assert_eq!(appends[2].field("stream_version"), None);
    let saves = capture.named("factum.save");
    assert_fields(&saves[2], &[("error", "conflict"), ("otel.status_code", "ERROR")]);
    assert_no_payload(&capture);

    assert_eq!(metrics.counter(names::APPEND_CONFLICTS, &TALLY), 1);
    assert_eq!(metrics.counter(names::APPENDS, &TALLY), 2);
    assert_eq!(metrics.counter(names::SAVES, &TALLY), 2);
}

#[test]
fn a_load_from_a_snapshot_says_so_and_counts_only_what_follows() {
    let (result, capture, metrics) = observe(|| async {
        let app =
            Application::<Tally, _>::new(InMemoryEventStore::new()).with_snapshots(SnapshotPolicy::Every(4));
        let mut tally = Tally::create("t-3", 0);
        for amount in 1..=4 {
            tally.add(amount)?;
        }
        app.save(&mut tally).await?; // version 5: a snapshot at 5
        tally.add(5)?;
        app.save(&mut tally).await?;
        let loaded: Tally = app.get("t-3".to_owned()).await?;
        assert_eq!(loaded.total, 15);
        let past = app.get_at("t-3".to_owned(), 2).await?;
        assert_eq!(past.total, 1);
        Ok(())
    });
    result.unwrap();

    let loads = capture.named("factum.load");
    assert_eq!(loads.len(), 2);
    assert_fields(
        &loads[0],
        &[
            ("from_snapshot", "true"),
            ("snapshot_version", "5"),
            ("events_replayed", "1"),
            ("version", "6"),
        ],
    );
    assert_fields(
        &loads[1],
        &[
            ("up_to", "2"),
            ("from_snapshot", "false"),
            ("events_replayed", "2"),
            ("version", "2"),
        ],
    );
    assert_eq!(metrics.counter(names::EVENTS_REPLAYED, &TALLY), 3);
    assert_eq!(metrics.counter(names::LOADS, &TALLY), 2);
}

#[test]
fn atomic_saves_report_one_span_and_count_each_aggregate() {
    let (result, capture, metrics) = observe(|| async {
        let store = InMemoryEventStore::new();
        let app = Application::<Tally, _>::new(store.clone());
        let mut left = Tally::create("left", 0);
        let mut right = Tally::create("right", 0);
        right.add(2)?;
        app.save_all([&mut left, &mut right]).await?;

        left.add(1)?;
        right.add(1)?;
        let mut work = UnitOfWork::new();
        work.add(&app, &mut left)?;
        work.add(&app, &mut right)?;
        work.commit().await?;
        Ok(())
    });
    result.unwrap();

    let save_all = only(&capture, "factum.save_all");
    assert_fields(
        &save_all,
        &[
            ("aggregate_type", "Tally"),
            ("aggregates", "2"),
            ("event_count", "3"),
        ],
    );
    let unit = only(&capture, "factum.unit_of_work");
    assert_fields(&unit, &[("aggregates", "2"), ("event_count", "2")]);
    let appends = capture.named("factum.append_many");
    assert_eq!(appends.len(), 2);
    assert_eq!(appends[0].parent, Some("factum.save_all"));
    assert_eq!(appends[1].parent, Some("factum.unit_of_work"));
    assert_fields(
        &appends[0],
        &[
            ("streams", "2"),
            ("event_count", "3"),
            ("first_position", "1"),
            ("last_position", "3"),
        ],
    );
    assert_fields(&appends[1], &[("first_position", "4"), ("last_position", "5")]);

    assert_eq!(metrics.counter(names::APPENDS, &TALLY), 4);
    assert_eq!(metrics.counter(names::EVENTS_APPENDED, &TALLY), 5);
    assert_eq!(metrics.counter(names::SAVES, &TALLY), 4);
}

/// Counts what it handles; fails for good on one amount.
struct Totals {
    poisoned: i64,
}

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.payload.as_str().contains(&self.poisoned.to_string()) {
            return Err("this amount is refused".into());
        }
        Ok(())
    }
}

#[test]
fn projection_batches_handlers_and_dead_letters_are_reported() {
    let (result, capture, metrics) = observe(|| async {
        let store = InMemoryEventStore::new();
        let app = Application::<Tally, _>::new(store.clone());
        let mut tally = Tally::create("p-1", 0);
        tally.add(1)?;
        tally.add(SECRET_AMOUNT)?;
        tally.add(3)?;
        let last = *app.save(&mut tally).await?.positions.last().unwrap();
        let runner = ProjectionRunner::new(
            store.clone(),
            Totals {
                poisoned: SECRET_AMOUNT,
            },
            InMemoryCheckpointStore::new(),
            InMemoryDeadLetterStore::new(),
        )
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .base_delay(Duration::from_millis(1)),
        )
        .on_poison(PoisonPolicy::DeadLetter)
        .spawn();
        tokio::time::timeout(Duration::from_secs(20), runner.wait_for_checkpoint(last)).await??;
        runner.shutdown().await?;
        Ok(())
    });
    result.unwrap();

    let batches = capture.named("factum.projection.batch");
    assert!(!batches.is_empty());
    assert_fields(
        &batches[0],
        &[
            ("projection", "totals"),
            ("event_count", "4"),
            ("first_position", "1"),
            ("last_position", "4"),
        ],
    );
    let reads = capture.named("factum.subscription.batch");
    assert_fields(
        &reads[0],
        &[
            ("projection", "totals"),
            ("after", "0"),
            ("event_count", "4"),
            ("last_position", "4"),
        ],
    );
    let handlers = capture.named("factum.projection.handle");
    assert!(handlers.iter().all(|span| span.level == Level::DEBUG));
    let poisoned: Vec<_> = handlers
        .iter()
        .filter(|span| span.field("position") == Some("3"))
        .collect();
    assert_eq!(poisoned.len(), 2, "a first try and one retry: {poisoned:#?}");
    assert_fields(
        poisoned[1],
        &[
            ("projection", "totals"),
            ("event_type", "added"),
            ("aggregate_type", "Tally"),
            ("aggregate_id", "p-1"),
            ("version", "3"),
            ("attempt", "2"),
            ("error", "handler"),
        ],
    );
    assert_eq!(handlers[0].parent, Some("factum.projection.batch"));
    assert_no_payload(&capture);

    let totals = [("projection", "totals")];
    assert_eq!(metrics.counter(names::PROJECTION_EVENTS_HANDLED, &totals), 3);
    assert_eq!(metrics.counter(names::PROJECTION_DEAD_LETTERS, &totals), 1);
    assert_eq!(metrics.counter(names::PROJECTION_RETRIES, &totals), 1);
    assert_eq!(metrics.gauge(names::PROJECTION_LAG, &totals), Some(0.0));
}

/// Handles the first two events, then never finishes the third.
struct StuckAfterTwo;

impl Projection for StuckAfterTwo {
    fn name(&self) -> &str {
        "stuck"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.position > 2 {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[test]
fn the_projection_lag_counts_what_is_left_to_read() {
    let (result, _capture, metrics) = observe(|| async {
        let store = InMemoryEventStore::new();
        let app = Application::<Tally, _>::new(store.clone());
        let mut tally = Tally::create("lag", 0);
        for amount in 1..=9 {
            tally.add(amount)?;
        }
        app.save(&mut tally).await?;
        // Pages of 2, committed every 2: the checkpoint stops at 2 while
        // the head is at 10; the runner is dropped with the runtime.
        let runner = ProjectionRunner::new(
            store.clone(),
            StuckAfterTwo,
            InMemoryCheckpointStore::new(),
            InMemoryDeadLetterStore::new(),
        )
        .batch_size(2)
        .checkpoint_every(2)
        .spawn();
        tokio::time::timeout(Duration::from_secs(20), runner.wait_for_checkpoint(2)).await??;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });
    result.unwrap();
    let lag = metrics.gauge(names::PROJECTION_LAG, &[("projection", "stuck")]);
    assert_eq!(lag, Some(8.0), "10 events, checkpoint at 2");
}

#[test]
fn subscriptions_report_each_read() {
    let (result, capture, _metrics) = observe(|| async {
        let store = InMemoryEventStore::new();
        let app = Application::<Tally, _>::new(store.clone());
        let mut tally = Tally::create("s-1", 0);
        tally.add(SECRET_AMOUNT)?;
        app.save(&mut tally).await?;
        let events: Vec<_> = store.subscribe_all(0).take(2).collect().await;
        assert_eq!(events.len(), 2);
        let stream = factum_core::StreamId::new("Tally", "s-1");
        let events: Vec<_> = store.subscribe_stream(&stream, 1).take(2).collect().await;
        assert_eq!(events.len(), 2);
        Ok(())
    });
    result.unwrap();

    let reads = capture.named("factum.subscription.batch");
    assert_fields(
        &reads[0],
        &[("after", "0"), ("event_count", "2"), ("last_position", "2")],
    );
    assert_eq!(reads[0].field("projection"), None);
    let of_stream = reads
        .iter()
        .find(|span| span.field("aggregate_id") == Some("s-1"))
        .expect("a read of the stream");
    assert_fields(
        of_stream,
        &[
            ("aggregate_type", "Tally"),
            ("from_version", "1"),
            ("event_count", "2"),
        ],
    );
    assert_no_payload(&capture);
}

#[test]
fn describe_metrics_gives_every_metric_a_unit_and_help() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        factum_core::telemetry::describe_metrics();
        // A description shows once the metric exists.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime
            .block_on(async {
                let app = Application::<Tally, _>::new(InMemoryEventStore::new());
                app.save(&mut Tally::create("d-1", 0)).await?;
                app.get("d-1".to_owned()).await.map(drop)
            })
            .unwrap();
    });
    let metrics = Metrics::take(&snapshotter);
    for name in [names::APPENDS, names::EVENTS_APPENDED, names::SAVES, names::LOADS] {
        let (unit, help) = metrics
            .description(name)
            .unwrap_or_else(|| panic!("{name} undescribed"));
        assert_eq!(unit, Some(metrics::Unit::Count), "{name}");
        assert!(!help.is_empty());
    }
    let (unit, _) = metrics.description(names::REPLAY_DURATION).unwrap();
    assert_eq!(unit, Some(metrics::Unit::Seconds));
}
