//! The message a recorded event becomes: its JSON value and its headers.

use std::borrow::Cow;

use factum_core::{Metadata, RecordedEvent};
use rdkafka::message::{Header, OwnedHeaders};
use serde::Serialize;
use serde_json::value::RawValue;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::Error;

/// Header holding the event type.
pub const EVENT_TYPE_HEADER: &str = "event_type";
/// Header holding the correlation id, when the event has one.
pub const CORRELATION_ID_HEADER: &str = "correlation_id";
/// Header holding the causation id, when the event has one.
pub const CAUSATION_ID_HEADER: &str = "causation_id";

/// The message value, with exactly the fields of the documented format, in
/// this order.
#[derive(Serialize)]
struct Message<'a> {
    id: Uuid,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    payload: &'a RawValue,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    published_at: OffsetDateTime,
    metadata: &'a Metadata,
}

/// The value of the Kafka message for `event`: compact JSON with exactly
/// `id`, `aggregate_type`, `aggregate_id`, `event_type`, `payload` (the
/// event's JSON, embedded as JSON), `occurred_at` and `published_at`
/// (RFC 3339, UTC) and `metadata`.
///
/// These are the bytes [`KafkaNotifier`](crate::KafkaNotifier) sends. An
/// event whose stored payload is not JSON is an error, never a partial
/// message.
///
/// ```
/// use factum_core::{NewEvent, Payload, StreamId};
/// use time::OffsetDateTime;
///
/// let event = NewEvent::new("incremented", Payload::parse(r#"{"amount": 2}"#)?)
///     .recorded(StreamId::new("Counter", "42"), 2, 7);
/// let message = factum_kafka::encode_message(&event, OffsetDateTime::now_utc())?;
/// let value: serde_json::Value = serde_json::from_slice(&message)?;
/// assert_eq!(value["aggregate_id"], "42");
/// assert_eq!(value["payload"], serde_json::json!({"amount": 2}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_message(event: &RecordedEvent, published_at: OffsetDateTime) -> Result<Vec<u8>, Error> {
    let serialize_error = |source| Error::Serialize {
        stream: event.stream.clone(),
        version: event.version,
        event_type: event.event_type.clone(),
        source,
    };
    let stored = event.payload.as_str();
    // Checked before compacting: removing blanks could turn text that is not
    // JSON (`1 2`) into text that is.
    let checked: &RawValue = serde_json::from_str(stored).map_err(serialize_error)?;
    let compacted = compact(stored);
    let payload = match &compacted {
        Cow::Borrowed(_) => checked,
        Cow::Owned(text) => serde_json::from_str(text).map_err(serialize_error)?,
    };
    let message = Message {
        id: event.event_id,
        aggregate_type: event.aggregate_type(),
        aggregate_id: event.aggregate_id(),
        event_type: &event.event_type,
        payload,
        occurred_at: event.occurred_at.to_offset(UtcOffset::UTC),
        published_at: published_at.to_offset(UtcOffset::UTC),
        metadata: &event.metadata,
    };
    serde_json::to_vec(&message).map_err(serialize_error)
}

/// The headers of the message for `event`: its type, and its correlation
/// and causation ids when it has them.
pub(crate) fn headers(event: &RecordedEvent) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(3).insert(Header {
        key: EVENT_TYPE_HEADER,
        value: Some(event.event_type.as_ref()),
    });
    let ids = [
        (CORRELATION_ID_HEADER, event.metadata.correlation_id),
        (CAUSATION_ID_HEADER, event.metadata.causation_id),
    ];
    for (key, id) in ids {
        if let Some(id) = id {
            let mut text = Uuid::encode_buffer();
            let text: &str = id.hyphenated().encode_lower(&mut text);
            headers = headers.insert(Header {
                key,
                value: Some(text),
            });
        }
    }
    headers
}

