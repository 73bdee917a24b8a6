//! factum's spans through `telemetry::otel_layer` into OpenTelemetry's
//! in-memory exporter: names, attributes, parents and error status as an
//! OpenTelemetry backend receives them.

use factum_core::testing::Tally;
use factum_core::{Application, Error, InMemoryEventStore};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn attribute<'a>(span: &'a SpanData, name: &'static str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == Key::from_static_str(name))
        .map(|attribute| &attribute.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[test]
fn spans_reach_opentelemetry_with_their_attributes_and_parents() -> TestResult {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(factum_core::telemetry::otel_layer(provider.tracer("factum-test")));
    tracing::subscriber::with_default(subscriber, || -> TestResult {
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        runtime.block_on(async {
            let app = Application::<Tally, _>::new(InMemoryEventStore::new());
            let mut tally = Tally::create("o-1", 0);
            tally.add(5)?;
            app.save(&mut tally).await?;
            let mut stale: Tally = app.get("o-1".to_owned()).await?;
            tally.add(1)?;
            app.save(&mut tally).await?;
            stale.add(2)?;
            let conflicted: TestResult = match app.save(&mut stale).await {
                Err(Error::Conflict { .. }) => Ok(()),
                other => Err(format!("expected a conflict, got {other:?}").into()),
            };
            conflicted
        })
    })?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;

    let saves = named(&spans, "factum.save");
    let appends = named(&spans, "factum.append");
    assert_eq!((saves.len(), appends.len()), (3, 3), "{spans:#?}");
    let first_save = saves[0];
    let first_append = appends[0];
    assert_eq!(
        first_append.parent_span_id,
        first_save.span_context.span_id(),
        "the append is a child of its save"
    );
    assert_eq!(
        first_append.span_context.trace_id(),
        first_save.span_context.trace_id()
    );
    assert_eq!(
        attribute(first_append, "aggregate_type"),
        Some(&Value::from("Tally"))
    );
    assert_eq!(attribute(first_append, "aggregate_id"), Some(&Value::from("o-1")));
    assert_eq!(attribute(first_append, "event_count"), Some(&Value::I64(2)));
    assert_eq!(attribute(first_append, "stream_version"), Some(&Value::I64(2)));
    assert_eq!(attribute(first_append, "last_position"), Some(&Value::I64(2)));
    assert_eq!(first_save.status, Status::Unset);

    let load = named(&spans, "factum.load");
    assert_eq!(load.len(), 1);
    assert_eq!(attribute(load[0], "events_replayed"), Some(&Value::I64(2)));
    assert_eq!(attribute(load[0], "from_snapshot"), Some(&Value::Bool(false)));

    let conflicted = appends[2];
    assert_eq!(attribute(conflicted, "error"), Some(&Value::from("conflict")));
    assert!(
        matches!(conflicted.status, Status::Error { .. }),
        "a failed append is a failed span: {:?}",
        conflicted.status
    );
    assert!(matches!(saves[2].status, Status::Error { .. }));
    Ok(())
}
