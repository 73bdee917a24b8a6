//! Reads: the pool of read connections, and a stream read in pages fetched
//! ahead of the caller.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use factum_core::backend::query_bound;
use factum_core::{Error, RecordedEvent, StreamId, Tenant};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use rusqlite::Connection;

use crate::decode::{Decoder, STREAM_COLUMNS};
use crate::error::sqlite;
use crate::{SqliteEventStore, SqliteOptions, schema};

/// Events per page when a stream is read.
const PAGE: usize = 4096;
/// Pages of a stream read requested ahead of the caller: two keep both
/// cores of a small machine decoding; a third only added a reader that
/// competes with them for the cores (measured 6% slower on 2 cores).
const PAGES_IN_FLIGHT: usize = 2;

pub(crate) const STREAM_KEY_OF: &str =
    "(SELECT stream_key FROM streams WHERE tenant = ?1 AND aggregate_type = ?2 AND aggregate_id = ?3)";

/// Idle read connections of a file store.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the
    /// connection for the next read unless `keep` is false or enough are idle.
    pub(crate) fn with_reader<R>(
        &self,
        options: &SqliteOptions,
        keep: impl FnOnce() -> bool,
        read: impl FnOnce(&Connection) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let connection = schema::open_secondary(&self.path, options)?;
                // Only the writer writes: a read connection handed to a
                // caller's closure cannot break that.
                connection
                    .pragma_update(None, "query_only", true)
                    .map_err(sqlite)?;
                connection
            }
        };
        let result = read(&connection);
        if keep() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < options.read_connections {
                idle.push(connection);
            }
        }
        result
    }

    /// Closes the idle connections.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// One page of a stream read.
pub(crate) struct Page {
    /// The events read, in version order.
    pub(crate) events: Vec<RecordedEvent>,
    /// The error that ended the page early, after `events`.
    pub(crate) error: Option<Error>,
    /// True when the page is full and whole: the stream may go on.
    continues: bool,
}

impl Page {
    /// A page that could not be read at all.
    fn failed(error: Error) -> Self {
        Self {
            events: Vec::new(),
            error: Some(error),
            continues: false,
        }
    }

    /// The page as replay takes it: the events, then the error that ended it.
    fn into_pages(self) -> impl Iterator<Item = Result<Vec<RecordedEvent>, Error>> {
        let events = (!self.events.is_empty()).then_some(Ok(self.events));
        events.into_iter().chain(self.error.map(Err))
    }
}

/// Where a stream read stands: the pages being fetched, oldest first.
struct Cursor {
    store: SqliteEventStore,
    stream: StreamId,
    /// The first version of the next page to request.
    next_version: u64,
    in_flight: VecDeque<BoxFuture<'static, Result<Page, Error>>>,
    done: bool,
}

impl Cursor {
    /// The next page, keeping `PAGES_IN_FLIGHT` requested ahead: versions
    /// have no gaps, so each page's range is known before the previous one
    /// arrives, and several readers decode in parallel.
    async fn next_page(&mut self) -> Option<Result<Page, Error>> {
        if self.done {
            return None;
        }
        while self.in_flight.len() < PAGES_IN_FLIGHT && self.next_version < u64::MAX - PAGE as u64 {
            let page = read_page(&self.store, self.stream.clone(), self.next_version);
            self.in_flight.push_back(page);
            self.next_version += PAGE as u64;
        }
        let page = self.in_flight.pop_front()?.await;
        if !page.as_ref().is_ok_and(|page| page.continues) {
            // Pages requested past the end come back empty; nobody waits for them.
            self.done = true;
            self.in_flight.clear();
        }
        Some(page)
    }
}

/// The pages of `stream` from `from_version` on.
fn pages(
    store: &SqliteEventStore,
    stream: &StreamId,
    from_version: u64,
) -> impl Stream<Item = Result<Page, Error>> + use<> {
    let cursor = Cursor {
        store: store.clone(),
        stream: stream.clone(),
        next_version: from_version.max(1),
        in_flight: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        let page = cursor.next_page().await?;
        Some((page, cursor))
    })
}

/// The events of `stream` from `from_version` on, one at a time.
pub(crate) fn stream_events(
    store: &SqliteEventStore,
    stream: &StreamId,
    from_version: u64,
) -> impl Stream<Item = Result<RecordedEvent, Error>> + use<> {
    Events {
        pages: pages(store, stream, from_version).boxed(),
        current: Vec::new().into_iter(),
        error: None,
    }
}

/// A stream read handed over one event at a time. Each event goes straight
/// from its page to the caller: this runs once per event, where adapters
/// around the page's iterator would copy every event several times.
struct Events {
    pages: futures::stream::BoxStream<'static, Result<Page, Error>>,
    current: std::vec::IntoIter<RecordedEvent>,
    /// The error that ended the current page, yielded after its events.
    error: Option<Error>,
}

impl Stream for Events {
    type Item = Result<RecordedEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.current.next() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(error) = self.error.take() {
                return Poll::Ready(Some(Err(error)));
            }
            let page = match std::task::ready!(self.pages.poll_next_unpin(context)) {
                None => return Poll::Ready(None),
                Some(page) => page.unwrap_or_else(Page::failed),
            };
            self.current = page.events.into_iter();
            self.error = page.error;
        }
    }
}

/// The events of `stream` from `from_version` on, a page at a time, as read.
pub(crate) fn stream_pages(
    store: &SqliteEventStore,
    stream: &StreamId,
    from_version: u64,
) -> impl Stream<Item = Result<Vec<RecordedEvent>, Error>> + use<> {
    pages(store, stream, from_version)
        .flat_map(|page| futures::stream::iter(page.unwrap_or_else(Page::failed).into_pages()))
}

/// Reads versions `from_version..from_version + PAGE` of `stream`.
fn read_page(
    store: &SqliteEventStore,
    stream: StreamId,
    from_version: u64,
) -> BoxFuture<'static, Result<Page, Error>> {
    let tenant: Tenant = store.home().clone();
    store.read(move |connection| {
        let sql = format!(
            "SELECT {STREAM_COLUMNS} FROM events WHERE stream_key = {STREAM_KEY_OF} \
             AND version >= ?4 AND version < ?5 ORDER BY version"
        );
        let mut statement = connection.prepare_cached(&sql).map_err(sqlite)?;
        let from = query_bound(from_version);
        let until = from.saturating_add(PAGE as i64);
        let mut rows = statement
            .query((
                tenant.as_str(),
                stream.aggregate_type(),
                stream.aggregate_id(),
                from,
                until,
            ))
            .map_err(sqlite)?;
        // Fresh strings for each page: the caller drops the events on
        // another thread, and sharing one reference count between the
        // reading and the dropping thread costs more than the copy.
        let stream = StreamId::new(stream.aggregate_type(), stream.aggregate_id());
        let mut decoder = Decoder::default();
        let mut page = Page {
            events: Vec::with_capacity(PAGE),
            error: None,
            continues: false,
        };
        let mut expected_version = from_version;
        loop {
            let decoded = match rows.next() {
                Ok(Some(row)) => decoder.stream_event(row, &stream, &tenant, expected_version),
                Ok(None) => break,
                Err(error) => Err(sqlite(error)),
            };
            match decoded {
                Ok(event) => page.events.push(event),
                Err(error) => {
                    page.error = Some(error);
                    break;
                }
            }
            expected_version += 1;
        }
        page.continues = page.events.len() == PAGE && page.error.is_none();
        Ok(page)
    })
}
