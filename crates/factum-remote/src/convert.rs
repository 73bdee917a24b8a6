//! Conversions between the generated wire messages of [`proto`] and
//! factum's types, written once for both ends: the server decodes what a
//! client sends with the same functions the client uses to decode what the
//! server answers.
//!
//! Decoding checks everything that comes off the wire (a UUID, a non-empty
//! stream id, JSON text, a timestamp in range) and reports the first field
//! at fault as a [`WireError`]; nothing here panics on bad input.

use std::collections::BTreeMap;
use std::sync::Arc;

use factum_core::{
    AppendBatch, AppendResult, ExpectedVersion, Metadata, NewEvent, Payload, RecordedEvent, Snapshot,
    StreamId, Tenant,
};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::proto;

/// A message field that does not hold what the contract says: the field's
/// path and what is wrong with it.
///
/// ```
/// # use factum_remote::convert::stream_from_wire;
/// let error = stream_from_wire(None).unwrap_err();
/// assert_eq!(error.field, "stream");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct WireError {
    /// The field at fault, e.g. `events[2].payload`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl WireError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, for the field inside `parent`.
    fn within(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            reason: self.reason,
        }
    }
}

/// The wire form of a stream id.
pub fn stream_to_wire(stream: &StreamId) -> proto::StreamId {
    proto::StreamId {
        aggregate_type: stream.aggregate_type().to_owned(),
        aggregate_id: stream.aggregate_id().to_owned(),
    }
}

/// A stream id off the wire; both parts must be non-empty.
pub fn stream_from_wire(stream: Option<proto::StreamId>) -> Result<StreamId, WireError> {
    let stream = stream.ok_or_else(|| WireError::new("stream", "is required"))?;
    if stream.aggregate_type.is_empty() {
        return Err(WireError::new("stream.aggregate_type", "must not be empty"));
    }
    if stream.aggregate_id.is_empty() {
        return Err(WireError::new("stream.aggregate_id", "must not be empty"));
    }
    Ok(StreamId::new(stream.aggregate_type, stream.aggregate_id))
}

/// The wire form of an expected version.
pub fn expected_to_wire(expected: ExpectedVersion) -> proto::ExpectedVersion {
    use proto::expected_version::Kind;
    let kind = match expected {
        ExpectedVersion::Any => Kind::Any(true),
        ExpectedVersion::NoStream => Kind::NoStream(true),
        ExpectedVersion::Exact(version) => Kind::Exact(version),
    };
    proto::ExpectedVersion { kind: Some(kind) }
}

/// An expected version off the wire; exactly one kind, and a chosen flag must be true.
pub fn expected_from_wire(expected: Option<proto::ExpectedVersion>) -> Result<ExpectedVersion, WireError> {
    use proto::expected_version::Kind;
    match expected.and_then(|expected| expected.kind) {
        Some(Kind::Any(true)) => Ok(ExpectedVersion::Any),
        Some(Kind::NoStream(true)) => Ok(ExpectedVersion::NoStream),
        Some(Kind::Exact(version)) => Ok(ExpectedVersion::Exact(version)),
        Some(Kind::Any(false) | Kind::NoStream(false)) => Err(WireError::new(
            "expected",
            "a chosen flag (`any`, `no_stream`) must be true",
        )),
        None => Err(WireError::new(
            "expected",
            "is required: one of `any`, `no_stream`, `exact`",
        )),
    }
}

/// The wire form of a timestamp.
pub fn time_to_wire(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always in 0..1_000_000_000, so it fits.
        nanos: at.nanosecond() as i32,
    }
}

/// A timestamp off the wire; required, and within `time`'s range.
pub fn time_from_wire(at: Option<prost_types::Timestamp>, field: &str) -> Result<OffsetDateTime, WireError> {
    let at = at.ok_or_else(|| WireError::new(field, "is required"))?;
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err(WireError::new(
            field,
            format!("nanos {} is outside 0..1e9", at.nanos),
        ));
    }
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|error| WireError::new(field, format!("is out of range: {error}")))
}

fn uuid_from_wire(text: &str, field: &str) -> Result<Uuid, WireError> {
    Uuid::parse_str(text)
        .map_err(|error| WireError::new(field, format!("is not a UUID ({text:.40}): {error}")))
}

fn json_from_wire(text: String, field: &str) -> Result<Payload, WireError> {
    Payload::parse(text).map_err(|error| WireError::new(field, format!("is not JSON: {error}")))
}

/// The wire form of event metadata.
pub fn metadata_to_wire(metadata: &Metadata) -> proto::Metadata {
    proto::Metadata {
        correlation_id: metadata.correlation_id.map(|id| id.to_string()),
        causation_id: metadata.causation_id.map(|id| id.to_string()),
        tenant: metadata.tenant.as_ref().map(|tenant| tenant.as_str().to_owned()),
        user: (!metadata.user.is_empty())
            .then(|| Value::Object(metadata.user.clone().into_iter().collect()).to_string()),
    }
}

