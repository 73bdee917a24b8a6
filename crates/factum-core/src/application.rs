use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::backend::home;
use crate::notify::SharedNotifier;
use crate::telemetry::{self, LoadMeter};
use crate::{
    Aggregate, AppendResult, DefaultAggregate, Error, EventStore, Metadata, Notifier, Payload, Repository,
    Snapshot, SnapshotPolicy, SnapshotStore, StreamId, Tenancy, Upcasters,
};

/// The entry point of an event-sourced application for one aggregate type:
/// load, change, save — with optional snapshots and upcasting.
///
/// Each load and save is a `tracing` span (`factum.load`, `factum.save`...)
/// and counts in the `factum_*` metrics; see [`telemetry`](crate::telemetry).
///
/// ```
/// # use factum_core::{Application, InMemoryEventStore, SnapshotPolicy};
/// # fn demo<A>() where A: factum_core::Aggregate + serde::Serialize + serde::de::DeserializeOwned {
/// let store = InMemoryEventStore::new();
/// let app = Application::<A, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(100));
/// # }
/// ```
pub struct Application<A, S> {
    repository: Repository<A, S>,
    snapshots: Option<Snapshots<A, S>>,
    notifier: Option<SharedNotifier>,
}

/// How to take and restore snapshots, fixed when they were enabled (where
/// the aggregate's serde bounds are known).
struct Snapshots<A, S> {
    policy: SnapshotPolicy,
    load: LoadSnapshot<S>,
    save: fn(&S, Snapshot) -> BoxFuture<'_, Result<(), Error>>,
    encode: fn(&A) -> Result<Payload, serde_json::Error>,
    decode: fn(&Payload) -> Result<A, serde_json::Error>,
    decode_value: fn(serde_json::Value) -> Result<A, serde_json::Error>,
}

/// What a load found among the snapshots.
enum Restored<A> {
    /// A usable snapshot: the aggregate at its version.
    Usable(A, u64),
    /// A snapshot of another shape (or that no longer deserializes): the
    /// load replays the events, then writes a fresh snapshot unless the
    /// stale one (at this version) is ahead of the stream and would stay.
    Stale(u64),
    /// No snapshot, or none at or below the version asked for.
    Missing,
}

type LoadSnapshot<S> = for<'a> fn(&'a S, &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, Error>>;

impl<A, S> Clone for Snapshots<A, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, S> Copy for Snapshots<A, S> {}

fn load_snapshot<'a, S: SnapshotStore>(
    store: &'a S,
    stream: &'a StreamId,
) -> BoxFuture<'a, Result<Option<Snapshot>, Error>> {
    Box::pin(store.load_snapshot(stream))
}

fn save_snapshot<S: SnapshotStore>(store: &S, snapshot: Snapshot) -> BoxFuture<'_, Result<(), Error>> {
    Box::pin(store.save_snapshot(snapshot))
}

impl<A, S: Clone> Clone for Application<A, S> {
    fn clone(&self) -> Self {
        Self {
            repository: self.repository.clone(),
            snapshots: self.snapshots,
            notifier: self.notifier.clone(),
        }
    }
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Application<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("repository", &self.repository)
            .field("snapshots", &self.snapshots.map(|snapshots| snapshots.policy))
            .field("notifier", &self.notifier.is_some())
            .finish()
    }
}

impl<A, S> Application<A, S> {
    /// An application storing its events in `store`.
    pub fn new(store: S) -> Self {
        Self {
            repository: Repository::new(store),
            snapshots: None,
            notifier: None,
        }
    }

    pub(crate) fn notifier(&self) -> Option<&SharedNotifier> {
        self.notifier.as_ref()
    }

    /// The repository underneath.
    pub fn repository(&self) -> &Repository<A, S> {
        &self.repository
    }

    /// The event store.
    pub fn store(&self) -> &S {
        self.repository.store()
    }

    /// How many stored events of retired types the loads of this
    /// application (and its clones) have skipped; see
    /// [`Repository::retired_skipped`].
    pub fn retired_skipped(&self) -> u64 {
        self.repository.retired_skipped()
    }
}

impl<A: Aggregate, S> Application<A, S> {
    /// Lifts old payloads with `upcasters`, the run-time registry, besides
    /// the upcasters `A` declares; see [`Upcasters`].
    ///
    /// The registry is checked against `A`'s declared evolution when the
    /// application is built, here: a gap in a chain, or an event whose
    /// version the code declares also lifted by the registry, is
    /// [`Error::Evolution`] naming the event type and schema version, never
    /// a failed read later. (A chain declared in the code is checked at
    /// compile time.)
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Result<Self, Error> {
        self.repository = self.repository.with_upcasters(upcasters)?;
        Ok(self)
    }
}

