use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tracing::Instrument;

use crate::evolution::{self, Decoded};
use crate::telemetry::{self, LoadMeter};
use crate::{
    Aggregate, AppendBatch, AppendResult, DomainEvent, Error, EventPages, EventStore, ExpectedVersion,
    Metadata, NewEvent, RecordedEvent, StreamId, Upcasters,
};

/// Loads aggregates by replaying their streams and saves their pending
/// events with optimistic concurrency.
///
/// [`Application`](crate::Application) wraps a repository and is what most
/// programs use. Loads and saves report spans and metrics, as the
/// application's do; see [`telemetry`](crate::telemetry).
pub struct Repository<A, S> {
    store: S,
    upcasters: Arc<Upcasters>,
    /// Stored events of retired types skipped by replays, shared by clones.
    retired_skipped: Arc<AtomicU64>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            retired_skipped: self.retired_skipped.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("store", &self.store).finish()
    }
}

impl<A, S> Repository<A, S> {
    /// A repository over `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            upcasters: Arc::new(Upcasters::new()),
            retired_skipped: Arc::new(AtomicU64::new(0)),
            aggregate: PhantomData,
        }
    }

    /// The upcasters applied while reading.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many stored events of retired types (`#[aggregate(retired = [...])]`)
    /// the replays of this repository and its clones have skipped.
    ///
    /// Each skip is also a `tracing` event at debug level naming the
    /// stream, version and event type.
    pub fn retired_skipped(&self) -> u64 {
        self.retired_skipped.load(Ordering::Relaxed)
    }
}

impl<A: Aggregate, S> Repository<A, S> {
    /// Lifts old payloads with `upcasters` (the run-time registry) as well
    /// as the upcasters `A` declares, and writes new events at their
    /// current schema versions.
    ///
    /// The registry is checked against `A`'s declared evolution here, once:
    /// a gap in one of its chains, or an event whose version the code
    /// declares also lifted by the registry, is [`Error::Evolution`] naming
    /// the event type and schema version.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Result<Self, Error> {
        evolution::check::<A>(&upcasters)?;
        self.upcasters = Arc::new(upcasters);
        Ok(self)
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Replays the aggregate's whole stream; `None` when it has no events.
    pub async fn load(&self, id: &A::Id) -> Result<Option<A>, Error> {
        self.load_from(id, None, u64::MAX).await
    }

    /// Replays the aggregate's stream up to and including `version`; `None`
    /// when it has no events.
    pub async fn load_up_to(&self, id: &A::Id, version: u64) -> Result<Option<A>, Error> {
        self.load_from(id, None, version).await
    }

    /// Continues from `base` (an aggregate restored at a version, e.g. from a
    /// snapshot) up to and including `up_to`.
    pub async fn load_from(
        &self,
        id: &A::Id,
        base: Option<(A, u64)>,
        up_to: u64,
    ) -> Result<Option<A>, Error> {
        let meter = LoadMeter::start::<A>(id, up_to);
        let base_version = base.as_ref().map(|(_, version)| *version);
        let loaded = self
            .replay_from(id, base, up_to)
            .instrument(meter.span().clone())
            .await;
        meter.finish(&loaded, base_version);
        loaded
    }

    /// [`load_from`](Self::load_from) without its span and metrics, for a
    /// caller that measures the whole load (an application's, which may
    /// start from a snapshot).
    pub(crate) async fn replay_from(
        &self,
        id: &A::Id,
        base: Option<(A, u64)>,
        up_to: u64,
    ) -> Result<Option<A>, Error> {
        let stream = StreamId::for_aggregate::<A>(id);
        let mut replay = Replay::new(stream, base, up_to);
        let mut pages = self.store.read_stream_pages(&replay.stream, replay.replayed + 1);
        replay.drain(&mut pages, &self.reading()).await?;
        Ok(replay.finish())
    }

    /// Continues from `aggregate`, restored from a snapshot taken at
    /// `version`, up to and including `up_to`; `None` when the stream does
    /// not hold `version` (a snapshot ahead of its stream, which the caller
    /// then ignores).
    ///
    /// The read starts at the snapshot's own event, so the check costs one
    /// row of the first page, not another round trip.
    pub(crate) async fn load_from_snapshot(
        &self,
        id: &A::Id,
        aggregate: A,
        version: u64,
        up_to: u64,
    ) -> Result<Option<A>, Error> {
        let stream = StreamId::for_aggregate::<A>(id);
        let mut pages = self.store.read_stream_pages(&stream, version);
        let Some(first) = pages.next().await else {
            return Ok(None);
        };
        let first = first?;
        let Some((held, following)) = first.split_first() else {
            return Ok(None);
        };
        if held.version != version {
            return Ok(None);
        }
        let mut replay = Replay::new(stream.clone(), Some((aggregate, version)), up_to);
        let reading = self.reading();
        replay.page(following, &reading)?;
        replay.drain(&mut pages, &reading).await?;
        Ok(replay.finish())
    }

