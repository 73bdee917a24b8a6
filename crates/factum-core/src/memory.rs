use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use crate::backend::{
    PollingSubscription, SubscriptionOptions, check_events, home, narrow, original_append, repeated_event_id,
};
use crate::{
    AppendBatch, AppendResult, Error, EventPages, EventStore, EventStream, ExpectedVersion, NewEvent,
    RecordedEvent, Snapshot, SnapshotStore, StreamId, Tenancy, Tenant,
};

mod atomic;

/// Events per page when a stream is read.
const PAGE: usize = 1024;

/// An event store in memory: for tests, examples and prototypes.
///
/// Cheap to clone; clones share the same events. Safe to use from many
/// tasks at once: appends are serialised by a lock, so commit order is
/// position order. [`for_tenant`](Tenancy::for_tenant) gives a view of one
/// tenant over the same events (see [`Tenancy`]).
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
    /// The tenant of this view; `None` for the unscoped handle.
    tenant: Option<Tenant>,
}

struct Shared {
    log: RwLock<Log>,
    head: watch::Sender<u64>,
    snapshots: Mutex<HashMap<(Tenant, StreamId), Snapshot>>,
}

/// Events per chunk of the log: the log grows by whole chunks, so appends
/// never copy what is already stored.
const CHUNK: usize = 1 << 14;

struct Log {
    /// Position `p` is at index `p - 1`, in chunks of [`CHUNK`] events.
    chunks: Vec<Vec<Stored>>,
    len: usize,
    /// Each stream's id, tenant, and the log index of each version
    /// (version `v` at `v - 1`).
    streams: Vec<StreamEntry>,
    /// Each tenant's streams and events; the default tenant is number 0.
    tenants: Vec<TenantEntry>,
    tenant_numbers: HashMap<Tenant, u32>,
    // UUID v7 ids arrive nearly sorted, so a B-tree stays hot at its right
    // edge where a hash map would miss the cache on every insert; as `u128`
    // each comparison is one instruction pair instead of a 16-byte memcmp.
    event_ids: BTreeMap<u128, usize>,
}

struct StreamEntry {
    id: StreamId,
    tenant: u32,
    indexes: Vec<usize>,
}

/// A tenant's part of the log: its streams by id, and the log index of
/// each of its events in order (its `$all`).
struct TenantEntry {
    tenant: Tenant,
    streams: HashMap<StreamId, u32>,
    indexes: Vec<usize>,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
            streams: Vec::new(),
            tenants: vec![TenantEntry::new(Tenant::DEFAULT)],
            tenant_numbers: HashMap::from([(Tenant::DEFAULT, 0)]),
            event_ids: BTreeMap::new(),
        }
    }
}

impl TenantEntry {
    fn new(tenant: Tenant) -> Self {
        Self {
            tenant,
            streams: HashMap::new(),
            indexes: Vec::new(),
        }
    }
}

/// An event as kept in memory: half the size of a [`RecordedEvent`]. Its
/// metadata is kept without the tenant, which is its stream's.
struct Stored {
    event_id: Uuid,
    stream_number: u32,
    version: u64,
    event_type: Arc<str>,
    schema_version: u32,
    payload: crate::Payload,
    metadata: Option<Box<crate::Metadata>>,
    occurred_at: time::OffsetDateTime,
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
            .field("tenant", &self.tenant)
            .field("events", &log.len)
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
                snapshots: Mutex::new(HashMap::new()),
            }),
            tenant: None,
        }
    }

    /// The number of events stored, of every tenant.
    pub fn len(&self) -> usize {
        self.read_log().len
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

    /// The tenant whose streams and snapshots this view addresses.
    fn home(&self) -> &Tenant {
        home(self.tenant.as_ref())
    }

    fn read_page(&self, stream: &StreamId, from_version: u64) -> Vec<RecordedEvent> {
        let log = self.read_log();
        let Some(entry) = log.stream(self.home(), stream) else {
            return Vec::new();
        };
        let start = usize::try_from(from_version.max(1) - 1).unwrap_or(usize::MAX);
        entry
            .indexes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(PAGE)
            .map(|&index| log.recorded(index))
            .collect()
    }
}

