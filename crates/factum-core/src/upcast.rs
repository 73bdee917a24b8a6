use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

type Step = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// Lifts stored payloads written under an old schema to the current one
/// while reading: stored events are never rewritten.
///
/// Each step lifts one event type from schema version `n` to `n + 1`; the
/// current version of a type is one above its highest step (1 without
/// steps), and new events are saved with it.
///
/// This is the run-time registry, for events whose versions the code does
/// not declare (events of other producers, or aggregates written by hand).
/// An `#[aggregate]` declares its own with `#[event("name", version = N)]`
/// and `#[upcast]` functions; [`Application::with_upcasters`](crate::Application::with_upcasters)
/// checks the two against each other when the application is built: a
/// registry with a gap in a chain, or lifting an event whose version the
/// code declares, is an [`Error::Evolution`](crate::Error::Evolution) then,
/// never a failed read later.
///
/// ```
/// use factum_core::Upcasters;
/// use serde_json::{json, Value};
///
/// // Version 1 of `incremented` had `by`; version 2 calls it `amount`.
/// let upcasters = Upcasters::new().register("incremented", 1, |mut payload: Value| {
///     let by = payload.get("by").cloned().ok_or("`by` is missing")?;
///     payload["amount"] = by;
///     Ok(payload)
/// });
/// assert_eq!(upcasters.current_version("incremented"), 2);
/// let lifted = upcasters.upcast("incremented", 1, json!({ "by": 5 })).unwrap();
/// assert_eq!(lifted["amount"], 5);
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<String, Vec<Option<Step>>>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: HashMap<&str, u32> = self
            .steps
            .keys()
            .map(|event_type| (event_type.as_str(), self.current_version(event_type)))
            .collect();
        f.debug_struct("Upcasters")
            .field("current_versions", &versions)
            .finish()
    }
}

impl Upcasters {
    /// No upcasters: every event type is at schema version 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the step that lifts `event_type` payloads from schema version
    /// `from_version` to `from_version + 1`.
    pub fn register(
        mut self,
        event_type: impl Into<String>,
        from_version: u32,
        step: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        let steps = self.steps.entry(event_type.into()).or_default();
        let index = from_version.max(1) as usize - 1;
        if steps.len() <= index {
            steps.resize(index + 1, None);
        }
        steps[index] = Some(Arc::new(step));
        self
    }

    /// True when no step is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The schema version new `event_type` events are written with.
    pub fn current_version(&self, event_type: &str) -> u32 {
        // Most applications have no upcasters: skip hashing the type per event.
        if self.steps.is_empty() {
            return 1;
        }
        self.steps.get(event_type).map_or(1, |steps| {
            u32::try_from(steps.len()).map_or(u32::MAX, |count| count + 1)
        })
    }

    /// True when a stored `event_type` at `schema_version` needs lifting.
    #[inline]
    pub fn needs_upcast(&self, event_type: &str, schema_version: u32) -> bool {
        !self.steps.is_empty() && schema_version < self.current_version(event_type)
    }

    /// The step lifting `event_type` from schema version `from`.
    pub(crate) fn step(&self, event_type: &str, from: u32) -> Option<&Step> {
        let index = usize::try_from(from.checked_sub(1)?).ok()?;
        self.steps.get(event_type)?.get(index)?.as_ref()
    }

    /// Each event type with, per schema version from 1 up, whether a step
    /// lifts it from there.
    pub(crate) fn chains(&self) -> impl Iterator<Item = (&str, Vec<bool>)> {
        self.steps
            .iter()
            .map(|(event_type, steps)| (event_type.as_str(), steps.iter().map(Option::is_some).collect()))
    }

    /// Lifts `payload` from `schema_version` to the current version.
    ///
    /// Fails when a step in the chain is missing or a step returns `Err`.
    pub fn upcast(&self, event_type: &str, schema_version: u32, payload: Value) -> Result<Value, String> {
        let Some(steps) = self.steps.get(event_type) else {
            return Ok(payload);
        };
        let first = schema_version.max(1) as usize - 1;
        steps
            .iter()
            .enumerate()
            .skip(first)
            .try_fold(payload, |payload, (index, step)| match step {
                Some(step) => step(payload).map_err(|reason| {
                    format!("upcasting from schema version {} failed: {reason}", index + 1)
                }),
                None => Err(format!("no upcaster from schema version {}", index + 1)),
            })
    }
}