/// `json` without the blanks between its tokens. Stores may hand payloads
/// back pretty-printed (PostgreSQL's `jsonb` puts a space after every `:`
/// and `,`); the message is compact whatever the store.
fn compact(json: &str) -> Cow<'_, str> {
    let mut compacted: Option<String> = None;
    let mut copied_up_to = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (index, byte) in json.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b' ' | b'\n' | b'\r' | b'\t' => {
                let out = compacted.get_or_insert_with(|| String::with_capacity(json.len()));
                out.push_str(&json[copied_up_to..index]);
                copied_up_to = index + 1;
            }
            _ => {}
        }
    }
    match compacted {
        None => Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(&json[copied_up_to..]);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use factum_core::{NewEvent, Payload, StreamId};
    use rdkafka::message::Headers;
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;

    fn event(payload: Payload, metadata: Metadata) -> RecordedEvent {
        let mut event = NewEvent::new("deposited", payload)
            .with_metadata(metadata)
            .recorded(StreamId::new("Account", "a-1"), 3, 11);
        event.occurred_at = datetime!(2025-03-01 12:30:00.25 +02:00);
        event
    }

    fn decode(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the message is JSON")
    }

    #[test]
    fn has_exactly_the_documented_fields_in_utc() {
        let metadata = Metadata::default()
            .with_tenant(factum_core::Tenant::new("acme").expect("a valid tenant"))
            .with("channel", "web");
        let recorded = event(Payload::parse(r#"{"cents":5}"#).unwrap(), metadata);
        let bytes = encode_message(&recorded, datetime!(2025-03-01 10:31:00 UTC)).unwrap();
        let expected = json!({
            "id": recorded.event_id.to_string(),
            "aggregate_type": "Account",
            "aggregate_id": "a-1",
            "event_type": "deposited",
            "payload": {"cents": 5},
            "occurred_at": "2025-03-01T10:30:00.25Z",
            "published_at": "2025-03-01T10:31:00Z",
            "metadata": {"tenant": "acme", "user": {"channel": "web"}},
        });
        assert_eq!(decode(&bytes), expected);
    }

    #[test]
    fn empty_metadata_is_an_empty_object() {
        let recorded = event(Payload::parse("{}").unwrap(), Metadata::default());
        let bytes = encode_message(&recorded, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(decode(&bytes)["metadata"], json!({}));
    }

    #[test]
    fn a_pretty_printed_payload_is_sent_compact_with_its_strings_intact() {
        let stored = "{\"note\": \"a, b: \\\" c\",\n \"list\": [1, 2]}";
        let recorded = event(Payload::from_stored(stored), Metadata::default());
        let text = String::from_utf8(encode_message(&recorded, OffsetDateTime::now_utc()).unwrap()).unwrap();
        assert!(
            text.contains(r#""payload":{"note":"a, b: \" c","list":[1,2]}"#),
            "{text}"
        );
    }

    #[test]
    fn a_payload_that_is_not_json_is_an_error_naming_the_event() {
        for stored in ["{\"cents\": ", "1 2", ""] {
            let recorded = event(Payload::from_stored(stored), Metadata::default());
            let error = encode_message(&recorded, OffsetDateTime::now_utc()).unwrap_err();
            assert!(matches!(error, Error::Serialize { version: 3, .. }), "{error:?}");
            assert!(
                error.to_string().contains("deposited (version 3 of Account-a-1)"),
                "{error}"
            );
        }
    }

    #[test]
    fn compact_leaves_compact_text_borrowed() {
        assert!(matches!(compact(r#"{"a":"x y","b":[1,2]}"#), Cow::Borrowed(_)));
        assert_eq!(compact("[1,\t2 ,\r\n3]"), "[1,2,3]");
        assert_eq!(compact(r#"["\\", " "]"#), r#"["\\"," "]"#);
    }

    #[test]
    fn headers_carry_the_type_and_the_ids_that_are_set() {
        let correlation = Uuid::now_v7();
        let causation = Uuid::now_v7();
        let with_ids = Metadata::default()
            .with_correlation_id(correlation)
            .with_causation_id(causation);
        let found = |headers: &OwnedHeaders| -> Vec<(String, String)> {
            headers
                .iter()
                .map(|header| {
                    let value = String::from_utf8(header.value.unwrap_or_default().to_vec()).unwrap();
                    (header.key.to_owned(), value)
                })
                .collect()
        };
        let recorded = event(Payload::parse("{}").unwrap(), with_ids);
        assert_eq!(
            found(&headers(&recorded)),
            [
                ("event_type".to_owned(), "deposited".to_owned()),
                ("correlation_id".to_owned(), correlation.to_string()),
                ("causation_id".to_owned(), causation.to_string()),
            ]
        );
        let recorded = event(Payload::parse("{}").unwrap(), Metadata::default());
        assert_eq!(
            found(&headers(&recorded)),
            [("event_type".to_owned(), "deposited".to_owned())]
        );
    }
}
