//! Schema evolution declared in the code: the stored name and current schema
//! version of each event, the old names it is still read under, the event
//! types that were removed but stay readable, the upcasters that lift old
//! payloads, and the version of the aggregate's snapshot shape.
//!
//! `#[aggregate]` writes this down as [`Aggregate::EVOLUTION`](crate::Aggregate::EVOLUTION);
//! `check` holds it against the run-time [`Upcasters`](crate::Upcasters)
//! when a repository is built, and `read` applies it to every stored event
//! and snapshot.

mod check;
mod read;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

pub(crate) use check::check;
pub(crate) use read::{Decoded, current_version, decode, lift_snapshot};

/// A declared upcaster: lifts one payload from schema version `k` to `k + 1`.
pub type UpcastFn = fn(Value) -> Result<Value, UpcastError>;

/// Why an upcaster could not lift a payload: reported as
/// [`Error::Upcast`](crate::Error::Upcast) with the stream, version and
/// event type of the stored event.
///
/// `?` turns a `&str` or a `String` into one, so an upcaster can write
/// `payload.get("by").ok_or("`by` is missing")?`.
///
/// ```
/// use factum_core::UpcastError;
///
/// let error = UpcastError::new("`by` is missing");
/// assert_eq!(error.to_string(), "`by` is missing");
/// assert_eq!(UpcastError::from("`by` is missing"), error);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UpcastError {}

impl From<String> for UpcastError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for UpcastError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// One event type of an aggregate as its code declares it: the name it is
/// stored under, its current schema version and its old names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventVersion {
    name: &'static str,
    version: u32,
    declared: bool,
    aliases: &'static [&'static str],
}

impl EventVersion {
    /// An event at `version`; `declared` when the code states the version
    /// (and so owns its upcasters), as `#[event("name", version = N)]` does.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        version: u32,
        declared: bool,
        aliases: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            version,
            declared,
            aliases,
        }
    }

    /// The name new events are stored under, e.g. `incremented`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The schema version new events are stored at (1 unless declared).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// True when the code declares the version (`version = N`, or upcasters
    /// of `created`): its upcasters are in the code, and the run-time
    /// registry may not add any.
    pub fn is_declared(&self) -> bool {
        self.declared
    }

    /// Old names stored events of this type are still read under.
    pub fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    fn answers_to(&self, stored_type: &str) -> bool {
        same_name(self.name, stored_type) || self.aliases.contains(&stored_type)
    }
}

/// A declared upcaster of one event type.
#[derive(Clone, Copy)]
pub struct EventUpcaster {
    event_type: &'static str,
    from: u32,
    step: UpcastFn,
}

impl EventUpcaster {
    /// The upcaster `#[upcast("event_type", from = N)]` declares.
    #[doc(hidden)]
    pub const fn new(event_type: &'static str, from: u32, step: UpcastFn) -> Self {
        Self {
            event_type,
            from,
            step,
        }
    }

    /// The event type it lifts.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// The schema version it lifts from (to `from + 1`).
    pub fn from_version(&self) -> u32 {
        self.from
    }

    /// Lifts `payload` one schema version: handy to test an upcaster.
    pub fn lift(&self, payload: Value) -> Result<Value, UpcastError> {
        (self.step)(payload)
    }
}

impl fmt::Debug for EventUpcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventUpcaster")
            .field("event_type", &self.event_type)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// A declared upcaster of the aggregate's snapshots.
#[derive(Clone, Copy)]
pub struct SnapshotUpcaster {
    from: u32,
    step: UpcastFn,
}

impl SnapshotUpcaster {
    /// The upcaster `#[upcast(snapshot, from = N)]` declares.
    #[doc(hidden)]
    pub const fn new(from: u32, step: UpcastFn) -> Self {
        Self { from, step }
    }

    /// The snapshot version it lifts from (to `from + 1`).
    pub fn from_version(&self) -> u32 {
        self.from
    }

    /// Lifts a snapshot's state one shape version: handy to test an upcaster.
    pub fn lift(&self, state: Value) -> Result<Value, UpcastError> {
        (self.step)(state)
    }
}

