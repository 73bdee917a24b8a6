//! Reads and subscriptions that survive a dropped connection: each keeps a
//! cursor just past the last event it delivered and, when the server goes
//! away, opens the call again from there: no gap, no duplicate.

use factum_core::{Error, EventStream, RecordedEvent, StreamId};
use futures::StreamExt;
use tonic::Streaming;

use crate::BACKEND;
use crate::convert::{RecordedDecoder, stream_to_wire};
use crate::error::RemoteError;
use crate::proto::{self, EventPage};
use crate::status::error_from_status;
use crate::store::{RemoteEventStore, backoff, transient};

/// Where a read or subscription stands: what to ask for when it (re)opens.
pub(crate) enum Cursor {
    /// The global log after `after`; `remaining` events at most (a read).
    All { after: u64, remaining: Option<u64> },
    /// One stream from `next_version` on.
    Stream { stream: StreamId, next_version: u64 },
}

impl Cursor {
    pub(crate) fn all(after: u64, remaining: Option<u64>) -> Self {
        Self::All { after, remaining }
    }

    pub(crate) fn stream(stream: StreamId, from_version: u64) -> Self {
        Self::Stream {
            stream,
            next_version: from_version.max(1),
        }
    }

    /// Moves past `event`, just delivered.
    fn advance(&mut self, event: &RecordedEvent) {
        match self {
            Self::All { after, remaining } => {
                *after = event.position;
                if let Some(remaining) = remaining {
                    *remaining = remaining.saturating_sub(1);
                }
            }
            Self::Stream { next_version, .. } => *next_version = event.version.saturating_add(1),
        }
    }

    /// True when a bounded read has delivered all it was asked for.
    fn done(&self) -> bool {
        matches!(
            self,
            Self::All {
                remaining: Some(0),
                ..
            }
        )
    }

    async fn open(
        &self,
        store: &RemoteEventStore,
        live: bool,
    ) -> Result<Streaming<EventPage>, tonic::Status> {
        let mut client = store.client();
        let answer = match (self, live) {
            (Self::All { after, remaining }, false) => {
                let request = proto::ReadAllRequest {
                    after: *after,
                    limit: remaining.unwrap_or(u64::MAX),
                };
                client.read_all(store.request(request)).await
            }
            (Self::All { after, .. }, true) => {
                let request = proto::SubscribeAllRequest { after: *after };
                client.subscribe_all(store.request(request)).await
            }
            (Self::Stream { stream, next_version }, live) => {
                let stream = Some(stream_to_wire(stream));
                let from_version = *next_version;
                if live {
                    let request = proto::SubscribeStreamRequest { stream, from_version };
                    client.subscribe_stream(store.request(request)).await
                } else {
                    let request = proto::ReadStreamRequest { stream, from_version };
                    client.read_stream(store.request(request)).await
                }
            }
        };
        answer.map(tonic::Response::into_inner)
    }
}

/// The events `cursor` names, read through `store`; a `live` one follows
/// new events and never ends on its own, a read ends where the server's does.
pub(crate) fn follow(store: RemoteEventStore, mut cursor: Cursor, live: bool) -> EventStream<'static> {
    async_stream::stream! {
        let attempts = store.options().reconnect_attempts;
        let mut failures = 0;
        let mut decoder = RecordedDecoder::default();
        'open: loop {
            let mut pages = match cursor.open(&store, live).await {
                Ok(pages) => pages,
                Err(status) if transient(status.code()) && failures < attempts => {
                    failures += 1;
                    tokio::time::sleep(backoff(store.options(), failures)).await;
                    continue 'open;
                }
                Err(status) => {
                    yield Err(error_from_status(status));
                    return;
                }
            };
            loop {
                match pages.message().await {
                    Ok(Some(page)) => {
                        failures = 0;
                        for event in page.events {
                            match decoder.decode(event) {
                                Ok(event) => {
                                    cursor.advance(&event);
                                    yield Ok(event);
                                }
                                Err(wire) => {
                                    yield Err(Error::store(BACKEND, RemoteError::Reply(wire)));
                                    return;
                                }
                            }
                        }
                        if cursor.done() {
                            return;
                        }
                    }
                    Ok(None) if !live => return,
                    // A subscription does not end on its own: the server
                    // went away without a status, so open it again.
                    Ok(None) => {
                        failures += 1;
                        if failures > attempts {
                            let status = tonic::Status::unavailable("the server ended the subscription");
                            yield Err(error_from_status(status));
                            return;
                        }
                        tokio::time::sleep(backoff(store.options(), failures)).await;
                        continue 'open;
                    }
                    Err(status) if transient(status.code()) && failures < attempts => {
                        failures += 1;
                        tokio::time::sleep(backoff(store.options(), failures)).await;
                        continue 'open;
                    }
                    Err(status) => {
                        yield Err(error_from_status(status));
                        return;
                    }
                }
            }
        }
    }
    .boxed()
}