/// Event metadata off the wire: UUIDs, a valid tenant name, a JSON object.
pub fn metadata_from_wire(metadata: Option<proto::Metadata>) -> Result<Metadata, WireError> {
    let Some(metadata) = metadata else {
        return Ok(Metadata::default());
    };
    let uuid = |text: Option<String>, field| text.map(|text| uuid_from_wire(&text, field)).transpose();
    let tenant = metadata
        .tenant
        .map(|name| Tenant::new(&name).map_err(|error| WireError::new("tenant", error.to_string())))
        .transpose()?;
    let user = match metadata.user {
        None => BTreeMap::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(entries)) => entries.into_iter().collect(),
            Ok(_) => return Err(WireError::new("user", "must be a JSON object")),
            Err(error) => return Err(WireError::new("user", format!("is not JSON: {error}"))),
        },
    };
    Ok(Metadata {
        correlation_id: uuid(metadata.correlation_id, "correlation_id")?,
        causation_id: uuid(metadata.causation_id, "causation_id")?,
        tenant,
        user,
    })
}

/// The wire form of an event to append.
pub fn new_event_to_wire(event: &NewEvent) -> proto::NewEvent {
    proto::NewEvent {
        event_id: event.event_id.to_string(),
        event_type: event.event_type.to_string(),
        schema_version: event.schema_version,
        payload: event.payload.as_str().to_owned(),
        metadata: Some(metadata_to_wire(&event.metadata)),
        occurred_at: Some(time_to_wire(event.occurred_at)),
    }
}

/// An event to append off the wire: a UUID, a type, a JSON payload, a time.
pub fn new_event_from_wire(event: proto::NewEvent) -> Result<NewEvent, WireError> {
    if event.event_type.is_empty() {
        return Err(WireError::new("event_type", "must not be empty"));
    }
    Ok(NewEvent {
        event_id: uuid_from_wire(&event.event_id, "event_id")?,
        event_type: Arc::from(event.event_type),
        schema_version: event.schema_version,
        payload: json_from_wire(event.payload, "payload")?,
        metadata: metadata_from_wire(event.metadata).map_err(|error| error.within("metadata"))?,
        occurred_at: time_from_wire(event.occurred_at, "occurred_at")?,
    })
}

/// The wire form of a stored event.
pub fn recorded_to_wire(event: &RecordedEvent) -> proto::RecordedEvent {
    proto::RecordedEvent {
        event_id: event.event_id.to_string(),
        stream: Some(stream_to_wire(&event.stream)),
        version: event.version,
        position: event.position,
        event_type: event.event_type.to_string(),
        schema_version: event.schema_version,
        payload: event.payload.as_str().to_owned(),
        metadata: Some(metadata_to_wire(&event.metadata)),
        occurred_at: Some(time_to_wire(event.occurred_at)),
    }
}

/// A stored event off the wire. The payload is taken as stored, unchecked,
/// as every store hands it on: a damaged one surfaces when it is decoded.
pub fn recorded_from_wire(event: proto::RecordedEvent) -> Result<RecordedEvent, WireError> {
    RecordedDecoder::default().decode(event)
}

/// Decodes the stored events of one read or subscription, sharing what
/// consecutive events repeat (their stream, event type and tenant) instead
/// of allocating each again: a page usually holds a few streams and types.
#[derive(Default)]
pub struct RecordedDecoder {
    stream: Option<StreamId>,
    event_type: Option<Arc<str>>,
    tenant: Option<Tenant>,
}

impl RecordedDecoder {
    /// The event [`recorded_from_wire`] makes of `event`.
    pub fn decode(&mut self, event: proto::RecordedEvent) -> Result<RecordedEvent, WireError> {
        let stream = match (&self.stream, &event.stream) {
            (Some(last), Some(wire))
                if last.aggregate_type() == wire.aggregate_type
                    && last.aggregate_id() == wire.aggregate_id =>
            {
                last.clone()
            }
            _ => {
                let stream = stream_from_wire(event.stream)?;
                self.stream = Some(stream.clone());
                stream
            }
        };
        let event_type = match &self.event_type {
            Some(last) if **last == *event.event_type => Arc::clone(last),
            _ => {
                let event_type: Arc<str> = Arc::from(event.event_type);
                self.event_type = Some(Arc::clone(&event_type));
                event_type
            }
        };
        let mut wire_metadata = event.metadata;
        let tenant = wire_metadata.as_mut().and_then(|metadata| metadata.tenant.take());
        let mut metadata = metadata_from_wire(wire_metadata).map_err(|error| error.within("metadata"))?;
        metadata.tenant = match (tenant, &self.tenant) {
            (None, _) => None,
            (Some(name), Some(last)) if last.as_str() == name => Some(last.clone()),
            (Some(name), _) => {
                let tenant = Tenant::new(&name)
                    .map_err(|error| WireError::new("metadata.tenant", error.to_string()))?;
                self.tenant = Some(tenant.clone());
                Some(tenant)
            }
        };
        Ok(RecordedEvent {
            event_id: uuid_from_wire(&event.event_id, "event_id")?,
            stream,
            version: event.version,
            position: event.position,
            event_type,
            schema_version: event.schema_version,
            payload: Payload::from_stored(event.payload),
            metadata,
            occurred_at: time_from_wire(event.occurred_at, "occurred_at")?,
        })
    }
}

