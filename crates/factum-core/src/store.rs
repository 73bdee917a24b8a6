use std::fmt;
use std::future::Future;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{Error, NewEvent, RecordedEvent, Start, StreamId};

/// A stream of stored events, read lazily.
pub type EventStream<'a> = BoxStream<'a, Result<RecordedEvent, Error>>;

/// A stream of pages of stored events, read lazily.
pub type EventPages<'a> = BoxStream<'a, Result<Vec<RecordedEvent>, Error>>;

/// The most events a default [`EventStore::read_stream_pages`] page holds.
const STREAM_PAGE: usize = 1024;

/// What the writer believes about the stream it appends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version (no concurrency check).
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream's last event must have this version (0: no events).
    Exact(u64),
}

impl ExpectedVersion {
    /// True when a stream at `actual` (0: no events) satisfies this expectation.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(expected) => actual == expected,
        }
    }

    /// The expectation for an aggregate loaded at `version` (0: new).
    pub fn from_loaded(version: u64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// Where an append put its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append (its last event's version).
    pub stream_version: u64,
    /// The global position of each appended event, in order.
    pub positions: Vec<u64>,
}

/// One stream's part of an atomic append across streams
/// ([`EventStore::append_many`]): the events for `stream`, appended only if
/// the stream is at `expected`.
///
/// ```
/// # use factum_core::{AppendBatch, ExpectedVersion, NewEvent, Payload, StreamId};
/// let event = NewEvent::new("opened", Payload::parse("{}").unwrap());
/// let batch = AppendBatch::new(StreamId::new("Account", "1"), ExpectedVersion::NoStream, vec![event]);
/// assert_eq!(batch.events.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AppendBatch {
    /// The stream the events go to.
    pub stream: StreamId,
    /// What the stream's version must be for the call to commit.
    pub expected: ExpectedVersion,
    /// The events, in order. None: the batch only checks the version.
    pub events: Vec<NewEvent>,
}

impl AppendBatch {
    /// The batch of `events` for `stream`, expecting it at `expected`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self {
            stream,
            expected,
            events,
        }
    }
}

