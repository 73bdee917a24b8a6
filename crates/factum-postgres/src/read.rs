//! Reads: a stream in keyset pages (event by event, or page by page for
//! replay), the global log up to its horizon, subscriptions, and versions.

use factum_core::backend::{PollingSubscription, SubscriptionOptions, from_stored, query_bound};
use std::pin::Pin;
use std::sync::atomic::Ordering;

use factum_core::{Error, EventPages, EventStream, RecordedEvent, StreamId, Tenancy, Tenant};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::conn::Conn;
use crate::rows::Decoder;
use crate::{PostgresEventStore, notify};

impl PostgresEventStore {
    /// [`EventStore::read_stream`](factum_core::EventStore::read_stream):
    /// rows are decoded as they arrive, a page at a time.
    pub(crate) fn stream_events(&self, stream: &StreamId, from_version: u64) -> EventStream<'_> {
        futures::stream::try_unfold(
            StreamRead::new(self, stream, from_version),
            |mut state| async move {
                loop {
                    if let Some(page) = state.page.as_mut() {
                        match page.rows.next().await.transpose() {
                            Some(Ok(row)) => {
                                let event = state.decoder.stream_event(
                                    &row,
                                    &state.stream,
                                    &state.tenant,
                                    state.next_version,
                                )?;
                                state.read_in_page += 1;
                                state.next_version = event.version.saturating_add(1);
                                return Ok(Some((event, state)));
                            }
                            Some(Err(error)) => return Err(state.store.fail(&page.client, error).into()),
                            None if state.finish_page() => return Ok(None),
                            None => {}
                        }
                    }
                    state.page = Some(state.open_page().await?);
                    state.read_in_page = 0;
                }
            },
        )
        .boxed()
    }

    /// [`EventStore::read_stream_pages`](factum_core::EventStore::read_stream_pages):
    /// the store's own pages, handed over whole (one query each), so replay
    /// neither flattens nor re-chunks them. One page is in memory at a time.
    pub(crate) fn stream_pages(&self, stream: &StreamId, from_version: u64) -> EventPages<'_> {
        futures::stream::try_unfold(
            StreamRead::new(self, stream, from_version),
            |mut state| async move {
                if state.done {
                    return Ok(None);
                }
                let mut page = state.open_page().await?;
                let mut events = Vec::with_capacity(state.store.shared.options.page_size.min(4096));
                while let Some(row) = page
                    .rows
                    .next()
                    .await
                    .map_err(|e| state.store.fail(&page.client, e))?
                {
                    let event =
                        state
                            .decoder
                            .stream_event(&row, &state.stream, &state.tenant, state.next_version)?;
                    state.next_version = event.version.saturating_add(1);
                    events.push(event);
                }
                drop(page);
                state.read_in_page = events.len();
                state.finish_page();
                Ok((!events.is_empty()).then_some((events, state)))
            },
        )
        .boxed()
    }

    /// [`EventStore::read_all`](factum_core::EventStore::read_all): a
    /// page of the log (on a tenant's view, of the tenant's events) up to
    /// the horizon. While the page lies below a horizon this store computed
    /// before, it is read without a new one (one statement, no scan of
    /// `pg_locks`); otherwise, or for what is left above it, the horizon
    /// and the page go in one round trip.
    pub(crate) async fn read_log(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut decoder = Decoder::default();
        let mut events = Vec::with_capacity(limit.min(4096));
        let known = self.shared.known_horizon.load(Ordering::Relaxed);
        // Positions are dense but for rolled-back appends: a full page is
        // likely below the known horizon only when it spans `limit` of them.
        if known.saturating_sub(after) >= limit as u64 {
            self.log_page(after, limit, Some(known), &mut decoder, &mut events)
                .await?;
            if events.len() == limit {
                return Ok(events);
            }
        }
        let from = events.last().map_or(after, |event| event.position);
        self.log_page(from, limit - events.len(), None, &mut decoder, &mut events)
            .await?;
        Ok(events)
    }

    /// Reads up to `limit` events after `after` into `events`, up to
    /// `known` (a horizon computed before), or up to a horizon computed in
    /// the same round trip.
    async fn log_page(
        &self,
        after: u64,
        limit: usize,
        known: Option<u64>,
        decoder: &mut Decoder,
        events: &mut Vec<RecordedEvent>,
    ) -> Result<(), Error> {
        let client = self.client().await?;
        let sql = &self.shared.sql;
        let page_sql = match self.tenant() {
            None => &sql.read_page,
            Some(tenant) if tenant.is_default() => &sql.read_default_page,
            Some(_) => &sql.read_tenant_page,
        };
        let read_page = client
            .prepare_cached(page_sql)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let after = query_bound(after);
        let limit_param = query_bound(limit as u64);
        let known = known.map(query_bound);
        let tenant = self.home().as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &limit_param];
        if self.view.is_some() && !self.home().is_default() {
            params.push(&tenant);
        }
        params.push(&known);
        if known.is_some() {
            if self.view.is_some() {
                let rows = self
                    .scoped(&client, client.query(&read_page, &params))
                    .await
                    .map_err(|e| self.fail(&client, e))?;
                for row in &rows {
                    events.push(decoder.decode(row)?);
                }
                return Ok(());
            }
            let rows = client
                .query_raw(&read_page, params)
                .await
                .map_err(|e| self.fail(&client, e))?;
            let mut rows = std::pin::pin!(rows);
            while let Some(row) = rows.try_next().await.map_err(|e| self.fail(&client, e))? {
                events.push(decoder.decode(&row)?);
            }
            return Ok(());
        }
        let set_horizon = client
            .prepare_cached(&sql.set_horizon)
            .await
            .map_err(|e| self.fail(&client, e))?;
        if self.view.is_some() {
            let (horizon, rows) = self
                .scoped(
                    &client,
                    futures::future::try_join(
                        client.query_one(&set_horizon, &[]),
                        client.query(&read_page, &params),
                    ),
                )
                .await
                .map_err(|e| self.fail(&client, e))?;
            self.learn_horizon(&horizon);
            for row in &rows {
                events.push(decoder.decode(row)?);
            }
            return Ok(());
        }
        // Both statements go out in one round trip, in this order, on this
        // connection; the page is used only when the horizon was set.
        let (horizon, rows) = futures::try_join!(
            client.query_one(&set_horizon, &[]),
            client.query_raw(&read_page, params)
        )
        .map_err(|e| self.fail(&client, e))?;
        self.learn_horizon(&horizon);
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await.map_err(|e| self.fail(&client, e))? {
            events.push(decoder.decode(&row)?);
        }
        Ok(())
    }

    /// Keeps the horizon `set_horizon` returned, when it is the highest yet.
    fn learn_horizon(&self, row: &Row) {
        let horizon = row
            .try_get::<_, Option<&str>>(0)
            .ok()
            .flatten()
            .and_then(|text| text.parse::<u64>().ok());
        if let Some(horizon) = horizon {
            self.shared.known_horizon.fetch_max(horizon, Ordering::Relaxed);
        }
    }

    /// [`EventStore::subscribe_all`](factum_core::EventStore::subscribe_all):
    /// pages of the log, woken by this store's appends and by `LISTEN`.
    pub(crate) fn subscribe_log(&self, after: u64) -> EventStream<'static> {
        match self.wake_up() {
            Ok((wake, options)) => PollingSubscription::stream(self.clone(), after, Some(wake), options),
            Err(closed) => futures::stream::once(async move { Err(closed) }).boxed(),
        }
    }

    /// [`EventStore::subscribe_stream`](factum_core::EventStore::subscribe_stream):
    /// pages of the stream, woken as [`subscribe_log`](Self::subscribe_log) is.
    pub(crate) fn subscribe_one(&self, stream: &StreamId, from_version: u64) -> EventStream<'static> {
        match self.wake_up() {
            Ok((wake, options)) => PollingSubscription::stream_of(
                self.clone(),
                stream.clone(),
                from_version,
                Some(wake),
                options,
            ),
            Err(closed) => futures::stream::once(async move { Err(closed) }).boxed(),
        }
    }

    /// What a new subscription waits on: this store's appends and `LISTEN`,
    /// with polling for the notifications a dropped connection misses.
    fn wake_up(&self) -> Result<(tokio::sync::watch::Receiver<u64>, SubscriptionOptions), Error> {
        if self.is_closed() {
            return Err(self.closed_error().into());
        }
        let wake = self.shared.head.subscribe();
        notify::ensure_listener(&self.shared);
        let options = SubscriptionOptions {
            batch_size: self.shared.options.page_size,
            poll_interval: Some(self.shared.options.poll_interval),
        };
        Ok((wake, options))
    }

    /// The version of the stream's last event (0: none).
    pub(crate) async fn version_of(&self, stream: &StreamId) -> Result<u64, Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.stream_version)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let tenant = self.home().as_str();
        let params: [&(dyn ToSql + Sync); 3] = [&stream.aggregate_type(), &stream.aggregate_id(), &tenant];
        let row = self
            .scoped(&client, client.query_one(&statement, &params))
            .await
            .map_err(|e| self.fail(&client, e))?;
        let version: i64 = row.try_get(0).map_err(|e| self.fail(&client, e))?;
        from_stored(version, "stream version", stream, 0)
    }

    /// The position up to which the global log can be read (0: empty).
    pub(crate) async fn horizon(&self) -> Result<u64, Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.shared.sql.horizon)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(|e| self.fail(&client, e))?;
        let horizon: Option<i64> = row.try_get(0).map_err(|e| self.fail(&client, e))?;
        horizon.map_or(Ok(0), |horizon| {
            from_stored(horizon, "horizon", &StreamId::new("$all", ""), 0)
        })
    }

    /// The position of `tenant`'s last event at or below the horizon (0:
    /// none): the horizon and the lookup in one round trip, the lookup
    /// with a snapshot taken after the horizon's scan, as for a page.
    pub(crate) async fn tenant_head(&self, tenant: &Tenant) -> Result<u64, Error> {
        let client = self.client().await?;
        let sql = &self.shared.sql;
        let set_horizon = client
            .prepare_cached(&sql.set_horizon)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let name = tenant.as_str();
        let head_sql = if tenant.is_default() {
            &sql.default_head
        } else {
            &sql.tenant_head
        };
        let head = client
            .prepare_cached(head_sql)
            .await
            .map_err(|e| self.fail(&client, e))?;
        let params: Vec<&(dyn ToSql + Sync)> = if tenant.is_default() { vec![] } else { vec![&name] };
        let (_, row) = self
            .scoped(
                &client,
                futures::future::try_join(
                    client.execute(&set_horizon, &[]),
                    client.query_one(&head, &params),
                ),
            )
            .await
            .map_err(|e| self.fail(&client, e))?;
        let head: i64 = row.try_get(0).map_err(|e| self.fail(&client, e))?;
        from_stored(head, "head", &StreamId::new("$all", tenant.as_str()), 0)
    }
}

