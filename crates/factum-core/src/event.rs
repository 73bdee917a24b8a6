use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

/// The key of one aggregate's stream: its type and its id.
///
/// Cheap to clone (one reference count).
///
/// ```
/// # use factum_core::StreamId;
/// let stream = StreamId::new("Counter", "42");
/// assert_eq!(stream.to_string(), "Counter-42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(Arc<StreamKey>);

// One shared allocation: every event read carries its stream, so cloning it
// must be a single reference-count increment.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct StreamKey {
    aggregate_type: Box<str>,
    aggregate_id: Box<str>,
}

impl StreamId {
    /// True when both ids share one allocation: equal without comparing
    /// their strings.
    pub(crate) fn shares_allocation(&self, other: &StreamId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The stream of aggregate `aggregate_id` of type `aggregate_type`.
    pub fn new(aggregate_type: impl Into<Box<str>>, aggregate_id: impl Into<Box<str>>) -> Self {
        Self(Arc::new(StreamKey {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }))
    }

    /// The stream of an aggregate, from its type and id.
    pub fn for_aggregate<A: crate::Aggregate>(id: &A::Id) -> Self {
        Self::new(A::TYPE, id.to_string())
    }

    /// The aggregate type, e.g. `Counter`.
    pub fn aggregate_type(&self) -> &str {
        &self.0.aggregate_type
    }

    /// The aggregate id, as text.
    pub fn aggregate_id(&self) -> &str {
        &self.0.aggregate_id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.aggregate_type(), self.aggregate_id())
    }
}

/// A JSON document, kept as text so that stores hand it on without parsing
/// it, and readers parse it once, straight into their own types.
///
/// Cheap to clone (a reference-counted string). Text that came from a store
/// is not validated until it is decoded: a damaged payload surfaces as
/// [`Error::Serialization`](crate::Error::Serialization) for that event.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Arc<str>);

impl Payload {
    /// Serializes `value` to JSON.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(|text| Self(text.into()))
    }

    /// Checks that `text` is JSON and wraps it.
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Self, serde_json::Error> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(Self(text))
    }

    /// Wraps text read back from a store without checking it; decoding
    /// reports damage.
    pub fn from_stored(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Deserializes the payload into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The payload as a [`serde_json::Value`].
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl From<&Value> for Payload {
    fn from(value: &Value) -> Self {
        Self(value.to_string().into())
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self::from(&value)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Self(Arc::from(raw.get())))
    }
}

/// Context stored beside each event: who caused it, in which tenant, and
/// anything else the application wants to keep.
///
/// The tenant is not free text: it is where the event lives. Stores fill it
/// in on every event they return (with [`Tenant::DEFAULT`](crate::Tenant::DEFAULT)
/// for the unscoped handle's streams); on an event being appended it may be
/// left `None` or name the tenant it is appended to, and anything else is
/// refused with [`Error::InvalidTenant`](crate::Error::InvalidTenant).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything one request caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the message or event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The tenant the event lives in (see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<crate::Tenant>,
    /// Application-defined entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, Value>,
}

impl Metadata {
    /// True when nothing is set (stores may then skip writing it).
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.tenant.is_none()
            && self.user.is_empty()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the tenant: the one the event is appended to (any other is
    /// refused by the store).
    pub fn with_tenant(mut self, tenant: crate::Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// True when `new`, the metadata of an event being appended, is what
    /// this stored metadata holds: a tenant left unset on `new` stands for
    /// wherever the event lives.
    fn same_as_new(&self, new: &Metadata) -> bool {
        self.correlation_id == new.correlation_id
            && self.causation_id == new.causation_id
            && self.user == new.user
            && (new.tenant.is_none() || new.tenant == self.tenant)
    }

    /// Adds an application-defined entry.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }
}

/// An event about to be appended: the store assigns its version and position.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Unique id (UUID v7). Appending the same id again is an idempotent retry.
    pub event_id: Uuid,
    /// The event type, e.g. `incremented`.
    pub event_type: Arc<str>,
    /// The version of the payload's schema, for upcasting.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: Payload,
    /// Context kept beside the event.
    pub metadata: Metadata,
    /// When the event happened (UTC).
    pub occurred_at: OffsetDateTime,
}

impl NewEvent {
    /// A new event with a fresh UUID v7, schema version 1, no metadata, and
    /// the current time.
    pub fn new(event_type: impl Into<Arc<str>>, payload: Payload) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: Metadata::default(),
            occurred_at: OffsetDateTime::now_utc(),
        }
    }

    /// Replaces the event id (for example with a deterministic one).
    pub fn with_event_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Replaces the schema version.
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// The same event, stored at `version` of `stream` and `position` of the log.
    pub fn recorded(self, stream: StreamId, version: u64, position: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: self.event_id,
            stream,
            version,
            position,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            occurred_at: self.occurred_at,
        }
    }
}