    /// Appends the aggregate's pending events, expecting the stream to be at
    /// the version the aggregate was loaded at.
    ///
    /// On [`Error::Conflict`] nothing is written and the events stay pending;
    /// reload and run the command again. Retrying after an error whose outcome
    /// is unknown (a lost connection) is safe: the events keep their ids, so a
    /// store that already has them returns the original positions.
    pub async fn save(&self, aggregate: &mut A) -> Result<AppendResult, Error> {
        self.save_with(aggregate, Metadata::default()).await
    }

    /// [`save`](Self::save), storing `metadata` with every event.
    pub async fn save_with(&self, aggregate: &mut A, metadata: Metadata) -> Result<AppendResult, Error> {
        let span = telemetry::save_span(&*aggregate);
        let saved = async {
            let batch = self.pending_batch(aggregate, &metadata)?;
            self.save_batch(aggregate, batch).await
        }
        .instrument(span.clone())
        .await;
        telemetry::saved(telemetry::keys::of::<A>(), Some(&span), saved.as_ref());
        saved
    }

    /// Stores `batch`, the aggregate's [`pending_batch`](Self::pending_batch),
    /// and brings the aggregate up to date.
    pub(crate) async fn save_batch(
        &self,
        aggregate: &mut A,
        batch: Option<AppendBatch>,
    ) -> Result<AppendResult, Error> {
        let Some(batch) = batch else {
            return Ok(unchanged(aggregate));
        };
        let result = crate::unit_of_work::append_one(&self.store, batch, telemetry::keys::of::<A>()).await?;
        aggregate.state_mut().loaded_at(result.stream_version);
        Ok(result)
    }

    /// Saves the pending events of several aggregates atomically: all of
    /// them are stored, or none is. Results come in the order given.
    ///
    /// Each aggregate is checked against the version it was loaded at, as
    /// [`save`](Self::save) does; on [`Error::Conflict`] (naming the stream
    /// that moved) nothing is written and every aggregate keeps its pending
    /// events. An aggregate with nothing pending is left out of the append
    /// (its result holds its version and no positions), as `save` leaves it.
    /// Retrying after an error whose outcome is unknown is safe: a store
    /// that already has the events returns the original positions.
    ///
    /// The same aggregate twice (two copies loaded from one stream) is
    /// [`Error::DuplicateStream`]; for aggregates of different types, see
    /// [`UnitOfWork`](crate::UnitOfWork).
    pub async fn save_all<'a>(
        &self,
        aggregates: impl IntoIterator<Item = &'a mut A>,
    ) -> Result<Vec<AppendResult>, Error> {
        self.save_all_with(aggregates, Metadata::default()).await
    }

    /// [`save_all`](Self::save_all), storing `metadata` with every event.
    pub async fn save_all_with<'a>(
        &self,
        aggregates: impl IntoIterator<Item = &'a mut A>,
        metadata: Metadata,
    ) -> Result<Vec<AppendResult>, Error> {
        let mut aggregates: Vec<&'a mut A> = aggregates.into_iter().collect();
        let span = telemetry::save_all_span(&aggregates);
        let saved = self
            .save_each(&mut aggregates, &metadata, None)
            .instrument(span.clone())
            .await;
        record_save_all::<A>(&span, &saved);
        saved
    }

    /// Saves `aggregates` atomically: what [`save_all`](Self::save_all) does.
    /// A copy of each batch appended goes to `kept`, when given (for a
    /// notifier).
    pub(crate) async fn save_each(
        &self,
        aggregates: &mut [&mut A],
        metadata: &Metadata,
        kept: Option<&mut Vec<AppendBatch>>,
    ) -> Result<Vec<AppendResult>, Error> {
        let mut batches = Vec::with_capacity(aggregates.len());
        for aggregate in aggregates.iter() {
            batches.extend(self.pending_batch(aggregate, metadata)?);
        }
        if let Some(kept) = kept {
            kept.clone_from(&batches);
        }
        let every_one = batches.len() == aggregates.len();
        let keys = vec![telemetry::keys::of::<A>(); batches.len()];
        let appended = crate::unit_of_work::append_batches(&self.store, batches, &keys).await?;
        let results = if every_one && appended.len() == aggregates.len() {
            appended
        } else {
            // Pending events are cleared below, so they still tell which
            // aggregates were left out of the append.
            let idle = aggregates.iter().map(|aggregate| {
                aggregate
                    .state()
                    .pending()
                    .is_empty()
                    .then(|| unchanged(&**aggregate))
            });
            crate::unit_of_work::place_results(idle, appended)?
        };
        for (aggregate, result) in aggregates.iter_mut().zip(&results) {
            aggregate.state_mut().loaded_at(result.stream_version);
        }
        Ok(results)
    }
}

