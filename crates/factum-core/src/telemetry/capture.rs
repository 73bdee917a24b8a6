//! A `tracing` layer that keeps every span with its fields, and helpers to
//! read a metrics-util `DebuggingRecorder`: what the telemetry tests check
//! against. Shared by the crate's unit tests and `tests/telemetry.rs`
//! (included there by path), each of which uses a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// One span as the layer saw it: its fields as text, whenever recorded.
#[derive(Clone, Debug)]
pub(crate) struct CapturedSpan {
    pub(crate) name: &'static str,
    pub(crate) level: Level,
    pub(crate) parent: Option<&'static str>,
    pub(crate) fields: BTreeMap<&'static str, String>,
}

impl CapturedSpan {
    /// The field `name` as text; `None` when it was never recorded.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Keeps every span created while it is installed.
#[derive(Clone, Default)]
pub(crate) struct SpanCapture {
    spans: Arc<Mutex<Vec<CapturedSpan>>>,
}

/// Where a span's record lives in the capture.
struct Slot(usize);

impl SpanCapture {
    /// Every span seen so far, in creation order.
    pub(crate) fn spans(&self) -> Vec<CapturedSpan> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The spans named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<CapturedSpan> {
        self.spans()
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanCapture {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attributes.record(&mut Fields(&mut fields));
        let Some(span) = context.span(id) else { return };
        let parent = span.parent().map(|parent| parent.name());
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        span.extensions_mut().insert(Slot(spans.len()));
        spans.push(CapturedSpan {
            name: attributes.metadata().name(),
            level: *attributes.metadata().level(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let extensions = span.extensions();
        let Some(Slot(index)) = extensions.get::<Slot>() else {
            return;
        };
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        values.record(&mut Fields(&mut spans[*index].fields));
    }
}

struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// What a `DebuggingRecorder` held at one moment (taking it resets the
/// recorder's counters, so a test takes one and reads it).
pub(crate) struct Metrics(Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>);

impl Metrics {
    /// Takes what the recorder behind `snapshotter` holds.
    pub(crate) fn take(snapshotter: &Snapshotter) -> Self {
        Self(snapshotter.snapshot().into_vec())
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0
            .iter()
            .find(|(key, _, _, _)| {
                let key = key.key();
                key.name() == name
                    && labels.iter().all(|(label, value)| {
                        key.labels()
                            .any(|found| found.key() == *label && found.value() == *value)
                    })
            })
            .map(|(_, _, _, value)| value)
    }

    /// The counter `name` with `labels`; 0 when it was never incremented.
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(value)) => *value,
            _ => 0,
        }
    }

    /// The gauge `name` with `labels`, if it was set.
    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels) {
            Some(DebugValue::Gauge(value)) => Some(value.0),
            _ => None,
        }
    }

    /// The values recorded in the histogram `name` with `labels`.
    pub(crate) fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(values)) => values.iter().map(|value| value.0).collect(),
            _ => Vec::new(),
        }
    }

    /// The unit and help text given for the metric `name`.
    pub(crate) fn description(&self, name: &str) -> Option<(Option<Unit>, String)> {
        self.0
            .iter()
            .find(|(key, _, _, _)| key.key().name() == name)
            .and_then(|(_, unit, help, _)| help.as_ref().map(|help| (*unit, help.to_string())))
    }
}