impl fmt::Debug for SnapshotUpcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotUpcaster")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// How an aggregate's stored data evolved, as its code declares it:
/// generated by `#[aggregate]` from `#[event("name", version = N, aliases = [...])]`,
/// `#[upcast(...)]` functions, `#[aggregate(retired = [...])]` and
/// `#[aggregate(snapshot_version = N)]`.
///
/// ```
/// use factum_core::{Aggregate, Evolution};
///
/// // A hand-written aggregate declares nothing: every event at schema
/// // version 1, snapshots at version 1.
/// assert_eq!(Evolution::NONE.snapshot_version(), 1);
/// assert!(Evolution::NONE.events().is_empty());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Evolution {
    events: &'static [EventVersion],
    retired: &'static [&'static str],
    upcasters: &'static [EventUpcaster],
    snapshot_version: u32,
    snapshot_upcasters: &'static [SnapshotUpcaster],
    /// Every event at version 1, no aliases, nothing retired: stored events
    /// at version 1 decode without looking anything up.
    plain: bool,
}

impl Evolution {
    /// Nothing declared: what a hand-written [`Aggregate`](crate::Aggregate)
    /// gets unless it says otherwise.
    pub const NONE: Self = Self::new(&[], &[], &[], 1, &[]);

    /// The evolution `#[aggregate]` declares.
    #[doc(hidden)]
    pub const fn new(
        events: &'static [EventVersion],
        retired: &'static [&'static str],
        upcasters: &'static [EventUpcaster],
        snapshot_version: u32,
        snapshot_upcasters: &'static [SnapshotUpcaster],
    ) -> Self {
        let mut plain = retired.is_empty() && upcasters.is_empty();
        let mut index = 0;
        while index < events.len() {
            if events[index].version != 1 || !events[index].aliases.is_empty() {
                plain = false;
            }
            index += 1;
        }
        Self {
            events,
            retired,
            upcasters,
            snapshot_version,
            snapshot_upcasters,
            plain,
        }
    }

    /// Every event type the aggregate writes, `created` first; empty when
    /// nothing is declared (a hand-written aggregate).
    pub fn events(&self) -> &'static [EventVersion] {
        self.events
    }

    /// The event type a stored event of type `stored_type` is read as: the
    /// one of that name, or the one that lists it among its aliases.
    pub fn event(&self, stored_type: &str) -> Option<&'static EventVersion> {
        self.events.iter().find(|event| event.answers_to(stored_type))
    }

    /// Event types removed from the code whose stored events are skipped
    /// on replay (and counted: see [`Repository::retired_skipped`](crate::Repository::retired_skipped)).
    pub fn retired(&self) -> &'static [&'static str] {
        self.retired
    }

    /// True when `stored_type` is retired.
    pub fn is_retired(&self, stored_type: &str) -> bool {
        self.retired.contains(&stored_type)
    }

    /// The declared upcasters of events.
    pub fn upcasters(&self) -> &'static [EventUpcaster] {
        self.upcasters
    }

    /// The version of the aggregate's shape that its snapshots record: the
    /// declared `snapshot_version`, or one derived from the fields' names,
    /// types and serde attributes.
    pub fn snapshot_version(&self) -> u32 {
        self.snapshot_version
    }

    /// The declared upcasters of snapshots.
    pub fn snapshot_upcasters(&self) -> &'static [SnapshotUpcaster] {
        self.snapshot_upcasters
    }

    /// True when nothing needs looking up to read an event stored at
    /// schema version 1.
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// The declared step lifting `event_type` from schema version `from`.
    pub(crate) fn upcaster(&self, event_type: &str, from: u32) -> Option<UpcastFn> {
        self.upcasters
            .iter()
            .find(|upcaster| upcaster.from == from && same_name(upcaster.event_type, event_type))
            .map(|upcaster| upcaster.step)
    }

    /// The declared step lifting snapshots from version `from`.
    pub(crate) fn snapshot_upcaster(&self, from: u32) -> Option<UpcastFn> {
        self.snapshot_upcasters
            .iter()
            .find(|upcaster| upcaster.from == from)
            .map(|upcaster| upcaster.step)
    }
}

/// `left == right`, without comparing bytes when both are one literal (the
/// names generated code hands over usually are).
fn same_name(left: &str, right: &str) -> bool {
    std::ptr::eq(left, right) || left == right
}
