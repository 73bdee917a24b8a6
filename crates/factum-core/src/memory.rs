use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    AppendResult, Error, EventStore, EventStream, ExpectedVersion, NewEvent, PollingSubscription,
    RecordedEvent, StreamId, SubscriptionOptions,
};

/// Events per page when a stream is read.
const PAGE: usize = 1024;

/// An event store in memory: for tests, examples and prototypes.
///
/// Cheap to clone; clones share the same events. Safe to use from many
/// tasks at once: appends are serialised by a lock, so commit order is
/// position order.
///
/// ```
/// # use factum_core::{InMemoryEventStore, EventStore, ExpectedVersion, NewEvent, Payload, StreamId};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// let stream = StreamId::new("Counter", "1");
/// let event = NewEvent::new("created", Payload::parse(r#"{"value":0}"#).unwrap());
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
/// assert_eq!(result.stream_version, 1);
/// # });
/// ```
#[derive(Clone)]
pub struct InMemoryEventStore {
    shared: Arc<Shared>,
}

struct Shared {
    log: RwLock<Log>,
    head: watch::Sender<u64>,
}

#[derive(Default)]
struct Log {
    /// Position `p` is at index `p - 1`.
    events: Vec<RecordedEvent>,
    /// For each stream, the log index of each version (version `v` at `v - 1`).
    streams: HashMap<StreamId, Vec<usize>>,
    event_ids: HashMap<Uuid, usize>,
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.shared.log.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InMemoryEventStore")
            .field("events", &log.events.len())
            .field("streams", &log.streams.len())
            .finish()
    }
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                log: RwLock::new(Log::default()),
                head: watch::Sender::new(0),
            }),
        }
    }

    /// The number of events stored.
    pub fn len(&self) -> usize {
        self.read_log().events.len()
    }

    /// True when no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while the lock is held cannot leave the log half-written (every
    // append checks first and mutates after), so a poisoned lock is still sound.
    fn read_log(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.shared.log.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_log(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.shared.log.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_page(&self, stream: &StreamId, from_version: u64) -> Vec<RecordedEvent> {
        let log = self.read_log();
        let Some(indexes) = log.streams.get(stream) else {
            return Vec::new();
        };
        let start = usize::try_from(from_version.max(1) - 1).unwrap_or(usize::MAX);
        indexes
            .iter()
            .skip(start)
            .take(PAGE)
            .map(|&index| log.events[index].clone())
            .collect()
    }
}

impl Log {
    /// The original result when `events` is a retry of an earlier append.
    fn retried(&self, stream: &StreamId, events: &[NewEvent]) -> Result<Option<AppendResult>, Error> {
        let mut original = AppendResult {
            stream_version: 0,
            positions: Vec::new(),
        };
        let mut fresh = None;
        for event in events {
            let Some(&index) = self.event_ids.get(&event.event_id) else {
                fresh.get_or_insert(event.event_id);
                continue;
            };
            let stored = &self.events[index];
            if stored.stream != *stream || !stored.same_content(event) {
                return Err(duplicate(stream, &stored.stream, event.event_id));
            }
            original.positions.push(stored.position);
            original.stream_version = stored.version;
        }
        match (original.positions.is_empty(), fresh) {
            (true, _) => Ok(None),
            (false, None) => Ok(Some(original)),
            (false, Some(new_id)) => Err(Error::InvalidRequest {
                stream: stream.clone(),
                reason: format!(
                    "the append mixes events already stored with new event {new_id}; retry the original batch unchanged"
                ),
            }),
        }
    }
}

fn duplicate(stream: &StreamId, existing: &StreamId, event_id: Uuid) -> Error {
    Error::DuplicateEventId {
        stream: stream.clone(),
        existing_stream: existing.clone(),
        event_id,
    }
}

impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let mut guard = self.write_log();
        let log = &mut *guard;
        if let Some(original) = log.retried(stream, &events)? {
            return Ok(original);
        }
        let actual = log.streams.get(stream).map_or(0, |indexes| indexes.len() as u64);
        if !expected.admits(actual) {
            return Err(Error::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        if let Some(repeated) = events.iter().find(|event| !seen.insert(event.event_id)) {
            return Err(Error::InvalidRequest {
                stream: stream.clone(),
                reason: format!("event id {} appears twice in one append", repeated.event_id),
            });
        }

        log.events.reserve(events.len());
        log.event_ids.reserve(events.len());
        let first_index = log.events.len();
        let stream_indexes = log.streams.entry(stream.clone()).or_default();
        let mut positions = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let index = first_index + offset;
            let version = actual + offset as u64 + 1;
            let position = index as u64 + 1;
            log.event_ids.insert(event.event_id, index);
            stream_indexes.push(index);
            log.events.push(event.recorded(stream.clone(), version, position));
            positions.push(position);
        }
        let stream_version = stream_indexes.len() as u64;
        let head = log.events.len() as u64;
        drop(guard);
        self.shared.head.send_replace(head);
        Ok(AppendResult {
            stream_version,
            positions,
        })
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        let stream = stream.clone();
        futures::stream::unfold(Some(from_version.max(1)), move |next| {
            let stream = stream.clone();
            async move {
                let next = next?;
                let page = self.read_page(&stream, next);
                if page.is_empty() {
                    return None;
                }
                let following = (page.len() == PAGE).then(|| next + PAGE as u64);
                Some((futures::stream::iter(page.into_iter().map(Ok)), following))
            }
        })
        .flatten()
        .boxed()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let log = self.read_log();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(log.events.len());
        let end = start.saturating_add(limit).min(log.events.len());
        Ok(log.events[start..end].to_vec())
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        PollingSubscription::stream(
            self.clone(),
            after,
            Some(self.shared.head.subscribe()),
            SubscriptionOptions::default(),
        )
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        Ok(self
            .read_log()
            .streams
            .get(stream)
            .map_or(0, |indexes| indexes.len() as u64))
    }

    async fn head_position(&self) -> Result<u64, Error> {
        Ok(self.read_log().events.len() as u64)
    }
}
