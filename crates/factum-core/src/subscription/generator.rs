//! A stream driven by one async block running inside it: what lets a
//! subscription own its store and hold a read of it (which borrows the
//! store) across the events it hands out. An `async` block may borrow its
//! own locals; `futures::stream::unfold` cannot keep such a borrow between
//! items. Safe code only, in the manner of sqlx's minimal `async-stream`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;

type Slot<T> = Arc<Mutex<Option<T>>>;

/// Hands items from the producer to the stream, one at a time.
pub(crate) struct Yielder<T> {
    slot: Slot<T>,
}

impl<T> Yielder<T> {
    /// Hands `item` to the stream's consumer; resumes when the consumer
    /// asks for the next item.
    pub(crate) fn yield_item(&self, item: T) -> YieldItem<'_, T> {
        YieldItem {
            slot: &self.slot,
            item: Some(item),
        }
    }
}

/// The future of [`Yielder::yield_item`].
pub(crate) struct YieldItem<'a, T> {
    slot: &'a Slot<T>,
    item: Option<T>,
}

impl<T> Unpin for YieldItem<'_, T> {}

impl<T> Future for YieldItem<'_, T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match self.item.take() {
            Some(item) => {
                *lock(self.slot) = Some(item);
                // No waker is registered: the consumer takes the item as soon
                // as this returns, and polls the producer again for the next.
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

/// The stream [`generate`] returns: it ends when the producer returns.
pub(crate) struct Generator<T, F> {
    slot: Slot<T>,
    producer: Option<Pin<Box<F>>>,
}

/// A stream of what `produce` yields through its [`Yielder`], produced on
/// demand: the producer runs only while the stream is polled.
pub(crate) fn generate<T, F, P>(produce: P) -> Generator<T, F>
where
    P: FnOnce(Yielder<T>) -> F,
    F: Future<Output = ()>,
{
    let slot = Arc::new(Mutex::new(None));
    let producer = produce(Yielder { slot: slot.clone() });
    Generator {
        slot,
        producer: Some(Box::pin(producer)),
    }
}

impl<T, F: Future<Output = ()>> Stream for Generator<T, F> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<T>> {
        let Some(producer) = self.producer.as_mut() else {
            return Poll::Ready(None);
        };
        let finished = producer.as_mut().poll(context).is_ready();
        if finished {
            self.producer = None;
        }
        if let Some(item) = lock(&self.slot).take() {
            return Poll::Ready(Some(item));
        }
        if finished {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

// The lock is held only to move one item in or out: a panic cannot leave
// the slot half-written.
fn lock<T>(slot: &Slot<T>) -> std::sync::MutexGuard<'_, Option<T>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn yields_in_order_then_ends() {
        let numbers = generate(|yielder| async move {
            for number in 0..5 {
                yielder.yield_item(number).await;
            }
        });
        let collected: Vec<i32> = futures::executor::block_on(numbers.collect());
        assert_eq!(collected, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_producer_runs_only_on_demand() {
        let produced = Arc::new(Mutex::new(0));
        let counter = produced.clone();
        let mut numbers = generate(|yielder| async move {
            for number in 0..100 {
                *counter.lock().unwrap() += 1;
                yielder.yield_item(number).await;
            }
        });
        futures::executor::block_on(async {
            assert_eq!(numbers.next().await, Some(0));
            assert_eq!(numbers.next().await, Some(1));
        });
        assert_eq!(
            *produced.lock().unwrap(),
            2,
            "the producer ran ahead of the consumer"
        );
    }

    #[test]
    fn a_producer_may_borrow_what_it_owns_across_items() {
        let owned = [String::from("a"), String::from("b")];
        let borrowing = generate(|yielder| async move {
            let mut reader = futures::stream::iter(owned.iter());
            while let Some(item) = reader.next().await {
                yielder.yield_item(item.len()).await;
            }
        });
        let collected: Vec<usize> = futures::executor::block_on(borrowing.collect());
        assert_eq!(collected, [1, 1]);
    }
}