impl<A, S: Tenancy> Application<A, S> {
    /// Tells `notifier` about the events of each successful save, after
    /// they are committed: [`save`](Self::save), [`save_all`](Self::save_all)
    /// and a [`UnitOfWork`](crate::UnitOfWork) commit.
    ///
    /// The notifier runs in the saving task. When it fails, the save
    /// returns [`Error::Notify`]: the events are stored, do not save them
    /// again. A notification lost that way (or by a crash right after the
    /// commit) is gone; for at-least-once delivery use a store's outbox and
    /// an [`OutboxRelay`](crate::OutboxRelay) instead. The two modes are
    /// compared in the README.
    ///
    /// The events it is told about are as a read would return them: their
    /// versions and positions, and `metadata.tenant` naming the tenant
    /// they live in (the store view's, or [`Tenant::DEFAULT`](crate::Tenant::DEFAULT)
    /// for an unscoped store). That is why the store must implement
    /// [`Tenancy`] (every factum store does, and so does a `testing::ChaosStore`
    /// of one).
    ///
    /// ```
    /// # use factum_core::{Application, BroadcastNotifier, InMemoryEventStore};
    /// # fn demo<A: factum_core::Aggregate>() {
    /// let notifier = BroadcastNotifier::new(1024);
    /// let mut saved = notifier.subscribe();
    /// let app = Application::<A, _>::new(InMemoryEventStore::new()).with_notifier(notifier);
    /// # }
    /// ```
    pub fn with_notifier(mut self, notifier: impl Notifier) -> Self {
        let tenant = home(self.store().tenant()).clone();
        self.notifier = Some(SharedNotifier::new(notifier, tenant));
        self
    }
}

impl<A, S> Application<A, S>
where
    A: Aggregate + Serialize + DeserializeOwned,
    S: SnapshotStore,
{
    /// Takes snapshots of the aggregate by `policy`, and starts loads from
    /// the latest one, replaying only the events after it.
    ///
    /// The aggregate serializes with serde (the hidden bookkeeping field is
    /// skipped). Each snapshot records the version of the aggregate's shape
    /// ([`Evolution::snapshot_version`](crate::Evolution::snapshot_version):
    /// `#[aggregate(snapshot_version = N)]`, or derived from the fields). A
    /// snapshot of another version is lifted by the upcasters the aggregate
    /// declares (`#[upcast(snapshot, from = N)]`) when they lead to the
    /// current one, and otherwise ignored: the load replays the whole stream,
    /// then writes a fresh snapshot. The same goes for a snapshot that no
    /// longer deserializes. A snapshot whose version the stream does not
    /// hold (one ahead of its stream) is ignored too: a load never yields an
    /// aggregate at a version its stream never reached.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = Some(Snapshots {
            policy,
            load: load_snapshot::<S>,
            save: save_snapshot::<S>,
            encode: |aggregate| Payload::encode(aggregate),
            decode: |state| state.decode(),
            decode_value: serde_json::from_value,
        });
        self
    }
}

impl<A: Aggregate, S: EventStore> Application<A, S> {
    /// Loads the aggregate, or starts a new one with default fields and its
    /// `created` event pending when the stream is empty.
    // Boxed rather than `async fn`: an `async fn` with this bound reports a
    // missing `Default` three times (call, arguments, `.await`); a boxed
    // future reports it once, at the call.
    pub fn load_or_create(&self, id: A::Id) -> BoxFuture<'_, Result<A, Error>>
    where
        A: DefaultAggregate,
    {
        Box::pin(self.load_or_else(id, A::create_default))
    }

    /// Loads the aggregate, or starts one with `create` when the stream is empty.
    pub async fn load_or_else(&self, id: A::Id, create: impl FnOnce(A::Id) -> A) -> Result<A, Error> {
        match self.load(&id, u64::MAX).await? {
            Some(aggregate) => Ok(aggregate),
            None => Ok(create(id)),
        }
    }

    /// Loads the aggregate; [`Error::NotFound`] when its stream is empty.
    pub async fn get(&self, id: A::Id) -> Result<A, Error> {
        self.load(&id, u64::MAX).await?.ok_or_else(|| Error::NotFound {
            stream: StreamId::for_aggregate::<A>(&id),
        })
    }

    /// The aggregate as it was after `version`: time travel.
    ///
    /// [`Error::NotFound`] when the stream is empty or `version` is 0,
    /// [`Error::VersionNotFound`] when the stream ends before `version`.
    pub async fn get_at(&self, id: A::Id, version: u64) -> Result<A, Error> {
        let stream = || StreamId::for_aggregate::<A>(&id);
        if version == 0 {
            return Err(Error::NotFound { stream: stream() });
        }
        let aggregate = self
            .load(&id, version)
            .await?
            .ok_or_else(|| Error::NotFound { stream: stream() })?;
        if aggregate.version() < version {
            return Err(Error::VersionNotFound {
                stream: stream(),
                requested: version,
                actual: aggregate.version(),
            });
        }
        Ok(aggregate)
    }