impl Log {
    fn tenant(&self, tenant: &Tenant) -> Option<&TenantEntry> {
        // The default tenant is number 0 from the start: no lookup on the
        // path every single-tenant append takes.
        let number = if tenant.is_default() {
            0
        } else {
            *self.tenant_numbers.get(tenant)?
        };
        self.tenants.get(number as usize)
    }

    fn stream(&self, tenant: &Tenant, stream: &StreamId) -> Option<&StreamEntry> {
        let number = *self.tenant(tenant)?.streams.get(stream)?;
        self.streams.get(number as usize)
    }

    fn stream_version(&self, tenant: &Tenant, stream: &StreamId) -> u64 {
        self.stream(tenant, stream)
            .map_or(0, |entry| entry.indexes.len() as u64)
    }

    fn get(&self, index: usize) -> &Stored {
        &self.chunks[index / CHUNK][index % CHUNK]
    }

    fn recorded(&self, index: usize) -> RecordedEvent {
        let stored = self.get(index);
        let entry = &self.streams[stored.stream_number as usize];
        let mut metadata = stored.metadata.as_deref().cloned().unwrap_or_default();
        metadata.tenant = Some(self.tenants[entry.tenant as usize].tenant.clone());
        RecordedEvent {
            event_id: stored.event_id,
            stream: entry.id.clone(),
            version: stored.version,
            position: index as u64 + 1,
            event_type: stored.event_type.clone(),
            schema_version: stored.schema_version,
            payload: stored.payload.clone(),
            metadata,
            occurred_at: stored.occurred_at,
        }
    }

    fn push(&mut self, stored: Stored) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(stored);
            self.len += 1;
        }
    }

    /// Appends `event` as `version` of stream `stream_number` (and to its
    /// tenant's log), its id already claimed; returns its position.
    #[inline]
    fn store(&mut self, stream_number: u32, version: u64, event: NewEvent) -> u64 {
        let index = self.len;
        let entry = &mut self.streams[stream_number as usize];
        entry.indexes.push(index);
        self.tenants[entry.tenant as usize].indexes.push(index);
        // The tenant is the stream's, filled in again on every read.
        let mut metadata = event.metadata;
        metadata.tenant = None;
        self.push(Stored {
            event_id: event.event_id,
            stream_number,
            version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
            metadata: (!metadata.is_empty()).then(|| Box::new(metadata)),
            occurred_at: event.occurred_at,
        });
        index as u64 + 1
    }

    /// The original result when `events` is a retry of an earlier append.
    fn retried(
        &self,
        tenant: &Tenant,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, Error> {
        original_append(tenant, stream, events, |event| {
            Ok(self
                .event_ids
                .get(&event.event_id.as_u128())
                .map(|&index| self.recorded(index)))
        })
    }

    /// The number of `tenant`, registering it when new.
    fn tenant_number(&mut self, tenant: &Tenant, stream: &StreamId) -> Result<u32, Error> {
        if tenant.is_default() {
            return Ok(0);
        }
        if let Some(&number) = self.tenant_numbers.get(tenant) {
            return Ok(number);
        }
        let number = u32::try_from(self.tenants.len()).map_err(|_| Error::InvalidRequest {
            stream: stream.clone(),
            reason: "the in-memory store holds at most 2^32 tenants".to_owned(),
        })?;
        self.tenants.push(TenantEntry::new(tenant.clone()));
        self.tenant_numbers.insert(tenant.clone(), number);
        Ok(number)
    }

    /// The number of `stream` of tenant number `tenant`, registering it when new.
    fn stream_number(&mut self, tenant: u32, stream: &StreamId) -> Result<u32, Error> {
        let streams = &mut self.tenants[tenant as usize].streams;
        if let Some(&number) = streams.get(stream) {
            return Ok(number);
        }
        let number = u32::try_from(self.streams.len()).map_err(|_| Error::InvalidRequest {
            stream: stream.clone(),
            reason: "the in-memory store holds at most 2^32 streams".to_owned(),
        })?;
        streams.insert(stream.clone(), number);
        self.streams.push(StreamEntry {
            id: stream.clone(),
            tenant,
            indexes: Vec::new(),
        });
        Ok(number)
    }

    /// Claims the ids of `events` for the log indexes from `first_index` on.
    /// When one is taken, releases those claimed and answers as
    /// [`original_append`] does for the whole batch (a repeated id within
    /// the batch has its own error).
    fn claim_ids(
        &mut self,
        tenant: &Tenant,
        stream: &StreamId,
        events: &[NewEvent],
        first_index: usize,
    ) -> Result<Option<AppendResult>, Error> {
        for (offset, event) in events.iter().enumerate() {
            let Some(previous) = self
                .event_ids
                .insert(event.event_id.as_u128(), first_index + offset)
            else {
                continue;
            };
            self.event_ids.insert(event.event_id.as_u128(), previous);
            for claimed in &events[..offset] {
                self.event_ids.remove(&claimed.event_id.as_u128());
            }
            if previous >= first_index {
                return Err(repeated_event_id(stream, event.event_id));
            }
            // An id stored before: the shared rule tells a retry from a reused
            // id or a mixed batch. It finds at least this id stored.
            return self.retried(tenant, stream, events).and_then(|original| {
                original
                    .map(Some)
                    .ok_or_else(|| repeated_event_id(stream, event.event_id))
            });
        }
        Ok(None)
    }
}

