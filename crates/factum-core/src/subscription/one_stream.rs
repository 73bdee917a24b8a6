//! Following one stream: its events from a version, then each new one as it
//! commits.

use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::generator::{Yielder, generate};
use super::{PollingSubscription, SubscriptionOptions, Waiter};
use crate::{Error, EventStore, EventStream, RecordedEvent, StreamId};

impl PollingSubscription {
    /// Follows `stream` from `from_version` (0 and 1 both mean its first
    /// event), woken by `wake` (the store's head position, sent after each
    /// commit): the shape every backend's
    /// [`subscribe_stream`](EventStore::subscribe_stream) can reuse.
    ///
    /// It reads the stream with [`read_stream_pages`](EventStore::read_stream_pages)
    /// from the version after the last delivered one until a read finds
    /// nothing new, then waits for the signal (or the poll interval) and
    /// asks [`stream_version`](EventStore::stream_version) whether the
    /// stream grew before reading it again, so a wake-up for another
    /// stream costs one cheap query. Versions of a stream have no gaps, so
    /// starting each read at the next version hands over from catch-up to
    /// live with neither gap nor duplicate. `options.batch_size` is unused:
    /// the store's pages set the size of a read.
    pub fn stream_of<S: EventStore>(
        store: S,
        stream: StreamId,
        from_version: u64,
        wake: Option<watch::Receiver<u64>>,
        options: SubscriptionOptions,
    ) -> EventStream<'static> {
        let follower = Follower {
            store,
            stream,
            next_version: from_version.max(1),
            waiter: Waiter::new(wake, options.poll_interval),
        };
        generate(|pages| follower.run(pages))
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }
}

struct Follower<S> {
    store: S,
    stream: StreamId,
    next_version: u64,
    waiter: Waiter,
}

type Pages = Yielder<Result<Vec<RecordedEvent>, Error>>;

impl<S: EventStore> Follower<S> {
    /// Hands out pages until a read fails; the error is the last item.
    async fn run(mut self, pages: Pages) {
        if let Err(error) = self.follow(&pages).await {
            pages.yield_item(Err(error)).await;
        }
    }

    async fn follow(&mut self, pages: &Pages) -> Result<(), Error> {
        loop {
            self.waiter.mark_seen();
            if !self.read_new_events(pages).await? {
                self.wait_for_growth().await?;
            }
        }
    }

    /// Hands out the stream's events from the next version on; false when
    /// there were none.
    async fn read_new_events(&mut self, pages: &Pages) -> Result<bool, Error> {
        let mut found = false;
        let mut read = self.store.read_stream_pages(&self.stream, self.next_version);
        loop {
            let span = crate::telemetry::stream_read_span(&self.stream, self.next_version);
            let Some(page) = read.next().instrument(span.clone()).await else {
                break;
            };
            crate::telemetry::read_done(&span, page.as_deref());
            let mut page = page?;
            // Versions only grow; this guards against a store that repeats
            // itself, so no event is handed out twice.
            page.retain(|event| event.version >= self.next_version);
            let Some(last) = page.last() else { continue };
            self.next_version = last.version.saturating_add(1);
            found = true;
            pages.yield_item(Ok(page)).await;
        }
        Ok(found)
    }

    /// Waits until the stream holds the next version.
    async fn wait_for_growth(&mut self) -> Result<(), Error> {
        loop {
            self.waiter.wait().await;
            self.waiter.mark_seen();
            if self.store.stream_version(&self.stream).await? >= self.next_version {
                return Ok(());
            }
        }
    }
}