/// The wire form of one stream's append.
pub fn append_to_wire(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> proto::AppendRequest {
    proto::AppendRequest {
        stream: Some(stream_to_wire(stream)),
        expected: Some(expected_to_wire(expected)),
        events: events.iter().map(new_event_to_wire).collect(),
    }
}

/// One stream's append off the wire.
pub fn append_from_wire(request: proto::AppendRequest) -> Result<AppendBatch, WireError> {
    let stream = stream_from_wire(request.stream)?;
    let expected = expected_from_wire(request.expected)?;
    let events = request
        .events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            new_event_from_wire(event).map_err(|error| error.within(&format!("events[{index}]")))
        })
        .collect::<Result<_, _>>()?;
    Ok(AppendBatch::new(stream, expected, events))
}

/// The wire form of an append's result.
pub fn result_to_wire(result: AppendResult) -> proto::AppendResponse {
    proto::AppendResponse {
        stream_version: result.stream_version,
        positions: result.positions,
    }
}

/// An append's result off the wire.
pub fn result_from_wire(result: proto::AppendResponse) -> AppendResult {
    AppendResult {
        stream_version: result.stream_version,
        positions: result.positions,
    }
}

/// The wire form of a snapshot.
pub fn snapshot_to_wire(snapshot: &Snapshot) -> proto::Snapshot {
    proto::Snapshot {
        stream: Some(stream_to_wire(&snapshot.stream)),
        version: snapshot.version,
        schema_version: snapshot.schema_version,
        state: snapshot.state.as_str().to_owned(),
        taken_at: Some(time_to_wire(snapshot.taken_at)),
    }
}

/// A snapshot being saved, off the wire: its state must be JSON.
pub fn snapshot_from_wire(snapshot: Option<proto::Snapshot>) -> Result<Snapshot, WireError> {
    let snapshot = snapshot.ok_or_else(|| WireError::new("snapshot", "is required"))?;
    let within = |error: WireError| error.within("snapshot");
    Ok(Snapshot {
        stream: stream_from_wire(snapshot.stream).map_err(within)?,
        version: snapshot.version,
        schema_version: snapshot.schema_version,
        state: json_from_wire(snapshot.state, "state").map_err(within)?,
        taken_at: time_from_wire(snapshot.taken_at, "taken_at").map_err(within)?,
    })
}

/// A snapshot loaded from the server: its state is taken as stored, so that
/// a damaged one is rebuilt from events as it would be locally.
pub fn loaded_snapshot_from_wire(snapshot: proto::Snapshot) -> Result<Snapshot, WireError> {
    Ok(Snapshot {
        stream: stream_from_wire(snapshot.stream)?,
        version: snapshot.version,
        schema_version: snapshot.schema_version,
        state: Payload::from_stored(snapshot.state),
        taken_at: time_from_wire(snapshot.taken_at, "taken_at")?,
    })
}

#[cfg(test)]
mod tests {
    use factum_core::Payload;
    use serde_json::json;

    use super::*;

    #[test]
    fn events_round_trip() {
        let metadata = Metadata::default()
            .with_correlation_id(Uuid::now_v7())
            .with_tenant(Tenant::new("acme").expect("a valid name"))
            .with("user", json!({ "name": "ada" }));
        let event = NewEvent::new("added", Payload::from(json!({ "amount": 1 }))).with_metadata(metadata);
        let back = new_event_from_wire(new_event_to_wire(&event)).expect("a wire event decodes");
        assert_eq!(back, event);
        let recorded = event.recorded(StreamId::new("Tally", "1"), 3, 9);
        assert_eq!(
            recorded_from_wire(recorded_to_wire(&recorded)),
            Ok(recorded.clone())
        );
        // What the decoder shares between events never leaks into the next one.
        let mut decoder = RecordedDecoder::default();
        let mut other = recorded.clone();
        other.stream = StreamId::new("Tally", "2");
        other.event_type = Arc::from("removed");
        other.metadata.tenant = Some(Tenant::DEFAULT);
        for expected in [&recorded, &recorded, &other, &recorded] {
            assert_eq!(decoder.decode(recorded_to_wire(expected)).as_ref(), Ok(expected));
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let event = NewEvent::new("added", Payload::from(json!({})));
        let mut wire = new_event_to_wire(&event);
        wire.payload = "{not json".into();
        assert_eq!(
            new_event_from_wire(wire.clone()).map_err(|e| e.field),
            Err("payload".into())
        );
        wire.event_id = "not-a-uuid".into();
        assert_eq!(
            new_event_from_wire(wire).map_err(|e| e.field),
            Err("event_id".into())
        );
        let empty = proto::StreamId {
            aggregate_type: "Tally".into(),
            aggregate_id: String::new(),
        };
        assert_eq!(
            stream_from_wire(Some(empty)).map_err(|e| e.field),
            Err("stream.aggregate_id".into())
        );
        assert!(expected_from_wire(None).is_err());
        let late = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(time_from_wire(Some(late), "at").is_err());
    }
}