impl<A: Aggregate, S> Repository<A, S> {
    /// The aggregate's pending events as the batch that saves them,
    /// expecting the version it was loaded at; `None` when nothing is
    /// pending.
    pub(crate) fn pending_batch(
        &self,
        aggregate: &A,
        metadata: &Metadata,
    ) -> Result<Option<AppendBatch>, Error> {
        let state = aggregate.state();
        let persisted = state.persisted_version();
        if state.pending().is_empty() {
            return Ok(None);
        }
        let stream = StreamId::for_aggregate::<A>(&aggregate.id());
        let events = state
            .pending()
            .iter()
            .zip(state.pending_ids())
            .enumerate()
            .map(|(offset, (event, &(event_id, occurred_at)))| {
                let event_type = event.event_type();
                let payload = event.to_payload().map_err(|source| Error::Serialization {
                    stream: stream.clone(),
                    version: persisted + offset as u64 + 1,
                    event_type: event_type.to_owned(),
                    source,
                })?;
                // Built whole: `NewEvent::new` would draw an id and read the
                // clock only for both to be replaced by the recorded ones.
                Ok(NewEvent {
                    event_id,
                    event_type: event_type.into(),
                    schema_version: evolution::current_version::<A>(event_type, &self.upcasters),
                    payload,
                    metadata: metadata.clone(),
                    occurred_at,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(AppendBatch::new(
            stream,
            ExpectedVersion::from_loaded(persisted),
            events,
        )))
    }
}

/// Records a `save_all` of aggregates of type `A`: each saved aggregate in
/// the metrics, an error on `span`.
pub(crate) fn record_save_all<A: Aggregate>(span: &tracing::Span, saved: &Result<Vec<AppendResult>, Error>) {
    let keys = telemetry::keys::of::<A>();
    match saved {
        Ok(results) => {
            for result in results {
                telemetry::saved(keys, None, Ok(result));
            }
        }
        Err(error) => telemetry::saved(keys, Some(span), Err(error)),
    }
}

/// What saving an aggregate with nothing pending returns: its version, no
/// positions.
pub(crate) fn unchanged<A: Aggregate>(aggregate: &A) -> AppendResult {
    AppendResult {
        stream_version: aggregate.state().persisted_version(),
        positions: Vec::new(),
    }
}

impl<A, S> Repository<A, S> {
    fn reading(&self) -> Reading<'_> {
        Reading {
            upcasters: &self.upcasters,
            retired_skipped: &self.retired_skipped,
        }
    }
}

/// What a replay reads stored events with.
struct Reading<'a> {
    upcasters: &'a Upcasters,
    retired_skipped: &'a AtomicU64,
}

/// A replay in progress: the aggregate so far and how many events it holds.
struct Replay<A> {
    stream: StreamId,
    aggregate: Option<A>,
    replayed: u64,
    up_to: u64,
}

impl<A: Aggregate> Replay<A> {
    fn new(stream: StreamId, base: Option<(A, u64)>, up_to: u64) -> Self {
        let (aggregate, replayed) = match base {
            Some((aggregate, version)) => (Some(aggregate), version),
            None => (None, 0),
        };
        Self {
            stream,
            aggregate,
            replayed,
            up_to,
        }
    }

    /// Replays the pages until `up_to` or the end of the stream.
    async fn drain(&mut self, pages: &mut EventPages<'_>, reading: &Reading<'_>) -> Result<(), Error> {
        while self.replayed < self.up_to {
            let Some(page) = pages.next().await else {
                break;
            };
            self.page(&page?, reading)?;
        }
        Ok(())
    }

    /// Replays the events of one page, up to `up_to`.
    fn page(&mut self, events: &[RecordedEvent], reading: &Reading<'_>) -> Result<(), Error> {
        for recorded in events {
            if self.replayed >= self.up_to {
                break;
            }
            crate::backend::check_next_version(&self.stream, self.replayed + 1, recorded)?;
            // Stores hand every event of a read one shared stream id: once
            // this replay holds that one too, the check above is a pointer
            // comparison instead of two string comparisons per event.
            if !self.stream.shares_allocation(&recorded.stream) {
                self.stream = recorded.stream.clone();
            }
            replay(&mut self.aggregate, recorded, reading)?;
            self.replayed += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> Option<A> {
        if let Some(aggregate) = self.aggregate.as_mut() {
            aggregate.state_mut().loaded_at(self.replayed);
        }
        self.aggregate
    }
}

/// Applies one stored event, already checked to be the next of its stream
/// ([`check_next_version`](crate::backend::check_next_version)): the first
/// builds the aggregate, the rest replay their method bodies; an event of a
/// retired type is skipped and counted.
fn replay<A: Aggregate>(
    aggregate: &mut Option<A>,
    recorded: &RecordedEvent,
    reading: &Reading<'_>,
) -> Result<(), Error> {
    let event = match evolution::decode::<A>(recorded, reading.upcasters)? {
        Decoded::Event(event) => event,
        Decoded::Retired => {
            reading.retired_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                stream = %recorded.stream,
                version = recorded.version,
                event_type = %recorded.event_type,
                "skipped an event of a retired type"
            );
            return Ok(());
        }
    };
    let replay_error = |error: crate::ApplyError| Error::Replay {
        stream: recorded.stream.clone(),
        version: recorded.version,
        event_type: recorded.event_type.to_string(),
        source: error.into_source(),
    };
    // In place: the aggregate is not moved once per event.
    match aggregate {
        None => *aggregate = Some(A::from_first_event(event).map_err(replay_error)?),
        Some(aggregate) => aggregate.apply(event).map_err(replay_error)?,
    }
    Ok(())
}
