//! Saving aggregates together: the atomic append behind
//! [`Repository::save_all`](crate::Repository::save_all) and
//! [`Application::save_all`](crate::Application::save_all), and
//! [`UnitOfWork`] for aggregates of different types.

use futures::future::BoxFuture;
use tracing::Instrument;

use crate::repository::unchanged;
use crate::telemetry::keys::AggregateKeys;
use crate::telemetry::{self, AppendMeter};
use crate::{Aggregate, AppendBatch, AppendResult, Application, Error, EventStore, Metadata};

/// Appends `batches` in one atomic call, results in batch order. One batch
/// goes through [`EventStore::append`], the single-stream path; none makes
/// no call at all.
///
/// Every append factum-core makes goes through here, in the span and with
/// the metrics of [`AppendMeter`]; `keys` holds the metric keys of each
/// batch's aggregate type, in batch order.
pub(crate) async fn append_batches<S: EventStore>(
    store: &S,
    mut batches: Vec<AppendBatch>,
    keys: &[&'static AggregateKeys],
) -> Result<Vec<AppendResult>, Error> {
    if batches.len() <= 1 {
        return match (batches.pop(), keys) {
            (Some(batch), [keys, ..]) => Ok(vec![append_one(store, batch, keys).await?]),
            _ => Ok(Vec::new()),
        };
    }
    let meter = AppendMeter::start(&batches, keys);
    let appended = store.append_many(batches).instrument(meter.span().clone()).await;
    meter.finish(appended.as_deref());
    appended
}

/// Appends one stream's `batch` through [`EventStore::append`], in the span
/// and with the metrics of [`AppendMeter`].
pub(crate) async fn append_one<S: EventStore>(
    store: &S,
    batch: AppendBatch,
    keys: &'static AggregateKeys,
) -> Result<AppendResult, Error> {
    let meter = AppendMeter::start(std::slice::from_ref(&batch), &[keys]);
    let appended = store
        .append(&batch.stream, batch.expected, batch.events)
        .instrument(meter.span().clone())
        .await;
    meter.finish(appended.as_ref().map(std::slice::from_ref));
    appended
}

/// The result of each aggregate of a save, in order: `idle` holds the
/// result of each one that had nothing pending (`None` for the others),
/// `appended` the results of the others, in order.
pub(crate) fn place_results(
    idle: impl IntoIterator<Item = Option<AppendResult>>,
    appended: Vec<AppendResult>,
) -> Result<Vec<AppendResult>, Error> {
    let mut appended = appended.into_iter();
    idle.into_iter()
        .map(|idle| {
            idle.or_else(|| appended.next()).ok_or_else(|| {
                Error::store(
                    "factum",
                    "the store answered an atomic append with fewer results than batches",
                )
            })
        })
        .collect()
}

/// Saves aggregates of different types atomically: all of their pending
/// events are stored, or none.
///
/// Each aggregate is added with the [`Application`] that saves it and is
/// borrowed until [`commit`](Self::commit); after a commit each one is
/// exactly as [`Application::save`] leaves it (pending events cleared,
/// version updated, a snapshot taken when its policy says so), and after a
/// failure each keeps its pending events, as after a failed `save`. The
/// applications must share one store (clones of it): the commit goes
/// through the store of the first one added.
///
/// ```
/// # use factum_core::{Aggregate, Application, InMemoryEventStore, UnitOfWork};
/// # async fn transfer<Account: Aggregate, Ledger: Aggregate>(
/// #     accounts: Application<Account, InMemoryEventStore>,
/// #     ledgers: Application<Ledger, InMemoryEventStore>,
/// #     mut account: Account,
/// #     mut ledger: Ledger,
/// # ) -> Result<(), factum_core::Error> {
/// let mut work = UnitOfWork::new();
/// work.add(&accounts, &mut account)?;
/// work.add(&ledgers, &mut ledger)?;
/// let results = work.commit().await?; // in the order added
/// assert!(account.pending_events().is_empty());
/// # let _ = results; Ok(()) }
/// ```
pub struct UnitOfWork<'a, S> {
    store: Option<&'a S>,
    entries: Vec<Entry<'a>>,
}

/// Brings an aggregate up to date once its events are stored; its
/// notification's outcome comes back beside its result.
type Finisher<'a> =
    Box<dyn FnOnce(AppendResult) -> BoxFuture<'a, (AppendResult, Result<(), Error>)> + Send + 'a>;

/// One aggregate of a unit of work.
struct Entry<'a> {
    /// Its batch (`None`: nothing pending) and what saving nothing returns.
    unchanged: AppendResult,
    batch: Option<AppendBatch>,
    /// The metric keys of its aggregate type.
    keys: &'static AggregateKeys,
    /// Brings the aggregate up to date once its events are stored.
    saved: Finisher<'a>,
}

