//! The gRPC service: each call checks its token, decodes its request with
//! the shared conversions, and answers through the store view the token
//! reaches.

use std::pin::Pin;

use factum_core::{EventStore, EventStream, SnapshotStore, Tenancy};
use factum_remote::convert::{
    WireError, append_from_wire, recorded_to_wire, result_to_wire, snapshot_from_wire, snapshot_to_wire,
    stream_from_wire,
};
use factum_remote::proto::event_store_server::EventStore as Wire;
use factum_remote::proto::{
    AppendManyRequest, AppendManyResponse, AppendRequest, AppendResponse, EventPage, HeadRequest,
    HeadResponse, LoadSnapshotRequest, LoadSnapshotResponse, ReadAllRequest, ReadStreamRequest,
    SaveSnapshotRequest, SaveSnapshotResponse, StreamVersionRequest, StreamVersionResponse,
    SubscribeAllRequest, SubscribeStreamRequest,
};
use factum_remote::status::error_to_status;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::auth::{Tokens, authorize};
use crate::limits::{Limits, SubscriptionSlots};

/// A server stream of pages.
pub(crate) type Pages = Pin<Box<dyn Stream<Item = Result<EventPage, Status>> + Send>>;

/// The most payload bytes one page carries (a page holds at least one
/// event, however large), so that a page of large events stays a
/// reasonable message.
const PAGE_BYTES: usize = 1024 * 1024;