    /// Saves the aggregate's pending events; see [`Repository::save`].
    ///
    /// When the save crosses the snapshot interval, a snapshot is stored too.
    /// The events are saved by then, so a failing snapshot does not fail the
    /// save: it is reported as a warning through `tracing`, and the next save
    /// across an interval tries again.
    pub async fn save(&self, aggregate: &mut A) -> Result<AppendResult, Error> {
        self.save_with(aggregate, Metadata::default()).await
    }

    /// Saves the aggregate's pending events with `metadata`.
    pub async fn save_with(&self, aggregate: &mut A, metadata: Metadata) -> Result<AppendResult, Error> {
        let span = telemetry::save_span(&*aggregate);
        let saved = self
            .save_unmeasured(aggregate, metadata)
            .instrument(span.clone())
            .await;
        telemetry::saved(telemetry::keys::of::<A>(), Some(&span), saved.as_ref());
        saved
    }

    async fn save_unmeasured(&self, aggregate: &mut A, metadata: Metadata) -> Result<AppendResult, Error> {
        let before = aggregate.state().persisted_version();
        let batch = self.repository.pending_batch(aggregate, &metadata)?;
        let told = self.notifier.as_ref().zip(batch.clone());
        let result = self.repository.save_batch(aggregate, batch).await?;
        self.snapshot_if_due(aggregate, before, &result).await;
        if let Some((notifier, batch)) = told {
            notifier.saved(batch, &result).await?;
        }
        Ok(result)
    }

