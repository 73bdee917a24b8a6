//! Reading a stream back: the version check of every replay, and the
//! shared strings of decoded rows.

use std::sync::Arc;

use super::corrupt;
use crate::{Error, RecordedEvent, StreamId};

/// Checks that `event` is the next event of a replay of `stream`: in that
/// stream, at `expected_version`. Versions in a stream start at 1 and have
/// no gaps, so anything else is [`Error::Corrupt`]. Every replay, and every
/// read of a stream that can meet stored rows, uses this check (or
/// [`check_version`], its version half, on a row not yet decoded).
pub fn check_next_version(
    stream: &StreamId,
    expected_version: u64,
    event: &RecordedEvent,
) -> Result<(), Error> {
    if event.stream != *stream {
        return Err(corrupt(
            stream,
            expected_version,
            format!(
                "a read of this stream returned event {} of stream {}",
                event.event_id, event.stream
            ),
        ));
    }
    check_version(stream, expected_version, event.version)
}

/// Checks that the version `found` stored next in `stream` is
/// `expected_version`; a gap or a repeat is [`Error::Corrupt`].
pub fn check_version(stream: &StreamId, expected_version: u64, found: u64) -> Result<(), Error> {
    if found == expected_version {
        return Ok(());
    }
    Err(corrupt(
        stream,
        expected_version,
        format!("version {expected_version} is missing: the next stored version is {found}"),
    ))
}

/// Shares the event type strings of the rows a reader decodes, instead of
/// allocating one per event: a stream holds few distinct types.
#[derive(Debug, Default)]
pub struct EventTypes {
    known: Vec<Arc<str>>,
}

/// How many distinct event types an [`EventTypes`] keeps.
const EVENT_TYPES_KEPT: usize = 32;

impl EventTypes {
    /// The shared string for `name`.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        match self.known.iter().find(|known| ***known == *name) {
            Some(known) => known.clone(),
            None => self.keep(name),
        }
    }

    /// The shared string for the stored bytes `name`, which must be UTF-8.
    /// A type met before is recognised by its bytes: only a new one is
    /// validated, so a page of rows of a few types validates a few strings.
    pub fn intern_utf8(&mut self, name: &[u8]) -> Result<Arc<str>, std::str::Utf8Error> {
        match self.known.iter().find(|known| known.as_bytes() == name) {
            Some(known) => Ok(known.clone()),
            None => Ok(self.keep(std::str::from_utf8(name)?)),
        }
    }

    fn keep(&mut self, name: &str) -> Arc<str> {
        let shared: Arc<str> = Arc::from(name);
        if self.known.len() >= EVENT_TYPES_KEPT {
            // A reader meeting many types (the global log) starts over
            // rather than scanning a long list for every row.
            self.known.clear();
        }
        self.known.push(shared.clone());
        shared
    }
}
