//! The export format: one JSON object per line, one line per event, in
//! the order of the global log.
//!
//! ```text
//! {"event_id":"…","aggregate_type":"Counter","aggregate_id":"42","version":1,"position":1,
//!  "event_type":"created","schema_version":1,"payload":{"value":0},"metadata":{},
//!  "occurred_at":"2026-11-29T16:27:12.964476519Z"}
//! ```
//!
//! - `payload` is the stored JSON text, byte for byte. A payload whose text
//!   holds a line break (pretty-printed JSON) would break the line, so it
//!   travels as the string `payload_text` instead: still byte for byte.
//! - The tenant the stream lives in is the one its metadata names (stores
//!   write it there); absent means the default tenant (every store before
//!   tenants). A `tenant` field, when a line has one, must agree with it.
//! - `position` is where the event was in the source; an import keeps the
//!   order, and the target hands out its own positions.
//! - Unknown fields are refused: a file from a newer factum is not
//!   half-read.

use std::sync::Arc;

use factum_core::{Metadata, NewEvent, Payload, RecordedEvent, StreamId, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

/// A line as written.
#[derive(Serialize)]
pub(crate) struct LineOut<'a> {
    event_id: Uuid,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: u64,
    position: u64,
    event_type: &'a str,
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_text: Option<&'a str>,
    metadata: &'a Metadata,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
}

impl<'a> LineOut<'a> {
    /// The line of `event`; an error when its stored payload is not JSON.
    pub(crate) fn new(event: &'a RecordedEvent) -> Result<Self, serde_json::Error> {
        let text = event.payload.as_str();
        let (payload, payload_text) = if text.contains(['\n', '\r']) {
            serde_json::from_str::<serde::de::IgnoredAny>(text)?;
            (None, Some(text))
        } else {
            (Some(serde_json::from_str::<&RawValue>(text)?), None)
        };
        Ok(Self {
            event_id: event.event_id,
            aggregate_type: event.aggregate_type(),
            aggregate_id: event.aggregate_id(),
            version: event.version,
            position: event.position,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload,
            payload_text,
            metadata: &event.metadata,
            occurred_at: event.occurred_at,
            tenant: None,
        })
    }
}