/// An event as stored: the envelope every store returns.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// Unique id (UUID v7).
    pub event_id: Uuid,
    /// The aggregate's stream (aggregate type and id).
    pub stream: StreamId,
    /// Version in its stream: 1 for the first event, no gaps.
    pub version: u64,
    /// Position in the global log `$all`: strictly increasing in commit
    /// order (a rolled-back append may leave holes).
    pub position: u64,
    /// The event type, e.g. `incremented`.
    pub event_type: Arc<str>,
    /// The version of the payload's schema.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: Payload,
    /// Context kept beside the event.
    pub metadata: Metadata,
    /// When the event happened (UTC).
    pub occurred_at: OffsetDateTime,
}

impl RecordedEvent {
    /// The aggregate type of the stream.
    pub fn aggregate_type(&self) -> &str {
        self.stream.aggregate_type()
    }

    /// The aggregate id of the stream, as text.
    pub fn aggregate_id(&self) -> &str {
        self.stream.aggregate_id()
    }

    /// Decodes this event into the event enum of aggregate `A`, or `None`
    /// when it belongs to another aggregate type or is of a type `A`
    /// retired (`#[aggregate(retired = [...])]`).
    ///
    /// `A`'s declared evolution applies: old names are read as the current
    /// ones, and payloads of older schema versions are lifted by the
    /// upcasters `A` declares.
    ///
    /// The typed way to match on events inside a projection: the stream's
    /// aggregate type is compared with [`Aggregate::TYPE`](crate::Aggregate::TYPE),
    /// then the payload goes through [`DomainEvent::from_payload`](crate::DomainEvent::from_payload).
    /// An event of `A` that no longer decodes is an error, never a silent `None`.
    ///
    /// ```
    /// # use factum_core::{Aggregate, Error, RecordedEvent};
    /// fn count_own_events<A: Aggregate>(events: &[RecordedEvent]) -> Result<usize, Error> {
    ///     let mut count = 0;
    ///     for event in events {
    ///         if let Some(_decoded) = event.decode::<A>()? {
    ///             count += 1; // `_decoded` is an `A::Event`: match on its variants here
    ///         }
    ///     }
    ///     Ok(count)
    /// }
    /// ```
    ///
    /// Events whose upcasters are registered at run time need
    /// [`decode_with`](Self::decode_with) and the application's registry.
    pub fn decode<A: crate::Aggregate>(&self) -> Result<Option<A::Event>, crate::Error> {
        self.decode_with::<A>(&crate::Upcasters::new())
    }

    /// [`decode`](Self::decode), lifting an old payload to the current
    /// schema with `upcasters` first (the ones the application reads with).
    ///
    /// ```
    /// # use factum_core::{Aggregate, Error, RecordedEvent, Upcasters};
    /// fn decode_current<A: Aggregate>(event: &RecordedEvent, upcasters: &Upcasters) -> Result<Option<A::Event>, Error> {
    ///     event.decode_with::<A>(upcasters)
    /// }
    /// ```
    pub fn decode_with<A: crate::Aggregate>(
        &self,
        upcasters: &crate::Upcasters,
    ) -> Result<Option<A::Event>, crate::Error> {
        if self.aggregate_type() != A::TYPE {
            return Ok(None);
        }
        match crate::evolution::decode::<A>(self, upcasters)? {
            crate::evolution::Decoded::Event(event) => Ok(Some(event)),
            crate::evolution::Decoded::Retired => Ok(None),
        }
    }

    /// True when `new` is the same event as this one (id, type, schema,
    /// payload and metadata): the test for an idempotent retry. A tenant
    /// left unset in `new`'s metadata matches the one this event lives in.
    pub fn same_content(&self, new: &NewEvent) -> bool {
        self.event_id == new.event_id
            && self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.metadata.same_as_new(&new.metadata)
            && (self.payload == new.payload
                || matches!((self.payload.to_value(), new.payload.to_value()), (Ok(a), Ok(b)) if a == b))
    }
}