/// The event store service over a store `S`.
pub(crate) struct Service<S> {
    pub(crate) store: S,
    pub(crate) tokens: Option<std::sync::Arc<Tokens>>,
    pub(crate) limits: Limits,
    pub(crate) slots: SubscriptionSlots,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl<S: Tenancy + Clone> Service<S> {
    /// The store view a reading call addresses.
    fn reader<T>(&self, request: &Request<T>) -> Result<S, Status> {
        let access = authorize(self.tokens.as_deref(), request.metadata())?;
        access.store(&self.store, request.metadata())
    }

    /// The store view a writing call addresses.
    fn writer<T>(&self, request: &Request<T>) -> Result<S, Status> {
        let access = authorize(self.tokens.as_deref(), request.metadata())?;
        access.check_write()?;
        access.store(&self.store, request.metadata())
    }

    /// `events` as a subscription: it holds one of the server's slots while
    /// it lives and ends with UNAVAILABLE when the server shuts down.
    fn subscription(&self, events: EventStream<'static>) -> Result<Pages, Status> {
        let slot = self.slots.take()?;
        let mut shutdown = self.shutdown.clone();
        let pages = paged(events, self.limits.page_events);
        Ok(Box::pin(async_stream::stream! {
            let _slot = slot;
            futures::pin_mut!(pages);
            loop {
                tokio::select! {
                    biased;
                    () = stopping(&mut shutdown) => {
                        yield Err(Status::unavailable("the server is shutting down; resume on its successor"));
                        return;
                    }
                    page = pages.next() => match page {
                        Some(page) => yield page,
                        None => return,
                    },
                }
            }
        }))
    }
}

/// Resolves once the server begins to shut down; never when its
/// [`RunningServer`](crate::RunningServer) was dropped, which detaches it.
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn invalid(error: WireError) -> Status {
    Status::invalid_argument(error.to_string())
}

fn store_error(error: factum_core::Error) -> Status {
    error_to_status(&error)
}

/// `events` in pages of at most `page_events` events and [`PAGE_BYTES`]
/// of payload, each page made of what is ready: a live subscription
/// hands an event on at once, a read fills its pages.
fn paged(
    events: EventStream<'static>,
    page_events: usize,
) -> impl Stream<Item = Result<EventPage, Status>> + Send {
    events.ready_chunks(page_events).flat_map(|chunk| {
        let mut pages = Vec::new();
        let mut page = EventPage::default();
        let mut bytes = 0;
        for item in chunk {
            match item {
                Ok(event) => {
                    if !page.events.is_empty() && bytes + event.payload.as_str().len() > PAGE_BYTES {
                        pages.push(Ok(std::mem::take(&mut page)));
                        bytes = 0;
                    }
                    bytes += event.payload.as_str().len();
                    page.events.push(recorded_to_wire(&event));
                }
                Err(error) => {
                    if !page.events.is_empty() {
                        pages.push(Ok(std::mem::take(&mut page)));
                    }
                    pages.push(Err(store_error(error)));
                    return futures::stream::iter(pages);
                }
            }
        }
        if !page.events.is_empty() {
            pages.push(Ok(page));
        }
        futures::stream::iter(pages)
    })
}

#[tonic::async_trait]
impl<S> Wire for Service<S>
where
    S: EventStore + SnapshotStore + Tenancy + Clone,
{
    async fn append(&self, request: Request<AppendRequest>) -> Result<Response<AppendResponse>, Status> {
        let store = self.writer(&request)?;
        let batch = append_from_wire(request.into_inner()).map_err(invalid)?;
        let result = store
            .append(&batch.stream, batch.expected, batch.events)
            .await
            .map_err(store_error)?;
        Ok(Response::new(result_to_wire(result)))
    }

    async fn append_many(
        &self,
        request: Request<AppendManyRequest>,
    ) -> Result<Response<AppendManyResponse>, Status> {
        let store = self.writer(&request)?;
        let batches = request
            .into_inner()
            .batches
            .into_iter()
            .enumerate()
            .map(|(index, batch)| {
                append_from_wire(batch)
                    .map_err(|error| Status::invalid_argument(format!("batches[{index}]: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let results = store.append_many(batches).await.map_err(store_error)?;
        Ok(Response::new(AppendManyResponse {
            results: results.into_iter().map(result_to_wire).collect(),
        }))
    }

    type ReadStreamStream = Pages;

    async fn read_stream(&self, request: Request<ReadStreamRequest>) -> Result<Response<Pages>, Status> {
        let store = self.reader(&request)?;
        let request = request.into_inner();
        let stream = stream_from_wire(request.stream).map_err(invalid)?;
        let from_version = request.from_version;
        // The store's read borrows it, so the stream owns the view.
        let events = async_stream::stream! {
            let mut events = store.read_stream(&stream, from_version);
            while let Some(event) = events.next().await {
                yield event;
            }
        };
        Ok(Response::new(Box::pin(paged(
            events.boxed(),
            self.limits.page_events,
        ))))
    }

    type ReadAllStream = Pages;

    async fn read_all(&self, request: Request<ReadAllRequest>) -> Result<Response<Pages>, Status> {
        let store = self.reader(&request)?;
        let ReadAllRequest { mut after, limit } = request.into_inner();
        let page_events = self.limits.page_events;
        let mut remaining = limit;
        let pages = async_stream::stream! {
            while remaining > 0 {
                let asked = usize::try_from(remaining).unwrap_or(usize::MAX).min(page_events);
                match store.read_all(after, asked).await {
                    Ok(events) => {
                        let Some(last) = events.last() else { return };
                        after = last.position;
                        remaining -= events.len() as u64;
                        let full = events.len() == asked;
                        yield Ok(EventPage { events: events.iter().map(recorded_to_wire).collect() });
                        if !full {
                            return;
                        }
                    }
                    Err(error) => {
                        yield Err(store_error(error));
                        return;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(pages)))
    }

    type SubscribeAllStream = Pages;

    async fn subscribe_all(&self, request: Request<SubscribeAllRequest>) -> Result<Response<Pages>, Status> {
        let store = self.reader(&request)?;
        let after = request.into_inner().after;
        Ok(Response::new(self.subscription(store.subscribe_all(after))?))
    }

    type SubscribeStreamStream = Pages;

    async fn subscribe_stream(
        &self,
        request: Request<SubscribeStreamRequest>,
    ) -> Result<Response<Pages>, Status> {
        let store = self.reader(&request)?;
        let request = request.into_inner();
        let stream = stream_from_wire(request.stream).map_err(invalid)?;
        Ok(Response::new(self.subscription(
            store.subscribe_stream(&stream, request.from_version),
        )?))
    }

    async fn stream_version(
        &self,
        request: Request<StreamVersionRequest>,
    ) -> Result<Response<StreamVersionResponse>, Status> {
        let store = self.reader(&request)?;
        let stream = stream_from_wire(request.into_inner().stream).map_err(invalid)?;
        let version = store.stream_version(&stream).await.map_err(store_error)?;
        Ok(Response::new(StreamVersionResponse { version }))
    }

    async fn head(&self, request: Request<HeadRequest>) -> Result<Response<HeadResponse>, Status> {
        let store = self.reader(&request)?;
        let position = store.head_position().await.map_err(store_error)?;
        Ok(Response::new(HeadResponse { position }))
    }

    async fn save_snapshot(
        &self,
        request: Request<SaveSnapshotRequest>,
    ) -> Result<Response<SaveSnapshotResponse>, Status> {
        let store = self.writer(&request)?;
        let snapshot = snapshot_from_wire(request.into_inner().snapshot).map_err(invalid)?;
        store.save_snapshot(snapshot).await.map_err(store_error)?;
        Ok(Response::new(SaveSnapshotResponse {}))
    }

    async fn load_snapshot(
        &self,
        request: Request<LoadSnapshotRequest>,
    ) -> Result<Response<LoadSnapshotResponse>, Status> {
        let store = self.reader(&request)?;
        let stream = stream_from_wire(request.into_inner().stream).map_err(invalid)?;
        let snapshot = store.load_snapshot(&stream).await.map_err(store_error)?;
        Ok(Response::new(LoadSnapshotResponse {
            snapshot: snapshot.as_ref().map(snapshot_to_wire),
        }))
    }
}
