//! factum's spans exported to OpenTelemetry.

use opentelemetry::trace::Tracer;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// A `tracing-subscriber` layer that exports factum's spans (and any other
/// `tracing` span of the application) through an OpenTelemetry `tracer`.
///
/// Add it to the subscriber the application installs; the tracer comes
/// from the application's OpenTelemetry SDK set-up (an OTLP exporter, for
/// instance). Span fields become attributes; a failed span carries
/// `otel.status_code = "ERROR"`, so the backend shows it as failed.
///
/// The layer is `tracing-opentelemetry`'s, built against `opentelemetry`
/// 0.31 (`tracing-opentelemetry` 0.32): the application's SDK must be of
/// the same `opentelemetry` release.
///
/// ```
/// use opentelemetry::trace::TracerProvider as _;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let exporter = InMemorySpanExporter::default(); // an OTLP exporter in production
/// let provider = SdkTracerProvider::builder().with_simple_exporter(exporter).build();
/// let subscriber = tracing_subscriber::registry()
///     .with(factum_core::telemetry::otel_layer(provider.tracer("my-app")));
/// // tracing::subscriber::set_global_default(subscriber)?;
/// # drop(subscriber);
/// ```
pub fn otel_layer<S, T>(tracer: T) -> OpenTelemetryLayer<S, T>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    T: Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer().with_tracer(tracer)
}