    /// Saves the pending events of several aggregates atomically: all of
    /// them are stored, or none; see [`Repository::save_all`]. Results come
    /// in the order given.
    ///
    /// After a commit each aggregate is as [`save`](Self::save) leaves it,
    /// snapshots included; after an error each keeps its pending events.
    /// For aggregates of different types, see [`UnitOfWork`](crate::UnitOfWork).
    ///
    /// ```
    /// # use factum_core::{Aggregate, Application, InMemoryEventStore};
    /// # async fn demo<Account: Aggregate>(
    /// #     app: Application<Account, InMemoryEventStore>,
    /// #     mut from: Account,
    /// #     mut to: Account,
    /// # ) -> Result<(), factum_core::Error> {
    /// let results = app.save_all([&mut from, &mut to]).await?;
    /// assert_eq!(results[1].stream_version, to.version());
    /// # Ok(()) }
    /// ```
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
            .save_all_unmeasured(&mut aggregates, metadata)
            .instrument(span.clone())
            .await;
        crate::repository::record_save_all::<A>(&span, &saved);
        saved
    }

    async fn save_all_unmeasured(
        &self,
        aggregates: &mut [&mut A],
        metadata: Metadata,
    ) -> Result<Vec<AppendResult>, Error> {
        let mut told = self.notifier.as_ref().map(|_| Vec::new());
        let results = self
            .repository
            .save_each(aggregates, &metadata, told.as_mut())
            .await?;
        for (aggregate, result) in aggregates.iter().zip(&results) {
            // The version each was saved from: a retry's original result
            // counts from the same version.
            let before = result
                .stream_version
                .saturating_sub(result.positions.len() as u64);
            self.snapshot_if_due(aggregate, before, result).await;
        }
        if let (Some(notifier), Some(told)) = (&self.notifier, told) {
            // Each stored batch with its result: aggregates with nothing
            // pending had no batch and gave no positions.
            let stored = results.iter().filter(|result| !result.positions.is_empty());
            for (batch, result) in told.into_iter().zip(stored) {
                notifier.saved(batch, result).await?;
            }
        }
        Ok(results)
    }

    /// Takes a snapshot when a save from version `before` to `result`
    /// crossed the snapshot interval.
    ///
    /// The events are saved by then, so a failing snapshot does not fail the
    /// save: it is reported as a warning through `tracing`, and the next save
    /// across an interval tries again.
    pub(crate) async fn snapshot_if_due(&self, aggregate: &A, before: u64, result: &AppendResult) {
        let Some(snapshots) = &self.snapshots else {
            return;
        };
        if !snapshots.policy.due(before, result.stream_version) {
            return;
        }
        self.take_snapshot(snapshots, aggregate, result.stream_version)
            .await;
    }

    /// Stores a snapshot of `aggregate` at `version`. A snapshot is a
    /// cache: failing to take one is a warning through `tracing`, not an
    /// error of the save or load that asked for it.
    async fn take_snapshot(&self, snapshots: &Snapshots<A, S>, aggregate: &A, version: u64) {
        let stream = StreamId::for_aggregate::<A>(&aggregate.id());
        let taken = match (snapshots.encode)(aggregate) {
            Ok(state) => {
                let snapshot = Snapshot {
                    stream: stream.clone(),
                    version,
                    schema_version: A::EVOLUTION.snapshot_version(),
                    state,
                    taken_at: time::OffsetDateTime::now_utc(),
                };
                (snapshots.save)(self.store(), snapshot).await
            }
            Err(source) => Err(Error::Serialization {
                stream: stream.clone(),
                version,
                event_type: "snapshot".to_owned(),
                source,
            }),
        };
        if let Err(error) = taken {
            tracing::warn!(%stream, version, %error, "snapshot not taken");
        }
    }

    /// Loads from the latest usable snapshot, else by a full replay.
    ///
    /// A snapshot is used only when its stream holds the snapshot's version:
    /// one ahead of its stream (left by a store that was restored from an
    /// older backup, or written by hand) would give an aggregate at a
    /// version the stream never reached, whose next save could only
    /// conflict. Such a snapshot is ignored, like one that no longer
    /// deserializes. After a full load past a snapshot of another shape, a
    /// fresh one is written, so the next load starts from it.
    async fn load(&self, id: &A::Id, up_to: u64) -> Result<Option<A>, Error> {
        let meter = LoadMeter::start::<A>(id, up_to);
        let mut from_snapshot = None;
        let loaded = self
            .load_unmeasured(id, up_to, &mut from_snapshot)
            .instrument(meter.span().clone())
            .await;
        meter.finish(&loaded, from_snapshot);
        loaded
    }

    /// [`load`](Self::load) without its span and metrics; `from_snapshot`
    /// is set to the version of the snapshot the load started from.
    async fn load_unmeasured(
        &self,
        id: &A::Id,
        up_to: u64,
        from_snapshot: &mut Option<u64>,
    ) -> Result<Option<A>, Error> {
        let Some(snapshots) = &self.snapshots else {
            return self.repository.replay_from(id, None, up_to).await;
        };
        match self.restore(snapshots, id, up_to).await? {
            Restored::Usable(aggregate, version) => {
                let loaded = self
                    .repository
                    .load_from_snapshot(id, aggregate, version, up_to)
                    .await?;
                if loaded.is_some() {
                    *from_snapshot = Some(version);
                    return Ok(loaded);
                }
                let stream = StreamId::for_aggregate::<A>(id);
                tracing::warn!(%stream, version, "snapshot ignored: it is ahead of its stream");
                self.repository.replay_from(id, None, up_to).await
            }
            Restored::Stale(stale_version) => {
                let loaded = self.repository.replay_from(id, None, up_to).await?;
                if let Some(aggregate) = &loaded
                    && up_to == u64::MAX
                    && aggregate.version() >= stale_version
                {
                    self.take_snapshot(snapshots, aggregate, aggregate.version())
                        .await;
                }
                Ok(loaded)
            }
            Restored::Missing => self.repository.replay_from(id, None, up_to).await,
        }
    }

    /// The aggregate from its latest snapshot at or below `up_to`, if usable.
    async fn restore(
        &self,
        snapshots: &Snapshots<A, S>,
        id: &A::Id,
        up_to: u64,
    ) -> Result<Restored<A>, Error> {
        let stream = StreamId::for_aggregate::<A>(id);
        let Some(snapshot) = (snapshots.load)(self.store(), &stream).await? else {
            return Ok(Restored::Missing);
        };
        if snapshot.version > up_to {
            return Ok(Restored::Missing);
        }
        let current = A::EVOLUTION.snapshot_version();
        let decoded = if snapshot.schema_version == current {
            (snapshots.decode)(&snapshot.state).map_err(|error| error.to_string())
        } else {
            match crate::evolution::lift_snapshot::<A>(snapshot.schema_version, &snapshot.state) {
                Some(lifted) => lifted
                    .and_then(|state| (snapshots.decode_value)(state).map_err(|error| error.to_string())),
                None => {
                    tracing::info!(
                        %stream,
                        version = snapshot.version,
                        schema_version = snapshot.schema_version,
                        current_schema_version = current,
                        "snapshot ignored: it has another shape version; replaying the events"
                    );
                    return Ok(Restored::Stale(snapshot.version));
                }
            }
        };
        match decoded {
            Ok(aggregate) => Ok(Restored::Usable(aggregate, snapshot.version)),
            Err(error) => {
                // A snapshot is a cache: one from before a change of the struct
                // costs a full replay, not a failed load.
                tracing::warn!(%stream, version = snapshot.version, %error, "snapshot ignored: it no longer deserializes");
                Ok(Restored::Stale(snapshot.version))
            }
        }
    }
}