/// Where a read of one stream is: the page being received and the next
/// version.
struct StreamRead {
    store: PostgresEventStore,
    stream: StreamId,
    /// The tenant the stream lives in.
    tenant: Tenant,
    decoder: Decoder,
    next_version: u64,
    page: Option<Page>,
    read_in_page: usize,
    /// The last page was short: the stream has no more events.
    done: bool,
}

/// One page of a stream read: rows are decoded as they arrive, so a page
/// never sits in memory as rows.
struct Page {
    rows: PageRows,
    // Returned to the pool when the page is done.
    client: Conn,
}

impl StreamRead {
    fn new(store: &PostgresEventStore, stream: &StreamId, from_version: u64) -> Self {
        Self {
            store: store.clone(),
            stream: stream.clone(),
            tenant: store.home().clone(),
            decoder: Decoder::default(),
            next_version: from_version.max(1),
            page: None,
            read_in_page: 0,
            done: false,
        }
    }

    /// Ends the current page; true when it was the stream's last (short).
    fn finish_page(&mut self) -> bool {
        self.page = None;
        self.done = self.read_in_page < self.store.shared.options.page_size;
        self.done
    }

    /// Sends the query of the page from `next_version`.
    async fn open_page(&self) -> Result<Page, Error> {
        let store = &self.store;
        let client = store.client().await?;
        let statement = client
            .prepare_cached(&store.shared.sql.read_stream)
            .await
            .map_err(|e| store.fail(&client, e))?;
        let from_version = query_bound(self.next_version);
        let limit = query_bound(store.shared.options.page_size as u64);
        let aggregate_type = self.stream.aggregate_type();
        let aggregate_id = self.stream.aggregate_id();
        let tenant = self.tenant.as_str();
        let params: [&(dyn ToSql + Sync); 5] =
            [&aggregate_type, &aggregate_id, &from_version, &limit, &tenant];
        let rows = if store.view.is_some() {
            // A view's page comes whole, inside its transaction.
            let rows = store
                .scoped(&client, client.query(&statement, &params))
                .await
                .map_err(|e| store.fail(&client, e))?;
            PageRows::Whole(rows.into_iter())
        } else {
            let rows = client
                .query_raw(&statement, params)
                .await
                .map_err(|e| store.fail(&client, e))?;
            PageRows::Streamed(Box::pin(rows))
        };
        Ok(Page { rows, client })
    }
}

/// The rows of a page: decoded as they arrive for the unscoped store; read
/// whole by a tenant's view, whose page ends with its transaction.
enum PageRows {
    Streamed(Pin<Box<RowStream>>),
    Whole(std::vec::IntoIter<Row>),
}

impl PageRows {
    async fn next(&mut self) -> Result<Option<Row>, tokio_postgres::Error> {
        match self {
            Self::Streamed(rows) => rows.try_next().await,
            Self::Whole(rows) => Ok(rows.next()),
        }
    }
}
