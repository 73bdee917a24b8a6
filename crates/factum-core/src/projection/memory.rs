//! A read model, its checkpoints and dead letters in memory, committed
//! together: the in-memory [`ProjectionStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use super::dead_letter::{self, DeadLetters};
use super::{DeadLetter, ProjectionStore};
use crate::backend::{checkpoint_moved, letter_tenant, narrow, projection_scope};
use crate::{Error, Tenancy, Tenant};

/// A read model of type `M` kept in memory with the checkpoints and dead
/// letters of the projections that write it, all committed together.
///
/// Transactions are serialised (like SQLite's single writer): `begin` waits
/// for the previous transaction to end, then hands out a working copy of the
/// read model; `commit` swaps it in with the checkpoints and dead letters in
/// one step, and a transaction dropped without `commit` leaves nothing. It is
/// the reference for what a database backend must do, and what the
/// exactly-once tests run on.
///
/// Cheap to clone; clones share the same state. A view of a tenant
/// ([`Tenancy::for_tenant`]) keeps checkpoints and dead letters of its own,
/// apart from every other tenant's and from the unscoped store's; the read
/// model and the order of transactions are shared (a handler that serves
/// several tenants keys its model by `event.metadata.tenant`).
///
/// ```
/// # use std::collections::BTreeMap;
/// # use factum_core::InMemoryProjectionStore;
/// let store = InMemoryProjectionStore::new(BTreeMap::<String, i64>::new());
/// assert!(store.read_model().is_empty());
/// ```
pub struct InMemoryProjectionStore<M> {
    shared: Arc<Shared<M>>,
    tenant: Option<Tenant>,
}

struct Shared<M> {
    writer: Arc<tokio::sync::Mutex<()>>,
    committed: Mutex<Committed<M>>,
    #[cfg(any(test, feature = "testing"))]
    commit_hook: Mutex<Option<CommitHook>>,
}

#[cfg(any(test, feature = "testing"))]
type CommitHook = Arc<dyn Fn(Option<u64>) -> bool + Send + Sync>;

struct Committed<M> {
    model: M,
    /// By scope (see [`projection_scope`]) and projection.
    checkpoints: HashMap<(String, String), u64>,
    letters: DeadLetters,
}

/// A unit of work on an [`InMemoryProjectionStore`]: a working copy of the
/// read model, and the checkpoint and dead-letter changes to commit with it.
///
/// ```
/// # use factum_core::{InMemoryProjectionStore, ProjectionStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryProjectionStore::new(vec!["a"]);
/// let mut transaction = store.begin("letters").await?;
/// transaction.read_model_mut().push("b");
/// store.rollback(transaction).await?;
/// assert_eq!(store.read_model(), ["a"]);
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
pub struct InMemoryTransaction<M> {
    _writer: OwnedMutexGuard<()>,
    /// The scope of the store view that began it: its changes go there.
    scope: String,
    model: M,
    checkpoints: HashMap<String, u64>,
    letters: Vec<LetterChange>,
}

enum LetterChange {
    Put(Box<DeadLetter>),
    Remove(String, u64),
    Clear(String),
}

impl<M> InMemoryTransaction<M> {
    /// The read model as this transaction sees it.
    pub fn read_model(&self) -> &M {
        &self.model
    }

    /// The read model, to change; the changes count only once committed.
    pub fn read_model_mut(&mut self) -> &mut M {
        &mut self.model
    }
}

impl<M> std::fmt::Debug for InMemoryTransaction<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryTransaction")
            .field("checkpoints", &self.checkpoints)
            .field("dead_letter_changes", &self.letters.len())
            .finish_non_exhaustive()
    }
}

impl<M> Clone for InMemoryProjectionStore<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            tenant: self.tenant.clone(),
        }
    }
}

impl<M> Tenancy for InMemoryProjectionStore<M> {
    fn for_tenant(&self, tenant: &str) -> Result<Self, Error> {
        Ok(Self {
            shared: Arc::clone(&self.shared),
            tenant: Some(narrow(self.tenant.as_ref(), tenant)?),
        })
    }

    fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

impl<M: Default> Default for InMemoryProjectionStore<M> {
    fn default() -> Self {
        Self::new(M::default())
    }
}

impl<M> std::fmt::Debug for InMemoryProjectionStore<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let committed = self.committed();
        f.debug_struct("InMemoryProjectionStore")
            .field("tenant", &self.tenant)
            .field("checkpoints", &committed.checkpoints)
            .field("dead_letters", &committed.letters.len())
            .finish_non_exhaustive()
    }
}

