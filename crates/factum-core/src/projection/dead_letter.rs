//! Events a projection could not handle, kept visible until fixed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use crate::backend::{letter_tenant, narrow, projection_scope};
use crate::{Error, RecordedEvent, Tenancy, Tenant};

/// An event a projection's handler failed on, on every attempt.
///
/// The runner moved its checkpoint past the event only after storing this
/// record: the event is parked, not lost. List dead letters, fix the
/// handler, then replay them ([`ProjectionRunner::replay_dead_letters`](crate::ProjectionRunner::replay_dead_letters)).
///
/// ```
/// # use factum_core::{DeadLetter, NewEvent, Payload, StreamId};
/// let event = NewEvent::new("placed", Payload::parse("{}").unwrap())
///     .recorded(StreamId::new("Order", "1"), 1, 7);
/// let letter = DeadLetter::new("sales", event.clone(), "price missing", 5);
/// assert_eq!(letter.position(), 7);
/// // 0 attempts is the mark of a requested replay, which `new` never makes.
/// assert!(!DeadLetter::new("sales", event, "price missing", 0).replay_requested());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The projection that failed.
    pub projection: String,
    /// The event, as read from the log.
    pub event: RecordedEvent,
    /// What the handler reported on its last attempt.
    pub error: String,
    /// How many attempts failed, replays included. 0 marks a replay an
    /// operator asked for ([`replay_requested`](Self::replay_requested)).
    pub attempts: u32,
    /// When the last attempt failed (UTC).
    pub failed_at: OffsetDateTime,
}

impl DeadLetter {
    /// A dead letter for `event`, failed now after `attempts` attempts.
    ///
    /// At least 1 is recorded: 0 is the mark of a replay an operator asked
    /// for ([`replay_requested`](Self::replay_requested)), which only
    /// [`StoreAdmin::request_replay`](crate::StoreAdmin::request_replay)
    /// sets, so a letter built here is never replayed by mistake.
    pub fn new(
        projection: impl Into<String>,
        event: RecordedEvent,
        error: impl Into<String>,
        attempts: u32,
    ) -> Self {
        Self {
            projection: projection.into(),
            event,
            error: error.into(),
            attempts: attempts.max(1),
            failed_at: OffsetDateTime::now_utc(),
        }
    }

    /// The event's position in the global log: with the projection's name,
    /// the dead letter's key.
    pub fn position(&self) -> u64 {
        self.event.position
    }

    /// True when an operator asked for this letter to be handled again
    /// (`factum dead-letters NAME replay`, or
    /// [`StoreAdmin::request_replay`](crate::StoreAdmin::request_replay)),
    /// which resets its attempts to 0: a runner replays such letters when it
    /// starts and while it is idle.
    pub fn replay_requested(&self) -> bool {
        self.attempts == 0
    }
}

/// Keeps dead letters, keyed by projection and position.
///
/// The runner writes a dead letter before it saves a checkpoint past the
/// event, so a crash in between only repeats the event (and replaces the
/// dead letter with an equal one).
///
/// ```
/// # use factum_core::{DeadLetter, DeadLetterStore, InMemoryDeadLetterStore, NewEvent, Payload, StreamId};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let letters = InMemoryDeadLetterStore::new();
/// let event = NewEvent::new("placed", Payload::parse("{}").unwrap())
///     .recorded(StreamId::new("Order", "1"), 1, 7);
/// letters.put(DeadLetter::new("sales", event, "price missing", 5)).await?;
/// assert_eq!(letters.list("sales").await?.len(), 1);
/// assert!(letters.remove("sales", 7).await?);
/// assert!(letters.list("sales").await?.is_empty());
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Stores `letter`, replacing one of the same projection and position.
    fn put(&self, letter: DeadLetter) -> impl Future<Output = Result<(), Error>> + Send;

    /// The dead letters of `projection`, in position order.
    fn list(&self, projection: &str) -> impl Future<Output = Result<Vec<DeadLetter>, Error>> + Send;

    /// Deletes the dead letter of `projection` at `position`; false when
    /// there was none.
    fn remove(&self, projection: &str, position: u64) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Deletes every dead letter of `projection` (a rebuild meets their
    /// events again).
    fn clear(&self, projection: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Dead letters in memory. Clones share the same letters; a view of a
/// tenant ([`Tenancy::for_tenant`]) reaches only that tenant's.
///
/// ```
/// # use factum_core::InMemoryDeadLetterStore;
/// let letters = InMemoryDeadLetterStore::new();
/// assert!(letters.all().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryDeadLetterStore {
    letters: Arc<Mutex<DeadLetters>>,
    tenant: Option<Tenant>,
}

/// Dead letters keyed by scope (see [`projection_scope`]), projection and
/// position: the map both in-memory stores keep.
pub(crate) type DeadLetters = BTreeMap<(String, String, u64), DeadLetter>;

impl InMemoryDeadLetterStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every dead letter of every projection of this view, by projection
    /// then position.
    pub fn all(&self) -> Vec<DeadLetter> {
        let scope = self.scope();
        self.lock()
            .iter()
            .filter(|((letter_scope, _, _), _)| letter_scope == scope)
            .map(|(_, letter)| letter.clone())
            .collect()
    }

    fn scope(&self) -> &str {
        projection_scope(self.tenant.as_ref())
    }

    fn key(&self, projection: &str, position: u64) -> (String, String, u64) {
        (self.scope().to_owned(), projection.to_owned(), position)
    }

    // A panic while the lock is held cannot leave a half-written entry.
    fn lock(&self) -> std::sync::MutexGuard<'_, DeadLetters> {
        self.letters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn of_projection(letters: &DeadLetters, scope: &str, projection: &str) -> Vec<DeadLetter> {
    let key = |position| (scope.to_owned(), projection.to_owned(), position);
    letters
        .range(key(0)..=key(u64::MAX))
        .map(|(_, letter)| letter.clone())
        .collect()
}

impl DeadLetterStore for InMemoryDeadLetterStore {
    async fn put(&self, letter: DeadLetter) -> Result<(), Error> {
        letter_tenant(&letter, self.tenant.as_ref())?;
        let key = self.key(&letter.projection, letter.position());
        self.lock().insert(key, letter);
        Ok(())
    }

    async fn list(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(of_projection(&self.lock(), self.scope(), projection))
    }

    async fn remove(&self, projection: &str, position: u64) -> Result<bool, Error> {
        Ok(self.lock().remove(&self.key(projection, position)).is_some())
    }

    async fn clear(&self, projection: &str) -> Result<(), Error> {
        let scope = self.scope();
        self.lock()
            .retain(|(letter_scope, name, _), _| letter_scope != scope || name != projection);
        Ok(())
    }
}

impl Tenancy for InMemoryDeadLetterStore {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            letters: Arc::clone(&self.letters),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}
