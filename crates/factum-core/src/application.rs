use crate::{Aggregate, AppendResult, DefaultAggregate, Error, EventStore, Metadata, Repository, StreamId};

/// The entry point of an event-sourced application for one aggregate type:
/// load, change, save.
///
/// ```
/// # use factum_core::{Application, InMemoryEventStore};
/// # fn demo<A: factum_core::DefaultAggregate>(id: A::Id) {
/// let store = InMemoryEventStore::new();
/// let app = Application::<A, _>::new(store.clone());
/// # }
/// ```
pub struct Application<A, S> {
    repository: Repository<A, S>,
}

impl<A, S: Clone> Clone for Application<A, S> {
    fn clone(&self) -> Self {
        Self {
            repository: self.repository.clone(),
        }
    }
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Application<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("repository", &self.repository)
            .finish()
    }
}

impl<A, S> Application<A, S> {
    /// An application storing its events in `store`.
    pub fn new(store: S) -> Self {
        Self {
            repository: Repository::new(store),
        }
    }

    /// The repository underneath.
    pub fn repository(&self) -> &Repository<A, S> {
        &self.repository
    }

    /// The event store.
    pub fn store(&self) -> &S {
        self.repository.store()
    }
}

impl<A: Aggregate, S: EventStore> Application<A, S> {
    /// Loads the aggregate, or starts a new one with default fields and its
    /// `created` event pending when the stream is empty.
    pub async fn load_or_create(&self, id: A::Id) -> Result<A, Error>
    where
        A: DefaultAggregate,
    {
        self.load_or_else(id, A::create_default).await
    }

    /// Loads the aggregate, or starts one with `create` when the stream is empty.
    pub async fn load_or_else(&self, id: A::Id, create: impl FnOnce(A::Id) -> A) -> Result<A, Error> {
        match self.repository.load(&id).await? {
            Some(aggregate) => Ok(aggregate),
            None => Ok(create(id)),
        }
    }

    /// Loads the aggregate; [`Error::NotFound`] when its stream is empty.
    pub async fn get(&self, id: A::Id) -> Result<A, Error> {
        self.repository.load(&id).await?.ok_or_else(|| Error::NotFound {
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
            .repository
            .load_up_to(&id, version)
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
    pub async fn save(&self, aggregate: &mut A) -> Result<AppendResult, Error> {
        self.repository.save(aggregate).await
    }

    /// Saves the aggregate's pending events with `metadata`.
    pub async fn save_with(&self, aggregate: &mut A, metadata: Metadata) -> Result<AppendResult, Error> {
        self.repository.save_with(aggregate, metadata).await
    }
}