/// Reads a stream a page at a time; each page is copied under the read lock,
/// so writers are never blocked for the length of a whole replay.
struct StreamReader<'a> {
    store: &'a InMemoryEventStore,
    stream: StreamId,
    next_version: Option<u64>,
    page: std::vec::IntoIter<RecordedEvent>,
}

impl futures::Stream for StreamReader<'_> {
    type Item = Result<RecordedEvent, Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let reader = self.get_mut();
        loop {
            if let Some(event) = reader.page.next() {
                return std::task::Poll::Ready(Some(Ok(event)));
            }
            let Some(next_version) = reader.next_version else {
                return std::task::Poll::Ready(None);
            };
            let page = reader.store.read_page(&reader.stream, next_version);
            reader.next_version = (page.len() == PAGE).then(|| next_version + PAGE as u64);
            reader.page = page.into_iter();
        }
    }
}

impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let tenant = self.home();
        check_events(tenant, stream, &events)?;
        let mut guard = self.write_log();
        let log = &mut *guard;
        let actual = log.stream_version(tenant, stream);
        if !expected.admits(actual) {
            // A retry of a stored batch meets the version check first: it is
            // still a retry, and a batch with any stored id gets the shared
            // rule's answer, as on every backend. Stored ids of an admitted
            // append are caught when their insert below finds them.
            if let Some(original) = log.retried(tenant, stream, &events)? {
                return Ok(original);
            }
            return Err(Error::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }

        let tenant_number = log.tenant_number(tenant, stream)?;
        let stream_number = log.stream_number(tenant_number, stream)?;
        let first_index = log.len;
        if let Some(original) = log.claim_ids(tenant, stream, &events, first_index)? {
            return Ok(original);
        }
        let mut positions = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            positions.push(log.store(stream_number, actual + offset as u64 + 1, event));
        }
        let stream_version = log.streams[stream_number as usize].indexes.len() as u64;
        let head = log.len as u64;
        drop(guard);
        self.shared.head.send_replace(head);
        Ok(AppendResult {
            stream_version,
            positions,
        })
    }

    async fn append_many(&self, batches: Vec<AppendBatch>) -> Result<Vec<AppendResult>, Error> {
        self.append_batches(batches)
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        Box::pin(StreamReader {
            store: self,
            stream: stream.clone(),
            next_version: Some(from_version.max(1)),
            page: Vec::new().into_iter(),
        })
    }

    fn read_stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        let stream = stream.clone();
        futures::stream::unfold(Some(from_version.max(1)), move |next_version| {
            let page = next_version.map(|version| (version, self.read_page(&stream, version)));
            async move {
                let (version, page) = page?;
                if page.is_empty() {
                    return None;
                }
                let following = (page.len() == PAGE).then(|| version + PAGE as u64);
                Some((Ok(page), following))
            }
        })
        .boxed()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let log = self.read_log();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(log.len);
        let Some(tenant) = &self.tenant else {
            let end = start.saturating_add(limit).min(log.len);
            return Ok((start..end).map(|index| log.recorded(index)).collect());
        };
        let Some(entry) = log.tenant(tenant) else {
            return Ok(Vec::new());
        };
        // Index `i` holds position `i + 1`: the first one after `after` is
        // the first index at or above `after`.
        let first = entry.indexes.partition_point(|&index| index < start);
        Ok(entry.indexes[first..]
            .iter()
            .take(limit)
            .map(|&index| log.recorded(index))
            .collect())
    }

    fn subscribe_all(&self, after: u64) -> EventStream<'static> {
        PollingSubscription::stream(
            self.clone(),
            after,
            Some(self.shared.head.subscribe()),
            SubscriptionOptions::default(),
        )
    }

    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        PollingSubscription::stream_of(
            self.clone(),
            stream.clone(),
            from_version,
            Some(self.shared.head.subscribe()),
            SubscriptionOptions::default(),
        )
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, Error> {
        Ok(self.read_log().stream_version(self.home(), stream))
    }

    /// The last position of the log; on a tenant view, of the tenant's
    /// last event (0: none).
    async fn head_position(&self) -> Result<u64, Error> {
        let log = self.read_log();
        Ok(match &self.tenant {
            None => log.len as u64,
            Some(tenant) => log
                .tenant(tenant)
                .and_then(|entry| entry.indexes.last())
                .map_or(0, |&index| index as u64 + 1),
        })
    }
}