impl<M> InMemoryProjectionStore<M> {
    /// A store whose read model starts as `model`.
    pub fn new(model: M) -> Self {
        Self {
            shared: Arc::new(Shared {
                writer: Arc::new(tokio::sync::Mutex::new(())),
                committed: Mutex::new(Committed {
                    model,
                    checkpoints: HashMap::new(),
                    letters: DeadLetters::new(),
                }),
                #[cfg(any(test, feature = "testing"))]
                commit_hook: Mutex::new(None),
            }),
            tenant: None,
        }
    }

    fn scope(&self) -> &str {
        projection_scope(self.tenant.as_ref())
    }

    /// Reads the committed read model without copying it.
    pub fn with_read_model<T>(&self, read: impl FnOnce(&M) -> T) -> T {
        read(&self.committed().model)
    }

    /// The committed checkpoint of `projection` (0: none), without awaiting.
    pub fn checkpoint_of(&self, projection: &str) -> u64 {
        let key = (self.scope().to_owned(), projection.to_owned());
        self.committed().checkpoints.get(&key).copied().unwrap_or(0)
    }

    /// Test hook: a commit for which `hold` returns true (given the
    /// checkpoint it would commit) never completes, as if the process died
    /// just before `COMMIT`. Cancel the runner to "kill" it there.
    #[cfg(any(test, feature = "testing"))]
    pub fn hold_commits_when(&self, hold: impl Fn(Option<u64>) -> bool + Send + Sync + 'static) {
        *self
            .shared
            .commit_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hold));
    }

    /// Test hook: removes the hook set by [`hold_commits_when`](Self::hold_commits_when).
    #[cfg(any(test, feature = "testing"))]
    pub fn clear_commit_hook(&self) {
        *self
            .shared
            .commit_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    // Commits swap whole values under the lock, so a panic elsewhere cannot
    // leave the committed state half-written.
    fn committed(&self) -> std::sync::MutexGuard<'_, Committed<M>> {
        self.shared
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: Clone> InMemoryProjectionStore<M> {
    /// A copy of the committed read model.
    pub fn read_model(&self) -> M {
        self.committed().model.clone()
    }
}

impl<M: Clone + Send + 'static> ProjectionStore for InMemoryProjectionStore<M> {
    type Transaction = InMemoryTransaction<M>;

    async fn checkpoint(&self, projection: &str) -> Result<u64, Error> {
        Ok(self.checkpoint_of(projection))
    }

    async fn begin(&self, _projection: &str) -> Result<InMemoryTransaction<M>, Error> {
        let writer = Arc::clone(&self.shared.writer).lock_owned().await;
        let model = self.committed().model.clone();
        Ok(InMemoryTransaction {
            _writer: writer,
            scope: self.scope().to_owned(),
            model,
            checkpoints: HashMap::new(),
            letters: Vec::new(),
        })
    }

    async fn save_checkpoint(
        &self,
        transaction: &mut InMemoryTransaction<M>,
        projection: &str,
        expected: u64,
        position: u64,
    ) -> Result<(), Error> {
        // Transactions are serialised, so the committed value cannot move
        // between this check and the commit.
        let current = match transaction.checkpoints.get(projection) {
            Some(&pending) => pending,
            None => self.checkpoint_of(projection),
        };
        if current != expected {
            return Err(checkpoint_moved(projection, expected, current));
        }
        transaction.checkpoints.insert(projection.to_owned(), position);
        Ok(())
    }

    async fn put_dead_letter(
        &self,
        transaction: &mut InMemoryTransaction<M>,
        letter: DeadLetter,
    ) -> Result<(), Error> {
        letter_tenant(&letter, self.tenant.as_ref())?;
        transaction.letters.push(LetterChange::Put(Box::new(letter)));
        Ok(())
    }

    async fn remove_dead_letter(
        &self,
        transaction: &mut InMemoryTransaction<M>,
        projection: &str,
        position: u64,
    ) -> Result<bool, Error> {
        let key = (transaction.scope.clone(), projection.to_owned(), position);
        let mut present = self.committed().letters.contains_key(&key);
        for change in &transaction.letters {
            match change {
                LetterChange::Put(letter)
                    if letter.projection == projection && letter.position() == position =>
                {
                    present = true;
                }
                LetterChange::Remove(name, at) if *name == projection && *at == position => present = false,
                LetterChange::Clear(name) if name == projection => present = false,
                _ => {}
            }
        }
        transaction
            .letters
            .push(LetterChange::Remove(projection.to_owned(), position));
        Ok(present)
    }

    async fn clear_dead_letters(
        &self,
        transaction: &mut InMemoryTransaction<M>,
        projection: &str,
    ) -> Result<(), Error> {
        transaction
            .letters
            .push(LetterChange::Clear(projection.to_owned()));
        Ok(())
    }

    async fn commit(&self, transaction: InMemoryTransaction<M>) -> Result<(), Error> {
        #[cfg(any(test, feature = "testing"))]
        {
            let hook = self
                .shared
                .commit_hook
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let checkpoint = transaction.checkpoints.values().copied().max();
            if hook.is_some_and(|hold| hold(checkpoint)) {
                std::future::pending::<()>().await;
            }
        }
        let InMemoryTransaction {
            _writer,
            scope,
            model,
            checkpoints,
            letters,
        } = transaction;
        let mut committed = self.committed();
        committed.model = model;
        committed.checkpoints.extend(
            checkpoints
                .into_iter()
                .map(|(projection, position)| ((scope.clone(), projection), position)),
        );
        for change in letters {
            match change {
                LetterChange::Put(letter) => {
                    let key = (scope.clone(), letter.projection.clone(), letter.position());
                    committed.letters.insert(key, *letter);
                }
                LetterChange::Remove(projection, position) => {
                    committed.letters.remove(&(scope.clone(), projection, position));
                }
                LetterChange::Clear(projection) => committed
                    .letters
                    .retain(|(letter_scope, name, _), _| *letter_scope != scope || *name != projection),
            }
        }
        Ok(())
    }

    async fn rollback(&self, transaction: InMemoryTransaction<M>) -> Result<(), Error> {
        drop(transaction);
        Ok(())
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(dead_letter::of_projection(
            &self.committed().letters,
            self.scope(),
            projection,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEvent, Payload, StreamId};

    fn letter(position: u64) -> DeadLetter {
        let event = NewEvent::new("placed", Payload::from(serde_json::json!({}))).recorded(
            StreamId::new("Order", "1"),
            1,
            position,
        );
        DeadLetter::new("p", event, "boom", 1)
    }

    #[tokio::test]
    async fn nothing_counts_until_commit_and_a_dropped_transaction_leaves_nothing() -> Result<(), Error> {
        let store = InMemoryProjectionStore::new(0_i64);
        let mut transaction = store.begin("p").await?;
        *transaction.read_model_mut() = 5;
        store.save_checkpoint(&mut transaction, "p", 0, 3).await?;
        store.put_dead_letter(&mut transaction, letter(2)).await?;
        assert_eq!((store.read_model(), store.checkpoint_of("p")), (0, 0));
        drop(transaction);
        assert!(store.dead_letters("p").await?.is_empty());

        let mut transaction = store.begin("p").await?;
        *transaction.read_model_mut() = 7;
        store.save_checkpoint(&mut transaction, "p", 0, 3).await?;
        store.put_dead_letter(&mut transaction, letter(2)).await?;
        store.commit(transaction).await?;
        assert_eq!((store.read_model(), store.checkpoint_of("p")), (7, 3));
        let letters = store.dead_letters("p").await?;
        let keys: Vec<(u64, &str)> = letters.iter().map(|l| (l.position(), l.error.as_str())).collect();
        assert_eq!(keys, [(2, "boom")]);

        let mut transaction = store.begin("p").await?;
        assert!(store.remove_dead_letter(&mut transaction, "p", 2).await?);
        assert!(!store.remove_dead_letter(&mut transaction, "p", 2).await?);
        store.commit(transaction).await?;
        assert!(store.dead_letters("p").await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_stale_checkpoint_is_refused() -> Result<(), Error> {
        let store = InMemoryProjectionStore::new(());
        let mut transaction = store.begin("p").await?;
        store.save_checkpoint(&mut transaction, "p", 0, 10).await?;
        store.commit(transaction).await?;
        let mut stale = store.begin("p").await?;
        let refused = store.save_checkpoint(&mut stale, "p", 0, 5).await;
        assert!(matches!(refused, Err(Error::Checkpoint { .. })), "{refused:?}");
        Ok(())
    }
}
