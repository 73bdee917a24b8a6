//! Where a subscription to the global log, or a projection without a
//! checkpoint, starts.

use crate::{Error, EventStore};

/// Where a subscription to the global log `$all` starts: the beginning, after
/// a position, or the end.
///
/// Taken by [`EventStore::subscribe`] and by
/// [`ProjectionRunner::start_at`](crate::ProjectionRunner::start_at).
///
/// "The end" is read once, when the subscription is made: it is the store's
/// [`head_position`](EventStore::head_position) at that moment, so every
/// event committed after the call is delivered, and none of those the head
/// already covered.
///
/// ```
/// # use factum_core::{EventStore, InMemoryEventStore, Start};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = InMemoryEventStore::new();
/// assert_eq!(Start::default(), Start::Beginning);
/// assert_eq!(Start::After(7).after(&store).await?, 7);
/// assert_eq!(Start::End.after(&store).await?, 0); // the head of an empty store
/// # Ok::<(), factum_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Start {
    /// From the first event of the log.
    #[default]
    Beginning,
    /// From the first event after this position (exclusive), as
    /// [`subscribe_all`](EventStore::subscribe_all) takes it.
    After(u64),
    /// From the first event after the head, read when the subscription is made.
    End,
}

impl Start {
    /// The position a subscription from here starts after: 0, the given
    /// position, or the store's head position read now.
    pub async fn after<S: EventStore + ?Sized>(self, store: &S) -> Result<u64, Error> {
        match self {
            Self::Beginning => Ok(0),
            Self::After(position) => Ok(position),
            Self::End => store.head_position().await,
        }
    }
}