impl<S> Default for UnitOfWork<'_, S> {
    fn default() -> Self {
        Self {
            store: None,
            entries: Vec::new(),
        }
    }
}

impl<S> std::fmt::Debug for UnitOfWork<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams: Vec<_> = self
            .entries
            .iter()
            .filter_map(|entry| entry.batch.as_ref().map(|batch| batch.stream.to_string()))
            .collect();
        f.debug_struct("UnitOfWork").field("streams", &streams).finish()
    }
}

impl<'a, S: EventStore> UnitOfWork<'a, S> {
    /// An empty unit of work.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `aggregate`, saved by `app`, to the work.
    ///
    /// Its pending events are encoded now ([`Error::Serialization`] here,
    /// nothing written); an aggregate whose stream is already in the work
    /// is [`Error::DuplicateStream`].
    pub fn add<A: Aggregate>(
        &mut self,
        app: &'a Application<A, S>,
        aggregate: &'a mut A,
    ) -> Result<&mut Self, Error> {
        self.add_with(app, aggregate, Metadata::default())
    }

    /// [`add`](Self::add), storing `metadata` with the aggregate's events.
    pub fn add_with<A: Aggregate>(
        &mut self,
        app: &'a Application<A, S>,
        aggregate: &'a mut A,
        metadata: Metadata,
    ) -> Result<&mut Self, Error> {
        let batch = app.repository().pending_batch(aggregate, &metadata)?;
        if let Some(batch) = &batch
            && self.entries.iter().any(|entry| {
                entry
                    .batch
                    .as_ref()
                    .is_some_and(|other| other.stream == batch.stream)
            })
        {
            return Err(Error::DuplicateStream {
                stream: batch.stream.clone(),
            });
        }
        self.store.get_or_insert(app.store());
        let before = aggregate.state().persisted_version();
        let told = app.notifier().zip(batch.clone());
        self.entries.push(Entry {
            unchanged: unchanged(aggregate),
            batch,
            keys: telemetry::keys::of::<A>(),
            saved: Box::new(move |result| {
                Box::pin(async move {
                    aggregate.state_mut().loaded_at(result.stream_version);
                    app.snapshot_if_due(aggregate, before, &result).await;
                    let notified = match told {
                        Some((notifier, batch)) => notifier.saved(batch, &result).await,
                        None => Ok(()),
                    };
                    (result, notified)
                })
            }),
        });
        Ok(self)
    }

    /// The number of aggregates added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no aggregate was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores the pending events of every aggregate added, atomically, and
    /// brings each aggregate up to date; the results come in the order the
    /// aggregates were added.
    ///
    /// On [`Error::Conflict`] (naming the stream that moved) nothing is
    /// written and the aggregates keep their pending events: reload them
    /// and run the commands again. Work with nothing pending writes nothing.
    /// When an application's notifier fails, every aggregate is still
    /// brought up to date and the first [`Error::Notify`] is returned.
    pub async fn commit(self) -> Result<Vec<AppendResult>, Error> {
        let Some(store) = self.store else {
            return Ok(Vec::new());
        };
        let events = self
            .entries
            .iter()
            .filter_map(|entry| entry.batch.as_ref())
            .map(|batch| batch.events.len())
            .sum();
        let span = telemetry::unit_of_work_span(self.entries.len(), events);
        let committed = Self::store_and_finish(store, self.entries)
            .instrument(span.clone())
            .await;
        if let Err(error) = &committed {
            telemetry::record_error(&span, error);
        }
        committed
    }

    /// Appends the entries' batches atomically, then brings each aggregate
    /// up to date.
    async fn store_and_finish(store: &S, entries: Vec<Entry<'a>>) -> Result<Vec<AppendResult>, Error> {
        let mut batches = Vec::with_capacity(entries.len());
        let mut keys = Vec::with_capacity(entries.len());
        let mut idle = Vec::with_capacity(entries.len());
        let mut finishers = Vec::with_capacity(entries.len());
        for entry in entries {
            idle.push(entry.batch.is_none().then_some(entry.unchanged));
            if let Some(batch) = entry.batch {
                batches.push(batch);
                keys.push(entry.keys);
            }
            finishers.push((entry.keys, entry.saved));
        }
        let stored = place_results(idle, append_batches(store, batches, &keys).await?)?;
        let mut results = Vec::with_capacity(stored.len());
        let mut failed_notification = None;
        // Every aggregate is brought up to date, even after a failed
        // notification: its events are stored either way.
        for ((keys, saved), result) in finishers.into_iter().zip(stored) {
            telemetry::saved(keys, None, Ok(&result));
            let (result, notified) = saved(result).await;
            results.push(result);
            if let Err(error) = notified {
                failed_notification.get_or_insert(error);
            }
        }
        match failed_notification {
            Some(error) => Err(error),
            None => Ok(results),
        }
    }
}