/// A durable, ordered log of events, grouped into streams.
///
/// Every backend implements this one trait and proves it with the shared
/// conformance suite (`factum::testing`). The guarantees:
///
/// - `append` is atomic: all events of a call are stored, or none; so is
///   `append_many`, across all of its streams.
/// - Versions in a stream start at 1 and have no gaps.
/// - Positions in the global log `$all` increase strictly in commit order; a
///   reader that delivered position `p` never later finds an event below `p`.
/// - Appending events whose ids are already stored, with the same content, is
///   a retry: nothing is written and the original positions come back. The
///   same id with different content is [`Error::DuplicateEventId`].
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically, if the stream is at `expected`.
    ///
    /// Fails with [`Error::Conflict`], writing nothing, when it is not.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<AppendResult, Error>> + Send;

    /// Appends several streams' batches atomically: every batch is stored,
    /// or none is. The results come in the order of `batches`.
    ///
    /// Each batch is checked against its own expected version; when one
    /// fails, nothing is written and the error is [`Error::Conflict`] naming
    /// that stream (the first such batch in the call's order). A batch
    /// without events only checks its stream's version. The positions of
    /// one call follow batch order; whether they are contiguous in `$all`
    /// is up to the store (the in-memory and SQLite stores make them so).
    /// A reader never sees part of a call.
    ///
    /// Retrying a call whose events are all stored already returns the
    /// original positions of every batch and writes nothing (a batch
    /// without events then reports its stream's current version); a call
    /// mixing stored and new batches is [`Error::InvalidRequest`].
    ///
    /// Bad input writes nothing: no batches is [`Error::EmptyBatchList`],
    /// a stream in two batches is [`Error::DuplicateStream`], and an event
    /// id twice in the call is [`Error::InvalidRequest`].
    fn append_many(
        &self,
        batches: Vec<AppendBatch>,
    ) -> impl Future<Output = Result<Vec<AppendResult>, Error>> + Send;

    /// The events of `stream` with version `from_version` and above, in order.
    ///
    /// The stream is read lazily, in pages: a long history is never held in
    /// memory at once. An unknown stream yields nothing.
    fn read_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'_>;

    /// [`read_stream`](Self::read_stream) a page at a time: what replay
    /// uses, so a store that reads in pages anyway hands them over whole
    /// instead of one event per poll.
    ///
    /// A page that meets an error yields the error instead of the page.
    fn read_stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        self.read_stream(stream, from_version)
            .ready_chunks(STREAM_PAGE)
            .map(|page| page.into_iter().collect())
            .boxed()
    }

    /// Up to `limit` events of the global log with positions after `after`
    /// (exclusive), in position order.
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// Every event after position `after`: first those already stored, then
    /// each new one as it commits. The stream does not end on its own; it
    /// ends after yielding an error.
    fn subscribe_all(&self, after: u64) -> EventStream<'static>;

    /// Every event of the global log from `start`: [`subscribe_all`](Self::subscribe_all)
    /// after the position `start` names.
    ///
    /// [`Start::End`] reads the head position during this call, before it
    /// returns: every event committed after the call is delivered, none at
    /// or below that head. A failure to read the head is returned here.
    ///
    /// ```
    /// # use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, Start, StreamId};
    /// # use futures::StreamExt;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = InMemoryEventStore::new();
    /// let stream = StreamId::new("Counter", "1");
    /// let event = || NewEvent::new("incremented", Payload::parse("{}").unwrap());
    /// store.append(&stream, ExpectedVersion::Any, vec![event()]).await?;
    ///
    /// let mut from_now = store.subscribe(Start::End).await?;
    /// store.append(&stream, ExpectedVersion::Any, vec![event()]).await?;
    /// assert_eq!(from_now.next().await.unwrap()?.version, 2);
    /// # Ok::<(), factum_core::Error>(())
    /// # }).unwrap();
    /// ```
    fn subscribe(&self, start: Start) -> impl Future<Output = Result<EventStream<'static>, Error>> + Send {
        async move { Ok(self.subscribe_all(start.after(self).await?)) }
    }

    /// The events of `stream` with version `from_version` and above: first
    /// those already stored, then each new one as it commits, with no gap
    /// and no duplicate between the two. 0 and 1 both start at the first
    /// event. A stream that does not exist yet is followed from its first
    /// event once it is written. The stream does not end on its own; it
    /// ends after yielding an error.
    ///
    /// The default follows [`subscribe_all`](Self::subscribe_all) from the
    /// start of the log and keeps the stream's events: right for any store,
    /// but it reads the whole log. The backends override it with
    /// `PollingSubscription::stream_of`, which reads only the stream (in
    /// `factum_core::backend`, for backend authors).
    ///
    /// A store with tenants ([`Tenancy`](crate::Tenancy)) must override it
    /// too: a tenant view's log holds only its tenant's events, so the
    /// default is right on a view, but an unscoped handle's log holds every
    /// tenant's, and the default would follow each tenant's stream of that
    /// id where the handle's stream operations address the default
    /// tenant's only. Following the stream through
    /// [`read_stream`](Self::read_stream), as `stream_of` does, is right
    /// for both.
    ///
    /// ```
    /// # use factum_core::{EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, Payload, StreamId};
    /// # use futures::StreamExt;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = InMemoryEventStore::new();
    /// let stream = StreamId::new("Counter", "1");
    /// let event = || NewEvent::new("incremented", Payload::parse("{}").unwrap());
    /// store.append(&stream, ExpectedVersion::Any, vec![event(), event()]).await?;
    ///
    /// let mut watch = store.subscribe_stream(&stream, 2);
    /// assert_eq!(watch.next().await.unwrap()?.version, 2);
    /// store.append(&stream, ExpectedVersion::Any, vec![event()]).await?;
    /// assert_eq!(watch.next().await.unwrap()?.version, 3);
    /// # Ok::<(), factum_core::Error>(())
    /// # }).unwrap();
    /// ```
    fn subscribe_stream(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        let stream = stream.clone();
        let from_version = from_version.max(1);
        self.subscribe_all(0)
            .filter(move |item| {
                let wanted = item.as_ref().map_or(true, |event| {
                    event.stream == stream && event.version >= from_version
                });
                std::future::ready(wanted)
            })
            .boxed()
    }

    /// The version of the stream's last event (0: no events).
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The position up to which the global log can be read without a gap
    /// (0: empty).
    fn head_position(&self) -> impl Future<Output = Result<u64, Error>> + Send;
}
