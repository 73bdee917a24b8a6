//! The metric keys of one aggregate type, built at compile time: a save or
//! a load looks its keys up without allocating or hashing, so with no
//! recorder installed a metric costs one thread-local and one atomic read.

use std::marker::PhantomData;

use metrics::{Key, Label, Level, Metadata};

use super::names;
use crate::Aggregate;

/// What factum's metrics tell a recorder about where they come from.
pub(crate) static METADATA: Metadata<'static> = Metadata::new("factum", Level::INFO, Some(module_path!()));

/// The keys of the metrics labelled with one aggregate type.
#[derive(Debug)]
pub(crate) struct AggregateKeys {
    pub(crate) appends: Key,
    pub(crate) events_appended: Key,
    pub(crate) conflicts: Key,
    pub(crate) saves: Key,
    pub(crate) loads: Key,
    pub(crate) events_replayed: Key,
    pub(crate) replay_duration: Key,
}

/// Holds the keys of aggregate type `A` as associated constants, which may
/// name `A::TYPE`; a `static` inside a generic function could not.
struct KeysOf<A>(PhantomData<A>);

impl<A: Aggregate> KeysOf<A> {
    const LABELS: &'static [Label] = &[Label::from_static_parts("aggregate_type", A::TYPE)];
    const KEYS: &'static AggregateKeys = &AggregateKeys {
        appends: Key::from_static_parts(names::APPENDS, Self::LABELS),
        events_appended: Key::from_static_parts(names::EVENTS_APPENDED, Self::LABELS),
        conflicts: Key::from_static_parts(names::APPEND_CONFLICTS, Self::LABELS),
        saves: Key::from_static_parts(names::SAVES, Self::LABELS),
        loads: Key::from_static_parts(names::LOADS, Self::LABELS),
        events_replayed: Key::from_static_parts(names::EVENTS_REPLAYED, Self::LABELS),
        replay_duration: Key::from_static_parts(names::REPLAY_DURATION, Self::LABELS),
    };
}

/// The keys of aggregate type `A`.
pub(crate) fn of<A: Aggregate>() -> &'static AggregateKeys {
    KeysOf::<A>::KEYS
}

/// Adds `amount` to the counter `key`.
pub(crate) fn count(key: &Key, amount: u64) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(amount);
}

/// Records `value` in the histogram `key`.
pub(crate) fn observe(key: &Key, value: f64) {
    metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA)).record(value);
}