impl Tenancy for InMemoryEventStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

impl SnapshotStore for InMemoryEventStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), Error> {
        let mut snapshots = self
            .shared
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (self.home().clone(), snapshot.stream.clone());
        let newer = snapshots
            .get(&key)
            .is_none_or(|stored| stored.version <= snapshot.version);
        if newer {
            snapshots.insert(key, snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let snapshots = self
            .shared
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(snapshots.get(&(self.home().clone(), stream.clone())).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn event(amount: i64) -> NewEvent {
        NewEvent::new(
            "added",
            Payload::parse(format!(r#"{{"amount":{amount}}}"#)).unwrap(),
        )
    }

    fn append(
        store: &InMemoryEventStore,
        stream: &StreamId,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        futures::executor::block_on(store.append(stream, ExpectedVersion::Any, events))
    }

    /// A stored id later in a batch gets the answer `original_append` gives,
    /// and the batch leaves nothing behind.
    #[test]
    fn a_stored_id_inside_a_batch_is_judged_by_the_shared_rule() {
        let store = InMemoryEventStore::new();
        let stream = StreamId::new("Counter", "1");
        let stored = event(1);
        append(&store, &stream, vec![stored.clone()]).unwrap();

        let mixed = append(&store, &stream, vec![event(2), stored.clone()]).unwrap_err();
        assert!(
            matches!(&mixed, Error::InvalidRequest { reason, .. } if reason.contains("mixes")),
            "{mixed}"
        );
        let mut changed = stored.clone();
        changed.payload = Payload::parse(r#"{"amount":9}"#).unwrap();
        let reused = append(&store, &stream, vec![event(3), changed]).unwrap_err();
        assert!(matches!(reused, Error::DuplicateEventId { .. }), "{reused}");
        let elsewhere = append(&store, &StreamId::new("Counter", "2"), vec![event(4), stored]).unwrap_err();
        assert!(matches!(elsewhere, Error::DuplicateEventId { .. }), "{elsewhere}");

        let repeated = event(5);
        let twice = append(&store, &stream, vec![repeated.clone(), repeated]).unwrap_err();
        assert!(
            matches!(&twice, Error::InvalidRequest { reason, .. } if reason.contains("twice")),
            "{twice}"
        );
        assert_eq!(store.len(), 1, "a refused batch left events behind");
        assert_eq!(append(&store, &stream, vec![event(6)]).unwrap().positions, [2]);
    }
}