impl LineOut<'_> {
    /// Appends the line to `out`, byte for byte what `serde_json` writes for
    /// it, without its newline.
    ///
    /// Written field by field because an export spends most of its time
    /// here: the id, the numbers and the time cannot hold a character JSON
    /// escapes, so only the names and the metadata go through the escaping
    /// writer, and the time is formatted in place rather than into a
    /// `String` first.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(
            self.event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"aggregate_type\":");
        serde_json::to_writer(&mut *out, self.aggregate_type)?;
        out.extend_from_slice(b",\"aggregate_id\":");
        serde_json::to_writer(&mut *out, self.aggregate_id)?;
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.version).as_bytes());
        out.extend_from_slice(b",\"position\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.position).as_bytes());
        out.extend_from_slice(b",\"event_type\":");
        serde_json::to_writer(&mut *out, self.event_type)?;
        out.extend_from_slice(b",\"schema_version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.schema_version).as_bytes());
        if let Some(payload) = self.payload {
            out.extend_from_slice(b",\"payload\":");
            out.extend_from_slice(payload.get().as_bytes());
        }
        if let Some(text) = self.payload_text {
            out.extend_from_slice(b",\"payload_text\":");
            serde_json::to_writer(&mut *out, text)?;
        }
        out.extend_from_slice(b",\"metadata\":");
        write_metadata(self.metadata, out)?;
        out.extend_from_slice(b",\"occurred_at\":\"");
        self.occurred_at
            .format_into(out, &time::format_description::well_known::Rfc3339)
            .map_err(<serde_json::Error as serde::ser::Error>::custom)?;
        out.push(b'"');
        if let Some(tenant) = self.tenant {
            out.extend_from_slice(b",\"tenant\":");
            serde_json::to_writer(&mut *out, tenant)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// Appends `metadata` as `serde_json` writes it, the ids unescaped.
fn write_metadata(metadata: &Metadata, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    // Every field named, so a field added to `Metadata` fails to compile
    // here instead of going missing from backups.
    let Metadata {
        correlation_id,
        causation_id,
        tenant,
        user,
    } = metadata;
    let mut separator = b'{';
    let mut key = |out: &mut Vec<u8>, name: &[u8]| {
        out.push(separator);
        separator = b',';
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
    };
    for (name, id) in [
        (&b"correlation_id"[..], correlation_id),
        (b"causation_id", causation_id),
    ] {
        if let Some(id) = id {
            key(out, name);
            out.push(b'"');
            out.extend_from_slice(
                id.hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .as_bytes(),
            );
            out.push(b'"');
        }
    }
    if let Some(tenant) = tenant {
        key(out, b"tenant");
        serde_json::to_writer(&mut *out, tenant)?;
    }
    if !user.is_empty() {
        key(out, b"user");
        serde_json::to_writer(&mut *out, user)?;
    }
    if separator == b'{' {
        out.push(b'{');
    }
    out.push(b'}');
    Ok(())
}

/// A line as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineIn {
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: String,
    version: u64,
    #[serde(default)]
    #[allow(dead_code)] // Read for completeness; the target hands out its own.
    position: Option<u64>,
    event_type: String,
    schema_version: u32,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    payload_text: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(default)]
    tenant: Option<String>,
}

/// An event read from a line, ready to append.
pub(crate) struct Imported {
    /// The tenant whose store view it is appended through.
    pub(crate) tenant: Tenant,
    pub(crate) stream: StreamId,
    pub(crate) version: u64,
    pub(crate) event: NewEvent,
}

impl LineIn {
    /// Parses and checks one line (without its newline).
    pub(crate) fn parse(text: &str) -> Result<Imported, String> {
        let line: Self = serde_json::from_str(text).map_err(|error| {
            // serde_json counts lines within the text, which is one line here.
            let message = error.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(message, _)| message);
            format!("{message} (column {})", error.column())
        })?;
        line.into_imported()
    }

    fn into_imported(self) -> Result<Imported, String> {
        let tenant = match (self.tenant.as_deref(), &self.metadata.tenant) {
            (Some(named), Some(tenant)) if named != tenant.as_str() => {
                return Err(format!(
                    "`tenant` is `{named}` but the metadata's tenant is `{tenant}`: an event lives in one tenant"
                ));
            }
            (_, Some(tenant)) => tenant.clone(),
            (Some(named), None) => {
                Tenant::new(named).map_err(|error| format!("`tenant` is not a tenant name: {error}"))?
            }
            (None, None) => Tenant::DEFAULT,
        };
        if self.version == 0 {
            return Err("`version` must be 1 or more".to_owned());
        }
        if self.aggregate_type.is_empty() {
            return Err("`aggregate_type` is empty".to_owned());
        }
        if self.event_type.is_empty() {
            return Err("`event_type` is empty".to_owned());
        }
        let payload = match (self.payload, self.payload_text) {
            (Some(raw), None) => Payload::from_stored(Arc::<str>::from(raw.get())),
            (None, Some(text)) => {
                Payload::parse(text).map_err(|error| format!("`payload_text` is not JSON: {error}"))?
            }
            (Some(_), Some(_)) => return Err("a line has `payload` or `payload_text`, not both".to_owned()),
            (None, None) => return Err("missing field `payload`".to_owned()),
        };
        let event = NewEvent {
            event_id: self.event_id,
            event_type: self.event_type.into(),
            schema_version: self.schema_version,
            payload,
            metadata: self.metadata,
            occurred_at: self.occurred_at,
        };
        Ok(Imported {
            tenant,
            stream: StreamId::new(self.aggregate_type, self.aggregate_id),
            version: self.version,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(payload: &str) -> RecordedEvent {
        NewEvent::new("incremented", Payload::from_stored(payload))
            .with_metadata(Metadata::default().with("channel", "web"))
            .recorded(StreamId::new("Counter", "a/1"), 3, 9)
    }

    #[test]
    fn a_line_round_trips_every_field_and_the_payload_byte_for_byte() {
        for payload in [
            r#"{ "amount" : 2.50, "note":"é\u00e9" }"#,
            "{\n  \"amount\": 1\n}",
        ] {
            let event = recorded(payload);
            let text = serde_json::to_string(&LineOut::new(&event).unwrap()).unwrap();
            assert!(!text.contains('\n'), "{text}");
            let back = LineIn::parse(&text).unwrap();
            assert_eq!(back.stream, event.stream);
            assert_eq!(back.version, 3);
            assert_eq!(back.event.payload.as_str(), payload);
            assert_eq!(back.event.event_id, event.event_id);
            assert_eq!(back.event.metadata, event.metadata);
            assert_eq!(back.event.occurred_at, event.occurred_at);
            assert!(event.same_content(&back.event));
        }
    }

    #[test]
    fn damaged_lines_say_what_is_wrong() {
        let good = serde_json::to_string(&LineOut::new(&recorded("{}")).unwrap()).unwrap();
        let with_tenant = good.replace("\"metadata\":{", "\"metadata\":{\"tenant\":\"globex\",");
        let with_tenant = format!("{},\"tenant\":\"acme\"}}", &with_tenant[..with_tenant.len() - 1]);
        let bad_tenant = format!("{},\"tenant\":\"no way\"}}", &good[..good.len() - 1]);
        let cases = [
            ("{\"event_id\":", "EOF"),
            (&good.replace("\"version\":3", "\"version\":0"), "version"),
            (
                &good.replace("\"schema_version\"", "\"colour\":1,\"schema_version\""),
                "unknown field `colour`",
            ),
            (&good.replace(",\"payload\":{}", ""), "payload"),
            (
                &with_tenant,
                "`tenant` is `acme` but the metadata's tenant is `globex`",
            ),
            (&bad_tenant, "not a tenant name"),
        ];
        for (line, expected) in cases {
            let Err(error) = LineIn::parse(line) else {
                panic!("accepted {line}");
            };
            assert!(error.contains(expected), "{error} (for {line})");
        }
    }

    #[test]
    fn the_written_line_is_what_serde_writes() {
        let odd = NewEvent::new(
            "in\"cre\\mented\u{1}",
            Payload::from_stored(r#"{"a":"<\u00e9>"}"#),
        )
        .with_metadata(Metadata::default().with("quote\"", "line\nbreak"))
        .recorded(StreamId::new("Cou\"nter", "é/\t1"), u64::MAX, u64::MAX - 1);
        let pretty = recorded("{\n  \"amount\": 1\n}");
        let mut every_field = recorded("[]");
        every_field.metadata = Metadata::default()
            .with_correlation_id(Uuid::now_v7())
            .with_causation_id(Uuid::now_v7())
            .with("n", 1);
        every_field.metadata.tenant = Some(factum_core::Tenant::new("acme").unwrap());
        let mut bare = recorded("1");
        bare.metadata = Metadata::default();
        for event in [recorded("{}"), odd, pretty, every_field, bare] {
            let mut line = LineOut::new(&event).unwrap();
            for tenant in [None, Some("ac\"me")] {
                line.tenant = tenant;
                let mut written = Vec::new();
                line.write_to(&mut written).unwrap();
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    serde_json::to_string(&line).unwrap()
                );
            }
        }
    }

    #[test]
    fn the_tenant_comes_from_the_metadata_or_the_field() {
        let good = serde_json::to_string(&LineOut::new(&recorded("{}")).unwrap()).unwrap();
        assert_eq!(LineIn::parse(&good).unwrap().tenant, Tenant::DEFAULT);
        let in_metadata = good.replace("\"metadata\":{", "\"metadata\":{\"tenant\":\"acme\",");
        assert_eq!(LineIn::parse(&in_metadata).unwrap().tenant.as_str(), "acme");
        let in_field = format!("{},\"tenant\":\"acme\"}}", &good[..good.len() - 1]);
        assert_eq!(LineIn::parse(&in_field).unwrap().tenant.as_str(), "acme");
    }

    #[test]
    fn a_stored_payload_that_is_not_json_is_not_exported() {
        assert!(LineOut::new(&recorded("{not json")).is_err());
    }
}
